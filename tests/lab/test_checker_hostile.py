"""The checker's flood rules (:mod:`tidings.lab.checker_hostile`) on doctored ``hostile-load``
runs: a user's message denied, a handshake-only peer left open, a flood account over its budget,
too many registrations, a flood no limit refused, a message lost under the flood; and the
latencies of the quiet and the flooded phase."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.lab.test_checker import FakeRun
from tidings.lab.checker import check, format_violations
from tidings.lab.checker_hostile import phase_latencies
from tidings.lab.record import Fault
from tidings.lab.record_read import load_run
from tidings.lab.scenarios_hostile import LIMITS
from tidings.wire import ErrorCode

#: What a flood that the relay's limits held back reports (see tidings.lab.hostile).
HONEST: dict[str, Any] = {
    "raw_open": 100,
    "raw_closed": 0,
    "idle_handshakes": 20,
    "idle_closed": 20,
    "idle_open": 0,
    "idle_close_max": 2.01,
    "registered": 6,
    "register_refused": {"RATE_LIMITED": 4},
    "sends": 1800,
    "stored": 363,
    "refused": {"RATE_LIMITED": 1189, "QUEUE_FULL": 248},
    "stored_max": 102,
    "flood_seconds": 0.15,
}


def _run(tmp_path: Path, **flood: Any) -> FakeRun:
    """alice.1 and bob.1; one message before the flood [110, 120], two during it, all
    delivered."""
    r = FakeRun(tmp_path, "hostile-load")
    for label in ("alice.1", "bob.1"):
        r.device(label)
    detail = {**HONEST, **flood, "limits": LIMITS, "victim": "bob"}
    r.record.write(Fault(120.0, "flood", "server", 110.0, 120.0, detail))
    for at, lag in ((101.0, 0.1), (111.0, 1.5), (112.0, 2.5)):
        mid = r.send("alice.1", "bob", at)
        r.ack("alice.1", mid, at + lag)
        r.deliver_all("alice.1", mid, at + lag + 0.1)
    return r


def test_a_flood_the_limits_held_back_passes(tmp_path: Path) -> None:
    result = check(_run(tmp_path).finish())
    assert result.ok, format_violations(result)


@pytest.mark.parametrize(
    ("flood", "kind"),
    [
        ({"idle_open": 3}, "idle_not_closed"),
        ({"idle_close_max": 9.5}, "idle_not_closed"),
        ({"stored_max": 300, "flood_seconds": 1.0}, "flood_over_budget"),
        ({"registered": 11}, "registrations_over_budget"),
        ({"refused": {}}, "flood_unfelt"),
    ],
)
def test_a_flood_past_a_limit_is_caught(tmp_path: Path, flood: dict[str, Any], kind: str) -> None:
    result = check(_run(tmp_path, **flood).finish())
    assert [v.kind for v in result.violations] == [kind], format_violations(result)


def test_a_users_message_denied_under_the_flood_is_legit_refused(tmp_path: Path) -> None:
    r = _run(tmp_path)
    mid = r.send("bob.1", "alice", 113.0)
    r.stores["bob.1"].mark_failed(mid, int(ErrorCode.QUEUE_FULL), "queue full", 114.0)
    result = check(r.finish())
    (v,) = result.violations
    assert (v.kind, v.message_id_hex, v.device) == ("legit_refused", mid.hex(), "bob.1")


def test_a_users_message_lost_under_the_flood_is_lost(tmp_path: Path) -> None:
    r = _run(tmp_path)
    mid = r.send("bob.1", "alice", 113.0)
    r.ack("bob.1", mid, 113.5)  # ✓, then never delivered
    result = check(r.finish())
    assert {v.kind for v in result.violations} == {"lost"}
    assert all(v.message_id_hex == mid.hex() for v in result.violations)


def test_latencies_are_split_into_the_quiet_and_the_flooded_phase(tmp_path: Path) -> None:
    run_dir = _run(tmp_path).finish()
    phases = phase_latencies(check(run_dir).messages, load_run(run_dir).faults)
    assert [len(phases[p]["sent"]) for p in ("quiet", "flood", "after")] == [1, 2, 0]
    assert phases["quiet"]["sent"] == pytest.approx((0.1,))
    assert phases["flood"]["sent"] == pytest.approx((1.5, 2.5))
    assert phases["flood"]["delivered"] == pytest.approx((1.61, 2.61))  # ✓✓ 0.01 s after


def test_no_flood_no_phases(tmp_path: Path) -> None:
    assert phase_latencies((), ()) == {}
