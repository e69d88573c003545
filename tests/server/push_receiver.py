"""A real Web Push service on loopback for the push tests: an aiohttp server that records every
POST (path, headers, body) and answers each with the next scripted status (201 when the script
is empty). ``"hang"`` answers nothing until the test lets it go (a timeout)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web

from tests.harness import TIMEOUT


@dataclass(frozen=True)
class Received:
    """One POST as the push service saw it."""

    path: str
    headers: dict[str, str]
    body: bytes


class PushService:
    """Start with :meth:`start`; the subscription URL of a device is :meth:`endpoint`."""

    def __init__(self) -> None:
        #: Answers of the next POSTs, in order: an HTTP status, ``(status, Retry-After)``, or
        #: ``"hang"``.
        self.script: list[int | tuple[int, str] | str] = []
        self.received: list[Received] = []
        self._queue: asyncio.Queue[Received] = asyncio.Queue()
        self.release = asyncio.Event()  #: lets hanging requests go
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/push/{name}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    def endpoint(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/push/{name}"

    async def next(self, timeout: float = TIMEOUT) -> Received:
        """The next POST, within ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            return await self._queue.get()

    def pending(self) -> int:
        """POSTs received and not yet taken with :meth:`next`."""
        return self._queue.qsize()

    async def close(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        got = Received(request.path, dict(request.headers), await request.read())
        self.received.append(got)
        self._queue.put_nowait(got)
        answer = self.script.pop(0) if self.script else 201
        if answer == "hang":
            await self.release.wait()
            return web.Response(status=201)
        if isinstance(answer, tuple):
            return web.Response(status=answer[0], headers={"Retry-After": answer[1]})
        assert isinstance(answer, int)
        return web.Response(status=answer)
