"""A Redis server of the test's own, on a free loopback port, that the test may kill and restart.

The machine's Redis (6379) is never touched: each :class:`RedisServer` runs ``redis-server``
without persistence in a temporary directory, as a child process killed by its PID. Readiness
is Redis's own "Ready to accept connections" line, read from its output (no waiting for a
time). Without ``redis-server`` the tests skip, saying why; with ``TIDINGS_REQUIRE_REDIS=1``
(CI) they fail instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from tests.harness import TIMEOUT, free_port

#: What redis-server prints once it serves (every version since 2.x).
READY = b"Ready to accept connections"


def unavailable(reason: str) -> None:
    """Skip (or, with ``TIDINGS_REQUIRE_REDIS=1``, fail) for want of ``redis-server``."""
    if os.environ.get("TIDINGS_REQUIRE_REDIS") == "1":
        pytest.fail(reason + " (TIDINGS_REQUIRE_REDIS=1)")
    pytest.skip(reason + " (apt-get install redis-server)")


class RedisServer:
    """``redis-server`` on 127.0.0.1:``port``; :meth:`start` (again after :meth:`kill`)."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed")
        assert binary is not None
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Start it and return once it accepts connections."""
        self.proc = await asyncio.create_subprocess_exec(
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.directory),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert self.proc.stdout is not None
        seen = b""
        async with asyncio.timeout(TIMEOUT):
            while READY not in seen:
                line = await self.proc.stdout.readline()
                if not line:
                    raise AssertionError(f"redis-server exited: {seen.decode(errors='replace')}")
                seen += line
        self._drain = asyncio.ensure_future(self._discard(self.proc.stdout))

    @staticmethod
    async def _discard(stream: asyncio.StreamReader) -> None:
        while await stream.read(65536):
            pass

    async def kill(self) -> None:
        """Kill it (SIGKILL, by PID) and wait for its exit."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
            await self._drain
        self.proc = None
