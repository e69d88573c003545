"""The live view of a lab run (tidings.lab.live) and following its files (tidings.lab.follow),
with literal lines and times."""

from __future__ import annotations

import os
from pathlib import Path

from tidings.lab.follow import RunFollower
from tidings.lab.live import JUMP_GAP, LiveTally
from tidings.lab.record import (
    Composed,
    Fault,
    JsonlWriter,
    Received,
    RunStarted,
    SendRefused,
    Settled,
    StatusChanged,
    encode,
    events_path,
)

M1, M2, M3 = "01" * 16, "02" * 16, "03" * 16
T0 = 1000.0


def started(tally: LiveTally) -> None:
    assert tally.feed("record", RunStarted(T0, "server-crash", 7, True)) == []


def test_lines_before_the_run_line_wait_for_it_and_times_count_from_it() -> None:
    tally = LiveTally()
    assert tally.feed("alice.1", Composed(T0 + 2, M1, "bob", "c", 1, "hi")) == []
    assert not tally.started and tally.counts.composed == 0
    points = tally.feed("record", RunStarted(T0, "server-crash", 7, True))
    assert [(p.lane, p.t, p.mid, p.device) for p in points] == [("composed", 2.0, M1, "alice.1")]
    assert (tally.scenario, tally.seed, tally.quick) == ("server-crash", 7, True)
    assert tally.counts.composed == 1


def test_each_confirmation_point_counts_once_and_read_implies_delivered() -> None:
    tally = LiveTally()
    started(tally)
    sent = StatusChanged(T0 + 1, M1, None, "sent", "sent")
    assert [p.lane for p in tally.feed("alice.1", sent)] == ["sent"]
    assert tally.feed("alice.1", sent) == []  # reported again after a restart: still one ✓
    # bob.2's read came before its delivered (receipts race): it is both
    read = tally.feed("alice.1", StatusChanged(T0 + 3, M1, "bob.2", "read", "read"))
    assert [(p.lane, p.device) for p in read] == [("delivered", "bob.2"), ("read", "bob.2")]
    assert tally.feed("alice.1", StatusChanged(T0 + 4, M1, "bob.2", "delivered", "read")) == []
    tally.feed("alice.1", StatusChanged(T0 + 2, M1, "bob.1", "delivered", "delivered"))
    c = tally.counts
    assert (c.sent, c.delivered, c.read) == (1, 2, 1)


def test_expired_and_refused_are_final_and_a_retried_refusal_is_not_counted() -> None:
    tally = LiveTally()
    started(tally)
    assert tally.feed("a.1", SendRefused(T0 + 1, M1, "QUEUE_FULL", final=False)) == []
    [p] = tally.feed("a.1", SendRefused(T0 + 2, M1, "QUEUE_FULL", final=True))
    assert (p.lane, p.kind) == ("refused", "QUEUE_FULL")
    [x] = tally.feed("a.1", StatusChanged(T0 + 9, M2, "b.1", "expired", "expired"))
    assert tally.feed("a.1", StatusChanged(T0 + 9, M2, "b.1", "expired", "expired")) == []
    assert x.lane == "expired" and (tally.counts.refused, tally.counts.expired) == (1, 1)


def test_a_second_received_is_a_duplicate_and_an_earlier_counter_after_a_later_is_reordered() -> (
    None
):
    tally = LiveTally()
    started(tally)
    tally.feed("b.1", Received(T0 + 1, M2, "a.1", "c", 2))
    [dup] = tally.feed("b.1", Received(T0 + 2, M2, "a.1", "c", 2))
    assert dup.kind == "duplicate"
    tally.feed("b.1", Received(T0 + 3, M1, "a.1", "c", 1))  # #1 shown after #2
    tally.feed("b.2", Received(T0 + 3, M1, "a.1", "c", 1))  # another device: its own stream
    tally.feed("b.1", Received(T0 + 4, M3, "a.1", "other", 1))  # another conversation
    c = tally.counts
    assert (c.received, c.duplicated, c.reordered) == (4, 1, 1)


def test_faults_and_the_settled_line_and_a_clock_jump_closed_up() -> None:
    tally = LiveTally()
    started(tally)
    [kill] = tally.feed("record", Fault(T0 + 5, "kill9", "server", T0 + 5, None))
    assert (kill.lane, kill.t, kill.end, kill.kind, kill.target) == (
        "fault",
        5,
        None,
        "kill9",
        "server",
    )
    [window] = tally.feed("record", Fault(T0 + 9, "server_down", "server", T0 + 6, T0 + 8.5))
    assert (window.t, window.end) == (6.0, 8.5)
    days = 35 * 86400.0
    # after the jump, the devices' lines carry times 35 days later: drawn right after it
    [p] = tally.feed("a.1", Composed(T0 + 10 + days, M1, "b", "c", 1, "x"))
    assert 9.0 <= p.t <= 10.0 + 1e-9
    [q] = tally.feed("a.1", StatusChanged(T0 + 12 + days, M1, None, "sent", "sent"))
    assert abs(q.t - (p.t + 2)) < 1e-9
    late = tally.feed("b.1", Received(T0 + 9.5, M2, "a.1", "c", 1))  # written before the jump
    assert late[0].t == 9.5
    assert days > JUMP_GAP
    tally.feed("record", Settled(T0 + 20 + days))
    assert tally.settled is not None and tally.settled < 30
    assert tally.counts.faults == 2


def test_the_follower_returns_complete_lines_once_and_finds_new_device_files(
    tmp_path: Path,
) -> None:
    follower = RunFollower(tmp_path)
    assert follower.poll() == []  # nothing there yet
    record = JsonlWriter(tmp_path / "record.jsonl")
    record.write(RunStarted(T0, "s", 1, True))
    events = events_path(tmp_path, "alice.1")
    events.parent.mkdir(parents=True, exist_ok=True)
    line = encode(Composed(T0 + 1, M1, "bob", "c", 1, "hi"))
    with events.open("w") as f:
        f.write(line[:10])  # half a line: not yet
    got = follower.poll()
    assert [(src, type(x).__name__) for src, x in got] == [("record", "RunStarted")]
    with events.open("a") as f:
        f.write(line[10:] + "\n")
    assert [(src, type(x).__name__) for src, x in follower.poll()] == [("alice.1", "Composed")]
    assert follower.poll() == []  # each line once


def test_a_line_cut_by_a_sigkill_is_skipped_and_the_next_read(tmp_path: Path) -> None:
    events = events_path(tmp_path, "bob.1")
    events.parent.mkdir(parents=True)
    whole = encode(Received(T0 + 2, M1, "alice.1", "c", 1))
    # killed mid-line; the restarted process begins with a newline
    events.write_text(whole[:17] + "\n" + whole + "\n" + "not json\n")
    follower = RunFollower(tmp_path)
    got = follower.poll()
    assert [x.mid for _, x in got] == [M1]  # type: ignore[union-attr]
    assert follower.skipped == 2
    os.truncate(events, 0)  # a file that shrank: nothing new, no error
    assert follower.poll() == []
