"""``node-crash --quick`` end to end (3 relay nodes on the lab's own PostgreSQL and Redis), and
what a Ctrl-C or a ``kill -9`` of the lab leaves: no database, no Redis, no cluster directory.

The lab's PostgreSQL binaries are needed (CI's ``.ci/run`` installs them): without them these
tests skip, or fail with ``TIDINGS_REQUIRE_POSTGRES=1``.
"""

from __future__ import annotations

import io
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tidings.lab import runner
from tidings.lab.checker import format_violations
from tidings.lab.checker_nodes import PG_SENT_FILE
from tidings.lab.record_read import load_run
from tidings.lab.services import services_available, sweep_services

_MISSING = services_available()
if _MISSING is not None and os.environ.get("TIDINGS_REQUIRE_POSTGRES") == "1":
    raise RuntimeError(f"node-crash cannot run: {_MISSING} (TIDINGS_REQUIRE_POSTGRES=1)")

pytestmark = [
    pytest.mark.proc,
    pytest.mark.slow,
    pytest.mark.skipif(_MISSING is not None, reason=_MISSING or ""),
]

#: Seconds a process the kernel was told to kill may take to go.
GONE = 30.0


def _children(pid: int) -> dict[int, str]:
    """The processes whose parent is ``pid``: their command names."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm, rest = text[text.index("(") + 1 : text.rindex(")")], text.rsplit(")", 1)[1].split()
        if int(rest[1]) == pid:
            found[int(stat.parent.name)] = comm
    return found


def _services(pid: int) -> list[int]:
    """The lab's PostgreSQL and Redis (children of the lab process ``pid``)."""
    return [p for p, comm in _children(pid).items() if comm in ("postgres", "redis-server")]


def _wait_gone(pids: list[int]) -> None:
    """Wait (on pidfds, no polling) until every one of ``pids`` has exited."""
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            assert select.select([fd], [], [], GONE)[0], f"{pid} still runs"
        finally:
            os.close(fd)


def test_node_crash_quick_passes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = runner.run_scenario("node-crash", run_dir, quick=True, stream=io.StringIO())
    assert result.ok, format_violations(result)
    c = result.counts
    assert c.sent > 0 and c.acked == c.sent and (c.lost, c.duplicated, c.reordered) == (0, 0, 0)
    faults = {f.kind: f for f in load_run(run_dir).faults}
    assert sorted(faults) == ["kill9", "pg_restart", "redis_down"]
    kill = faults["kill9"]
    assert kill.detail["moved"] and len(kill.detail["moved"]) == kill.detail["before"][kill.target]
    assert sum(kill.detail["after"].values()) == sum(kill.detail["before"].values())
    assert faults["pg_restart"].detail["refused"] >= 0
    rows = json.loads((run_dir / PG_SENT_FILE).read_text())["sent"]
    assert len(rows) >= c.sent  # messages, plus receipts and own-device copies
    assert _services(os.getpid()) == []  # reaped on the way out
    assert not list(Path("/tmp").glob(f"tdlabpg{os.getpid()}_*"))


def _start(out: Path, until: str) -> subprocess.Popen[str]:
    """``lab run node-crash --quick`` until a progress line with ``until``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tidings.cli.main", "lab", "run", "node-crash", "--quick",
         "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + 60
    for line in proc.stderr:
        seen.append(line)
        if until in line or time.monotonic() > deadline:
            break
    assert any(until in line for line in seen), seen
    return proc


def test_ctrl_c_mid_run_stops_the_database_and_redis(tmp_path: Path) -> None:
    proc = _start(tmp_path / "out", "kill -9 of")
    services = _services(proc.pid)
    assert len(services) == 2, _children(proc.pid)
    proc.send_signal(signal.SIGINT)
    assert proc.stderr is not None
    proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 130
    _wait_gone(services)
    assert not list(Path("/tmp").glob(f"tdlabpg{proc.pid}_*"))


def test_a_kill_9_of_the_lab_kills_its_database_and_redis(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _start(out, "kill -9 of")
    services = _services(proc.pid)
    assert len(services) == 2, _children(proc.pid)
    proc.kill()
    proc.wait(timeout=30)
    assert proc.stderr is not None
    proc.stderr.close()
    _wait_gone(services)  # their parent-death signal
    # Its relays and devices outlive it (their own sessions): stop them, as an operator would.
    left = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout
    for pid in left.split():
        os.kill(int(pid), signal.SIGKILL)
    if os.geteuid() == 0:  # the cluster's directory was outside the run: swept at next start
        left_dirs = list(Path("/tmp").glob(f"tdlabpg{proc.pid}_*"))
        assert left_dirs and sorted(sweep_services()) == sorted(left_dirs)
    assert not list(Path("/tmp").glob(f"tdlabpg{proc.pid}_*"))
