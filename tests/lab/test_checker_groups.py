"""The group rules (:mod:`tidings.lab.checker_groups`) on hand-made ``group-chat`` logs: the
record, each device's events and group log, as the lab writes them. An honest run passes;
each test then breaks one thing (a message lost, received twice, out of order, reaching a
leaver, sealed with a stale member list) and proves the rule names it — and only it.

The group rules read the logs only, so the runs here have no client stores: the rules are
called on the run's view directly (the base rules would report the missing stores).
"""

from __future__ import annotations

import json
from pathlib import Path

from tidings.lab.checker_groups import ADD_FAULT, GROUP_RULES, LEAVE_FAULT, group_counts
from tidings.lab.checker_rules import Violation
from tidings.lab.checker_view import build
from tidings.lab.device_groups import group_log_path
from tidings.lab.record import (
    Composed,
    DeviceStarted,
    Fault,
    JsonlWriter,
    Received,
    RunStarted,
    Settled,
    StatusChanged,
    events_path,
)
from tidings.lab.record_read import load_run

GROUP = "ab" * 16
CONV = "group:" + GROUP
DEVICES = ("alice.1", "alice.2", "bob.1", "carol.1", "dave.1")


class GroupRun:
    """alice (two devices), bob, carol and dave; the group starts as alice, bob, carol."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "run"
        self.record = JsonlWriter(self.dir / "record.jsonl")
        self.record.write(RunStarted(100.0, "group-chat", 151, True))
        self.events: dict[str, JsonlWriter] = {}
        for label in DEVICES:
            account, _, n = label.partition(".")
            self.record.write(DeviceStarted(100.0, account, int(n), f"homes/{label}"))
            self.events[label] = JsonlWriter(events_path(self.dir, label))
        self.n = 0
        self.counters: dict[str, int] = {}

    def send(self, sender: str, at: float, members: set[str], *, acked: bool = True) -> str:
        """``sender`` seals a group message for ``members`` at ``at``; the relay ✓'s it."""
        self.n += 1
        mid = f"{self.n:032x}"
        counter = self.counters[sender] = self.counters.get(sender, 0) + 1
        self.events[sender].write(Composed(at, mid, CONV, CONV, counter, f"body-{self.n}"))
        line = {"t": at, "ev": "group_sent", "mid": mid, "group": GROUP, "members": sorted(members)}
        path = group_log_path(self.dir, sender)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(json.dumps(line) + "\n")
        if acked:
            self.events[sender].write(StatusChanged(at + 0.1, mid, None, "sent", "sent"))
        return mid

    def receive(self, device: str, sender: str, mid: str, at: float) -> None:
        counter = int(mid, 16)
        self.events[device].write(Received(at, mid, sender, CONV, counter))

    def deliver(self, sender: str, mid: str, at: float, members: set[str]) -> None:
        """``mid`` reaches every device of ``members`` but its sender."""
        for device in DEVICES:
            if device != sender and device.partition(".")[0] in members:
                self.receive(device, sender, mid, at)

    def clean(self) -> None:
        """Three members talk; dave is added over [103, 104]; carol leaves over [106, 107]
        (she held all that was ✓'d for her by 105.5); messages sealed while a sender had not
        yet heard of a change still go by its own view."""
        before, joined, after = (
            {"alice", "bob", "carol"},
            {"alice", "bob", "carol", "dave"},
            {"alice", "bob", "dave"},
        )
        for i, (sender, members) in enumerate(
            [("alice.1", before), ("bob.1", before), ("carol.1", before), ("alice.2", before)]
        ):
            mid = self.send(sender, 101.0 + i * 0.1, members)
            self.deliver(sender, mid, 101.5 + i * 0.1, members)
        mid = self.send("bob.1", 103.5, before)  # bob had not heard of dave yet: fine
        self.deliver("bob.1", mid, 103.6, before)
        self.record.write(Fault(104.0, ADD_FAULT, "dave", 103.0, 104.0, {"by": "alice.1"}))
        for i, sender in enumerate(("alice.1", "dave.1", "bob.1")):
            mid = self.send(sender, 104.5 + i * 0.1, joined)
            self.deliver(sender, mid, 104.9 + i * 0.1, joined)
        late = self.send("dave.1", 105.8, joined)  # ✓ after owed_until: carol may drop it
        self.deliver("dave.1", late, 106.0, after)
        detail = {"by": "carol.1", "owed_until": 105.5}
        self.record.write(Fault(107.0, LEAVE_FAULT, "carol", 106.0, 107.0, detail))
        for i, sender in enumerate(("alice.1", "bob.1", "dave.1", "alice.2")):
            mid = self.send(sender, 107.5 + i * 0.1, after)
            self.deliver(sender, mid, 108.0 + i * 0.1, after)

    def violations(self, *, settled: bool = True) -> list[Violation]:
        if settled:
            self.record.write(Settled(110.0))
        self.record.close()
        for writer in self.events.values():
            writer.close()
        view = build(load_run(self.dir))
        return [v for rule in GROUP_RULES for v in rule(view)]


