"""The WebSocket close codes a real third-party peer sees (Python ``websockets``, RFC 6455 strict).

The relay is real (loopback, SQLite); the peer is a ``websockets`` client that drives our sans-I/O
:class:`~tidings.net.channel.Channel` by hand where it needs a Noise session. Before these codes
were mapped, every close carried status 0 and ``websockets`` reported "invalid status code".
Tests wait for the close, never on the clock.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

from tests.harness import TIMEOUT, RelayLab
from tidings.net.channel import Channel, ChannelState, KeepaliveParams
from tidings.noise import PipesInitiator, generate_keypair
from tidings.wire import PROLOGUE, Error, ErrorCode, Frame, FrameDecoder, Ping

NEVER = KeepaliveParams(ping_interval=None, dead_after=600.0, handshake_timeout=600.0)


async def open_ws(url: str) -> ClientConnection:
    """A ``websockets`` client that neither pings nor limits what the relay may send."""
    return await connect(url, ping_interval=None, max_size=None, compression=None)


async def close_seen(ws: ClientConnection) -> tuple[int, list[bytes]]:
    """Read until the relay closes; return the close code ``websockets`` received and the
    binary messages before it."""
    messages: list[bytes] = []
    with pytest.raises(websockets.ConnectionClosed) as info:
        async with asyncio.timeout(TIMEOUT):
            while True:
                message = await ws.recv()
                assert isinstance(message, bytes)
                messages.append(message)
    exc = info.value
    # A close frame websockets refuses (status 0) shows up as no close received.
    assert exc.rcvd is not None, f"websockets refused the close: {exc!r}"
    return exc.rcvd.code, messages


async def noise_session(ws: ClientConnection) -> Channel:
    """Run the Noise handshake with our channel over the ``websockets`` connection, then one
    PING and its PONG."""
    private, _ = generate_keypair(os.urandom)
    channel = Channel(
        PipesInitiator(private, server_static=None, prologue=PROLOGUE, rng=os.urandom),
        NEVER,
        time.monotonic(),
    )
    channel.start()
    while channel.state is ChannelState.HANDSHAKE:
        for message in channel.data_to_send():
            await ws.send(message)
        if channel.state is ChannelState.HANDSHAKE:
            reply = await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert isinstance(reply, bytes)
            channel.receive_message(reply, time.monotonic())
    channel.send_frame(Ping(1))  # after XX's last handshake message: the PONG shows the relay
    for message in channel.data_to_send():  # has the session open
        await ws.send(message)
    pong = await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert isinstance(pong, bytes)
    channel.receive_message(pong, time.monotonic())
    assert channel.state is ChannelState.OPEN and channel.events() != []
    return channel


def errors_in(channel: Channel, messages: list[bytes]) -> list[int]:
    """The codes of the ERROR frames among the relay's ``messages``."""
    decoder = FrameDecoder()
    assert channel._transport is not None
    for message in messages:
        decoder.receive_data(channel._transport.decrypt(message))
    frames: list[Frame] = decoder.frames()
    return [f.code for f in frames if isinstance(f, Error)]


async def test_garbage_instead_of_a_handshake_is_a_protocol_error(relays: RelayLab) -> None:
    relay = await relays.start()
    ws = await open_ws(relay.url)
    await ws.send(b"\x01 this is not a Noise message")
    code, _ = await close_seen(ws)
    assert code == 1002


async def test_a_text_message_is_a_protocol_error(relays: RelayLab) -> None:
    relay = await relays.start()
    ws = await open_ws(relay.url)
    await ws.send("hello")
    code, _ = await close_seen(ws)
    assert code == 1002


async def test_an_oversized_websocket_message_is_message_too_big(relays: RelayLab) -> None:
    relay = await relays.start()
    ws = await open_ws(relay.url)
    await ws.send(b"\0" * 70_000)  # over one Noise message (65,535 bytes)
    code, _ = await close_seen(ws)
    assert code == 1009


async def test_an_oversized_frame_gets_error_then_message_too_big(relays: RelayLab) -> None:
    relay = await relays.start()
    ws = await open_ws(relay.url)
    channel = await noise_session(ws)
    assert channel._transport is not None
    await ws.send(channel._transport.encrypt(b"\xff\xff\xff\xff"))  # a length over MAX_FRAME
    code, messages = await close_seen(ws)
    assert code == 1009
    assert errors_in(channel, messages) == [ErrorCode.FRAME_TOO_LARGE]


async def test_a_forged_noise_message_is_a_protocol_error(relays: RelayLab) -> None:
    relay = await relays.start()
    ws = await open_ws(relay.url)
    await noise_session(ws)
    await ws.send(os.urandom(64))
    code, messages = await close_seen(ws)
    assert code == 1002 and messages == []  # no ERROR to a forger


async def test_shutdown_is_going_away(relays: RelayLab) -> None:
    relay = await relays.start()
    ws = await open_ws(relay.url)
    channel = await noise_session(ws)
    stopping = asyncio.ensure_future(relay.stop())
    code, messages = await close_seen(ws)
    await stopping
    assert code == 1001
    assert errors_in(channel, messages) == [ErrorCode.SHUTTING_DOWN]


async def test_a_silent_peer_is_a_policy_violation(relays: RelayLab) -> None:
    relay = await relays.start(idle_timeout=0.5, ping_interval=0.2)
    ws = await open_ws(relay.url)
    channel = await noise_session(ws)  # and then never a frame, never a PONG
    code, messages = await close_seen(ws)
    assert code == 1008
    assert errors_in(channel, messages) == [ErrorCode.KEEPALIVE_TIMEOUT]
