"""The push scheduler's decisions, with literal times (sans-I/O: no clock, no loop, no HTTP)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tidings.server.wake_schedule import WakeScheduler, WakeTiming
from tidings.store import DeviceRef, PushSubscription

BOB = DeviceRef("bob", 1)
CAROL = DeviceRef("carol", 2)
T0 = 1_700_000_000.0


def sub(device: DeviceRef = BOB, endpoint: str = "https://push.example/bob") -> PushSubscription:
    return PushSubscription(device, endpoint, b"\x04" + bytes(64), bytes(16), T0 - 100)


def scheduler(jitter: float = 0.0, draw: float = 0.0, **timing: float) -> WakeScheduler:
    s = WakeScheduler(WakeTiming(jitter=jitter, **timing), lambda: draw)
    s.subscribe(sub())
    return s


def test_nothing_is_due_without_an_item() -> None:
    s = scheduler()
    assert s.due(T0) == [] and s.next_deadline() is None


def test_an_item_makes_one_wake_up_due_now_and_later_items_change_nothing() -> None:
    s = scheduler()
    pending = s.queued(BOB, T0)
    assert pending is not None and (pending.wake_since, pending.wake_next) == (T0, T0)
    assert s.queued(BOB, T0 + 1) is None  # coalesced
    (attempt,) = s.due(T0)
    assert (attempt.wake_attempts, attempt.wake_next) == (1, T0 + 5.0)  # stored before the POST
    assert s.due(T0 + 100) == []  # in flight: not twice
    assert s.next_deadline() is None


def test_unknown_and_dead_devices_are_not_woken() -> None:
    s = scheduler()
    assert s.queued(CAROL, T0) is None
    s.subscribe(replace(sub(CAROL, "https://push.example/carol"), dead=True))
    assert s.queued(CAROL, T0) is None


def test_failures_back_off_exponentially_to_the_cap() -> None:
    s = scheduler(retry_base=5.0, retry_cap=60.0)
    s.queued(BOB, T0)
    now, waits = T0, []
    for _ in range(6):
        (attempt,) = s.due(now)
        failed = s.failed(attempt, now)
        assert failed is not None and failed.wake_next is not None
        waits.append(failed.wake_next - now)
        assert s.next_deadline() == failed.wake_next
        assert s.due(failed.wake_next - 0.001) == []
        now = failed.wake_next
    assert waits == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]


def test_jitter_takes_off_up_to_its_share() -> None:
    assert scheduler(jitter=0.5, draw=0.0).backoff(3) == 20.0
    assert scheduler(jitter=0.5, draw=0.999).backoff(3) == pytest.approx(10.01)
    assert scheduler(jitter=0.5, draw=0.5).backoff(1) == 3.75


def test_retry_after_wins_when_longer() -> None:
    s = scheduler()
    s.queued(BOB, T0)
    (attempt,) = s.due(T0)
    later = s.failed(attempt, T0 + 1, retry_after=120.0)
    assert later is not None and later.wake_next == T0 + 121.0
    (attempt,) = s.due(T0 + 121.0)
    sooner = s.failed(attempt, T0 + 122, retry_after=1.0)
    assert sooner is not None and sooner.wake_next == T0 + 122 + 10.0  # the backoff of attempt 2


def test_accepted_waits_for_the_connection_and_rewakes_after_the_ttl() -> None:
    s = scheduler(rewake_after=86400.0)
    s.queued(BOB, T0)
    (attempt,) = s.due(T0)
    done = s.accepted(attempt, T0 + 0.2)
    assert done is not None
    assert (done.wake_sent_at, done.wake_next, done.wake_attempts) == (T0 + 0.2, T0 + 86400.2, 0)
    assert s.queued(BOB, T0 + 10) is None  # still pending: no second wake-up
    assert s.due(T0 + 86400.1) == []
    (again,) = s.due(T0 + 86400.2)
    assert again.wake_attempts == 1


def test_the_connection_clears_it_and_gives_the_latency() -> None:
    s = scheduler()
    s.queued(BOB, T0)
    (attempt,) = s.due(T0)
    s.accepted(attempt, T0 + 1.0)
    cleared, latency = s.connected(BOB, T0 + 3.5)
    assert latency == 2.5
    assert cleared is not None and cleared.wake_since is None and cleared.wake_next is None
    assert s.connected(BOB, T0 + 4) == (None, -1.0)  # nothing pending any more
    assert s.queued(BOB, T0 + 5) is not None  # the next item wakes it again


def test_a_connection_before_any_accepted_wake_up_has_no_latency() -> None:
    s = scheduler()
    s.queued(BOB, T0)
    (attempt,) = s.due(T0)
    cleared, latency = s.connected(BOB, T0 + 1)
    assert cleared is not None and latency == -1.0
    assert s.accepted(attempt, T0 + 2) is None  # the late answer changes nothing
    assert s.get(BOB) == cleared


def test_gone_marks_it_dead_and_nothing_more_is_sent() -> None:
    s = scheduler()
    s.queued(BOB, T0)
    (attempt,) = s.due(T0)
    dead = s.gone(attempt, T0 + 1)
    assert dead is not None and dead.dead and dead.wake_next is None
    assert dead.wake_since == T0  # still pending: the device is told when it connects
    assert s.due(T0 + 10**6) == [] and s.next_deadline() is None
    s.subscribe(sub())  # registering again revives it
    assert s.queued(BOB, T0 + 2) is not None


def test_an_answer_for_a_replaced_endpoint_changes_nothing() -> None:
    s = scheduler()
    s.queued(BOB, T0)
    (attempt,) = s.due(T0)
    s.subscribe(sub(endpoint="https://push.example/bob-new"))
    assert s.gone(attempt, T0 + 1) is None
    assert s.failed(attempt, T0 + 1) is None
    current = s.get(BOB)
    assert current is not None and not current.dead


def test_a_stored_attempt_resumes_after_a_restart() -> None:
    s = scheduler()
    s.queued(BOB, T0)
    (attempt,) = s.due(T0)  # stored; then the relay died before the answer
    restarted = WakeScheduler(WakeTiming(jitter=0.0), lambda: 0.0)
    restarted.load([attempt])
    assert restarted.next_deadline() == T0 + 5.0
    assert restarted.due(T0 + 4.9) == []
    (retry,) = restarted.due(T0 + 5.0)
    assert retry.wake_attempts == 2


def test_timing_is_checked() -> None:
    with pytest.raises(ValueError):
        WakeTiming(retry_base=10.0, retry_cap=5.0)
    with pytest.raises(ValueError):
        WakeTiming(jitter=1.0)
    with pytest.raises(ValueError):
        WakeTiming(rewake_after=0)


def test_many_devices_are_due_each_at_its_own_time() -> None:
    s = WakeScheduler(WakeTiming(jitter=0.0), lambda: 0.0)
    devices = [DeviceRef("user", i) for i in range(1, 201)]
    for i, device in enumerate(devices):
        s.subscribe(sub(device, f"https://push.example/{i}"))
    for i, device in enumerate(reversed(devices)):
        s.queued(device, T0 + i)
    assert s.next_deadline() == T0
    first = s.due(T0 + 49.5)
    assert {a.device for a in first} == set(devices[-50:])
    assert s.next_deadline() == T0 + 50
    for attempt in first[:10]:
        s.failed(attempt, T0 + 50)  # retried at T0 + 55
    later = s.due(T0 + 55)
    assert {a.device for a in later} == set(devices[-56:-50]) | {a.device for a in first[:10]}
