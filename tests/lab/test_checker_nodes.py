"""The checker's rule for relay nodes on PostgreSQL (:mod:`tidings.lab.checker_nodes`) on
doctored ``node-crash`` runs: a ✓ for a message the database no longer holds after its restart,
a run whose database rows were never read, and runs without a PostgreSQL fault.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.lab.test_checker import FakeRun
from tidings.lab.checker import check, format_violations
from tidings.lab.checker_nodes import PG_SENT_FILE, PG_TARGET
from tidings.lab.record import Fault


class NodeRun:
    """alice.1 and bob.1; node0 is killed at 105, PostgreSQL is down over [110, 114]."""

    def __init__(self, tmp_path: Path) -> None:
        self.r = FakeRun(tmp_path, "node-crash")
        for label in ("alice.1", "bob.1"):
            self.r.device(label)
        self.committed: list[tuple[str, bytes]] = []  #: what the database's sent table holds
        self.r.record.write(Fault(105.1, "kill9", "node0", 105.0, 105.1, {"moved": ["bob.1"]}))
        self.r.record.write(Fault(114.0, "pg_restart", PG_TARGET, 110.0, 114.0, {}))

    def sent(self, sender: str, to: str, at: float, *, committed: bool = True) -> bytes:
        mid = self.r.send(sender, to, at)
        self.r.ack(sender, mid, at + 0.2)
        self.r.deliver_all(sender, mid, at + 0.5)
        if committed:
            self.committed.append((sender, mid))
        return mid

    def clean(self) -> None:
        """A run whose every ✓ is a committed row, before, across and after the outage."""
        for at in (101.0, 106.0, 115.0):
            self.sent("alice.1", "bob", at)
            self.sent("bob.1", "alice", at + 0.1)

    def finish(self, *, dump: bool = True) -> Path:
        run_dir = self.r.finish()
        if dump:
            rows = [[s.rpartition(".")[0], int(s.rpartition(".")[2]), m.hex()]
                    for s, m in self.committed]  # fmt: skip
            (run_dir / PG_SENT_FILE).write_text(json.dumps({"sent": rows}))
        return run_dir


@pytest.fixture
def nodes(tmp_path: Path) -> NodeRun:
    return NodeRun(tmp_path)


def test_an_honest_node_crash_run_passes(nodes: NodeRun) -> None:
    nodes.clean()
    result = check(nodes.finish())
    assert result.ok, format_violations(result)


def test_a_check_mark_the_database_does_not_hold_is_ack_not_durable(nodes: NodeRun) -> None:
    nodes.clean()
    false = nodes.sent("bob.1", "alice", 111.0, committed=False)  # ✓ while PostgreSQL was down
    result = check(nodes.finish())
    (v,) = result.violations
    assert (v.kind, v.message_id_hex, v.device) == ("ack_not_durable", false.hex(), "bob.1")
    assert "false ✓" in v.detail and "PostgreSQL" in v.detail


def test_a_run_whose_database_was_never_read_is_a_record_error(nodes: NodeRun) -> None:
    nodes.clean()
    result = check(nodes.finish(dump=False))
    (v,) = result.violations
    assert v.kind == "record_error" and PG_SENT_FILE in v.detail


def test_the_rule_applies_only_to_runs_with_a_postgres_fault(tmp_path: Path) -> None:
    r = FakeRun(tmp_path, "clean")  # no pg_sent.json: it is never read
    r.device("alice.1")
    r.device("bob.1")
    mid = r.send("alice.1", "bob", 101.0)
    r.ack("alice.1", mid, 101.2)
    r.deliver_all("alice.1", mid, 101.5)
    result = check(r.finish())
    assert result.ok, format_violations(result)
