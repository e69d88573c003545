"""Ctrl-C in the middle of a named-relay scenario (``dns-failure``): the run unwinds and
removes what it made for the name — the resolver process, the ``/etc/netns`` directories — as
well as the namespaces (with their routes) and every device and relay process."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tidings.lab.netns import kernel_faults_available
from tidings.lab.netns_cmd import NETNS_ETC

_KERNEL = kernel_faults_available()


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


@pytest.mark.proc
@pytest.mark.skipif(_KERNEL is not None, reason=_KERNEL or "")
def test_ctrl_c_mid_dns_failure_leaves_no_resolver_etc_or_namespace(tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "tidings.cli.main", "lab", "run", "dns-failure", "--quick"]
    proc = subprocess.Popen(
        [*argv, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + 60
    for line in proc.stderr:  # the resolver is failing once this line is out
        seen.append(line)
        if "] resolver: timeout" in line or time.monotonic() > deadline:
            break
    assert any("] resolver: timeout" in line for line in seen), seen
    mine = [n for n in _namespaces() if n.startswith(f"tdl{proc.pid}_")]
    assert mine and any((NETNS_ETC / n / "resolv.conf").is_file() for n in mine)
    resolvers = subprocess.run(
        ["ip", "netns", "pids", next(n for n in mine if n.endswith("s"))],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert len(resolvers) >= 2  # the relay and the resolver
    proc.send_signal(signal.SIGINT)
    proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 130
    assert not [n for n in _namespaces() if n.startswith(f"tdl{proc.pid}_")]
    assert not [n for n in mine if (NETNS_ETC / n).exists()]
    for pid in resolvers:
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or ") Z " in stat.read_text(), f"{pid} still runs"
    left = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout
    assert left.strip() == "", f"processes left behind: {left}"
