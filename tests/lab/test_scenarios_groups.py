"""``group-chat --quick`` end to end: real device processes, the relay behind the fault proxy
(no root), a join under latency and resets, a leave under a stall, two kill -9 of the relay;
the run passes and its group figures add up."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tidings.lab import runner
from tidings.lab.checker import format_violations
from tidings.lab.checker_groups import ADD_FAULT, LEAVE_FAULT, group_counts
from tidings.lab.checker_view import build
from tidings.lab.record_read import load_run
from tidings.lab.scenarios import SCENARIOS

pytestmark = [pytest.mark.proc, pytest.mark.slow]


def test_group_chat_quick_passes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = runner.run_scenario("group-chat", run_dir, quick=True, stream=io.StringIO())
    assert result.ok, format_violations(result)
    c = result.counts
    assert c.sent > 0 and c.acked == c.sent and (c.lost, c.duplicated, c.reordered) == (0, 0, 0)
    record = load_run(run_dir)
    kinds = [f.kind for f in record.faults]
    assert kinds.count("kill9") == 2
    assert {ADD_FAULT, LEAVE_FAULT, "reset", "stall", "slow_path"} <= set(kinds)
    figures = group_counts(build(record))
    params = SCENARIOS["group-chat"].quick
    # every device composes its plan as a group message; carol's two devices half of it
    assert figures["sent"] == figures["acked"] == params.messages * 4 + params.messages // 2 * 2
    received = figures["received"]
    assert set(received) == {"alice.1", "alice.2", "bob.1", "carol.1", "carol.2", "dave.1"}
    # the staying members got (nearly) everything, the joiner what came after its join
    assert min(received[n] for n in ("alice.1", "alice.2", "bob.1")) > received["dave.1"] > 0
    # alice.1 gets every message but its own; bob.1 too: one plan apart
    assert received["alice.1"] == received["bob.1"] == figures["sent"] - params.messages
