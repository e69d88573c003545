"""``tidings push-listen``: a small Web Push receiver for laptops and tests.

It is both halves of a push subscription on one machine: the push service the relay POSTs to
(an HTTP server on loopback that accepts RFC 8030 pushes for the subscription it made) and the
receiving user agent (it holds the subscription's P-256 key and auth secret, in
``HOME/push-listen.json``, mode 0600, and decrypts each push with RFC 8291). A wake-up that
decrypts makes the device connect and catch up at once: the running daemon is asked through
its API (``wake``), or, without one, a line is printed. With ``--register`` it registers its
subscription with the relay through the device (the relay must allow private endpoints:
``tidings server --push-allow-private``), and registers again when the relay says the
subscription is dead.

A POST is accepted (201) only for this subscription's path, with a VAPID token for the relay's
key once that key is known (RFC 8292 §4.2, as a push service checks), and a body that decrypts;
anything else is refused (401, 400, 404, 413) and wakes nothing.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from ..filemodes import FILE_MODE, create_file, set_mode
from ..push import vapid, webpush
from ..push.webpush import PushKeys

__all__ = [
    "KEYS_FILE",
    "MAX_PUSH_BODY",
    "PushListener",
    "Subscription",
    "load_or_create_subscription",
]

#: The subscription's keys in the device home (0600: whoever reads them reads the wake-ups).
KEYS_FILE = "push-listen.json"
#: Largest push body accepted: one record of RFC 8291's 4,096 bytes plus its header.
MAX_PUSH_BODY = 4096 + webpush.HEADER_LEN


@dataclass(frozen=True)
class Subscription:
    """What ``push-listen`` keeps: the receiver's keys, the random token in its URL path, and
    the relay's VAPID key once registered (``None`` before)."""

    keys: PushKeys
    token: str
    vapid_key: bytes | None = None

    def endpoint(self, host: str, port: int) -> str:
        return f"http://{host}:{port}/push/{self.token}"


def load_or_create_subscription(home: Path) -> Subscription:
    """``HOME/push-listen.json``, created (0600) with new keys on first use."""
    path = home / KEYS_FILE
    if create_file(path):
        keys = PushKeys.generate(os.urandom)
        sub = Subscription(keys, secrets.token_urlsafe(16))
        save_subscription(home, sub)
        return sub
    set_mode(path, FILE_MODE)
    data = json.loads(path.read_text())
    keys = PushKeys.from_bytes(bytes.fromhex(data["private"]), bytes.fromhex(data["auth"]))
    relay = data.get("vapid_key")
    return Subscription(keys, data["token"], bytes.fromhex(relay) if relay else None)


def save_subscription(home: Path, sub: Subscription) -> None:
    """Write ``sub`` to ``HOME/push-listen.json`` (0600, replaced atomically)."""
    path = home / KEYS_FILE
    temp = path.with_name(path.name + ".tmp")
    create_file(temp)
    data = {
        "private": sub.keys.private_bytes().hex(),
        "auth": sub.keys.auth.hex(),
        "token": sub.token,
        "vapid_key": sub.vapid_key.hex() if sub.vapid_key else None,
    }
    temp.write_text(json.dumps(data))
    os.replace(temp, path)


class PushListener:
    """The receiver's HTTP server (see the module docstring).

    Args:
        sub: the subscription (keys, token, the relay's key if known).
        on_wake: called once per accepted push, with the decrypted plaintext.
        clock: the time VAPID tokens are checked against.
    """

    def __init__(
        self,
        sub: Subscription,
        on_wake: Callable[[bytes], Awaitable[None]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sub = sub
        self._on_wake = on_wake
        self._clock = clock
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.host = "127.0.0.1"
        self.accepted = 0
        self.refused = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen; return the subscription's endpoint URL."""
        app = web.Application(client_max_size=MAX_PUSH_BODY)
        app.router.add_post("/push/{token}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.host, self.port = host, int(self._runner.addresses[0][1])
        return self.endpoint

    @property
    def endpoint(self) -> str:
        return self.sub.endpoint(self.host, self.port)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        if not secrets.compare_digest(request.match_info["token"], self.sub.token):
            return self._refuse(404, "no such subscription")
        if self.sub.vapid_key is not None:
            try:
                vapid.verify(request.headers.get("Authorization", ""), self.endpoint, self._clock())
            except vapid.VapidError as exc:
                return self._refuse(401, str(exc))
            if not request.headers.get("Authorization", "").endswith(
                "k=" + vapid.b64url(self.sub.vapid_key)
            ):
                return self._refuse(401, "not the relay's key")
        if request.headers.get("Content-Encoding") != "aes128gcm":
            return self._refuse(400, "not aes128gcm")
        try:
            body = await request.read()
            plaintext = webpush.decrypt(body, self.sub.keys)
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(413, "too large")
        except webpush.WebPushError as exc:
            return self._refuse(400, str(exc))
        self.accepted += 1
        await self._on_wake(plaintext)
        return web.Response(status=201)

    def _refuse(self, status: int, reason: str) -> web.Response:
        self.refused += 1
        return web.Response(status=status, text=reason)
