"""``disk-full`` leaves no tmpfs mounted: after Ctrl-C mid-fault, and after a ``kill -9`` of the
lab (swept at the next start). The scenario itself runs in the quick suite
(tests/test_readme.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tidings.lab.mounts import lab_mounts, mounts_available, sweep_mounts

pytestmark = pytest.mark.skipif(mounts_available() is not None, reason=str(mounts_available()))


def _start(out: Path) -> tuple[subprocess.Popen[str], list[str]]:
    """Run disk-full --quick until the relay's disk is full (its tmpfs mounts are up)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tidings.cli.main", "lab", "run", "disk-full", "--quick",
         "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + 60
    for line in proc.stderr:
        seen.append(line)
        if "disk is full" in line or time.monotonic() > deadline:
            break
    assert any("disk is full" in line for line in seen), seen
    return proc, seen


def _mine(pid: int) -> list[Path]:
    return [point for source, point in lab_mounts() if source.startswith(f"tdlab{pid}_")]


def test_ctrl_c_mid_disk_full_unmounts_everything(tmp_path: Path) -> None:
    proc, _ = _start(tmp_path / "out")
    assert len(_mine(proc.pid)) == 2  # the relay's data directory and a device's home
    proc.send_signal(signal.SIGINT)
    assert proc.stderr is not None
    proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 130
    assert _mine(proc.pid) == []
    run = tmp_path / "out" / "disk-full"
    assert (run / "relay" / "relay.db").exists() and (
        run / "homes" / "bob.1" / "client.db"
    ).exists()


def test_mounts_left_by_a_kill_9_of_the_lab_are_swept(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc, _ = _start(out)
    points = _mine(proc.pid)
    assert len(points) == 2
    proc.kill()
    proc.wait(timeout=30)
    assert proc.stderr is not None
    proc.stderr.close()
    # Its relay and devices outlive it (their own sessions): stop them, as an operator would.
    left = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout
    for pid in left.split():
        os.kill(int(pid), signal.SIGKILL)
    assert sorted(sweep_mounts()) == sorted(points)
    assert _mine(proc.pid) == []
    assert (out / "disk-full" / "relay" / "relay.db").exists()
