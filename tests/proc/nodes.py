"""Several ``tidings server`` processes on one PostgreSQL database: the nodes of one relay.

Each node has its own data directory, port and metrics port (``/healthz``, for a load
balancer's checks), and every node has the first node's ``server.key`` and ``push.key``, copied
before it starts, as an operator gives them (README, "The PostgreSQL store"): devices pin the
relay's key, so a node with a key of its own would be refused as another relay. A node is
started, killed (``kill -9``) and restarted on the same port; every wait is on its output lines.
"""

from __future__ import annotations

import shutil
import sys

from tidings.server.datadir import KEY_FILE, PUSH_KEY_FILE

from .harness import WAIT, Proc, World, free_port, wait_for


class Nodes:
    """``count`` relay nodes of the world ``w`` on the PostgreSQL database ``store``."""

    def __init__(self, w: World, count: int, store: str) -> None:
        self.w = w
        self.store = store
        self.ports = [free_port() for _ in range(count)]
        self.metrics_ports = [free_port() for _ in range(count)]
        self.data_dirs = [w.root / f"node{i}" for i in range(count)]
        self.procs: list[Proc | None] = [None] * count

    def url(self, i: int) -> str:
        return f"ws://127.0.0.1:{self.ports[i]}/v1"

    @property
    def urls(self) -> list[str]:
        return [self.url(i) for i in range(len(self.ports))]

    def start(self, i: int) -> Proc:
        """Start node ``i`` and wait for its ready line (node 0 must have started once before
        any other: its keys are the relay's)."""
        if i > 0:
            self.data_dirs[i].mkdir(mode=0o700, exist_ok=True)
            for name in (KEY_FILE, PUSH_KEY_FILE):
                target = self.data_dirs[i] / name
                if not target.exists():
                    shutil.copy2(self.data_dirs[0] / name, target)  # keeps 0600
        argv = [
            *(sys.executable, "-m", "tidings", "server", "--store", self.store),
            *("--data-dir", str(self.data_dirs[i]), "--port", str(self.ports[i])),
            *("--metrics-port", str(self.metrics_ports[i]), "--json", "--log-level", "info"),
            *("--rate", "10000", "--burst", "10000", "--new-account-age", "0"),
        ]
        proc = self.w.spawn(f"node{i}", argv)
        wait_for([proc], lambda: proc.count("event") > 0, WAIT, f"node {i} to listen")
        ready = proc.lines[0]
        assert ready["event"] == "listening" and ready["url"] == self.url(i), ready
        self.procs[i] = proc
        return proc

    def kill(self, i: int) -> None:
        """``kill -9`` node ``i``: nothing is flushed, its connections die with it."""
        proc = self.procs[i]
        assert proc is not None
        proc.kill()
        self.procs[i] = None

    def key(self, i: int) -> str:
        """The relay key node ``i`` announced (hex)."""
        proc = self.procs[i]
        assert proc is not None
        key: str = proc.lines[0]["key"]
        return key
