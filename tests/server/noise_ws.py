"""A third-party WebSocket client (Python ``websockets``) speaking our Noise and frames by hand.

Unlike the raw peers of tests/harness.py, which use our own channel and adapter, this peer
shares no transport code with the relay: the WebSocket layer is ``websockets`` (strict about RFC
6455, close codes included) and the Noise layer is :class:`~tidings.noise.PipesInitiator` driven
directly. It sees every frame the relay sends, PING and PONG included, in wire order.
"""

from __future__ import annotations

import asyncio
import os

import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

from tests.harness import TIMEOUT
from tidings.noise import NoiseTransport, PipesInitiator, generate_keypair
from tidings.wire import PROLOGUE, Error, Frame, FrameDecoder, encode


class NoiseWS:
    """One connection: the handshake done, frames sent and read by hand."""

    def __init__(self, ws: ClientConnection, noise: NoiseTransport) -> None:
        self.ws = ws
        self.noise = noise
        self.decoder = FrameDecoder()
        self.received: list[Frame] = []

    @classmethod
    async def open(cls, url: str, private: bytes | None = None) -> NoiseWS:
        """Connect (no WebSocket pings, no size limit) and run the Noise XX handshake."""
        ws = await websocket(url)
        if private is None:
            private, _ = generate_keypair(os.urandom)
        hs = PipesInitiator(private, server_static=None, prologue=PROLOGUE, rng=os.urandom)
        await ws.send(hs.start())
        while not hs.complete:
            async with asyncio.timeout(TIMEOUT):
                reply = await ws.recv()
            assert isinstance(reply, bytes)
            message = hs.receive(reply)
            if message is not None:
                await ws.send(message)
        return cls(ws, hs.transport())

    @classmethod
    async def open_nk(cls, url: str, server_static: bytes) -> NoiseWS:
        """Connect and run the Noise NK handshake: an unidentified (sealed-send) session."""
        ws = await websocket(url)
        hs = PipesInitiator(None, server_static=server_static, prologue=PROLOGUE, rng=os.urandom)
        await ws.send(hs.start())
        async with asyncio.timeout(TIMEOUT):
            reply = await ws.recv()
        assert isinstance(reply, bytes)
        assert hs.receive(reply) is None and hs.complete
        return cls(ws, hs.transport())

    async def send(self, *frames: Frame) -> None:
        """Send ``frames`` together, in one Noise message."""
        await self.send_plaintext(b"".join(encode(f) for f in frames))

    async def send_plaintext(self, stream: bytes) -> None:
        """Send raw frame-stream bytes (valid frames or not) as one Noise message."""
        await self.ws.send(self.noise.encrypt(stream))

    async def next(self, count: int = 1) -> list[Frame]:
        """The next ``count`` frames the relay sends."""
        async with asyncio.timeout(TIMEOUT):
            while len(self.received) < count:
                await self._read()
        out, self.received = self.received[:count], self.received[count:]
        return out

    async def next_or_close(self) -> list[Frame] | None:
        """The next frame, or None if the relay closed instead (see :meth:`close_seen`)."""
        try:
            return await self.next()
        except websockets.ConnectionClosed:
            return None

    async def close_seen(self) -> tuple[int, list[Frame]]:
        """Read until the relay closes: the close code ``websockets`` received and the frames
        not yet read before it."""
        with pytest.raises(websockets.ConnectionClosed) as info:
            async with asyncio.timeout(TIMEOUT):
                while True:
                    await self._read()
        exc = info.value
        # A close frame websockets refuses (status 0) shows up as no close received.
        assert exc.rcvd is not None, f"websockets refused the close: {exc!r}"
        frames, self.received = self.received, []
        return exc.rcvd.code, frames

    async def _read(self) -> None:
        message = await self.ws.recv()
        assert isinstance(message, bytes)
        self.decoder.receive_data(self.noise.decrypt(message))
        self.received += self.decoder.frames()


async def websocket(url: str) -> ClientConnection:
    """A plain ``websockets`` client that neither pings nor limits what the relay may send."""
    return await connect(url, ping_interval=None, max_size=None, compression=None)


async def close_seen(ws: ClientConnection) -> int:
    """Read (and drop) until the relay closes a connection without a Noise session; return the
    close code ``websockets`` received."""
    with pytest.raises(websockets.ConnectionClosed) as info:
        async with asyncio.timeout(TIMEOUT):
            while True:
                await ws.recv()
    exc = info.value
    assert exc.rcvd is not None, f"websockets refused the close: {exc!r}"
    return exc.rcvd.code


def error_codes(frames: list[Frame]) -> list[int]:
    """The codes of the ERROR frames among ``frames``."""
    return [f.code for f in frames if isinstance(f, Error)]
