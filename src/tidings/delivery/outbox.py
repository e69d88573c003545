"""The outbox rules: what to send now, and what each answer from the server means (G2, G7).

The durable outbox lives in the client's store; :class:`OutboxScheduler` is its in-memory mirror
and decides. It is sans-I/O: ``now`` is an argument and randomness comes from the injected
:class:`RetryPolicy`. Every time here (``now``, ``next_attempt_at``, ``RetryAt.at``) is on a
monotonic clock, so a step of the wall clock neither stalls nor hastens a retry; convert with
:class:`~tidings.delivery.clocks.ClockReading` to show or store one.

Invariants:

* An entry leaves the scheduler only on SENT (✓) or a permanent refusal; every other outcome
  keeps it, so a message is never dropped silently (DESIGN §5, back-pressure).
* Entries go out in creation order, at most ``window`` in flight. Within a *lane* (the recipient
  account) an entry waiting for its retry time or for a device refresh holds back the later
  entries of that lane, so their counters reach the recipient in order (G4); other lanes go on.
* A disconnect returns every in-flight entry to pending, in creation order; it is resent on the
  next connection with the same message id (the server deduplicates, G3).
* Every retry delay is in ``[0, min(cap, base * 2**(attempts - 1))]`` (capped exponential
  backoff with full jitter), and never less than the server's ``retry_after``.

Call order: :meth:`OutboxScheduler.add` (or construct with the stored entries),
:meth:`~OutboxScheduler.on_connect`, then :meth:`~OutboxScheduler.handle_timer` after every
change and whenever :meth:`~OutboxScheduler.next_deadline` passes; send what it returns.
"""

from __future__ import annotations

import dataclasses
import enum
import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ..errors import LocalProtocolError
from ..wire import ErrorCode

__all__ = [
    "OUTBOX_WINDOW",
    "REFUSALS",
    "RETRY_BASE",
    "RETRY_CAP",
    "Done",
    "Failed",
    "OutboxAction",
    "OutboxEntry",
    "OutboxScheduler",
    "RefreshDevices",
    "Refusal",
    "RetryAt",
    "RetryPolicy",
    "classify_refusal",
]

#: First retry delay ceiling: long enough not to hammer a server that just refused, short
#: enough that a transient refusal costs the user well under a second.
RETRY_BASE = 0.5

#: Largest retry delay ceiling: a message waits at most a minute for its next try, as users
#: expect of a chat app; the reconnect backoff (net/) covers longer outages.
RETRY_CAP = 60.0

#: Most sends in flight (sent, not yet answered). Pipelining hides the round trip; 64 SEND frames
#: of at most 1 MiB bound what one connection can have outstanding, and the server's ack
#: latency (one group commit) makes a deeper pipeline useless.
OUTBOX_WINDOW = 64


