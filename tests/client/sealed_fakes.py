"""Fakes of the sealed-send tests: credentials that hand out a certificate issued in the test,
and an unidentified connection the test answers for the relay (the relay of this tree does
not accept SEALED_SEND yet)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from tests.e2e.libsignal_fixture import identity
from tests.harness import TIMEOUT
from tidings.e2e.certificates import SenderCertificate, ServerCertificate
from tidings.e2e.keys import IdentityKeyPair
from tidings.net.channel import FrameReceived, HandshakeDone
from tidings.net.ws import ChannelConnection
from tidings.wire import Frame, SealedSend, SealedSent, TagQuery

TRUST_ROOT = identity(b"sealed trust root")
CERT_KEY = identity(b"sealed cert key")
SERVER_CERT = ServerCertificate.issue(7, CERT_KEY.public, TRUST_ROOT)
ACCESS_KEY = bytes(range(16))


class FakeCredentials:
    """SealedCredentials: ``keys`` by account, a certificate valid until ``expires`` (s)."""

    def __init__(
        self, account: str, device: int, key: IdentityKeyPair, expires: float = 4e9
    ) -> None:
        self.keys: dict[str, bytes] = {}
        self.expires = expires
        self.cert = SenderCertificate.issue(
            account, device, key.public, int(expires * 1000), SERVER_CERT, CERT_KEY
        )
        self.forgotten: list[str] = []

    def access_key_for(self, account: str) -> bytes | None:
        return self.keys.get(account)

    def certificate(self, now: float) -> SenderCertificate | None:
        return self.cert if now < self.expires else None

    def forget_access_key(self, account: str) -> None:
        self.forgotten.append(account)
        self.keys.pop(account, None)


class FakeConn:
    """An unidentified channel whose relay side is the test."""

    def __init__(self, relay: FakeUnidentified, handler: Any) -> None:
        self.relay = relay
        self.handler = handler
        self.disconnected = asyncio.Event()
        self.closed = False

    def send_frames(self, frames: list[Frame]) -> None:
        for f in frames:
            self.relay.got(f)
            auto = self.relay.auto
            if isinstance(f, SealedSend) and auto is not None and auto(f):
                answer = SealedSent(f.tag, f.recipient, 0, 1000.0, False, "", 0.0)
                asyncio.get_running_loop().call_soon(self.answer, answer)

    def send_frame(self, frame: Frame) -> None:
        self.send_frames([frame])

    def flush(self) -> None:
        pass

    def close(self, code: int = 0, reason: str = "") -> None:
        self.closed = True
        self.disconnected.set()
        self.relay.changed.set()

    def answer(self, frame: Frame) -> None:
        self.handler.on_channel_event(self, FrameReceived(frame))


class FakeUnidentified:
    """The opener of the client's unidentified link: records what it is sent."""

    def __init__(self) -> None:
        #: Which sealed sends the fake relay stores at once (answered ✓ by itself).
        self.auto: Callable[[SealedSend], bool] | None = None
        self.frames: list[Frame] = []
        self.conns: list[FakeConn] = []
        self.keys: list[bytes] = []
        self.changed = asyncio.Event()

    async def __call__(self, url: str, handler: Any, key: bytes) -> ChannelConnection:
        conn = FakeConn(self, handler)
        self.conns.append(conn)
        self.keys.append(key)
        asyncio.get_running_loop().call_soon(
            handler.on_channel_event, conn, HandshakeDone(b"\0" * 32, "NK")
        )
        self.changed.set()
        return cast(ChannelConnection, conn)

    def got(self, frame: Frame) -> None:
        self.frames.append(frame)
        self.changed.set()

    @property
    def conn(self) -> FakeConn:
        return self.conns[-1]

    def sealed(self) -> list[SealedSend]:
        return [f for f in self.frames if isinstance(f, SealedSend)]

    def queries(self) -> list[TagQuery]:
        return [f for f in self.frames if isinstance(f, TagQuery)]

    async def wait(self, predicate: Any, timeout: float = TIMEOUT) -> None:
        """Until ``predicate()`` holds."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()
