"""When a client connects again: capped exponential backoff with full jitter, reset by a session
that lasted (sans-I/O: the caller passes the time, on a monotonic clock).

A relay that is down is tried after ≤ 0.5 s, ≤ 1 s, ≤ 2 s, … up to ≤ 30 s between tries, each
delay drawn uniformly below its ceiling so that many clients cut off together do not come back
in step (the reconnect storm the lab's ``reconnect-storm`` scenario measures). A session that
stayed open for :data:`RECONNECT_RESET_AFTER` seconds starts the count again, so a client that
was connected for a day reconnects at once after a relay restart; one that a relay accepts and
drops at once keeps backing off instead of hammering it.
"""

from __future__ import annotations

from collections.abc import Callable

from ..delivery import RetryPolicy

__all__ = ["RECONNECT_BASE", "RECONNECT_CAP", "RECONNECT_RESET_AFTER", "Reconnect"]

#: The backoff ceiling after the first failed attempt, in seconds (the default of the client
#: setting ``reconnect_initial_seconds``).
RECONNECT_BASE = 0.5
#: The largest backoff ceiling, in seconds: a relay that is back is found within 30 s (the
#: default of ``reconnect_max_seconds``).
RECONNECT_CAP = 30.0
#: Seconds a session must stay open for the backoff to start over (longer than the keepalive's
#: 10 s dead-after, so a link that dies at once after each connect still backs off).
RECONNECT_RESET_AFTER = 10.0


class Reconnect:
    """The backoff state of one client's connection loop.

    Args:
        rng: uniform floats in ``[0, 1)``, the jitter.
        base: the delay ceiling after the first failed attempt, in seconds.
        cap: the largest delay ceiling, in seconds (>= ``base``).
    """

    def __init__(
        self, rng: Callable[[], float], base: float = RECONNECT_BASE, cap: float = RECONNECT_CAP
    ) -> None:
        self._policy = RetryPolicy(rng, base, cap)
        #: Failed attempts (or short sessions) since the last session that lasted.
        self.attempt = 0
        self._opened_at: float | None = None

    def opened(self, now: float) -> None:
        """A session is open (the relay welcomed this device)."""
        self._opened_at = now

    def ended(self, now: float) -> float:
        """The connection ended (or never opened); return the delay before the next attempt."""
        if self._opened_at is not None and now - self._opened_at >= RECONNECT_RESET_AFTER:
            self.attempt = 0
        self._opened_at = None
        self.attempt += 1
        return self._policy.delay(self.attempt)