def kinds(found: list[Violation]) -> list[tuple[str, str]]:
    return [(v.kind, v.device) for v in found]


def test_an_honest_group_run_passes_and_is_counted(tmp_path: Path) -> None:
    run = GroupRun(tmp_path)
    run.clean()
    assert run.violations() == []
    figures = group_counts(build(load_run(run.dir)))
    assert figures["sent"] == figures["acked"] == 13
    assert figures["received"]["dave.1"] == 2 + 3  # from its join on, its own not
    assert figures["received"]["carol.1"] == 3 + 1 + 3  # nothing after its leave


def test_a_missing_message_is_group_lost_once_settled(tmp_path: Path) -> None:
    run = GroupRun(tmp_path)
    run.clean()
    members = {"alice", "bob", "dave"}
    mid = run.send("alice.1", 108.5, members)
    run.deliver("alice.1", mid, 108.8, {"alice", "bob"})  # dave never gets it
    assert kinds(run.violations()) == [("group_lost", "dave.1")]


def test_absence_is_not_judged_before_settled_nor_without_a_tick(tmp_path: Path) -> None:
    run = GroupRun(tmp_path)
    run.clean()
    run.send("alice.1", 108.5, {"alice", "bob", "dave"}, acked=False)  # still in the outbox
    assert run.violations() == []
    run2 = GroupRun(tmp_path / "2")
    run2.clean()
    run2.send("alice.1", 108.5, {"alice", "bob", "dave"})
    assert run2.violations(settled=False) == []


def test_a_joiner_is_owed_what_was_sealed_for_it(tmp_path: Path) -> None:
    run = GroupRun(tmp_path)
    run.clean()
    mid = run.send("bob.1", 104.8, {"alice", "bob", "carol", "dave"})
    run.deliver("bob.1", mid, 104.9, {"alice", "bob", "carol"})
    assert kinds(run.violations()) == [("group_lost", "dave.1")]


def test_a_leaver_is_owed_what_was_ticked_before_it_left(tmp_path: Path) -> None:
    run = GroupRun(tmp_path)
    run.clean()
    mid = run.send("bob.1", 105.0, {"alice", "bob", "carol", "dave"})  # ✓ 105.1 < 105.5
    run.deliver("bob.1", mid, 105.2, {"alice", "bob", "dave"})
    assert kinds(run.violations()) == [("group_lost", "carol.1")]


def test_a_message_received_twice_is_group_duplicated(tmp_path: Path) -> None:
    run = GroupRun(tmp_path)
    run.clean()
    mid = run.send("alice.1", 108.5, {"alice", "bob", "dave"})
    run.deliver("alice.1", mid, 108.8, {"alice", "bob", "dave"})
    run.receive("bob.1", "alice.1", mid, 109.0)
    assert kinds(run.violations()) == [("group_duplicated", "bob.1")]


def test_a_sender_order_broken_is_group_reordered(tmp_path: Path) -> None:
    run = GroupRun(tmp_path)
    run.clean()
    members = {"alice", "bob", "dave"}
    first = run.send("alice.1", 108.5, members)
    second = run.send("alice.1", 108.6, members)
    run.deliver("alice.1", first, 108.8, {"alice", "dave"})
    run.deliver("alice.1", second, 108.9, {"alice", "dave"})
    run.receive("bob.1", "alice.1", second, 109.0)  # bob: the second first
    run.receive("bob.1", "alice.1", first, 109.1)
    found = run.violations()
    assert kinds(found) == [("group_reordered", "bob.1")]
    assert found[0].message_id_hex == first


def test_a_message_sealed_after_the_leave_reaching_the_leaver(tmp_path: Path) -> None:
    run = GroupRun(tmp_path)
    run.clean()
    mid = run.send("alice.1", 108.5, {"alice", "bob", "dave"})
    run.deliver("alice.1", mid, 108.8, {"alice", "bob", "dave"})
    run.receive("carol.1", "alice.1", mid, 108.9)  # it left: not for it
    assert kinds(run.violations()) == [("leaver_received", "carol.1")]


def test_a_message_sealed_before_the_join_reaching_the_joiner(tmp_path: Path) -> None:
    run = GroupRun(tmp_path)
    run.clean()
    mid = run.send("bob.1", 102.0, {"alice", "bob", "carol"})
    run.deliver("bob.1", mid, 102.1, {"alice", "bob", "carol", "dave"})
    assert kinds(run.violations()) == [("leaver_received", "dave.1")]


def test_a_member_list_older_than_a_recorded_change_is_stale_members(tmp_path: Path) -> None:
    run = GroupRun(tmp_path)
    run.clean()
    stale = {"alice", "bob", "carol", "dave"}  # sealed at 108.5: carol left by 107
    mid = run.send("bob.1", 108.5, stale)
    run.deliver("bob.1", mid, 108.8, stale - {"carol"})
    run.receive("carol.1", "bob.1", mid, 108.9)  # sealed for it: not leaver_received
    assert kinds(run.violations()) == [("stale_members", "bob.1")]
