"""The deadlines of many connections on one event-loop timer, and their clock.

A :class:`~tidings.net.ws.ChannelConnection` has at most one deadline (its channel's
``next_deadline()``, or its close linger). An asyncio ``TimerHandle`` per connection costs ~550
bytes on uvloop (the handle, libuv's timer and its arguments, measured by tracemalloc on a relay
with 1,000 idle connections, bench/README.md); a heap entry here costs ~100. :class:`Timers`
keeps every deadline in one heap and arms one loop timer for the earliest.

It also drops the cipher objects of connections gone quiet: ``cryptography``'s AEAD objects
(one per direction) hold ~1.1 KiB each outside Python's heap, for as long as a connection lives.
A connection that did nothing for :data:`CIPHER_IDLE_RELEASE` seconds releases them
(:meth:`~tidings.net.channel.Channel.release_ciphers`; its keys stay) and the next message
rebuilds them, ~0.5 µs each.

:class:`VirtualTimers` is the same heap on a clock the caller moves (:meth:`VirtualTimers.
advance`): adapter tests run real sockets on it without waiting for a real deadline.

Invariants:

* A target's deadline fires at most once, and only if it is still the one it last scheduled
  (``_deadline_valid``): re-arming or cancelling needs no search of the heap.
* Entries no longer valid are dropped when the heap has more of them than of valid ones
  (:data:`COMPACT_MIN`), so closed connections are not kept alive by the heap.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
import weakref
from collections.abc import Callable
from typing import ClassVar, Protocol

__all__ = [
    "CIPHER_IDLE_RELEASE",
    "COMPACT_MIN",
    "Later",
    "Target",
    "Timers",
    "VirtualTimers",
    "monotonic",
]

#: Seconds without a flush after which a connection's AEAD objects are released: long enough
#: that a busy connection keeps them (it flushes every few ms), short against the clients'
#: keepalive interval (~10 s), so an idle connection spends nearly all its life without them.
CIPHER_IDLE_RELEASE = 0.25
#: Stale heap entries tolerated before a compaction (when they also outnumber valid ones):
#: compacting is O(n), so not for every cancelled timer.
COMPACT_MIN = 64


def monotonic() -> float:
    """The clock connections' deadlines run on."""
    return time.monotonic()


class Target(Protocol):
    """What a deadline is for (a connection, a :class:`Later`)."""

    def _deadline_valid(self, when: float) -> bool: ...
    def _deadline_passed(self, when: float) -> None: ...


class Releasable(Protocol):
    """A connection whose cipher objects can be dropped while it is quiet."""

    def release_ciphers(self) -> None: ...


class Later:
    """A cancellable one-off callback (e.g. a close linger), scheduled on :class:`Timers`."""

    __slots__ = ("_callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Do not call back (a no-op once called)."""
        self.cancelled = True

    def _deadline_valid(self, when: float) -> bool:
        return not self.cancelled

    def _deadline_passed(self, when: float) -> None:
        self.cancelled = True
        self._callback()


class Timers:
    """Deadlines on one loop timer (see the module docstring). One per event loop: :meth:`of`.

    Args:
        clock: the time deadlines are given in (monotonic seconds).
    """

    _per_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Timers]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, clock: Callable[[], float] = monotonic) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, Target]] = []
        self._seq = itertools.count()
        self._stale = 0
        self._handle: asyncio.TimerHandle | None = None
        self._handle_at = 0.0
        self._fresh: set[Releasable] = set()  # flushed since the last sweep
        self._aging: set[Releasable] = set()  # flushed before it
        self._sweeping = False

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> Timers:
        """The loop's shared instance on :func:`monotonic` (made on first use)."""
        timers = cls._per_loop.get(loop)
        if timers is None:
            timers = cls._per_loop[loop] = cls()
        return timers

    # ---------------------------------------------------------------- API

    def schedule(self, target: Target, when: float) -> None:
        """Call ``target._deadline_passed(when)`` at ``when``, if it is still valid then."""
        heap = self._heap
        if self._stale > COMPACT_MIN and self._stale * 2 > len(heap):
            self._compact()
        heapq.heappush(heap, (when, next(self._seq), target))
        self._arm(heap[0][0])

    def call_later(self, delay: float, callback: Callable[[], None]) -> Later:
        """Call ``callback`` after ``delay`` seconds of this clock, unless cancelled."""
        later = Later(callback)
        self.schedule(later, self.clock() + delay)
        return later

    def discard(self) -> None:
        """A target's scheduled deadline is no longer valid (counted for the compaction)."""
        self._stale += 1

    def touch(self, conn: Releasable) -> None:
        """``conn`` is busy now: its cipher objects stay for another ``CIPHER_IDLE_RELEASE``."""
        self._fresh.add(conn)
        if not self._sweeping:
            self._sweeping = True
            self.schedule(_Sweep(self), self.clock() + CIPHER_IDLE_RELEASE)

    def fire_due(self, now: float) -> None:
        """Run every deadline at or before ``now``, earliest first."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, target = heapq.heappop(heap)
            if target._deadline_valid(when):
                target._deadline_passed(when)
            elif self._stale:
                self._stale -= 1
        if heap:
            self._arm(heap[0][0])

    @property
    def pending(self) -> int:
        """Entries in the heap, valid or not (for tests and the bench)."""
        return len(self._heap)

    # ---------------------------------------------------------------- internals

    def _sweep(self) -> None:
        for conn in self._aging - self._fresh:
            conn.release_ciphers()
        self._aging, self._fresh = self._fresh, set()
        self._sweeping = bool(self._aging)
        if self._sweeping:
            self.schedule(_Sweep(self), self.clock() + CIPHER_IDLE_RELEASE)

    def _compact(self) -> None:
        self._heap = [e for e in self._heap if e[2]._deadline_valid(e[0])]
        heapq.heapify(self._heap)
        self._stale = 0

    def _arm(self, when: float) -> None:
        """Have :meth:`fire_due` run at ``when`` (the loop's timer, re-armed if later)."""
        if self._handle is not None:
            if self._handle_at <= when:
                return
            self._handle.cancel()
        loop = asyncio.get_running_loop()
        self._handle_at = when
        self._handle = loop.call_later(max(0.0, when - self.clock()), self._on_loop_timer)

    def _on_loop_timer(self) -> None:
        self._handle = None
        self.fire_due(self.clock())


class _Sweep:
    """The sweep's own deadline."""

    __slots__ = ("_timers",)

    def __init__(self, timers: Timers) -> None:
        self._timers = timers

    def _deadline_valid(self, when: float) -> bool:
        return True

    def _deadline_passed(self, when: float) -> None:
        self._timers._sweep()


class VirtualTimers(Timers):
    """:class:`Timers` on a clock only :meth:`advance` moves: nothing fires by itself.

    Args:
        start: the clock's first reading.
    """

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        super().__init__(lambda: self.now)

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` on, running each deadline on the way at its own time."""
        end = self.now + seconds
        while self._heap and self._heap[0][0] <= end:
            self.now = max(self.now, self._heap[0][0])
            self.fire_due(self.now)
        self.now = end

    def _arm(self, when: float) -> None:
        """No loop timer: :meth:`advance` runs the deadlines."""
