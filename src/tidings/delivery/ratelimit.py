"""Rate limits: token buckets keyed by account, device or address, bounded in memory (sans-I/O).

Invariants:

- No clock is read here: every call takes ``now`` (seconds, any origin; callers pass a monotonic
  clock, never the wall clock, so a stepped system clock cannot move a budget). A ``now`` earlier
  than the last one seen counts as no time passing, and the bucket refills from that ``now`` on:
  a clock that steps back never freezes a bucket, and one that steps forward adds at most
  ``burst`` tokens.
- A refused request takes no tokens, so the ``retry_after`` it returns is exact: calling again at
  ``now + retry_after`` with the same ``n`` succeeds (unless someone else took tokens meanwhile).
- :class:`RateLimiter` holds at most ``max_keys`` buckets (default :data:`MAX_TRACKED_KEYS`),
  evicting the least recently used. An evicted key starts again with a full bucket, which is
  exactly what it would hold anyway once idle for ``burst / rate`` seconds (5 s at the defaults):
  eviction only loses state if more than ``max_keys`` accounts send within that window.

- :func:`try_take_all` takes from several buckets or from none: a request refused by one limit
  spends nothing from the others, so its ``retry_after`` stays exact.

Refusals are reported to the sender as REFUSED or REQUEST_FAILED ``RATE_LIMITED`` with the retry
delay (DESIGN §5 "Back-pressure": explicit, never a silent drop).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Any, Generic, TypeVar

__all__ = ["MAX_TRACKED_KEYS", "RateLimiter", "TokenBucket", "try_take_all"]

#: Most buckets a :class:`RateLimiter` keeps. At a few hundred bytes per bucket (object, key,
#: ordered-dict entry) that is a few tens of MiB at worst, and far more accounts than a
#: self-hosted relay sends from within one refill window.
MAX_TRACKED_KEYS = 100_000

#: Slack for float rounding: waiting exactly ``retry_after`` must not be refused by 1e-16 tokens.
_EPSILON = 1e-9

K = TypeVar("K", bound=Hashable)


class TokenBucket:
    """A token bucket: ``burst`` tokens at most, refilled at ``rate`` tokens per second.

    The bucket starts full. Each :meth:`try_take` first refills for the time elapsed since the
    previous call (none if ``now`` went back), then takes ``n`` tokens if it holds them.

    Args:
        rate: tokens added per second (> 0).
        burst: capacity, the most tokens that can be taken at once (>= 1).

    Raises:
        ValueError: if ``rate`` or ``burst`` is out of range.
    """

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate!r}")
        if not burst >= 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self.rate = float(rate)
        self.burst = float(burst)
        self._tokens = self.burst
        self._stamp: float | None = None

    def available(self, now: float) -> float:
        """Return the tokens the bucket holds at ``now``, without taking any."""
        if self._stamp is None or now <= self._stamp:
            return self._tokens
        return min(self.burst, self._tokens + (now - self._stamp) * self.rate)

    def wait(self, now: float, n: float = 1) -> float:
        """The seconds until ``n`` tokens are available at ``now`` (0.0: they are), taking none.

        Raises:
            ValueError: as :meth:`try_take`.
        """
        _check_n(n, self.burst)
        tokens = self.available(now)
        return 0.0 if tokens + _EPSILON >= n else (n - tokens) / self.rate

    def try_take(self, now: float, n: float = 1) -> float:
        """Take ``n`` tokens if the bucket holds them at ``now``.

        Args:
            now: the current time in seconds.
            n: tokens to take (0 < n <= burst).

        Returns:
            0.0 if the tokens were taken; otherwise the seconds to wait until ``n`` tokens are
            available (the retry-after), and nothing was taken.

        Raises:
            ValueError: if ``n`` is not positive or exceeds ``burst`` (it could never succeed:
                callers must bound ``n``).
        """
        _check_n(n, self.burst)
        self._tokens = self.available(now)
        # Always the latest ``now``, even an earlier one: after a step back the bucket refills
        # from the new time on instead of waiting for the clock to catch up with the old one.
        self._stamp = now
        if self._tokens + _EPSILON >= n:
            self._tokens = max(0.0, self._tokens - n)
            return 0.0
        return (n - self._tokens) / self.rate

    def debit(self, now: float, n: float) -> None:
        """Take ``n`` tokens that were spent elsewhere (another relay node took them for the
        same key), whether or not the bucket holds them: it may go into debt, down to
        ``-burst`` at most, which it pays back at ``rate`` before it grants again.

        Raises:
            ValueError: if ``n`` is not positive.
        """
        if not n > 0:
            raise ValueError(f"n must be > 0, got {n!r}")
        self._tokens = max(-self.burst, self.available(now) - n)
        self._stamp = now

    def is_full(self, now: float) -> bool:
        """Whether the bucket is full at ``now`` (indistinguishable from a fresh one)."""
        return self.available(now) + _EPSILON >= self.burst

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate:g}, burst={self.burst:g}, tokens={self._tokens:g})"


class RateLimiter(Generic[K]):
    """One :class:`TokenBucket` per key (an account), with an LRU bound on the number of keys.

    Args:
        rate: sustained requests per second per key (> 0).
        burst: requests a key may make at once (>= 1).
        max_keys: most buckets kept; the least recently used is evicted beyond it (>= 1).

    Raises:
        ValueError: if an argument is out of range.
    """

    def __init__(self, rate: float, burst: float, max_keys: int = MAX_TRACKED_KEYS) -> None:
        TokenBucket(rate, burst)  # validate now rather than on the first request
        if max_keys < 1:
            raise ValueError(f"max_keys must be >= 1, got {max_keys!r}")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[K, TokenBucket] = OrderedDict()

    def try_take(self, key: K, now: float, n: float = 1) -> float:
        """Take ``n`` tokens from ``key``'s bucket; see :meth:`TokenBucket.try_take`.

        Returns:
            0.0 if allowed, otherwise the seconds until ``n`` tokens are available.

        Raises:
            ValueError: if ``n`` is not in ``(0, burst]``.
        """
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.try_take(now, n)

    def wait(self, key: K, now: float, n: float = 1) -> float:
        """The seconds until ``key`` could take ``n`` tokens (0.0: now), taking none and keeping
        no bucket for an unknown key; see :meth:`TokenBucket.wait`."""
        bucket = self._buckets.get(key)
        if bucket is None:
            _check_n(n, self.burst)
            return 0.0
        return bucket.wait(now, n)

    def debit(self, key: K, now: float, n: float = 1) -> None:
        """Take ``n`` tokens from ``key``'s bucket that were spent elsewhere (another node);
        see :meth:`TokenBucket.debit`. Keeps the LRU bound as :meth:`try_take` does."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        bucket.debit(now, n)

    def forget(self, key: K) -> None:
        """Drop ``key``'s bucket (e.g. the account was deleted). Unknown keys are ignored."""
        self._buckets.pop(key, None)

    def prune(self, now: float) -> int:
        """Drop every bucket that is full at ``now`` (losslessly); return how many were dropped.

        Optional: the LRU bound already caps memory. Useful from a periodic sweep to keep the
        map small on a quiet server.
        """
        full = [key for key, bucket in self._buckets.items() if bucket.is_full(now)]
        for key in full:
            del self._buckets[key]
        return len(full)

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets


def _check_n(n: float, burst: float) -> None:
    """Refuse a take that could never succeed: callers must bound ``n``."""
    if not 0 < n <= burst:
        raise ValueError(f"n must be in (0, {float(burst):g}], got {n!r}")


def try_take_all(now: float, takes: Iterable[tuple[RateLimiter[Any], Hashable]]) -> float:
    """Take one token from each ``(limiter, key)`` bucket if every one holds it, else none.

    Args:
        now: the current time in seconds.
        takes: the buckets a request must pass, e.g. its account's and its address's.

    Returns:
        0.0 if every token was taken; otherwise the longest wait among the buckets (the
        request's retry-after), and nothing was taken.
    """
    takes = list(takes)
    retry_after = max((limiter.wait(key, now) for limiter, key in takes), default=0.0)
    if retry_after > 0:
        return retry_after
    for limiter, key in takes:
        limiter.try_take(key, now)
    return 0.0
