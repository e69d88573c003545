"""The lab's Web Push service: where the relay's wake-ups for a sleeping device go, and fail.

:class:`LabPushService` is a push service and the device's push receiver in one (as
``tidings push-listen`` is), on loopback, on its own event loop thread so the synchronous
scenario scripts can drive it. It makes one subscription (a P-256 key and an auth secret); each
POST to its endpoint is decrypted (RFC 8291) and then, by :attr:`LabPushService.mode`:

* ``"fail"`` — answered 503, as a push service that is down: the relay must retry, with backoff;
* ``"accept"`` — answered 201 and kept in :attr:`LabPushService.wakes` (what the scenario hands
  on to the device when it chooses: a wake-up delayed in the push network).

Every POST is counted, and each accepted body's length and headers are kept, so a scenario can
say that a wake-up carried no content (16 random bytes, padded) and what it asked for (TTL,
Urgency, Topic). Invariant: :meth:`close` stops the server and joins the thread; idempotent.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from dataclasses import dataclass, field

from aiohttp import web

from ..push import webpush
from ..push.webpush import PushKeys

__all__ = ["CALL_TIMEOUT", "LabPushService", "Wake"]

#: Seconds a call into the service's loop may take (they are all quick).
CALL_TIMEOUT = 10.0
#: Largest POST body read: one RFC 8291 record of 4,096 bytes and its header.
MAX_BODY = 4096 + webpush.HEADER_LEN


@dataclass(frozen=True, slots=True)
class Wake:
    """One accepted wake-up: the decrypted plaintext's length and the headers that matter."""

    plaintext_len: int
    ttl: str
    urgency: str
    topic: str


@dataclass
class _State:
    mode: str = "accept"
    posts: int = 0
    failed: int = 0
    wakes: list[Wake] = field(default_factory=list)
    undecryptable: int = 0


class LabPushService:
    """A started push service on ``127.0.0.1`` (see the module docstring)."""

    def __init__(self) -> None:
        self.keys = PushKeys.generate(os.urandom)
        self._token = secrets.token_urlsafe(16)
        self._state = _State()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="lab-push", daemon=True)
        self._thread.start()
        self._runner: web.AppRunner | None = None
        self._closed = False
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(CALL_TIMEOUT)

    @property
    def endpoint(self) -> str:
        """The subscription's endpoint URL (what the device registers with the relay)."""
        return f"http://127.0.0.1:{self.port}/push/{self._token}"

    @property
    def mode(self) -> str:
        with self._lock:
            return self._state.mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in ("fail", "accept"):
            raise ValueError(f"unknown push service mode {value!r}")
        with self._lock:
            self._state.mode = value

    def counts(self) -> tuple[int, int, int]:
        """``(posts, failed, accepted)`` so far."""
        with self._lock:
            return self._state.posts, self._state.failed, len(self._state.wakes)

    @property
    def wakes(self) -> list[Wake]:
        with self._lock:
            return list(self._state.wakes)

    @property
    def undecryptable(self) -> int:
        with self._lock:
            return self._state.undecryptable

    async def _start(self) -> int:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/push/{token}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return int(self._runner.addresses[0][1])

    async def _handle(self, request: web.Request) -> web.Response:
        if not secrets.compare_digest(request.match_info["token"], self._token):
            return web.Response(status=404)
        body = await request.read()
        with self._lock:
            state = self._state
            state.posts += 1
            if state.mode == "fail":
                state.failed += 1
                return web.Response(status=503, text="push service down (lab)")
        try:
            plaintext = webpush.decrypt(body, self.keys)
        except webpush.WebPushError:
            with self._lock:
                self._state.undecryptable += 1
            return web.Response(status=400, text="does not decrypt")
        wake = Wake(
            len(plaintext),
            request.headers.get("TTL", ""),
            request.headers.get("Urgency", ""),
            request.headers.get("Topic", ""),
        )
        with self._lock:
            self._state.wakes.append(wake)
        return web.Response(status=201)

    def close(self) -> None:
        """Stop the server, stop the loop, join the thread."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._runner is not None:
                runner = self._runner
                asyncio.run_coroutine_threadsafe(runner.cleanup(), self._loop).result(CALL_TIMEOUT)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CALL_TIMEOUT)
            self._loop.close()