def _invalid(reason: str) -> LocalProtocolError:
    return LocalProtocolError(ErrorCode.INVALID_FIELD, reason)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter.

    Attributes:
        rng: returns a uniform float in ``[0, 1)`` (e.g. ``random.random``; inject a fixed one in
            tests).
        base: the delay ceiling after the first failed attempt, in seconds.
        cap: the largest delay ceiling, in seconds.
    """

    rng: Callable[[], float]
    base: float = RETRY_BASE
    cap: float = RETRY_CAP

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.cap:
            raise _invalid("retry delays need 0 < base <= cap")

    def ceiling(self, attempts: int) -> float:
        """The largest delay after ``attempts`` failed attempts (>= 1)."""
        return min(self.cap, self.base * 2.0 ** min(max(attempts, 1) - 1, 1023))

    def delay(self, attempts: int) -> float:
        """A random delay in ``[0, ceiling(attempts)]`` (full jitter).

        Raises:
            LocalProtocolError: ``rng`` returned a value outside ``[0, 1]``.
        """
        r = self.rng()
        if not 0.0 <= r <= 1.0:
            raise _invalid("rng must return a float in [0, 1)")
        return r * self.ceiling(attempts)


class Refusal(enum.Enum):
    """What a REFUSED code means for the entry."""

    REFRESH_DEVICES = "refresh"  #: fetch the recipient's devices, then retry at once
    RETRY_LATER = "retry"  #: transient: retry after the backoff (and ``retry_after``)
    PERMANENT = "permanent"  #: will never succeed: report the failure, drop the entry


#: The refusal table. A code not in it (SHUTTING_DOWN, a code newer than this client) is retried
#: later: keeping a message is always safe, dropping it is not (G2).
REFUSALS: dict[int, Refusal] = {
    ErrorCode.DEVICE_MISMATCH: Refusal.REFRESH_DEVICES,
    ErrorCode.RATE_LIMITED: Refusal.RETRY_LATER,
    ErrorCode.QUEUE_FULL: Refusal.RETRY_LATER,
    ErrorCode.STORE_UNAVAILABLE: Refusal.RETRY_LATER,
    ErrorCode.INTERNAL: Refusal.RETRY_LATER,
    ErrorCode.NO_SUCH_ACCOUNT: Refusal.PERMANENT,
    ErrorCode.PAYLOAD_TOO_LARGE: Refusal.PERMANENT,
    ErrorCode.INVALID_FIELD: Refusal.PERMANENT,
}


def classify_refusal(code: int) -> Refusal:
    """What to do about a REFUSED frame with ``code`` (see :data:`REFUSALS`)."""
    return REFUSALS.get(code, Refusal.RETRY_LATER)


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One outbox entry as the scheduler sees it (the content stays in the store).

    Attributes:
        message_id: the message id, fixed across retries.
        order: creation order (the store's position); entries go out by it.
        lane: the recipient account: order is kept within a lane.
        attempts: how many times it was sent.
        next_attempt_at: not to be sent before this time.
        in_flight: sent on the current connection, no answer yet.
        awaiting_devices: refused for a stale device set; waits for :meth:`devices_refreshed`.
        refreshes: consecutive device-mismatch refusals.
    """

    message_id: bytes
    order: int
    lane: str
    attempts: int = 0
    next_attempt_at: float = 0.0
    in_flight: bool = False
    awaiting_devices: bool = False
    refreshes: int = 0


@dataclass(frozen=True, slots=True)
class Done:
    """✓: the server stored it; remove it from the outbox (``store.mark_sent``)."""

    message_id: bytes


@dataclass(frozen=True, slots=True)
class RetryAt:
    """Keep it; retry at ``at`` (persist ``attempts`` and ``at``: ``store.set_attempt``)."""

    message_id: bytes
    attempts: int
    at: float


@dataclass(frozen=True, slots=True)
class RefreshDevices:
    """Fetch ``lane``'s devices, fix the sessions, then call ``devices_refreshed(lane)``.

    The entry is retried at ``at`` after that (``now`` on the first mismatch in a row).
    """

    message_id: bytes
    lane: str
    attempts: int
    at: float


@dataclass(frozen=True, slots=True)
class Failed:
    """Refused for good: report it (``store.mark_failed``); the entry is gone."""

    message_id: bytes
    code: int
    reason: str


OutboxAction = Done | RetryAt | RefreshDevices | Failed


