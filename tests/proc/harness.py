"""Real processes for the crash tests: start them, follow their JSON lines, kill them.

Nothing here sleeps: every wait is a ``select()`` on the processes' stdout pipes with a deadline
(CONVENTIONS §11), so a test moves on the moment a process printed what it waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from tidings.client import register

#: The client driver program (run by path: it only imports ``tidings``).
DRIVER = Path(__file__).with_name("driver.py")

#: Default deadline of one wait, in seconds: generous, a healthy run needs a fraction of it.
WAIT = 30.0


def free_port() -> int:
    """A TCP port that was free a moment ago (the relay must keep one port across restarts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env() -> dict[str, str]:
    """This environment without ``TIDINGS_*``: the children are configured by flags only (the
    relay refuses unknown ``TIDINGS_*`` variables, e.g. the tests' ``TIDINGS_PROC_SEED``)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}


class Proc:
    """A child process whose stdout is a stream of JSON lines, read into :attr:`lines`."""

    def __init__(
        self, name: str, argv: Sequence[str], log_dir: Path, *, stdin: bool = False
    ) -> None:
        self.name = name
        self.stderr_path = log_dir / f"{name}.stderr"
        self._copy = (log_dir / f"{name}.stdout").open("ab")  # for post-mortems
        with self.stderr_path.open("wb") as err:
            self.popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                env=child_env(),
            )
        assert self.popen.stdout is not None
        self._out: IO[bytes] = self.popen.stdout
        self._buf = b""
        self.lines: list[dict[str, Any]] = []
        self.eof = False

    def fileno(self) -> int:
        return self._out.fileno()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def read_available(self) -> None:
        """Read what the pipe holds (call when ``select`` says it is readable)."""
        data = os.read(self.fileno(), 1 << 16)
        self._copy.write(data)
        if not data:
            self.eof = True
            if self._buf:
                self._add(self._buf)
                self._buf = b""
            return
        *complete, self._buf = (self._buf + data).split(b"\n")
        for raw in complete:
            self._add(raw)

    def _add(self, raw: bytes) -> None:
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = {"raw": raw.decode(errors="replace")}
        self.lines.append(obj if isinstance(obj, dict) else {"raw": obj})

    def values(self, key: str) -> list[Any]:
        """The values of ``key`` in the lines that have it, in order."""
        return [line[key] for line in self.lines if key in line]

    def count(self, key: str) -> int:
        return sum(1 for line in self.lines if key in line)

    def write_line(self, text: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(text.encode() + b"\n")
        self.popen.stdin.flush()

    def drain(self) -> None:
        """Read to EOF (the process is gone or about to be: blocking reads end)."""
        while not self.eof:
            self.read_available()

    def kill(self) -> None:
        """``kill -9``, reap it, and read what it printed before it died."""
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait()
        self.drain()

    def terminate(self, timeout: float = WAIT) -> int:
        """SIGTERM (graceful stop); wait for the exit and return its code."""
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
        return self.wait_exit(timeout)

    def wait_exit(self, timeout: float = WAIT) -> int:
        """Wait until the process closed its stdout and exited; return its exit code."""
        wait_for([self], lambda: self.eof, timeout, f"{self.name} to exit")
        return self.popen.wait(timeout)

    def cleanup(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.popen.wait()
        self._out.close()
        self._copy.close()
        if self.popen.stdin is not None:
            self.popen.stdin.close()

    def describe(self) -> str:
        """The last lines and the stderr tail, for a failure message."""
        tail = self.lines[-5:]
        try:
            err = self.stderr_path.read_text(errors="replace")[-3000:]
        except OSError:
            err = ""
        return (
            f"--- {self.name} pid={self.pid} rc={self.popen.poll()} "
            f"lines={len(self.lines)} last={tail}\n{err}"
        )


class Source(Protocol):
    """What :func:`wait_for` reads: a :class:`Proc`, or another line source on a descriptor
    (a subscription to a daemon's API socket)."""

    name: str
    eof: bool

    def fileno(self) -> int: ...
    def read_available(self) -> None: ...
    def describe(self) -> str: ...


def wait_for(procs: Sequence[Source], cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Read the processes' output until ``cond()`` holds; fail after ``timeout`` seconds.

    All of ``procs`` are read while waiting, so none of them blocks on a full pipe.
    """
    deadline = time.monotonic() + timeout
    while not cond():
        remaining = deadline - time.monotonic()
        live = [p for p in procs if not p.eof]
        if remaining <= 0 or not live:
            why = "timed out" if remaining <= 0 else "every process ended"
            details = "\n".join(p.describe() for p in procs)
            raise AssertionError(f"{why} waiting for {what}\n{details}")
        readable, _, _ = select.select(live, [], [], remaining)
        for p in readable:
            p.read_available()


class World:
    """One relay (restartable on the same data dir and port) and the processes of a test."""

    def __init__(self, root: Path, *, rate: float = 10_000.0, store: str | None = None) -> None:
        self.root = root
        #: ``--store`` of the relay (a PostgreSQL URL), or ``None``: SQLite in ``data_dir``.
        self.store = store
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.data_dir = root / "relay"
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/v1"
        self.rate = rate
        self.procs: list[Proc] = []
        self.server: Proc | None = None
        self._names: dict[str, int] = {}

    def spawn(self, name: str, argv: Sequence[str], *, stdin: bool = False) -> Proc:
        n = self._names[name] = self._names.get(name, 0) + 1
        proc = Proc(f"{name}-{n}", argv, self.logs, stdin=stdin)
        self.procs.append(proc)
        return proc

    # ------------------------------------------------------------ the relay

    def start_server(self) -> Proc:
        """Start ``tidings server`` and wait for its ready line; the URL never changes."""
        argv = [
            *(sys.executable, "-m", "tidings", "server"),
            *("--data-dir", str(self.data_dir), "--port", str(self.port)),
            *("--metrics-port", "0", "--json", "--log-level", "info"),
            # The default 20 sends/s per account would make a 300-message stream take 15 s
            # of rate-limit backoff; these tests are about crashes, not about back-pressure.
            *("--rate", str(self.rate), "--burst", str(int(self.rate))),
            # Every account here is seconds old: the new-account budget (2/s) would apply.
            *("--new-account-age", "0"),
            *(("--store", self.store) if self.store else ()),
        ]
        server = self.spawn("server", argv)
        wait_for([server], lambda: server.count("event") > 0, WAIT, "the relay to listen")
        ready = server.lines[0]
        assert ready["event"] == "listening" and ready["url"] == self.url, ready
        self.server = server
        return server

    def kill_server(self) -> None:
        assert self.server is not None
        self.server.kill()
        self.server = None

    def stop_server(self) -> int:
        assert self.server is not None
        code = self.server.terminate()
        self.server = None
        return code

    # ------------------------------------------------------------ clients

    def register(self, account: str) -> Path:
        """Register ``account`` (device 1) in a new home; the relay must be running."""
        home = self.root / account
        asyncio.run(register(home, self.url, account))
        return home

    def driver(
        self, name: str, home: Path, *args: str, stdin: bool = False, deadline: float = 45
    ) -> Proc:
        argv = [sys.executable, str(DRIVER), "--home", str(home), "--deadline", str(deadline)]
        argv += args
        return self.spawn(name, argv, stdin=stdin)

    def tidings(self, name: str, home: Path, *args: str) -> Proc:
        """Run ``tidings ARGS --home HOME --json`` (a CLI command on a device home)."""
        argv = [sys.executable, "-m", "tidings", *args, "--home", str(home), "--json"]
        return self.spawn(name, argv)

    def cleanup(self) -> None:
        for proc in self.procs:
            proc.cleanup()


@contextlib.contextmanager
def world(root: Path, *, store: str | None = None) -> Iterator[World]:
    """A :class:`World` whose processes are all killed at the end, whatever happened."""
    w = World(root, store=store)
    try:
        yield w
    finally:
        w.cleanup()
