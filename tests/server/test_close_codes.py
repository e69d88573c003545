"""The WebSocket close codes a real third-party peer sees (Python ``websockets``, RFC 6455 strict).

The relay is real (loopback, SQLite); the peer is :class:`~tests.server.noise_ws.NoiseWS` or a
bare ``websockets`` client. Before the codes were mapped, every close carried status 0 and
``websockets`` reported "invalid status code". Tests wait for the close, never on the clock.
"""

from __future__ import annotations

import asyncio
import os

from tests.harness import RelayLab
from tests.server.noise_ws import NoiseWS, close_seen, error_codes, websocket
from tidings.wire import ErrorCode, Ping, Pong


async def test_garbage_instead_of_a_handshake_is_a_protocol_error(relays: RelayLab) -> None:
    relay = await relays.start()
    ws = await websocket(relay.url)
    await ws.send(b"\x01 this is not a Noise message")
    assert await close_seen(ws) == 1002


async def test_a_text_message_is_a_protocol_error(relays: RelayLab) -> None:
    relay = await relays.start()
    ws = await websocket(relay.url)
    await ws.send("hello")
    assert await close_seen(ws) == 1002


async def test_an_oversized_websocket_message_is_message_too_big(relays: RelayLab) -> None:
    relay = await relays.start()
    ws = await websocket(relay.url)
    await ws.send(b"\0" * 70_000)  # over one Noise message (65,535 bytes)
    assert await close_seen(ws) == 1009


async def test_an_oversized_frame_gets_error_then_message_too_big(relays: RelayLab) -> None:
    relay = await relays.start()
    peer = await NoiseWS.open(relay.url)
    await peer.send_plaintext(b"\xff\xff\xff\xff")  # a length prefix over MAX_FRAME
    code, frames = await peer.close_seen()
    assert code == 1009
    assert error_codes(frames) == [ErrorCode.FRAME_TOO_LARGE]


async def test_a_forged_noise_message_is_a_protocol_error(relays: RelayLab) -> None:
    relay = await relays.start()
    peer = await NoiseWS.open(relay.url)
    await peer.ws.send(os.urandom(64))
    code, frames = await peer.close_seen()
    assert code == 1002 and frames == []  # no ERROR to a forger


async def open_session(relays: RelayLab, **config: object) -> NoiseWS:
    """A relay and a peer whose session the relay has open (its PING answered)."""
    relay = await relays.start(**config)
    peer = await NoiseWS.open(relay.url)
    await peer.send(Ping(1))
    assert await peer.next() == [Pong(1)]
    return peer


async def test_shutdown_is_going_away(relays: RelayLab) -> None:
    peer = await open_session(relays)
    stopping = asyncio.ensure_future(relays.relays[-1].stop())
    code, frames = await peer.close_seen()
    await stopping
    assert code == 1001
    assert error_codes(frames) == [ErrorCode.SHUTTING_DOWN]


async def test_a_silent_peer_is_a_policy_violation(relays: RelayLab) -> None:
    peer = await open_session(relays, idle_timeout=0.5, ping_interval=0.2)
    code, frames = await peer.close_seen()  # it never answers the relay's PING
    assert code == 1008
    assert error_codes(frames) == [ErrorCode.KEEPALIVE_TIMEOUT]
