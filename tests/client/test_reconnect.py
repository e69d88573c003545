"""The reconnect backoff (sans-I/O, pure time): capped exponential with full jitter, started over
only by a session that lasted."""

from __future__ import annotations

from tidings.client.reconnect import (
    RECONNECT_BASE,
    RECONNECT_CAP,
    RECONNECT_RESET_AFTER,
    Reconnect,
)


def test_failed_attempts_back_off_exponentially_up_to_the_cap() -> None:
    r = Reconnect(lambda: 1.0)  # the ceiling itself
    delays = [r.ended(float(t)) for t in range(9)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert delays[0] == RECONNECT_BASE and max(delays) == RECONNECT_CAP
    assert r.attempt == 9


def test_jitter_draws_below_the_ceiling() -> None:
    r = Reconnect(lambda: 0.25)
    assert [r.ended(0.0) for _ in range(3)] == [0.125, 0.25, 0.5]


def test_a_session_that_lasted_starts_the_count_again() -> None:
    r = Reconnect(lambda: 1.0)
    for _ in range(6):
        r.ended(0.0)
    r.opened(100.0)
    assert r.ended(100.0 + RECONNECT_RESET_AFTER) == RECONNECT_BASE  # the next try is quick
    assert r.attempt == 1


def test_sessions_dropped_at_once_keep_backing_off() -> None:
    """A relay that welcomes and drops every session (overloaded, or a link that dies right
    after each connect) is not hammered: short sessions count as failures."""
    r = Reconnect(lambda: 1.0)
    delays = []
    now = 0.0
    for _ in range(5):
        r.opened(now)
        now += RECONNECT_RESET_AFTER / 2
        delays.append(r.ended(now))
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_an_attempt_that_never_opened_does_not_reset() -> None:
    r = Reconnect(lambda: 1.0)
    r.ended(0.0)
    assert r.ended(1_000.0) == 1.0  # time alone resets nothing
