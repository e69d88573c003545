"""The relay process under abuse: a connection flood past its limit of open files, and ``kill -9``
while it creates its key on first start. Real ``tidings server`` processes (uvloop, picows'
transports), loopback only; every wait is on the process's output or a deadline, never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tidings.client import register
from tidings.noise import public_key

from .harness import WAIT, child_env, free_port

pytestmark = [pytest.mark.proc, pytest.mark.slow]

#: The relay's limit of open files in the flood test: its cap is then 256 - 164 = 92.
FD_LIMIT = 256
#: Idle connects in the flood: more than the limit of open files.
FLOOD = 300
#: Source addresses of the flood (127.0.0.0/8 is all loopback): more than enough that the
#: refusing slots fill up (4 per address, 64 in all) and the relay reaches the point of pausing.
SOURCES = [f"127.0.0.{n}" for n in range(2, 32)]
#: Generous: the flood costs the relay well under a second of CPU; the old accept loop spent
#: all of this and more spinning on EMFILE.
CPU_BOUND = 3.0
#: kill -9 tries during the first start (each two relay starts: 8 land in the window often enough).
KILL_TRIES = 8


class Relay:
    """``tidings server --json`` with its stdout (the ready line) and stderr (logs) followed."""

    def __init__(self, data: Path, *args: str, fd_limit: int | None = None) -> None:
        def lower() -> None:
            if fd_limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

        self.popen = subprocess.Popen(
            [sys.executable, "-m", "tidings", "server", "--data-dir", str(data), "--json", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(),
            preexec_fn=lower,
        )
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self.streams: dict[int, tuple[IO[bytes], bytearray]] = {
            f.fileno(): (f, bytearray()) for f in (self.popen.stdout, self.popen.stderr)
        }
        self.ready: dict[str, Any] = {}

    @property
    def out(self) -> str:
        return self.streams[self._fd(self.popen.stdout)][1].decode(errors="replace")

    @property
    def err(self) -> str:
        return self.streams[self._fd(self.popen.stderr)][1].decode(errors="replace")

    @staticmethod
    def _fd(stream: IO[bytes] | None) -> int:
        assert stream is not None
        return stream.fileno()

    def wait_for(self, what: str, in_err: bool = False, timeout: float = WAIT) -> None:
        """Read both streams until ``what`` appears on stdout (or stderr)."""
        deadline = time.monotonic() + timeout
        while what not in (self.err if in_err else self.out):
            left = deadline - time.monotonic()
            open_fds = [fd for fd, (f, _) in self.streams.items() if not f.closed]
            assert left > 0 and open_fds, f"no {what!r}; stdout {self.out!r} stderr {self.err!r}"
            for fd in select.select(open_fds, [], [], left)[0]:
                data = os.read(fd, 1 << 16)
                if data:
                    self.streams[fd][1].extend(data)
                else:
                    self.streams[fd][0].close()

    def start(self) -> dict[str, Any]:
        self.wait_for('"event": "listening"')
        self.ready = json.loads(self.out.splitlines()[0])
        return self.ready

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()
        for f, _ in self.streams.values():
            f.close()


@contextlib.contextmanager
def relay(data: Path, *args: str, fd_limit: int | None = None) -> Iterator[Relay]:
    proc = Relay(data, *args, fd_limit=fd_limit)
    try:
        yield proc
    finally:
        proc.kill()


def healthz(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=WAIT) as answer:
            body = answer.read()
    except urllib.error.HTTPError as exc:  # 503: the body is still the details
        body = exc.read()
    details: dict[str, Any] = json.loads(body)
    return details


def test_a_flood_past_the_limit_of_open_files_pauses_accepting_and_recovers(
    tmp_path: Path,
) -> None:
    metrics_port = free_port()
    flags = ("--port", "0", "--metrics-port", str(metrics_port), "--log-level", "info")
    with relay(tmp_path / "data", *flags, fd_limit=FD_LIMIT) as proc:
        url = proc.start()["url"]
        assert "connection cap 92 (derived)" in proc.err
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        before = proc.cpu_seconds()
        flood: list[socket.socket] = []
        try:
            for n in range(FLOOD):  # the kernel completes them; the relay accepts up to its cap
                source = (SOURCES[n % len(SOURCES)], 0)
                flood.append(socket.create_connection(("127.0.0.1", port), WAIT, source))
            proc.wait_for("at the connection cap", in_err=True)
            used = proc.cpu_seconds() - before
            details = healthz(metrics_port)
            assert details["accepting"] is False and details["connections_limit"] == 92
        finally:
            for sock in flood:
                sock.close()
        assert used < CPU_BOUND, f"the relay used {used:.2f} s of CPU on {FLOOD} connects"
        assert "Traceback" not in proc.err
        assert len(proc.err.splitlines()) < 12, proc.err  # each condition once, not per event

        # The flood is gone: a real client registers (its connection is accepted and served).
        for _ in range(50):  # bounded: the relay reads the closed connections' EOFs at once
            if healthz(metrics_port)["accepting"]:
                break
        asyncio.run(register(tmp_path / "carol", url, "carol"))
        assert (tmp_path / "carol").is_dir()


def key_files(data: Path) -> list[str]:
    try:
        return [n for n in os.listdir(data) if n == "server.key" or n.startswith(".server.key.")]
    except FileNotFoundError:
        return []


def test_kill_9_while_creating_the_key_never_leaves_a_broken_key(tmp_path: Path) -> None:
    hits = 0
    for attempt in range(KILL_TRIES):
        data = tmp_path / f"data-{attempt}"
        first = Relay(data, "--port", "0", "--metrics-port", "0")
        try:
            deadline = time.monotonic() + WAIT
            # Kill as soon as a key file (temporary or final) appears: a busy wait on the
            # directory, bounded by the deadline, because the window is a few milliseconds.
            while not key_files(data) and first.popen.poll() is None:
                assert time.monotonic() < deadline, "no key file appeared"
            os.kill(first.popen.pid, signal.SIGKILL)
        finally:
            first.kill()
        key = data / "server.key"
        hits += bool(key_files(data))
        # Either no key, or a whole one: never an empty or short file.
        assert not key.exists() or len(key.read_bytes()) == 32, attempt
        with relay(data, "--port", "0", "--metrics-port", "0") as again:
            ready = again.start()
            assert len(key.read_bytes()) == 32
            assert ready["key"] == public_key(key.read_bytes()).hex()
            assert key_files(data) == ["server.key"]  # the temporary file is gone
    assert hits >= KILL_TRIES // 2  # the kills landed while the key was being created
