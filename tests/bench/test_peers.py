"""The relay bench's peers really run: a tiny workload against each peer system, end to end.

``python bench/relay_bench.py --peers NAME --skip-tidings`` with 2 pairs × 20 messages starts the
peer's own server on a free loopback port, its clients in a worker process, and must come back
with every message relayed and every receipt back at its sender, the server's CPU and RSS read.
A peer that is not installed (its server, or the ``bench`` extra's client library) skips the
test, unless ``TIDINGS_REQUIRE_PEERS`` is set: ``.ci/run`` sets it and installs them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.proc

BENCH = Path(__file__).resolve().parents[2] / "bench" / "relay_bench.py"
#: peer → (its server program, the client library its worker imports, its Debian package).
PEERS = {
    "mosquitto": ("mosquitto", "aiomqtt", "mosquitto"),
    "prosody": ("prosody", "slixmpp", "prosody"),
}
PAIRS, MESSAGES, IDLE = 2, 20, 4
#: The whole run (server start, logins, workload, idle connections, stop) takes a few seconds.
RUN_TIMEOUT = 120


def require(peer: str) -> None:
    program, library, package = PEERS[peer]
    missing = []
    if shutil.which(program) is None:
        missing.append(f"{program} (apt-get install {package})")
    if importlib.util.find_spec(library) is None:
        missing.append(f"{library} (pip install -e '.[bench]')")
    if missing:
        reason = f"not installed: {', '.join(missing)}"
        if os.environ.get("TIDINGS_REQUIRE_PEERS"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.mark.parametrize("peer", sorted(PEERS))
def test_peer_relays_every_message_and_receipt(peer: str, tmp_path: Path) -> None:
    require(peer)
    out = tmp_path / "peers.json"
    argv = [sys.executable, str(BENCH), "--peers", peer, "--skip-tidings"]
    argv += ["--pairs", str(PAIRS), "--messages", str(MESSAGES), "--idle", str(IDLE)]
    argv += ["--pairs-per-process", "1", "--timeout", "60", "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)
    assert done.returncode == 0, done.stdout + done.stderr

    report = json.loads(out.read_text())
    assert report["complete"] is True
    assert report["config"]["order"] == [peer]
    (run,) = report["systems"][peer]["runs"]
    counts = run["counts"]
    expected = PAIRS * MESSAGES
    assert counts["expected"] == counts["sent"] == expected
    assert counts["relayed_messages"] == counts["relayed_receipts"] == expected
    assert run["setup"]["server_pid"] > 0
    assert run["server_cpu"]["total_s"] >= 0
    assert run["idle_connections"]["connections"] == IDLE
    assert run["idle_connections"]["rss_after_kib"] > 0
    assert run["system"]["name"] == peer
    assert report["systems"][peer]["persists"]
    assert f"{peer} persists:" in done.stdout
