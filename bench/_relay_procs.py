"""The processes the relay bench starts: start them, talk to them, stop them on the way out.

Every process is started in its own session (Ctrl-C reaches the bench only, which stops them in
order) and gets SIGTERM from the kernel if the bench dies. Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: How long a process sent a signal may take to exit before it is killed (seconds).
STOP_TIMEOUT = 15.0
#: How much of a process's stderr an error quotes when it exits without answering (bytes).
STDERR_TAIL = 4000
#: Where each process :meth:`Processes.start` started writes its stderr (by PID).
STDERR_PATHS: dict[int, Path] = {}


def child_env() -> dict[str, str]:
    """The bench's environment without ``TIDINGS_*`` variables: each process gets its settings
    from its command line, and ``tidings server`` refuses a ``TIDINGS_*`` variable it does not
    know (the test suite's ``TIDINGS_REQUIRE_*`` switches, a user's own settings for another
    relay), which made the bench's relay exit at start under CI."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}


def stderr_tail(proc: asyncio.subprocess.Process) -> str:
    """The end of what ``proc`` wrote on stderr, if it was started by :class:`Processes`."""
    path = STDERR_PATHS.get(proc.pid)
    if path is None:
        return ""
    try:
        data = path.read_bytes()[-STDERR_TAIL:]
    except OSError as exc:
        return f"\n(its stderr {path} cannot be read: {exc})"
    return f"\nits stderr ({path}) ends with:\n{data.decode(errors='replace')}"


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the bench dies (Linux prctl)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Processes:
    """Every process the bench started, to be stopped in reverse order on the way out."""

    procs: list[tuple[str, asyncio.subprocess.Process]] = field(default_factory=list)

    async def start(
        self, name: str, argv: list[str], stderr_path: Path, *, stdin: bool = True
    ) -> asyncio.subprocess.Process:
        with stderr_path.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                env=child_env(),
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,  # Ctrl-C reaches the bench only; it stops them in order
                preexec_fn=_die_with_parent,
                limit=64 * 2**20,  # the workers' result lines are long
            )
        self.procs.append((name, proc))
        STDERR_PATHS[proc.pid] = stderr_path
        return proc

    async def stop(
        self, proc: asyncio.subprocess.Process, sig: int = signal.SIGTERM, grace: float = 0.0
    ) -> None:
        """Ask ``proc`` to stop: close its stdin, give it ``grace`` seconds to exit by itself,
        send ``sig``, and kill it if it is still there after :data:`STOP_TIMEOUT`."""
        if proc.returncode is not None:
            return
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        if grace > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await proc.wait()
            if proc.returncode is not None:
                return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            async with asyncio.timeout(STOP_TIMEOUT):
                await proc.wait()

    async def stop_all(self) -> None:
        for _, proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                await self.stop(proc)

    def kill_all_now(self) -> None:
        """Last resort (the event loop is gone): SIGKILL what is still running."""
        for _, proc in self.procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(proc.pid, signal.SIGKILL)


async def read_event(proc: asyncio.subprocess.Process, name: str, timeout: float) -> dict[str, Any]:
    """The next JSON object a process prints on stdout (other lines are skipped)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{name}: no answer within {timeout:.0f}s")
        async with asyncio.timeout(remaining):
            line = await proc.stdout.readline()
        if not line:
            code = await proc.wait()
            raise RuntimeError(f"{name} exited (code {code}) without answering{stderr_tail(proc)}")
        text = line.decode(errors="replace").strip()
        if text.startswith("{"):
            event: dict[str, Any] = json.loads(text)
            if event.get("event") == "error":
                raise RuntimeError(f"{name}: {event.get('error')}")
            return event


def send_command(proc: asyncio.subprocess.Process, command: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(command.encode() + b"\n")


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_for_file(path: Path, timeout: float) -> None:
    """Wait until ``path`` exists and stopped growing (or ``timeout`` passed)."""
    deadline = time.monotonic() + timeout
    size = -1
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size == size and size > 0:
            return
        size = path.stat().st_size if path.exists() else -1
        await asyncio.sleep(0.2)
