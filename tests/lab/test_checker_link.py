"""The checker's liveness rules (:mod:`tidings.lab.checker_link`) on doctored runs of
``own-backoff`` (:mod:`tidings.lab.scenarios_backoff`): a device cut off by a fault must be in
session again, by its own backoff, within the bound its settings give.

The broken runs are the two ways a client's own backoff fails: a device that never reconnects
(its loop died, or it waits for a hint that never comes) and one that reconnects too late (a
backoff cap that does not hold).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.lab.test_checker import FakeRun
from tidings.client.connect import CONNECT_TIMEOUT
from tidings.lab.checker import KINDS, check, format_violations
from tidings.lab.checker_link import RECOVERY_SLACK, liveness_bound, read_links, recovered_in
from tidings.lab.device_log import link_path
from tidings.lab.record import Fault

BOUND = liveness_bound(2.0, 2.5)
START, END = 110.0, 114.0  # the fault window


def _link(r: FakeRun, label: str, *lines: tuple[float, str, dict[str, Any]]) -> None:
    path = link_path(r.dir, label)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        for t, ev, detail in lines:
            f.write(json.dumps({"t": t, "ev": ev, **detail}) + "\n")


def _start(hints: bool = False) -> tuple[float, str, dict[str, Any]]:
    return (100.0, "start", {"hints": hints, "settings": {"reconnect_max_seconds": 2.0}})


def _run(tmp_path: Path, **detail: Any) -> FakeRun:
    """alice.1 and bob.1, each cut off by a dead zone [110, 114]; one message, delivered."""
    r = FakeRun(tmp_path, "own-backoff")
    for label in ("alice.1", "bob.1"):
        r.device(label)
        fields = {"hints": False, "reconnect_within": BOUND, "recovered_in": 0.5} | detail
        r.record.write(Fault(115.0, "dead_zone", label, START, END, fields))
    mid = r.send("alice.1", "bob", 101.0)
    r.ack("alice.1", mid, 101.2)
    r.deliver("bob.1", "alice.1", mid, 116.0)
    return r


def _cut_and_back(r: FakeRun, label: str, back: float | None) -> None:
    lines = [_start(), (100.1, "connected", {"pattern": "IK"})]
    lines.append((112.5, "disconnected", {"code": 14, "reason": "nothing received for 2.5s"}))
    lines.append((113.0, "connect_failed", {"reason": "timed out", "attempt": 1, "retry_in": 1}))
    if back is not None:
        lines.append((back, "connected", {"pattern": "IK"}))
    _link(r, label, *lines)


def test_the_bound_is_the_keepalive_the_connect_timeout_the_cap_and_the_slack() -> None:
    assert pytest.approx(2.5 + CONNECT_TIMEOUT + 2.0 + RECOVERY_SLACK) == BOUND
    assert {"unrecovered", "hinted"} <= set(KINDS)


def test_every_device_back_by_itself_within_the_bound_is_ok(tmp_path: Path) -> None:
    r = _run(tmp_path)
    _cut_and_back(r, "alice.1", END + 0.7)
    _cut_and_back(r, "bob.1", END + 1.9)
    result = check(r.finish())
    assert result.ok, format_violations(result)


def test_a_device_that_never_reconnects_is_unrecovered(tmp_path: Path) -> None:
    r = _run(tmp_path)
    _cut_and_back(r, "alice.1", END + 0.7)
    _cut_and_back(r, "bob.1", None)
    result = check(r.finish())
    assert [(v.kind, v.device) for v in result.violations] == [("unrecovered", "bob.1")]
    (v,) = result.violations
    assert "never again" in v.detail and "connect_failed" in v.detail


def test_a_device_that_reconnects_too_late_is_unrecovered(tmp_path: Path) -> None:
    r = _run(tmp_path)
    _cut_and_back(r, "alice.1", END + BOUND + 5.0)  # after the bound: its cap did not hold
    _cut_and_back(r, "bob.1", END + 1.0)
    result = check(r.finish())
    assert [(v.kind, v.device) for v in result.violations] == [("unrecovered", "alice.1")]
    assert f"in session {BOUND + 5.0:.1f} s after it ended" in result.violations[0].detail


def test_a_device_without_any_connection_log_is_unrecovered(tmp_path: Path) -> None:
    r = _run(tmp_path)
    _cut_and_back(r, "alice.1", END + 0.5)
    result = check(r.finish())
    assert [(v.kind, v.device) for v in result.violations] == [("unrecovered", "bob.1")]
    assert "no connection event at all" in result.violations[0].detail


def test_a_device_that_ran_with_hints_is_flagged(tmp_path: Path) -> None:
    r = _run(tmp_path)
    _cut_and_back(r, "alice.1", END + 0.5)
    _cut_and_back(r, "bob.1", END + 0.5)
    _link(r, "bob.1", (120.0, "start", {"hints": True, "settings": {}}))  # a restart, with hints
    _link(r, "bob.1", (120.1, "connected", {"pattern": "IK"}))
    result = check(r.finish())
    assert [(v.kind, v.device) for v in result.violations] == [("hinted", "bob.1")]


def test_faults_without_a_bound_are_not_judged(tmp_path: Path) -> None:
    r = FakeRun(tmp_path, "dead-zone")
    r.device("alice.1")
    r.record.write(Fault(115.0, "dead_zone", "alice.1", START, END, {}))
    result = check(r.finish())  # no connection log at all: nothing asked, nothing judged
    assert result.ok, format_violations(result)


def test_recovered_in_counts_from_the_end_and_skips_a_cut_line(tmp_path: Path) -> None:
    r = _run(tmp_path)
    _cut_and_back(r, "alice.1", END + 0.75)
    with link_path(r.dir, "alice.1").open("a") as f:
        f.write('{"t": 130.0, "ev": "disconn')  # a kill -9 mid-line
    links, errors = read_links(r.dir, ["alice.1", "bob.1"])
    assert errors == [] and links["bob.1"] == []
    assert recovered_in(links["alice.1"], START, END) == pytest.approx(0.75)
    assert recovered_in([], START, END) is None
