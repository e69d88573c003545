"""The shipped load-balancer example, docs/haproxy.cfg (issue 14): ``haproxy -c`` accepts it,
and the file itself — its addresses replaced by free loopback ports — runs in front of two relay
nodes on one PostgreSQL database: a device that knows the relay by the balancer's one URL
survives ``kill -9`` of the node it is on and receives every message, once and in order.

HAProxy is started with ``-D`` (its launcher exits once the listeners are bound: the moment to
go on, no sleep) and stopped by the PID it wrote. Without an ``haproxy`` binary these tests skip
saying why; with ``TIDINGS_REQUIRE_HAPROXY=1`` (set by ``.ci/run``, which installs it) they fail
instead. The PostgreSQL database is created and dropped as in tests/pgdb.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import select
import shutil
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import pgdb
from tidings.client import register

from .checks import check_exactly_once, has, sender_messages, wait_all_succeed
from .harness import WAIT, free_port, wait_for, world
from .nodes import Nodes

pytestmark = [pytest.mark.proc, pytest.mark.slow]

#: The shipped example.
CONFIG = Path(__file__).resolve().parents[2] / "docs" / "haproxy.cfg"
HAPROXY = shutil.which("haproxy") or (
    "/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None
)
#: The node lines of the shipped file, replaced by the test's nodes.
SERVER_LINE = re.compile(r"^    server node\d+ \S+\n", re.MULTILINE)


def need_haproxy() -> str:
    if HAPROXY is None:
        reason = "haproxy is not installed (apt-get install haproxy)"
        if os.environ.get("TIDINGS_REQUIRE_HAPROXY") == "1":
            pytest.fail(reason + " and TIDINGS_REQUIRE_HAPROXY=1")
        pytest.skip(reason)
    return HAPROXY


def test_the_shipped_config_is_valid() -> None:
    done = subprocess.run(
        [need_haproxy(), "-c", "-f", str(CONFIG)], capture_output=True, text=True, timeout=WAIT
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Configuration file is valid" in done.stdout
    assert "WARNING" not in done.stdout + done.stderr, done.stdout + done.stderr


def local_config(nodes: Nodes, port: int) -> str:
    """docs/haproxy.cfg on loopback: its bind on ``port``, its servers the test's nodes, and
    ``maxconn`` 1,000 (100,000 needs a file-descriptor limit of 200,000, which a test machine's
    shell need not have)."""
    text = CONFIG.read_text()
    assert text.count("\n    maxconn 100000\n") == 1
    text = text.replace("\n    maxconn 100000\n", "\n    maxconn 1000\n")
    assert text.count("\n    bind :7400\n") == 1
    text = text.replace("\n    bind :7400\n", f"\n    bind 127.0.0.1:{port}\n")
    assert len(SERVER_LINE.findall(text)) == 3
    servers = "".join(
        f"    server node{i} 127.0.0.1:{p} port {m}\n"
        for i, (p, m) in enumerate(zip(nodes.ports, nodes.metrics_ports, strict=True))
    )
    first = SERVER_LINE.search(text)
    assert first is not None
    text = SERVER_LINE.sub("", text)
    return text[: first.start()] + servers + text[first.start() :]


class HAProxy:
    """``haproxy -D`` on a config file; stopped by its PID."""

    def __init__(self, binary: str, config: Path) -> None:
        pidfile = config.with_suffix(".pid")
        done = subprocess.run(
            [binary, "-D", "-p", str(pidfile), "-f", str(config)],
            capture_output=True,
            text=True,
            timeout=WAIT,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        self.pid = int(pidfile.read_text().split()[0])

    def stop(self) -> None:
        """SIGTERM, and wait (on a pidfd: it is not our child) until it is gone."""
        try:
            fd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
            readable, _, _ = select.select([fd], [], [], WAIT)
            if not readable:
                os.kill(self.pid, signal.SIGKILL)
        finally:
            os.close(fd)


def connections(nodes: Nodes, i: int) -> int:
    """Node ``i``'s open client connections (its ``tidings_connections`` gauge)."""
    url = f"http://127.0.0.1:{nodes.metrics_ports[i]}/metrics"
    with urllib.request.urlopen(url, timeout=WAIT) as answer:
        text = answer.read().decode()
    (value,) = re.findall(r"^tidings_connections (\S+)$", text, re.MULTILINE)
    return int(float(value))


@pytest.fixture
def database() -> Iterator[str]:
    name = pgdb.create_database_sync("tidings_haproxy")
    try:
        yield pgdb.url_of(name)
    finally:
        pgdb.drop_database_sync(name)


def test_a_device_behind_haproxy_survives_kill9_of_its_node(tmp_path: Path, database: str) -> None:
    binary = need_haproxy()
    with world(tmp_path, store=database) as w:
        nodes = Nodes(w, 2, database)
        nodes.start(0)
        nodes.start(1)
        port = free_port()
        config = tmp_path / "haproxy.cfg"
        config.write_text(local_config(nodes, port))
        lb = HAProxy(binary, config)
        try:
            through = f"ws://127.0.0.1:{port}/v1"
            bob = tmp_path / "bob"
            asyncio.run(register(bob, [through], "bob"))  # through the balancer
            receiver = w.driver("receiver", bob, "receive", "--peer", "alice", "--count", "8")
            wait_for([receiver], has(receiver, "connected", 1), WAIT, "bob through haproxy")
            counts = [connections(nodes, 0), connections(nodes, 1)]
            assert sorted(counts) == [0, 1], counts
            victim = counts.index(1)
            survivor = 1 - victim
            alice = tmp_path / "alice"
            asyncio.run(register(alice, [nodes.url(survivor)], "alice"))
            sender = w.driver("sender", alice, "send", "--to", "bob", "--count", "5")
            wait_all_succeed([sender], "5 sends acked on the surviving node")

            nodes.kill(victim)  # bob's node: kill -9
            wait_for([receiver], has(receiver, "connected", 2), WAIT, "bob back through haproxy")
            assert receiver.values("url") == [through, through]
            assert connections(nodes, survivor) >= 1
            more = w.driver("sender", alice, "send", "--to", "bob", "--count", "3", "--prefix", "b")
            wait_all_succeed([more, receiver], "catch-up and live on the surviving node")
        finally:
            lb.stop()
    out = sender_messages(alice)
    assert len(out) == 8
    check_exactly_once(bob, out, [receiver], "haproxy, kill -9 of the device's node")
