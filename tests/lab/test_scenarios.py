"""``tidings lab``: listing the scenarios, refusing unknown ones, and Ctrl-C mid-run.

Every quick scenario is run once in the suite, by ``tests/test_readme.py``: the README's
``tidings lab run all --quick`` from a scratch working directory (its default, relative
``--out``), whose run directories are then checked per scenario (nothing lost, duplicated or
reordered; faults and ``settled`` recorded; a report), and the README's run of one scenario
with a relative ``--out``. Kernel scenarios need network namespaces (root) and are skipped
elsewhere. Nothing sleeps to wait for something: the runner waits on the processes' lines with
deadlines; only fault windows take wall time.
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
from tidings.lab.record import RECORD_FILE
from tidings.lab.scenarios import SCENARIOS

_KERNEL = kernel_faults_available()


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
    assert "unknown scenario" in capsys.readouterr().err


def test_lab_run_into_an_out_holding_a_run_refuses_and_leaves_it_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's ``--out ./lab-runs/x`` given twice: one line on stderr, exit 1, nothing
    run, and the first run's record and reports untouched (not checked again, not emptied)."""
    monkeypatch.chdir(tmp_path)
    old = tmp_path / "lab-runs" / "x"
    (old / "server-crash").mkdir(parents=True)
    (old / "server-crash" / RECORD_FILE).write_text("the first run\n")
    (old / "server-crash" / runner.REPORT_FILE).write_text("first report")
    (old / runner.REPORT_FILE).write_text("first summary")
    code = main(["lab", "run", "server-crash", "--quick", "--out", "./lab-runs/x"])
    out, err = capsys.readouterr()
    assert code == 1
    assert err.splitlines() == [
        f"tidings lab: {old.resolve() / 'server-crash'} already holds a run: give another --out"
    ]
    assert out == ""
    assert (old / "server-crash" / RECORD_FILE).read_text() == "the first run\n"
    assert (old / "server-crash" / runner.REPORT_FILE).read_text() == "first report"
    assert (old / runner.REPORT_FILE).read_text() == "first summary"
    assert sorted(p.name for p in (old / "server-crash").iterdir()) == [RECORD_FILE, "report.html"]
    with pytest.raises(FileExistsError):
        runner.run_scenario("server-crash", old / "server-crash", quick=True)
    assert (old / "server-crash" / runner.REPORT_FILE).read_text() == "first report"


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
