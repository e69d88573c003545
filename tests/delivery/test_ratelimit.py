"""Tests for tidings.delivery.ratelimit, with literal times (no clock)."""

from __future__ import annotations

import pytest

from tidings.delivery.ratelimit import MAX_TRACKED_KEYS, RateLimiter, TokenBucket, try_take_all


class TestTokenBucket:
    def test_starts_full_and_allows_a_burst(self) -> None:
        bucket = TokenBucket(rate=1.0, burst=3)
        assert [bucket.try_take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]

    def test_refuses_with_exact_retry_after(self) -> None:
        bucket = TokenBucket(rate=2.0, burst=2)
        bucket.try_take(10.0)
        bucket.try_take(10.0)
        assert bucket.try_take(10.0) == pytest.approx(0.5)
        assert bucket.try_take(10.25) == pytest.approx(0.25)

    def test_retry_after_is_honoured(self) -> None:
        bucket = TokenBucket(rate=3.0, burst=1)
        assert bucket.try_take(0.0) == 0.0
        retry = bucket.try_take(0.1)
        assert retry > 0
        assert bucket.try_take(0.1 + retry) == 0.0

    def test_refusal_takes_nothing(self) -> None:
        bucket = TokenBucket(rate=1.0, burst=1)
        bucket.try_take(0.0)
        for _ in range(5):
            assert bucket.try_take(0.5) == pytest.approx(0.5)
        assert bucket.try_take(1.0) == 0.0

    def test_refill_is_capped_at_burst(self) -> None:
        bucket = TokenBucket(rate=10.0, burst=2)
        bucket.try_take(0.0)
        assert bucket.available(1000.0) == 2.0
        assert bucket.try_take(1000.0, n=2) == 0.0
        assert bucket.try_take(1000.0) == pytest.approx(0.1)

    def test_take_several(self) -> None:
        bucket = TokenBucket(rate=1.0, burst=5)
        assert bucket.try_take(0.0, n=4) == 0.0
        assert bucket.try_take(0.0, n=3) == pytest.approx(2.0)
        assert bucket.try_take(2.0, n=3) == 0.0

    def test_sustained_rate(self) -> None:
        bucket = TokenBucket(rate=20.0, burst=100)
        allowed = sum(bucket.try_take(i * 0.01) == 0.0 for i in range(1000))  # 10 s at 100/s
        assert allowed == pytest.approx(100 + 20 * 10, abs=2)

    def test_clock_going_backwards_does_not_refill(self) -> None:
        bucket = TokenBucket(rate=1.0, burst=1)
        assert bucket.try_take(50.0) == 0.0
        assert bucket.try_take(10.0) == pytest.approx(1.0)
        assert bucket.available(5.0) == 0.0

    def test_a_step_back_never_freezes_the_bucket(self) -> None:
        # Refill resumes from the new time at once: retry_after stays exact after the step, and
        # the refused take at 10.0 cost nothing.
        bucket = TokenBucket(rate=1.0, burst=1)
        assert bucket.try_take(3600.0) == 0.0
        assert bucket.try_take(10.0) == pytest.approx(1.0)
        assert bucket.try_take(10.5) == pytest.approx(0.5)
        assert bucket.try_take(11.0) == 0.0

    @pytest.mark.parametrize("step", [-3600.0, 3600.0])
    def test_the_rate_stays_right_across_a_one_hour_step(self, step: float) -> None:
        # 20/s with a burst of 100, polled every 10 ms for 10 s, the clock stepping by an hour
        # halfway: back, the rate goes on (the old code refused everything for an hour); forward,
        # the bucket gains at most its burst.
        bucket = TokenBucket(rate=20.0, burst=100)
        allowed = 0
        for i in range(1000):
            now = 1e6 + i * 0.01 + (step if i >= 500 else 0.0)
            allowed += bucket.try_take(now) == 0.0
        bonus = 100 if step > 0 else 0
        assert allowed == pytest.approx(100 + 20 * 10 + bonus, abs=2)

    def test_wait_takes_nothing_and_agrees_with_try_take(self) -> None:
        bucket = TokenBucket(rate=2.0, burst=2)
        assert bucket.wait(0.0, n=2) == 0.0
        assert bucket.try_take(0.0, n=2) == 0.0
        assert bucket.wait(0.0) == pytest.approx(0.5)
        assert bucket.wait(0.0) == pytest.approx(0.5)  # asking twice took nothing
        assert bucket.try_take(0.25) == pytest.approx(bucket.wait(0.25)) == pytest.approx(0.25)
        assert bucket.try_take(0.25 + bucket.wait(0.25)) == 0.0

    def test_is_full(self) -> None:
        bucket = TokenBucket(rate=2.0, burst=4)
        assert bucket.is_full(0.0)
        bucket.try_take(0.0)
        assert not bucket.is_full(0.4)
        assert bucket.is_full(0.5)

    @pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0), (1, 0.5)])
    def test_invalid_parameters(self, rate: float, burst: float) -> None:
        with pytest.raises(ValueError):
            TokenBucket(rate, burst)

    @pytest.mark.parametrize("n", [0, -1, 6])
    def test_invalid_n(self, n: float) -> None:
        with pytest.raises(ValueError, match="n must be"):
            TokenBucket(1.0, 5).try_take(0.0, n)


