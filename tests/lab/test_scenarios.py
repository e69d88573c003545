"""The fault lab's scenarios, run for real in their quick variants, and ``tidings lab``.

Each quick scenario starts a relay and device processes, injects its faults, settles and runs
the checker: it must pass with nothing lost, duplicated or reordered. Kernel scenarios need
network namespaces (root) and are skipped elsewhere. Nothing sleeps to wait for something: the
runner waits on the processes' lines with deadlines; only fault windows take wall time.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tidings.cli.main import main
from tidings.lab import runner
from tidings.lab.netns import kernel_faults_available
from tidings.lab.record import RECORD_FILE, Fault, Settled
from tidings.lab.record_read import load_run
from tidings.lab.scenarios import SCENARIOS

_KERNEL = kernel_faults_available()


def _params(names: list[str]) -> list[object]:
    return [
        pytest.param(
            n,
            marks=pytest.mark.skipif(
                SCENARIOS[n].kernel and _KERNEL is not None, reason=_KERNEL or ""
            ),
        )
        for n in names
    ]


@pytest.mark.proc
@pytest.mark.parametrize("name", _params(list(SCENARIOS)))
def test_quick_scenario_passes_the_checker(name: str, tmp_path: Path) -> None:
    run_dir = tmp_path / name
    result = runner.run_scenario(name, run_dir, quick=True)
    assert result.ok, [v.detail for v in result.violations]
    c = result.counts
    assert c.sent > 0 and c.acked == c.sent
    assert (c.lost, c.duplicated, c.reordered) == (0, 0, 0)
    record = load_run(run_dir)
    assert not record.errors
    assert record.faults, "every scenario injects at least one fault"
    assert all(isinstance(f, Fault) and f.start <= (f.end or f.start) for f in record.faults)
    assert isinstance(record.settled, Settled) and result.settled
    assert (run_dir / runner.REPORT_FILE).read_text().startswith("<!DOCTYPE html>")
    if name == "offline-for-days":
        assert c.expired > 0  # what passed the retention was reported ✗ to its sender


def test_lab_list_names_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "list"]) == 0
    out = capsys.readouterr().out
    for name, s in SCENARIOS.items():
        line = next(x for x in out.splitlines() if x.startswith(name + " "))
        assert s.description in line
        assert ("unavailable" in line) == (s.kernel and _KERNEL is not None)


def test_lab_list_marks_kernel_scenarios_unavailable_without_root(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "kernel_faults_available", lambda: "not root")
    assert main(["lab", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    for name, s in SCENARIOS.items():
        line = next(x for x in out if x.startswith(name + " "))
        assert ("[unavailable: not root]" in line) == s.kernel


def test_lab_run_refuses_an_unknown_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "run", "no-such-thing", "--quick"]) == 2
    assert "unknown scenario" in capsys.readouterr().out


@pytest.mark.proc
def test_lab_run_prints_the_table_and_the_report_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["lab", "run", "client-crash", "--quick", "--seed", "7", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "client-crash" in text and "PASS" in text
    assert f"report: {out / runner.REPORT_FILE}" in text
    assert (out / runner.REPORT_FILE).is_file()
    assert (out / "client-crash" / RECORD_FILE).is_file()


@pytest.mark.proc
@pytest.mark.skipif(_KERNEL is not None, reason=_KERNEL or "")
def test_ctrl_c_mid_run_leaves_no_namespace_rule_or_process(tmp_path: Path) -> None:
    """SIGINT while faults are injected (loss rules in namespaces, a dead zone coming): the
    run unwinds and removes every namespace (with its veths and nft tables) and process."""
    out = tmp_path / "out"
    before = set(
        subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tidings.cli.main",
            "lab",
            "run",
            "mixed",
            "--quick",
            "--out",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + 60
    for line in proc.stderr:  # each progress line as it comes; the loss line means faults are on
        seen.append(line)
        if "] loss " in line or time.monotonic() > deadline:
            break
    assert any("] loss " in line for line in seen), seen
    namespaces = set(
        subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    )
    assert any(n.startswith(f"tdl{proc.pid}") for n in namespaces - before)
    proc.send_signal(signal.SIGINT)
    proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 130
    after = set(
        subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    )
    assert not any(n.startswith(f"tdl{proc.pid}") for n in after)
    left = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout
    assert left.strip() == "", f"processes left behind: {left}"
