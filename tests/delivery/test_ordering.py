"""Per-sender ordering: gaps, holds, timeouts, late arrivals, duplicates, bounds, persistence.

Every test passes literal ``now`` values (CONVENTIONS §10–11).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.delivery.ordering import (
    MAX_EXPIRED_NOTICES,
    MAX_HELD_PER_SENDER,
    MAX_MISSING_RANGES,
    ORDER_HOLD_SECONDS,
    Duplicate,
    GapDetected,
    GapSkipped,
    OrderEvent,
    Reorderer,
    SkipReason,
    StreamKey,
    StreamState,
    Surfaced,
)
from tidings.errors import LocalProtocolError

A = StreamKey("alice:bob", "alice", 1)
B = StreamKey("alice:bob", "alice", 2)  # same conversation, another sender device
TIMEOUT, OVERFLOW, EXPIRED = SkipReason.TIMEOUT, SkipReason.OVERFLOW, SkipReason.EXPIRED


def item(counter: int) -> str:
    return f"m{counter}"


def feed(r: Reorderer[str], key: StreamKey, counter: int, now: float) -> list[OrderEvent[str]]:
    return r.receive(key, counter, item(counter), now)


def shown(events: list[OrderEvent[str]]) -> list[int]:
    return [e.counter for e in events if isinstance(e, Surfaced)]


def test_defaults() -> None:
    assert ORDER_HOLD_SECONDS == 30.0
    assert MAX_HELD_PER_SENDER == 1000
    r: Reorderer[str] = Reorderer()
    assert r.hold_seconds == 30.0
    assert r.max_held == 1000


def test_in_order_messages_surface_at_once() -> None:
    r: Reorderer[str] = Reorderer()
    assert feed(r, A, 1, 100.0) == [Surfaced(A, 1, "m1")]
    assert feed(r, A, 2, 101.0) == [Surfaced(A, 2, "m2")]
    assert r.next_deadline() is None
    assert r.state(A).expected == 3


def test_a_gap_holds_and_is_reported_at_once() -> None:
    r: Reorderer[str] = Reorderer()
    feed(r, A, 1, 100.0)
    assert feed(r, A, 3, 101.0) == [GapDetected(A, range(2, 3))]
    assert r.held(A) == [3]
    assert r.next_deadline() == 131.0
    # the missing one arrives: it and what was held behind it surface, in order
    assert feed(r, A, 2, 102.0) == [Surfaced(A, 2, "m2"), Surfaced(A, 3, "m3")]
    assert r.held(A) == []
    assert r.next_deadline() is None


def test_only_new_gaps_are_reported() -> None:
    r: Reorderer[str] = Reorderer()
    assert feed(r, A, 4, 100.0) == [GapDetected(A, range(1, 4))]
    assert feed(r, A, 2, 100.5) == []  # inside the known gap: held, nothing new
    assert feed(r, A, 5, 101.0) == []  # right after the highest held: no new gap
    assert feed(r, A, 8, 102.0) == [GapDetected(A, range(6, 8))]
    assert r.held(A) == [2, 4, 5, 8]
    assert shown(feed(r, A, 1, 103.0)) == [1, 2]
    assert shown(feed(r, A, 3, 104.0)) == [3, 4, 5]
    assert r.held(A) == [8]


def test_a_gap_is_skipped_after_the_hold_and_reported() -> None:
    r: Reorderer[str] = Reorderer()
    feed(r, A, 1, 100.0)
    feed(r, A, 3, 101.0)
    feed(r, A, 4, 110.0)
    assert r.next_deadline() == 131.0  # from when the gap was first seen
    assert r.handle_timer(130.9) == []
    assert r.handle_timer(131.0) == [
        GapSkipped(A, range(2, 3), TIMEOUT),
        Surfaced(A, 3, "m3"),
        Surfaced(A, 4, "m4"),
    ]
    assert r.next_deadline() is None
    assert r.state(A) == StreamState(A, expected=5, missing=((2, 2),))


def test_each_gap_has_its_own_hold() -> None:
    r: Reorderer[str] = Reorderer()
    feed(r, A, 1, 0.0)
    feed(r, A, 3, 0.0)
    feed(r, A, 6, 10.0)
    assert r.handle_timer(30.0) == [GapSkipped(A, range(2, 3), TIMEOUT), Surfaced(A, 3, "m3")]
    assert r.next_deadline() == 40.0  # message 6 has waited since 10.0
    assert r.handle_timer(39.0) == []
    assert r.handle_timer(40.0) == [GapSkipped(A, range(4, 6), TIMEOUT), Surfaced(A, 6, "m6")]


def test_a_late_timer_skips_every_expired_gap() -> None:
    r: Reorderer[str] = Reorderer()
    feed(r, A, 2, 0.0)
    feed(r, A, 4, 1.0)
    assert r.handle_timer(500.0) == [
        GapSkipped(A, range(1, 2), TIMEOUT),
        Surfaced(A, 2, "m2"),
        GapSkipped(A, range(3, 4), TIMEOUT),
        Surfaced(A, 4, "m4"),
    ]


def test_a_late_message_surfaces_as_late_once() -> None:
    r: Reorderer[str] = Reorderer()
    feed(r, A, 1, 0.0)
    feed(r, A, 5, 1.0)
    r.handle_timer(31.0)  # skips 2..4
    assert r.state(A).missing == ((2, 4),)
    assert feed(r, A, 3, 40.0) == [Surfaced(A, 3, "m3", late=True)]
    assert r.state(A).missing == ((2, 2), (4, 4))
    assert feed(r, A, 3, 41.0) == [Duplicate(A, 3, "m3")]
    assert feed(r, A, 2, 42.0) == [Surfaced(A, 2, "m2", late=True)]
    assert feed(r, A, 4, 43.0) == [Surfaced(A, 4, "m4", late=True)]
    assert r.state(A).missing == ()
    assert shown(feed(r, A, 6, 44.0)) == [6]  # in-order flow goes on


def test_duplicates_are_dropped() -> None:
    r: Reorderer[str] = Reorderer()
    feed(r, A, 1, 0.0)
    assert feed(r, A, 1, 1.0) == [Duplicate(A, 1, "m1")]  # already surfaced
    feed(r, A, 3, 2.0)
    assert feed(r, A, 3, 3.0) == [Duplicate(A, 3, "m3")]  # already held
    assert r.held(A) == [3]
    assert r.next_deadline() == 32.0  # the duplicate did not restart the hold


def test_streams_are_independent() -> None:
    r: Reorderer[str] = Reorderer()
    feed(r, A, 2, 0.0)
    assert feed(r, B, 1, 1.0) == [Surfaced(B, 1, "m1")]
    other = StreamKey("alice:carol", "alice", 1)
    assert feed(r, other, 1, 2.0) == [Surfaced(other, 1, "m1")]
    assert r.held(A) == [2]


def test_too_many_held_skips_the_first_gap() -> None:
    r: Reorderer[str] = Reorderer(max_held=3)
    feed(r, A, 1, 0.0)
    for n in (3, 4, 5):
        feed(r, A, n, 1.0)
    assert feed(r, A, 7, 2.0) == [
        GapDetected(A, range(6, 7)),
        GapSkipped(A, range(2, 3), OVERFLOW),
        Surfaced(A, 3, "m3"),
        Surfaced(A, 4, "m4"),
        Surfaced(A, 5, "m5"),
    ]
    assert r.held(A) == [7]


def test_default_bound_is_max_held_per_sender() -> None:
    r: Reorderer[str] = Reorderer()
    for n in range(2, MAX_HELD_PER_SENDER + 2):
        feed(r, A, n, 0.0)
    assert len(r.held(A)) == MAX_HELD_PER_SENDER
    events = feed(r, A, MAX_HELD_PER_SENDER + 3, 1.0)
    assert events[1] == GapSkipped(A, range(1, 2), OVERFLOW)
    assert shown(events) == list(range(2, MAX_HELD_PER_SENDER + 2))
    assert r.held(A) == [MAX_HELD_PER_SENDER + 3]


def test_remembered_gaps_are_bounded_and_forgotten_ones_surface_late() -> None:
    r: Reorderer[str] = Reorderer(hold_seconds=0.0)
    now = 0.0
    for n in range(MAX_MISSING_RANGES + 1):  # skip counters 1, 3, 5, …
        feed(r, A, 2 * n + 2, now)
        r.handle_timer(now)
        now += 1.0
    state = r.state(A)
    assert len(state.missing) == MAX_MISSING_RANGES
    assert state.missing[0] == (3, 3)
    assert state.horizon == 2
    assert feed(r, A, 1, now) == [Surfaced(A, 1, "m1", late=True)]  # forgotten: not dropped
    assert feed(r, A, 3, now) == [Surfaced(A, 3, "m3", late=True)]
    assert feed(r, A, 4, now) == [Duplicate(A, 4, "m4")]


def test_hold_zero_still_reports_the_gap() -> None:
    r: Reorderer[str] = Reorderer(hold_seconds=0.0)
    assert feed(r, A, 2, 5.0) == [GapDetected(A, range(1, 2))]
    assert r.next_deadline() == 5.0
    assert r.handle_timer(5.0) == [GapSkipped(A, range(1, 2), TIMEOUT), Surfaced(A, 2, "m2")]


@pytest.mark.parametrize("counter", [0, -1])
def test_counters_start_at_one(counter: int) -> None:
    r: Reorderer[str] = Reorderer()
    with pytest.raises(LocalProtocolError):
        r.receive(A, counter, "x", 0.0)


@pytest.mark.parametrize(("hold", "max_held"), [(-1.0, 10), (float("nan"), 10), (1.0, 0)])
def test_invalid_parameters(hold: float, max_held: int) -> None:
    with pytest.raises(LocalProtocolError):
        Reorderer[str](hold, max_held)


# ------------------------------------------------------------ expiry notices (DELIVER kind 2)


def test_a_notice_releases_what_waits_behind_the_expired_message() -> None:
    """The relay queues the notice after everything queued before the expiry: the later
    messages are already held behind the gap, and are shown at once, not after 30 s."""
    r: Reorderer[str] = Reorderer()
    feed(r, A, 1, 100.0)
    feed(r, A, 3, 101.0)
    feed(r, A, 4, 101.0)
    assert r.expired("alice", 1) == [
        GapSkipped(A, range(2, 3), EXPIRED),
        Surfaced(A, 3, "m3"),
        Surfaced(A, 4, "m4"),
    ]
    assert r.next_deadline() is None
    assert r.notices() == {}
    assert r.state(A) == StreamState(A, expected=5, missing=((2, 2),))
    # declared expired, yet it arrives after all: shown as late, never dropped
    assert feed(r, A, 2, 102.0) == [Surfaced(A, 2, "m2", late=True)]


def test_a_notice_before_any_later_message_is_kept_for_the_next_gap() -> None:
    r: Reorderer[str] = Reorderer()
    feed(r, A, 1, 100.0)
    assert r.expired("alice", 1) == []  # nothing waits yet: message 2 expired, 3 not sent yet
    assert r.notices() == {("alice", 1): 1}
    assert r.changed_notices() == {("alice", 1): 1}
    assert feed(r, A, 3, 200.0) == [
        GapDetected(A, range(2, 3)),
        GapSkipped(A, range(2, 3), EXPIRED),
        Surfaced(A, 3, "m3"),
    ]
    assert r.notices() == {}
    assert r.changed_notices() == {("alice", 1): 0}  # 0: delete it from the store


def test_a_notice_for_a_stream_never_seen_releases_its_first_message() -> None:
    r: Reorderer[str] = Reorderer()
    assert r.expired("alice", 1) == []  # the first message ever from alice.1 expired
    assert shown(feed(r, A, 2, 0.0)) == [2]


def test_k_notices_declare_the_earliest_k_missing_counters() -> None:
    r: Reorderer[str] = Reorderer()
    feed(r, A, 1, 0.0)
    feed(r, A, 4, 1.0)  # 2 and 3 missing
    assert r.expired("alice", 1) == [GapSkipped(A, range(2, 3), EXPIRED)]
    assert r.held(A) == [4]
    assert r.next_deadline() == 31.0  # 3 may still come: the hold goes on
    assert r.expired("alice", 1) == [GapSkipped(A, range(3, 4), EXPIRED), Surfaced(A, 4, "m4")]
    assert r.state(A).missing == ((2, 3),)


def test_fewer_notices_than_missing_counters_leave_the_rest_to_the_hold() -> None:
    r: Reorderer[str] = Reorderer()
    feed(r, A, 1, 0.0)
    r.expired("alice", 1)
    r.expired("alice", 1)
    assert feed(r, A, 5, 10.0) == [GapDetected(A, range(2, 5)), GapSkipped(A, range(2, 4), EXPIRED)]
    assert r.held(A) == [5]
    assert r.handle_timer(40.0) == [GapSkipped(A, range(4, 5), TIMEOUT), Surfaced(A, 5, "m5")]
    assert r.state(A).missing == ((2, 4),)  # adjacent skipped ranges are one range


def test_a_stale_notice_is_forgotten_at_the_next_message_in_order() -> None:
    """A notice with no gap to fill whose sender's next message comes in order belonged to a
    gap already skipped (or to a message this device never had): it must skip nothing."""
    r: Reorderer[str] = Reorderer()
    feed(r, A, 1, 0.0)
    r.expired("alice", 1)
    assert feed(r, A, 2, 1.0) == [Surfaced(A, 2, "m2")]
    assert r.notices() == {}
    assert feed(r, A, 4, 2.0) == [GapDetected(A, range(3, 4))]  # held: a real gap
    assert r.held(A) == [4]


def test_notices_are_per_sender_device() -> None:
    r: Reorderer[str] = Reorderer()
    feed(r, A, 2, 0.0)
    assert r.expired("alice", 2) == []  # another device of alice
    assert r.expired("carol", 1) == []
    assert r.held(A) == [2]
    assert r.notices() == {("alice", 2): 1, ("carol", 1): 1}


def test_an_own_devices_notice_releases_the_gap_that_waited_longest() -> None:
    """Counters are per conversation, notices per device: for another device of this account
    (sent-message copies) the stream that has waited longest is released first."""
    carol = StreamKey("bob:carol", "bob", 2)
    dave = StreamKey("bob:dave", "bob", 2)
    r: Reorderer[str] = Reorderer()
    feed(r, dave, 3, 5.0)
    feed(r, carol, 2, 1.0)
    assert r.expired("bob", 2) == [
        GapSkipped(carol, range(1, 2), EXPIRED),
        Surfaced(carol, 2, "m2"),
    ]
    assert r.expired("bob", 2) == [GapSkipped(dave, range(1, 2), EXPIRED)]
    assert r.held(dave) == [3]


def test_notices_are_bounded() -> None:
    r: Reorderer[str] = Reorderer()
    for _ in range(MAX_EXPIRED_NOTICES + 5):
        r.expired("alice", 1)
    assert r.notices() == {("alice", 1): MAX_EXPIRED_NOTICES}
    restored: Reorderer[str] = Reorderer(notices={("alice", 1): 10**9})
    assert restored.notices() == {("alice", 1): MAX_EXPIRED_NOTICES}


# ------------------------------------------------------------ persistence


def test_changed_states_report_what_to_persist() -> None:
    r: Reorderer[str] = Reorderer()
    feed(r, A, 1, 0.0)
    feed(r, B, 2, 0.0)
    assert r.changed_states() == [StreamState(A, expected=2), StreamState(B)]
    assert r.changed_states() == []
    feed(r, A, 1, 1.0)  # a duplicate changes nothing
    assert r.changed_states() == []
    r.handle_timer(30.0)
    assert r.changed_states() == [StreamState(B, expected=3, missing=((1, 1),))]


def test_snapshot_is_json_and_restores_everything_but_held_items() -> None:
    r: Reorderer[str] = Reorderer()
    feed(r, A, 1, 0.0)
    feed(r, A, 4, 1.0)
    r.handle_timer(31.0)  # A: skipped 2..3, expected 5
    feed(r, A, 7, 40.0)  # A: holds 7
    feed(r, B, 1, 41.0)
    snapshot = json.loads(json.dumps(r.snapshot()))

    restored: Reorderer[str] = Reorderer.restore(snapshot)
    assert restored.state(A) == r.state(A) == StreamState(A, 5, ((2, 3),))
    assert restored.state(B) == r.state(B)
    assert restored.held(A) == []  # held items live in the client's store
    # feeding the held message again, with the time it was first received, keeps its deadline
    assert feed(restored, A, 7, 40.0) == [GapDetected(A, range(5, 7))]
    assert restored.next_deadline() == 70.0
    assert feed(restored, A, 3, 50.0) == [Surfaced(A, 3, "m3", late=True)]
    assert feed(restored, A, 1, 50.0) == [Duplicate(A, 1, "m1")]


def test_unmatched_notices_survive_a_restart() -> None:
    r: Reorderer[str] = Reorderer()
    feed(r, A, 1, 0.0)
    r.expired("alice", 1)
    snapshot = json.loads(json.dumps(r.snapshot()))
    for restored in (
        Reorderer[str].restore(snapshot),
        Reorderer[str](states=[r.state(A)], notices=r.notices()),
    ):
        assert restored.notices() == {("alice", 1): 1}
        assert shown(feed(restored, A, 3, 1.0)) == [3]


def test_states_restore_through_the_constructor() -> None:
    state = StreamState(A, expected=10, missing=((3, 4),), horizon=2)
    r: Reorderer[str] = Reorderer(states=[state])
    assert r.state(A) == state
    assert StreamState.from_dict(state.to_dict()) == state
    assert feed(r, A, 10, 0.0) == [Surfaced(A, 10, "m10")]
    assert feed(r, A, 1, 0.0) == [Surfaced(A, 1, "m1", late=True)]  # below the horizon


@pytest.mark.parametrize(
    "snapshot",
    [
        {},
        {"version": 2, "streams": []},
        {"version": 1, "streams": {}},
        {"version": 1, "streams": [{"conversation": "c"}]},
        {"version": 1, "streams": [{**StreamState(A).to_dict(), "expected": 0}]},
        {"version": 1, "streams": [{**StreamState(A).to_dict(), "missing": [[1]]}]},
        {"version": 1, "streams": [], "expired": [["alice", 1]]},
        {"version": 1, "streams": [], "expired": [["alice", "x", 1]]},
    ],
)
def test_restore_refuses_invalid_snapshots(snapshot: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        Reorderer.restore(snapshot)


@pytest.mark.parametrize(
    ("expected", "missing", "horizon"),
    [
        (0, (), 1),
        (5, (), 6),
        (5, ((3, 2),), 1),
        (5, ((1, 5),), 1),
        (9, ((1, 2), (3, 4)), 1),  # touching ranges are one range
        (9, ((4, 5), (1, 2)), 1),
    ],
)
def test_invalid_stream_states(
    expected: int, missing: tuple[tuple[int, int], ...], horizon: int
) -> None:
    with pytest.raises(LocalProtocolError):
        StreamState(A, expected, missing, horizon)


# ------------------------------------------------------------ properties


@given(st.permutations(list(range(1, 13))), st.data())
def test_any_arrival_order_surfaces_everything_once(order: list[int], data: st.DataObject) -> None:
    """Whatever the order and timing, every counter surfaces exactly once, and the non-late
    ones surface in increasing order; a gap is never skipped without a GapSkipped event."""
    r: Reorderer[str] = Reorderer(hold_seconds=5.0, max_held=4)
    events: list[OrderEvent[str]] = []
    now = 0.0
    for n in order:
        now += data.draw(st.sampled_from([0.0, 1.0, 6.0]))
        events += r.handle_timer(now)
        events += feed(r, A, n, now)
    events += r.handle_timer(now + 5.0)
    surfaced = [e for e in events if isinstance(e, Surfaced)]
    assert sorted(e.counter for e in surfaced) == list(range(1, 13))
    in_order = [e.counter for e in surfaced if not e.late]
    assert in_order == sorted(in_order)
    skipped = {c for e in events if isinstance(e, GapSkipped) for c in e.missing}
    assert {e.counter for e in surfaced if e.late} <= skipped
    assert not any(isinstance(e, Duplicate) for e in events)


@given(st.sets(st.integers(2, 11), max_size=6), st.permutations(list(range(1, 13))), st.data())
def test_notices_never_drop_or_duplicate_a_message(
    expired: set[int], order: list[int], data: st.DataObject
) -> None:
    """Counters in ``expired`` never arrive; one notice for each comes at some point after the
    arrivals before it. Every other counter surfaces exactly once, the non-late ones in order."""
    r: Reorderer[str] = Reorderer(hold_seconds=5.0)
    events: list[OrderEvent[str]] = []
    notices = len(expired)
    now = 0.0
    for n in order:
        now += data.draw(st.sampled_from([0.0, 1.0, 6.0]))
        events += r.handle_timer(now)
        if notices and data.draw(st.booleans()):
            notices -= 1
            events += r.expired("alice", 1)
        if n not in expired:
            events += feed(r, A, n, now)
    for _ in range(notices):
        events += r.expired("alice", 1)
    events += r.handle_timer(now + 5.0)
    surfaced = [e for e in events if isinstance(e, Surfaced)]
    assert sorted(e.counter for e in surfaced) == sorted(set(range(1, 13)) - expired)
    in_order = [e.counter for e in surfaced if not e.late]
    assert in_order == sorted(in_order)
    assert not any(isinstance(e, Duplicate) for e in events)
    assert r.held(A) == []


def test_a_device_linked_midstream_forgets_a_notice_at_its_first_message() -> None:
    r: Reorderer[str] = Reorderer(join_midstream=True)
    r.expired("alice", 1)
    assert shown(feed(r, A, 7, 0.0)) == [7]  # its first message starts the stream
    assert r.notices() == {}


# ---------------------------------------------------------------- awaiting asked-again messages


def test_a_midstream_stream_awaiting_its_first_messages_begins_at_the_lowest_back() -> None:
    r: Reorderer[str] = Reorderer(join_midstream=True)
    r.awaiting(A, 1)  # counter 10 arrived unreadable and was asked for again
    assert shown(feed(r, A, 11, 100.0)) == []  # would begin here midstream: held instead
    assert shown(feed(r, A, 12, 101.0)) == []
    r.awaiting(A, 0)  # 10 is back
    assert shown(feed(r, A, 10, 102.0)) == [10, 11, 12]
    assert r.state(A) == StreamState(A, expected=13, horizon=10)
    assert r.next_deadline() is None
    assert isinstance(feed(r, A, 9, 103.0)[0], Surfaced)  # below the start: late, not lost


def test_awaiting_two_begins_after_both() -> None:
    r: Reorderer[str] = Reorderer(join_midstream=True)
    r.awaiting(A, 2)  # 5 and 6 asked for again
    assert shown(feed(r, A, 7, 100.0)) == []
    r.awaiting(A, 1)
    assert shown(feed(r, A, 6, 101.0)) == []  # 5 is still out
    r.awaiting(A, 0)
    assert shown(feed(r, A, 5, 102.0)) == [5, 6, 7]


def test_an_awaited_message_back_first_begins_the_stream_at_it() -> None:
    r: Reorderer[str] = Reorderer(join_midstream=True)
    r.awaiting(A, 1)
    r.awaiting(A, 0)
    assert shown(feed(r, A, 4, 100.0)) == [4]
    assert shown(feed(r, A, 5, 101.0)) == [5]


def test_an_awaited_message_that_never_comes_is_skipped_by_the_hold_in_order() -> None:
    r: Reorderer[str] = Reorderer(join_midstream=True)
    r.awaiting(A, 1)
    feed(r, A, 8, 100.0)
    feed(r, A, 9, 101.0)
    events = r.handle_timer(130.0)
    assert shown(events) == [8, 9]
    assert [e for e in events if isinstance(e, GapSkipped)] == [GapSkipped(A, range(1, 8), TIMEOUT)]
    assert shown(feed(r, A, 10, 131.0)) == [10]  # an ordinary stream from then on
    r.awaiting(A, 1)  # begun: no effect
    assert shown(feed(r, A, 11, 132.0)) == [11]


def test_awaiting_does_not_change_a_stream_that_begins_at_1_or_has_begun() -> None:
    r: Reorderer[str] = Reorderer()  # not midstream: the stream begins at 1 anyway
    r.awaiting(A, 1)
    assert shown(feed(r, A, 2, 100.0)) == []
    r.awaiting(A, 0)
    assert shown(feed(r, A, 1, 101.0)) == [1, 2]
    m: Reorderer[str] = Reorderer(join_midstream=True)
    assert shown(feed(m, B, 5, 100.0)) == [5]
    m.awaiting(B, 3)
    assert shown(feed(m, B, 6, 101.0)) == [6]