class TestRateLimiter:
    def test_keys_are_independent(self) -> None:
        limiter: RateLimiter[str] = RateLimiter(rate=1.0, burst=1)
        assert limiter.try_take("alice", 0.0) == 0.0
        assert limiter.try_take("alice", 0.0) == pytest.approx(1.0)
        assert limiter.try_take("bob", 0.0) == 0.0

    def test_lru_bound(self) -> None:
        limiter: RateLimiter[int] = RateLimiter(rate=1.0, burst=1, max_keys=3)
        for key in range(3):
            limiter.try_take(key, 0.0)
        limiter.try_take(0, 0.0)  # touch 0: now 1 is the least recently used
        limiter.try_take(3, 0.0)
        assert len(limiter) == 3
        assert 1 not in limiter
        assert 0 in limiter and 2 in limiter and 3 in limiter
        # 0 kept its (empty) bucket; 1 was forgotten and starts full again.
        assert limiter.try_take(0, 0.0) > 0
        assert limiter.try_take(1, 0.0) == 0.0

    def test_memory_is_bounded(self) -> None:
        limiter: RateLimiter[int] = RateLimiter(rate=1.0, burst=1, max_keys=100)
        for key in range(10_000):
            limiter.try_take(key, float(key))
        assert len(limiter) == 100

    def test_default_bound(self) -> None:
        assert RateLimiter(1.0, 1).max_keys == MAX_TRACKED_KEYS == 100_000

    def test_forget(self) -> None:
        limiter: RateLimiter[str] = RateLimiter(rate=1.0, burst=1)
        limiter.try_take("alice", 0.0)
        limiter.forget("alice")
        limiter.forget("nobody")
        assert limiter.try_take("alice", 0.0) == 0.0

    def test_prune_drops_only_full_buckets(self) -> None:
        limiter: RateLimiter[str] = RateLimiter(rate=1.0, burst=2)
        limiter.try_take("idle", 0.0)
        limiter.try_take("busy", 9.5, n=2)
        assert limiter.prune(10.0) == 1
        assert "idle" not in limiter and "busy" in limiter

    def test_invalid_parameters(self) -> None:
        with pytest.raises(ValueError):
            RateLimiter(0.0, 1)
        with pytest.raises(ValueError):
            RateLimiter(1.0, 1, max_keys=0)


class TestTryTakeAll:
    def test_takes_from_every_bucket_or_from_none(self) -> None:
        accounts: RateLimiter[str] = RateLimiter(rate=1.0, burst=2)
        addresses: RateLimiter[str] = RateLimiter(rate=0.5, burst=1)
        takes = [(accounts, "alice"), (addresses, "198.51.100.7")]
        assert try_take_all(0.0, takes) == 0.0
        # The address is spent: refused with its wait, and alice's bucket keeps its token.
        assert try_take_all(0.0, takes) == pytest.approx(2.0)
        assert accounts.wait("alice", 0.0) == 0.0
        assert try_take_all(2.0, takes) == 0.0
        assert accounts.try_take("alice", 2.0) == pytest.approx(0.0)

    def test_the_longest_wait_is_the_retry_after(self) -> None:
        fast: RateLimiter[str] = RateLimiter(rate=10.0, burst=1)
        slow: RateLimiter[str] = RateLimiter(rate=0.1, burst=1)
        assert try_take_all(0.0, [(fast, "k"), (slow, "k")]) == 0.0
        retry = try_take_all(0.0, [(fast, "k"), (slow, "k")])
        assert retry == pytest.approx(10.0)
        assert try_take_all(retry, [(fast, "k"), (slow, "k")]) == 0.0

    def test_no_buckets_always_pass(self) -> None:
        assert try_take_all(0.0, []) == 0.0

    def test_wait_keeps_no_bucket_for_unknown_keys(self) -> None:
        limiter: RateLimiter[str] = RateLimiter(rate=1.0, burst=1)
        assert limiter.wait("nobody", 0.0) == 0.0
        assert "nobody" not in limiter
        with pytest.raises(ValueError, match="n must be"):
            limiter.wait("nobody", 0.0, n=2)


def test_a_debit_takes_tokens_spent_elsewhere_into_a_bounded_debt() -> None:
    bucket = TokenBucket(rate=1.0, burst=4)
    bucket.debit(0.0, 3)  # another node took three
    assert bucket.try_take(0.0, 1) == 0.0  # one left here
    assert bucket.try_take(0.0, 1) == pytest.approx(1.0)
    bucket.debit(0.0, 100)  # far more than a burst: the debt stops at one burst
    assert bucket.available(0.0) == -4.0
    assert bucket.wait(0.0, 1) == pytest.approx(5.0)  # pays back 4, then refills 1
    assert bucket.try_take(5.0, 1) == 0.0
    with pytest.raises(ValueError):
        bucket.debit(5.0, 0)


def test_a_limiter_debits_a_key_it_never_saw_and_keeps_its_bound() -> None:
    limiter: RateLimiter[str] = RateLimiter(rate=1.0, burst=2, max_keys=2)
    limiter.debit("a", 0.0, 2)
    assert limiter.try_take("a", 0.0) == pytest.approx(1.0)
    limiter.debit("b", 0.0)
    limiter.debit("c", 0.0)
    assert len(limiter) == 2 and "a" not in limiter
