"""The outbox rules: order, window, lanes, backoff bounds, refusals, disconnects.

Every test passes literal ``now`` values and a fixed ``rng`` (CONVENTIONS §2, §10–11).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.delivery.clocks import ClockReading
from tidings.delivery.outbox import (
    OUTBOX_WINDOW,
    RETRY_BASE,
    RETRY_CAP,
    Done,
    Failed,
    OutboxEntry,
    OutboxScheduler,
    RefreshDevices,
    Refusal,
    RetryAt,
    RetryPolicy,
    classify_refusal,
)
from tidings.errors import LocalProtocolError
from tidings.wire import ErrorCode

HALF = RetryPolicy(rng=lambda: 0.5)


def mid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def entry(n: int, lane: str = "bob", attempts: int = 0) -> OutboxEntry:
    return OutboxEntry(mid(n), order=n, lane=lane, attempts=attempts)


def ids(entries: list[OutboxEntry]) -> list[int]:
    return [int.from_bytes(e.message_id, "big") for e in entries]


def scheduler(*entries: OutboxEntry, window: int = OUTBOX_WINDOW) -> OutboxScheduler:
    s = OutboxScheduler(HALF, window, entries)
    s.on_connect()
    return s


# ------------------------------------------------------------ retry policy


def test_defaults() -> None:
    assert (RETRY_BASE, RETRY_CAP, OUTBOX_WINDOW) == (0.5, 60.0, 64)
    policy = RetryPolicy(rng=lambda: 0.0)
    assert (policy.base, policy.cap) == (0.5, 60.0)


def test_backoff_ceiling_doubles_then_caps() -> None:
    p = RetryPolicy(rng=lambda: 1.0)
    assert [p.ceiling(n) for n in range(1, 10)] == [0.5, 1, 2, 4, 8, 16, 32, 60, 60]
    assert p.ceiling(0) == 0.5
    assert p.ceiling(10_000) == 60.0  # no overflow


def test_full_jitter_scales_the_ceiling() -> None:
    assert RetryPolicy(rng=lambda: 0.0).delay(5) == 0.0
    assert RetryPolicy(rng=lambda: 0.5).delay(5) == 4.0
    assert RetryPolicy(rng=lambda: 0.25).delay(100) == 15.0


@given(st.floats(0.0, 1.0, exclude_max=True), st.integers(1, 200))
def test_delay_is_within_bounds(r: float, attempts: int) -> None:
    p = RetryPolicy(rng=lambda: r)
    assert 0.0 <= p.delay(attempts) <= min(RETRY_CAP, RETRY_BASE * 2 ** (attempts - 1))


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_a_bad_rng_is_refused(bad: float) -> None:
    with pytest.raises(LocalProtocolError):
        RetryPolicy(rng=lambda: bad).delay(1)


@pytest.mark.parametrize(("base", "cap"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 1.0)])
def test_invalid_policy(base: float, cap: float) -> None:
    with pytest.raises(LocalProtocolError):
        RetryPolicy(lambda: 0.0, base, cap)


@pytest.mark.parametrize(
    ("code", "refusal"),
    [
        (ErrorCode.DEVICE_MISMATCH, Refusal.REFRESH_DEVICES),
        (ErrorCode.RATE_LIMITED, Refusal.RETRY_LATER),
        (ErrorCode.QUEUE_FULL, Refusal.RETRY_LATER),
        (ErrorCode.NO_SUCH_ACCOUNT, Refusal.PERMANENT),
        (ErrorCode.PAYLOAD_TOO_LARGE, Refusal.PERMANENT),
        (ErrorCode.INVALID_FIELD, Refusal.PERMANENT),
        (ErrorCode.INTERNAL, Refusal.RETRY_LATER),
        (ErrorCode.STORE_UNAVAILABLE, Refusal.RETRY_LATER),
        (ErrorCode.SHUTTING_DOWN, Refusal.RETRY_LATER),
        (999, Refusal.RETRY_LATER),  # a code newer than this client: keep the message
    ],
)
def test_refusal_table(code: int, refusal: Refusal) -> None:
    assert classify_refusal(code) is refusal


# ------------------------------------------------------------ sending


def test_nothing_goes_out_before_a_connection() -> None:
    s = OutboxScheduler(HALF, entries=[entry(1)])
    assert s.handle_timer(0.0) == []
    assert s.next_deadline() is None
    s.on_connect()
    assert s.next_deadline() == 0.0
    assert ids(s.handle_timer(0.0)) == [1]


def test_entries_go_out_in_creation_order() -> None:
    s = scheduler(entry(3), entry(1, "carol"), entry(2))
    sent = s.handle_timer(10.0)
    assert ids(sent) == [1, 2, 3]
    assert all(e.in_flight and e.attempts == 1 for e in sent)
    assert s.in_flight == 3
    assert s.handle_timer(10.0) == []  # in flight: not sent twice


def test_added_entries_keep_creation_order() -> None:
    s = scheduler(window=1)
    s.add(entry(5))
    s.add(entry(2))
    assert ids(s.entries()) == [2, 5]
    with pytest.raises(LocalProtocolError):
        s.add(entry(2))
    with pytest.raises(LocalProtocolError):
        s.add(OutboxEntry(mid(9), 9, "bob", in_flight=True))


def test_the_window_bounds_what_is_in_flight() -> None:
    s = scheduler(*(entry(n, lane=f"u{n}") for n in range(1, 71)))
    assert ids(s.handle_timer(0.0)) == list(range(1, 65))
    assert s.next_deadline() is None  # window full: an answer will free it
    assert s.handle_timer(1.0) == []
    assert s.on_sent(mid(10)) == Done(mid(10))
    assert s.next_deadline() == 0.0
    assert ids(s.handle_timer(1.0)) == [65]
    assert len(s) == 69


def test_sent_removes_the_entry_and_stale_answers_are_ignored() -> None:
    s = scheduler(entry(1), entry(2))
    assert s.on_sent(mid(1)) is None  # not in flight yet
    s.handle_timer(0.0)
    assert s.on_sent(mid(1)) == Done(mid(1))
    assert s.on_sent(mid(1)) is None
    assert s.on_refused(mid(1), ErrorCode.QUEUE_FULL, "full", 0.0, 1.0) is None
    assert ids(s.entries()) == [2]


# ------------------------------------------------------------ refusals


def test_rate_limited_waits_for_retry_after_when_it_is_longer() -> None:
    s = scheduler(entry(1))
    s.handle_timer(100.0)
    action = s.on_refused(mid(1), ErrorCode.RATE_LIMITED, "slow down", 10.0, 100.0)
    assert action == RetryAt(mid(1), attempts=1, at=110.0)  # max(10, 0.5 * 0.5)
    assert s.in_flight == 0
    assert s.next_deadline() == 110.0
    assert s.handle_timer(109.9) == []
    assert ids(s.handle_timer(110.0)) == [1]


def test_queue_full_backs_off_when_longer_than_retry_after() -> None:
    s = scheduler(entry(1, attempts=4))
    s.handle_timer(100.0)  # attempt 5: ceiling 8 s, rng 0.5 → 4 s
    action = s.on_refused(mid(1), ErrorCode.QUEUE_FULL, "full", 1.0, 100.0)
    assert action == RetryAt(mid(1), attempts=5, at=104.0)


def test_transient_refusals_back_off_exponentially() -> None:
    s = scheduler(entry(1))
    now = 0.0
    waits = []
    for _ in range(9):
        assert ids(s.handle_timer(now)) == [1]
        action = s.on_refused(mid(1), ErrorCode.INTERNAL, "oops", 0.0, now)
        assert isinstance(action, RetryAt)
        waits.append(action.at - now)
        now = action.at
    assert waits == [0.25, 0.5, 1, 2, 4, 8, 16, 30, 30]


@pytest.mark.parametrize(
    "code", [ErrorCode.NO_SUCH_ACCOUNT, ErrorCode.PAYLOAD_TOO_LARGE, ErrorCode.INVALID_FIELD]
)
def test_permanent_refusals_fail_the_entry(code: int) -> None:
    s = scheduler(entry(1), entry(2))
    s.handle_timer(0.0)
    assert s.on_refused(mid(1), code, "no", 0.0, 1.0) == Failed(mid(1), code, "no")
    assert ids(s.entries()) == [2]
    assert s.in_flight == 1


def test_device_mismatch_refreshes_then_retries_at_once() -> None:
    s = scheduler(entry(1), entry(2), entry(3, "carol"), window=1)
    s.handle_timer(0.0)
    action = s.on_refused(mid(1), ErrorCode.DEVICE_MISMATCH, "devices", 0.0, 5.0)
    assert action == RefreshDevices(mid(1), "bob", attempts=1, at=5.0)
    # bob's lane waits for the refresh; carol's goes on
    assert ids(s.handle_timer(5.0)) == [3]
    s.on_sent(mid(3))
    assert s.handle_timer(5.0) == []
    assert s.next_deadline() is None
    s.devices_refreshed("bob")
    assert s.next_deadline() == 5.0
    assert ids(s.handle_timer(5.0)) == [1]


def test_repeated_device_mismatches_back_off() -> None:
    s = scheduler(entry(1))
    s.handle_timer(0.0)
    first = s.on_refused(mid(1), ErrorCode.DEVICE_MISMATCH, "devices", 0.0, 0.0)
    assert isinstance(first, RefreshDevices)
    assert first.at == 0.0
    s.devices_refreshed("bob")
    s.handle_timer(0.0)
    second = s.on_refused(mid(1), ErrorCode.DEVICE_MISMATCH, "devices", 0.0, 1.0)
    assert second == RefreshDevices(mid(1), "bob", attempts=2, at=1.25)
    s.devices_refreshed("bob")
    assert s.handle_timer(1.0) == []
    assert ids(s.handle_timer(1.25)) == [1]
    # any other outcome resets the count
    s.on_refused(mid(1), ErrorCode.QUEUE_FULL, "full", 0.0, 2.0)
    assert s.entries()[0].refreshes == 0


def test_a_waiting_entry_holds_back_its_lane_only() -> None:
    s = scheduler(entry(1), entry(2, "carol"), entry(3), entry(4, "carol"), window=1)
    s.handle_timer(0.0)
    s.on_refused(mid(1), ErrorCode.QUEUE_FULL, "full", 20.0, 0.0)
    sent = []
    for _ in range(3):
        out = s.handle_timer(1.0)
        sent += ids(out)
        for e in out:
            s.on_sent(e.message_id)
    assert sent == [2, 4]  # 3 waits behind 1, so bob's counters arrive in order
    assert s.next_deadline() == 20.0
    assert ids(s.handle_timer(20.0)) == [1]
    s.on_sent(mid(1))
    assert ids(s.handle_timer(20.0)) == [3]


# ------------------------------------------------------------ disconnects


def test_disconnect_returns_in_flight_entries_in_order() -> None:
    s = scheduler(*(entry(n) for n in range(1, 6)), window=3)
    assert ids(s.handle_timer(0.0)) == [1, 2, 3]
    s.on_sent(mid(2))
    s.on_disconnect()
    assert s.in_flight == 0
    assert not any(e.in_flight for e in s.entries())
    assert s.handle_timer(1.0) == []
    assert s.on_sent(mid(1)) is None  # nothing answers on a dead connection
    s.on_connect()
    again = s.handle_timer(2.0)
    assert ids(again) == [1, 3, 4]  # the same ids, in creation order (the server dedups)
    assert [e.attempts for e in again] == [2, 2, 1]


def test_disconnect_forgets_unfinished_device_refreshes() -> None:
    s = scheduler(entry(1))
    s.handle_timer(0.0)
    s.on_refused(mid(1), ErrorCode.DEVICE_MISMATCH, "devices", 0.0, 0.0)
    s.on_disconnect()
    s.on_connect()
    assert ids(s.handle_timer(1.0)) == [1]  # resent; refused again if still stale


def test_loaded_entries_are_not_in_flight() -> None:
    s = OutboxScheduler(HALF, entries=[OutboxEntry(mid(1), 1, "bob", 3, 50.0, in_flight=True)])
    assert s.in_flight == 0
    s.on_connect()
    assert s.next_deadline() == 50.0
    assert s.handle_timer(49.0) == []
    assert [e.attempts for e in s.handle_timer(50.0)] == [4]


# ------------------------------------------------------------ clock steps

HOUR = 3600.0


@pytest.mark.parametrize("step", [-HOUR, +HOUR])
def test_a_wall_clock_step_neither_stalls_nor_hastens_a_retry(step: float) -> None:
    """The scheduler runs on the monotonic clock: the wall clock is stepped by an hour between
    a QUEUE_FULL (retry after 5 s) and the retry, and the retry still goes 5 s later."""
    s = scheduler(entry(1))
    wall, mono = 1_000.0, 100.0
    s.handle_timer(mono)
    action = s.on_refused(mid(1), ErrorCode.QUEUE_FULL, "full", 5.0, mono)
    assert action == RetryAt(mid(1), attempts=1, at=105.0)
    assert ClockReading(wall, mono).to_wall(action.at) == 1_005.0  # shown and stored
    wall, mono = wall + 2.0 + step, mono + 2.0  # the step, two seconds later
    assert s.next_deadline() == 105.0
    assert s.handle_timer(mono) == []
    assert s.handle_timer(104.9) == []
    assert ids(s.handle_timer(105.0)) == [1]


@pytest.mark.parametrize(
    ("wall_now", "due"),
    [
        (1_001.0, 11.0),  # no step: the 4 s left
        (1_001.0 - HOUR, 7.0 + RETRY_CAP),  # stepped back an hour: at most the longest backoff
        (1_001.0 + HOUR, 7.0),  # stepped forward an hour: due at once, never earlier than now
    ],
)
def test_a_stored_retry_time_survives_a_restart_and_a_step(wall_now: float, due: float) -> None:
    """The store keeps retry times on the wall clock; a restarted client (a new monotonic
    origin) turns them back into monotonic ones clamped to [now, now + RETRY_CAP]."""
    stored = 1_005.0  # refused at wall 1000 with retry_after 5
    now = ClockReading(wall_now, 7.0)
    at = now.to_mono(stored, 0.0, RETRY_CAP)
    s = OutboxScheduler(HALF, entries=[OutboxEntry(mid(1), 1, "bob", 1, at)])
    s.on_connect()
    assert s.next_deadline() == due
    if due > 7.0:
        assert s.handle_timer(due - 0.1) == []
    assert ids(s.handle_timer(due)) == [1]


def test_invalid_window() -> None:
    with pytest.raises(LocalProtocolError):
        OutboxScheduler(HALF, window=0)
