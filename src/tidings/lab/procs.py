"""The lab's relay and device processes (:class:`ServerProc`, :class:`DeviceProc`).

Both are :class:`~tidings.lab.proc_base.Proc` children (JSON lines on stdout, deadlines on every
wait, reaped by their registry); the base's names are importable from here too.

Invariants:

- A restarted relay listens on the same port as the first start (picked by the OS when ``port``
  is 0), so devices reconnect to the URL they registered with.
- A device's options (clock skew, reconnect hints, client settings, connection log) are
  attributes read at each start, so a scenario sets them before it starts the device.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .proc_base import (
    DEFAULT_REGISTRY,
    WAIT,
    LabProcError,
    Proc,
    ProcRegistry,
    child_env,
    reap_all,
    wait_until,
)

__all__ = [
    "DEFAULT_REGISTRY",
    "WAIT",
    "DeviceProc",
    "LabProcError",
    "Proc",
    "ProcRegistry",
    "ServerProc",
    "child_env",
    "reap_all",
    "wait_until",
]


class ServerProc(Proc):
    """``tidings server`` on a data directory; restarts keep the data and the port.

    Args:
        data_dir: the relay's data directory (database and key).
        log_dir: where its stdout/stderr go.
        host: listening address.
        port: listening port; 0 lets the OS pick one at the first start.
        clock_file: the lab clock (:class:`~tidings.lab.clock.LabClock`) file, if any.
        args: more ``tidings server`` flags (``--rate``, ``--retention``, …).
        name, argv_prefix, env, registry: as :class:`Proc`.
    """

    def __init__(
        self,
        data_dir: Path,
        log_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock_file: Path | None = None,
        args: Sequence[str] = (),
        name: str = "server",
        argv_prefix: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        registry: ProcRegistry | None = None,
    ) -> None:
        super().__init__(name, log_dir, argv_prefix=argv_prefix, env=env, registry=registry)
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self.clock_file = clock_file
        self.args = list(args)
        self.ready: dict[str, Any] = {}

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "tidings", "server", "--json"]
        argv += ["--data-dir", str(self.data_dir), "--host", self.host, "--port", str(self.port)]
        if "--metrics-port" not in self.args:
            argv += ["--metrics-port", "0"]
        if self.clock_file is not None:
            argv += ["--clock-file", str(self.clock_file)]
        return argv + self.args

    @property
    def url(self) -> str:
        """The relay's WebSocket URL (known once it listened)."""
        url = self.ready.get("url")
        if not isinstance(url, str):
            raise LabProcError(f"{self.name} has not listened yet")
        return url

    def start(self, timeout: float = WAIT) -> None:
        """Start the relay and wait for its ready line; keep its port for restarts."""
        self.spawn()
        self.ready = self.wait_line("event", timeout)
        if self.ready.get("event") != "listening":
            raise LabProcError(f"{self.name}: unexpected first line\n{self.describe()}")
        self.port = urlparse(self.url).port or self.port


