"""When the relay POSTs each device's wake-up: sans-I/O (no clock, no asyncio; ``now`` and the
randomness are passed in), like the connection core; :mod:`.wakeups` is its adapter.

One :class:`WakeScheduler` per relay holds every device's push subscription with its wake-up
state (:class:`~tidings.store.PushSubscription`, what the store keeps). Its inputs are the
relay's events — an item queued for a device without a connection (:meth:`queued`), the device
connecting (:meth:`connected`), a subscription registered or dropped — and the push service's
answers (:meth:`accepted`, :meth:`failed`, :meth:`gone`); :meth:`due` says which POSTs to make
now and :meth:`next_deadline` when to ask again. Every method that changes a device's state
returns the new :class:`PushSubscription`: the caller stores it (durably) before acting on it,
so a relay restarted at any point resumes from the store (:meth:`load`).

The rules:

* **One wake-up per device** (coalesced): an item queued while one is pending changes nothing.
  The POST carries a ``Topic``, so the push service, too, keeps only the newest per device.
* A wake-up is **pending from the first item queued** for a device without a connection **until
  the device connects** — the connection, not the push service's 201, proves the wake-up
  worked (the device then catches up from its cursor).
* A POST the push service did not accept (5xx, 429, a timeout, a refused connection) is retried
  with exponential backoff and jitter: the n-th attempt's retry after ``min(cap, base·2^(n−1))``,
  less up to ``jitter`` of it, and never before a 429/503's ``Retry-After``.
* An accepted wake-up whose device still has not connected after ``rewake_after`` (the POST's
  TTL: the push service has dropped it by then) is sent again.
* 404/410 (the subscription is gone) or 401/403 (it was not made for the relay's key) mark the
  subscription **dead**: no more POSTs until the device registers a new one; the relay tells it
  so when it next connects.
* Each attempt is stored before its POST (its count and the time of its retry), so a POST a
  crash cut short is retried after a restart, never lost and never sent in a loop.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from ..refs import DeviceRef
from ..store import PushSubscription

__all__ = ["DEFAULT_TIMING", "WakeScheduler", "WakeTiming"]


@dataclass(frozen=True, slots=True)
class WakeTiming:
    """The scheduler's tunables (seconds).

    Attributes:
        retry_base: the wait after the first failed attempt: a push service's hiccup (a 503
            while it restarts) is over in seconds; the wake-up should not wait minutes for it.
        retry_cap: the longest wait between attempts: 30 minutes bounds a broken endpoint to
            48 POSTs a day while a recovered one is reached within half an hour.
        jitter: the share of each wait taken off at random (0.5: "equal jitter"), so the
            wake-ups of many devices behind one failing push service do not retry in step.
        rewake_after: after an accepted wake-up without a connection, send it again: the
            POST's TTL, after which the push service has dropped it.
    """

    retry_base: float = 5.0
    retry_cap: float = 1800.0
    jitter: float = 0.5
    rewake_after: float = 24 * 3600.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_base <= self.retry_cap or not 0 <= self.jitter < 1:
            raise ValueError("retry_base in (0, retry_cap], jitter in [0, 1)")
        if self.rewake_after <= 0:
            raise ValueError("rewake_after must be positive")


DEFAULT_TIMING = WakeTiming()


class WakeScheduler:
    """The wake-up state of every subscribed device (see the module docstring).

    Args:
        timing: the waits.
        random: a source of floats in [0, 1) for the jitter.
    """

    def __init__(self, timing: WakeTiming, random: Callable[[], float]) -> None:
        self.timing = timing
        self._random = random
        self._subs: dict[DeviceRef, PushSubscription] = {}
        self._in_flight: set[DeviceRef] = set()
        # (wake_next, device) of every scheduled wake-up, earliest first; an entry whose time is
        # no longer its device's (answered, cleared, dead, in flight) is dropped when met. So
        # due() and next_deadline() cost O(log n) per wake-up, not a scan of every subscription.
        self._heap: list[tuple[float, DeviceRef]] = []

    # ---------------------------------------------------------------- subscriptions

    def load(self, subs: Iterable[PushSubscription]) -> None:
        """The stored subscriptions, at start: their pending wake-ups resume as scheduled."""
        for sub in subs:
            self._set(sub)

    def get(self, device: DeviceRef) -> PushSubscription | None:
        """The device's subscription, if any."""
        return self._subs.get(device)

    def subscriptions(self) -> list[PushSubscription]:
        """Every subscription, by device."""
        return [self._subs[d] for d in sorted(self._subs)]

    def in_flight(self, device: DeviceRef) -> bool:
        """Whether a POST for ``device`` is out and not yet answered."""
        return device in self._in_flight

    def subscribe(self, sub: PushSubscription) -> None:
        """``sub`` (stored) replaces the device's subscription; nothing is pending for it (the
        device registers while connected)."""
        self._set(sub)
        self._in_flight.discard(sub.device)

    def unsubscribe(self, device: DeviceRef) -> None:
        """The device's subscription was dropped (stored)."""
        self._subs.pop(device, None)
        self._in_flight.discard(device)

    # ---------------------------------------------------------------- the relay's events

    def queued(self, device: DeviceRef, now: float) -> PushSubscription | None:
        """An item was queued for ``device``, which has no live connection: the new state if a
        wake-up became pending (``None``: no subscription, a dead one, or one already pending)."""
        sub = self._subs.get(device)
        if sub is None or sub.dead or sub.wake_since is not None:
            return None
        return self._set(
            replace(sub, wake_since=now, wake_attempts=0, wake_next=now, wake_sent_at=None)
        )

    def connected(self, device: DeviceRef, now: float) -> tuple[PushSubscription | None, float]:
        """``device`` opened a session: its pending wake-up, if any, is done. Returns the new
        state (``None``: nothing was pending) and the seconds from the accepted wake-up to the
        connection (``-1`` when none was accepted)."""
        sub = self._subs.get(device)
        if sub is None or sub.wake_since is None:
            return None, -1.0
        latency = -1.0 if sub.wake_sent_at is None else max(0.0, now - sub.wake_sent_at)
        self._in_flight.discard(device)
        cleared = replace(sub, wake_since=None, wake_attempts=0, wake_next=None, wake_sent_at=None)
        return self._set(cleared), latency

    # ---------------------------------------------------------------- what to send, when

    def due(self, now: float) -> list[PushSubscription]:
        """The wake-ups to POST now, each with its attempt counted and its retry set (store
        them, then POST; report each with :meth:`accepted`, :meth:`failed` or :meth:`gone`)."""
        out = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, device = heapq.heappop(heap)
            sub = self._scheduled(device)
            if sub is None or sub.wake_next is None or sub.wake_next > now:
                continue  # stale, or rescheduled later (its own entry is in the heap)
            attempts = sub.wake_attempts + 1
            out.append(replace(sub, wake_attempts=attempts, wake_next=now + self.backoff(attempts)))
            self._in_flight.add(device)  # before _set: the answer schedules the retry
        for sub in out:
            self._set(sub)
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`due` next has something (``None``: nothing pending)."""
        heap = self._heap
        while heap:
            when, device = heap[0]
            sub = self._scheduled(device)
            if sub is not None and sub.wake_next == when:
                return when
            heapq.heappop(heap)
        return None

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1 for the first), jittered."""
        t = self.timing
        wait = min(t.retry_cap, t.retry_base * 2.0 ** min(attempt - 1, 60))
        return wait * (1.0 - t.jitter * self._random())

    # ---------------------------------------------------------------- the push service's answers

    def accepted(self, sent: PushSubscription, now: float) -> PushSubscription | None:
        """The push service accepted the wake-up ``sent`` (what :meth:`due` gave): wait for the
        device, and send again after ``rewake_after``."""
        sub = self._answered(sent)
        if sub is None:
            return None
        rewake = now + self.timing.rewake_after
        return self._set(replace(sub, wake_attempts=0, wake_next=rewake, wake_sent_at=now))

    def failed(
        self, sent: PushSubscription, now: float, retry_after: float = 0.0
    ) -> PushSubscription | None:
        """The POST of ``sent`` failed for now (5xx, 429, a timeout, no connection): retry
        after the backoff, or after ``retry_after`` if that is later."""
        sub = self._answered(sent)
        if sub is None:
            return None
        wait = max(self.backoff(sub.wake_attempts), retry_after)
        return self._set(replace(sub, wake_next=now + wait))

    def gone(self, sent: PushSubscription, now: float) -> PushSubscription | None:
        """The push service says the subscription of ``sent`` is gone, or not the relay's: it
        is dead until the device registers a new one (its wake-up stays pending, unsent)."""
        self._in_flight.discard(sent.device)
        sub = self._subs.get(sent.device)
        if sub is None or sub.endpoint != sent.endpoint or sub.dead:
            return None
        return self._set(replace(sub, dead=True, wake_next=None))

    # ---------------------------------------------------------------- machinery

    def _answered(self, sent: PushSubscription) -> PushSubscription | None:
        """The current state the answer to ``sent`` applies to (``None``: the device connected,
        re-registered or unsubscribed meanwhile, and the answer changes nothing)."""
        self._in_flight.discard(sent.device)
        sub = self._subs.get(sent.device)
        if sub is None or sub.endpoint != sent.endpoint or sub.wake_since is None or sub.dead:
            return None
        return sub

    def _scheduled(self, device: DeviceRef) -> PushSubscription | None:
        """The device's state if a wake-up of it may be due (not dead, not in flight)."""
        sub = self._subs.get(device)
        if sub is None or sub.dead or sub.wake_next is None or device in self._in_flight:
            return None
        return sub

    def _set(self, sub: PushSubscription) -> PushSubscription:
        self._subs[sub.device] = sub
        # In flight, its retry time is only stored: the answer schedules it (no stale entry).
        if sub.wake_next is not None and not sub.dead and sub.device not in self._in_flight:
            heapq.heappush(self._heap, (sub.wake_next, sub.device))
        return sub