class OutboxScheduler:
    """Decides which outbox entries to send and when (see the module docstring).

    Args:
        policy: the retry policy.
        window: most entries in flight.
        entries: the stored entries (any order; ``in_flight`` is cleared: nothing is in flight
            before the first connection).
    """

    def __init__(
        self, policy: RetryPolicy, window: int = OUTBOX_WINDOW, entries: Iterable[OutboxEntry] = ()
    ) -> None:
        if window < 1:
            raise _invalid("window must be >= 1")
        self.policy = policy
        self.window = window
        self._connected = False
        self._in_flight = 0
        ordered = sorted(entries, key=lambda e: e.order)
        self._entries = {e.message_id: dataclasses.replace(e, in_flight=False) for e in ordered}
        #: Each lane's entry ids in creation order: a lane's head is found without walking
        #: the whole outbox (10,000 entries behind a few lanes made every pump O(n)).
        self._lanes: dict[str, dict[bytes, None]] = {}
        self._index()

    def _index(self) -> None:
        self._lanes = {}
        for mid, e in self._entries.items():
            self._lanes.setdefault(e.lane, {})[mid] = None

    def _remove(self, message_id: bytes) -> None:
        e = self._entries.pop(message_id)
        ids = self._lanes[e.lane]
        del ids[message_id]
        if not ids:
            del self._lanes[e.lane]

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def in_flight(self) -> int:
        """How many entries are in flight."""
        return self._in_flight

    def entries(self) -> list[OutboxEntry]:
        """Every entry, in creation order."""
        return list(self._entries.values())

    def add(self, entry: OutboxEntry) -> None:
        """Add a newly enqueued entry (after the store committed it).

        Raises:
            LocalProtocolError: the id is already present, or ``entry`` is in flight.
        """
        if entry.message_id in self._entries or entry.in_flight:
            raise _invalid("entry already present or in flight")
        last = next(reversed(self._entries.values()), None)
        self._entries[entry.message_id] = entry
        self._lanes.setdefault(entry.lane, {})[entry.message_id] = None
        if last is not None and entry.order < last.order:
            ordered = sorted(self._entries.values(), key=lambda e: e.order)
            self._entries = {e.message_id: e for e in ordered}
            self._index()

    def on_connect(self) -> None:
        """A connection is up: entries may be sent. Call :meth:`handle_timer` next."""
        self._connected = True

    def on_disconnect(self) -> None:
        """The connection is gone: every in-flight entry returns to pending, in order.

        Device refreshes that were under way are forgotten too: an entry whose refresh did not
        finish is simply resent, and refused again if its device set is still stale.
        """
        self._connected = False
        self._in_flight = 0
        for mid, e in self._entries.items():
            if e.in_flight or e.awaiting_devices:
                self._entries[mid] = dataclasses.replace(e, in_flight=False, awaiting_devices=False)

    def handle_timer(self, now: float) -> list[OutboxEntry]:
        """The entries to send now, in creation order; they are marked in flight.

        Call after every change (add, answer, connect, refresh) and when
        :meth:`next_deadline` passes. Returns nothing while disconnected.
        """
        free = self.window - self._in_flight
        if not self._connected or free <= 0:
            return []
        # Merge the lanes' ready entries in creation order: each lane yields its entries that
        # are not in flight, up to its first one that must wait (G4: it holds back the rest).
        heap: list[tuple[int, int, OutboxEntry, Iterator[OutboxEntry]]] = []
        for n, ids in enumerate(self._lanes.values()):
            ready = self._ready(ids, now)
            first = next(ready, None)
            if first is not None:
                heap.append((first.order, n, first, ready))
        heapq.heapify(heap)
        out: list[OutboxEntry] = []
        while heap and len(out) < free:
            _, n, e, ready = heapq.heappop(heap)
            e = dataclasses.replace(e, in_flight=True, attempts=e.attempts + 1)
            self._entries[e.message_id] = e
            out.append(e)
            following = next(ready, None)
            if following is not None:
                heapq.heappush(heap, (following.order, n, following, ready))
        self._in_flight += len(out)
        return out

    def _ready(self, ids: dict[bytes, None], now: float) -> Iterator[OutboxEntry]:
        """A lane's entries that may go at ``now``, in order (in-flight ones skipped)."""
        for mid in ids:
            e = self._entries[mid]
            if e.in_flight:
                continue
            if e.awaiting_devices or e.next_attempt_at > now:
                return
            yield e

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` may next have something to send.

        ``None`` while disconnected, while the window is full (an answer frees it), or when no
        entry waits. A time in the past means: call :meth:`handle_timer` now.
        """
        if not self._connected or self._in_flight >= self.window:
            return None
        times = []
        for ids in self._lanes.values():
            for mid in ids:  # past the lane's in-flight entries (at most a window) to its head
                e = self._entries[mid]
                if not e.in_flight:
                    if not e.awaiting_devices:
                        times.append(e.next_attempt_at)
                    break
        return min(times, default=None)

    def on_sent(self, message_id: bytes) -> Done | None:
        """SENT (✓) arrived: the entry is done. ``None`` if it is not in flight (a stale answer)."""
        e = self._entries.get(message_id)
        if e is None or not e.in_flight:
            return None
        self._remove(message_id)
        self._in_flight -= 1
        return Done(message_id)

    def on_refused(
        self, message_id: bytes, code: int, reason: str, retry_after: float, now: float
    ) -> OutboxAction | None:
        """REFUSED arrived: decide by :func:`classify_refusal`.

        Returns:
            ``RefreshDevices``, ``RetryAt`` or ``Failed`` (see each); ``None`` if the entry is not
            in flight (a stale answer).
        """
        e = self._entries.get(message_id)
        if e is None or not e.in_flight:
            return None
        self._in_flight -= 1
        kind = classify_refusal(code)
        if kind is Refusal.PERMANENT:
            self._remove(message_id)
            return Failed(message_id, code, reason)
        if kind is Refusal.REFRESH_DEVICES:
            # The first mismatch in a row is retried at once (devices changed); more in a row
            # mean client and server keep disagreeing: back off instead of spinning.
            delay = self.policy.delay(e.refreshes) if e.refreshes else 0.0
            e = dataclasses.replace(
                e,
                in_flight=False,
                awaiting_devices=True,
                refreshes=e.refreshes + 1,
                next_attempt_at=now + delay,
            )
            self._entries[message_id] = e
            return RefreshDevices(message_id, e.lane, e.attempts, e.next_attempt_at)
        at = now + max(retry_after, self.policy.delay(e.attempts))
        self._entries[message_id] = dataclasses.replace(
            e, in_flight=False, refreshes=0, next_attempt_at=at
        )
        return RetryAt(message_id, e.attempts, at)

    def hold(self, message_id: bytes, until: float | None = None) -> bool:
        """Take back an entry :meth:`handle_timer` just released, before it was sent: the client
        cannot build it yet (e.g. it needs sessions with new devices first).

        It does not count as an attempt. With ``until`` it goes again at that time; without,
        it waits for :meth:`devices_refreshed` of its lane. Either way it holds back its lane
        (G4): hold the lane's later entries released in the same batch too.

        Returns:
            False if the entry is not in flight (nothing changes).
        """
        e = self._entries.get(message_id)
        if e is None or not e.in_flight:
            return False
        self._in_flight -= 1
        self._entries[message_id] = dataclasses.replace(
            e,
            in_flight=False,
            attempts=max(0, e.attempts - 1),
            awaiting_devices=until is None,
            next_attempt_at=e.next_attempt_at if until is None else until,
        )
        return True

    def drop(self, message_id: bytes) -> bool:
        """Remove an entry that is not in flight (the client failed it for good without
        sending it, e.g. its account does not exist). Returns whether it was there."""
        e = self._entries.get(message_id)
        if e is None or e.in_flight:
            return False
        self._remove(message_id)
        return True

    def devices_refreshed(self, lane: str, not_before: float = 0.0) -> None:
        """``lane``'s devices were fetched and its sessions fixed: its entries may go again
        (not before ``not_before``: e.g. the retry time of a refused prekey fetch)."""
        for mid, e in self._entries.items():
            if e.lane == lane and e.awaiting_devices:
                self._entries[mid] = dataclasses.replace(
                    e,
                    awaiting_devices=False,
                    next_attempt_at=max(e.next_attempt_at, not_before),
                )