class DeviceProc(Proc):
    """A device process (:mod:`tidings.lab.device`) on a registered home.

    Args:
        home: the device's home (registered, e.g. by :meth:`Workload.setup`).
        events: the device's events file (JSON lines, appended across restarts).
        plan: the plan file (JSON, :meth:`Workload.write_plans`).
        log_dir: where its stdout/stderr go.
        name: the device, ``account.N``: the plan entry it follows.
        clock_file: the lab clock file, if any.
        clock_skew: seconds this device's clock runs ahead of the lab clock (negative: behind),
            from its start; :meth:`skew` steps it while it runs.
        hints: tell the client when the network is back (``reconnect_now()``); ``False``: its
            own backoff is all that reconnects it (``--no-hints``).
        settings: client settings, name → value (``--set``).
        link_log: its connection log (``--link-log``), if any.
        argv_prefix, env, registry: as :class:`Proc`.
    """

    def __init__(
        self,
        home: Path,
        events: Path,
        plan: Path,
        log_dir: Path,
        *,
        name: str,
        clock_file: Path | None = None,
        clock_skew: float = 0.0,
        hints: bool = True,
        settings: Mapping[str, str] | None = None,
        link_log: Path | None = None,
        argv_prefix: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        registry: ProcRegistry | None = None,
    ) -> None:
        super().__init__(name, log_dir, argv_prefix=argv_prefix, env=env, registry=registry)
        self.hints = hints
        self.settings = dict(settings or {})
        self.link_log = link_log
        self.home = home
        self.events = events
        self.plan = plan
        self.clock_file = clock_file
        self.clock_skew = clock_skew

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "tidings.lab.device", "--home", str(self.home)]
        argv += ["--events", str(self.events), "--plan", str(self.plan), "--name", self.name]
        if self.clock_file is not None:
            argv += ["--clock-file", str(self.clock_file)]
        if self.clock_skew:
            argv += ["--clock-skew", repr(self.clock_skew)]
        if not self.hints:
            argv.append("--no-hints")
        for key, value in self.settings.items():
            argv += ["--set", f"{key}={value}"]
        if self.link_log is not None:
            argv += ["--link-log", str(self.link_log)]
        return argv

    def start(self, timeout: float = WAIT) -> None:
        """Start the device and wait for its ``ready`` line."""
        self.spawn()
        self.wait_line("ready", timeout)

    def progress(self) -> tuple[int, int, int]:
        """``(composed, received, delivered)`` from its last progress line."""
        line = self.last("progress") or {"progress": 0, "received": 0, "delivered": 0}
        return int(line["progress"]), int(line["received"]), int(line["delivered"])

    def reconnect(self) -> None:
        """Tell the device the network is back (``Client.reconnect_now``); nothing when it
        runs without hints (:attr:`hints`)."""
        if self.hints:
            self.write({"cmd": "reconnect"})

    def skew(self, seconds: float, timeout: float = WAIT) -> None:
        """Step the running device's clock to the lab clock plus ``seconds`` (kept for its
        restarts too) and wait until it says so."""
        since = len(self.lines)
        self.clock_skew = seconds
        self.write({"cmd": "skew", "seconds": seconds})
        self.wait_line("skewed", timeout, since)

    def link_code(self, timeout: float = WAIT) -> bytes:
        """A link code for a new device of this device's account, from its relay."""
        since = len(self.lines)
        self.write({"cmd": "link_code"})
        return bytes.fromhex(str(self.wait_line("link_code", timeout, since)["link_code"]))

    def unlink(self, device_id: int, timeout: float = WAIT) -> None:
        """Remove device ``device_id`` of this device's account; wait for the relay's answer."""
        since = len(self.lines)
        self.write({"cmd": "unlink", "device_id": device_id})
        wait_until(
            lambda: (
                self.find("unlinked", since) is not None or self.find("error", since) is not None
            ),
            timeout,
            "unlinked",
            self,
        )
        if self.find("unlinked", since) is None:
            raise LabProcError(f"{self.name}: unlink refused: {self.find('error', since)}")

    def push_register(
        self, endpoint: str, p256dh: bytes, auth: bytes, timeout: float = WAIT
    ) -> None:
        """Register the device's Web Push subscription with the relay; wait for its answer."""
        since = len(self.lines)
        self.write(
            {"cmd": "push", "endpoint": endpoint, "p256dh": p256dh.hex(), "auth": auth.hex()}
        )
        line = self.wait_line("push", timeout, since)
        if line.get("push") != 1:
            raise LabProcError(f"{self.name}: push registration not active: {line}")

    def finish(self, timeout: float = WAIT) -> dict[str, Any]:
        """Stop composing, let it drain its outbox and exit; its ``finished`` counts."""
        since = len(self.lines)
        self.write({"cmd": "finish"})
        line = self.wait_line("finished", timeout, since)
        code = self.wait_exit(timeout)
        if code != 0:
            raise LabProcError(f"{self.name} exited {code}\n{self.describe()}")
        result: dict[str, Any] = line["finished"]
        return result
