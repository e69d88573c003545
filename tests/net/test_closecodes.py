"""The close-code table, and the codes our client's closes carry to a real ``websockets`` server.

The client's deadlines (keepalive, close linger) run on virtual time (``VirtualTimers``): real
sockets, no wait on the wall clock (CONVENTIONS §11)."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import websockets
from picows import WSMsgType
from websockets.asyncio.server import Server, ServerConnection, serve

from tests.harness import TIMEOUT, RawPeer
from tidings.client.connect import open_channel
from tidings.net.channel import Channel, ChannelClosed, ChannelState, FrameReceived, KeepaliveParams
from tidings.net.closecodes import CLOSE_CODES, WSClose, close_code, echo_code
from tidings.net.timers import VirtualTimers
from tidings.net.ws import CLOSE_LINGER
from tidings.noise import PipesResponder, generate_keypair
from tidings.wire import PROLOGUE, ErrorCode, Ping

#: Codes a peer may send in a close frame (RFC 6455 §7.4.1 and the IANA registry of §11.7).
SENDABLE = {1000, 1001, 1002, 1003, *range(1007, 1015)}


def test_every_error_code_has_a_sendable_close_code() -> None:
    assert set(CLOSE_CODES) == set(ErrorCode)
    assert {int(c) for c in CLOSE_CODES.values()} <= SENDABLE
    assert {int(c) for c in WSClose} <= SENDABLE


@pytest.mark.parametrize(
    ("code", "by_peer", "expected"),
    [
        (0, False, 1000),  # a close without error
        (int(ErrorCode.SHUTTING_DOWN), False, 1001),
        (int(ErrorCode.MALFORMED_FRAME), False, 1002),
        (int(ErrorCode.HANDSHAKE_FAILED), False, 1002),
        (int(ErrorCode.AUTH_TIMEOUT), False, 1008),
        (int(ErrorCode.KEEPALIVE_TIMEOUT), False, 1008),
        (int(ErrorCode.FRAME_TOO_LARGE), False, 1009),
        (int(ErrorCode.INTERNAL), False, 1011),
        (int(ErrorCode.TOO_MANY_CONNECTIONS), False, 1013),
        (int(ErrorCode.INTERNAL), True, 1000),  # the peer's ERROR: we only complete the close
        (999, False, 1008),  # a code of a newer version
    ],
)
def test_close_code(code: int, by_peer: bool, expected: int) -> None:
    assert close_code(code, by_peer=by_peer) == expected


@pytest.mark.parametrize(
    ("received", "answer"),
    [
        *[(c, c) for c in (1000, 1001, 1011, 3000, 4999)],  # sendable: echoed
        *[(c, 1000) for c in (0, 1005, 1006, 1015, 999, 5000)],  # none, reserved or garbage
    ],
)
def test_a_peers_close_is_echoed_only_when_sendable(received: int, answer: int) -> None:
    assert echo_code(received) == answer


# ------------------------------------------------------------------ our client, a real server


class WSServer:
    """A ``websockets`` server whose handler the test sets; records the close codes it got."""

    def __init__(self) -> None:
        self.codes: asyncio.Queue[int | None] = asyncio.Queue()
        self.server: Server | None = None
        self.behaviour = self.listen

    async def listen(self, ws: ServerConnection) -> None:
        async for _ in ws:
            pass

    async def handler(self, ws: ServerConnection) -> None:
        try:
            await self.behaviour(ws)
        except websockets.ConnectionClosed:
            pass
        await ws.wait_closed()
        self.codes.put_nowait(ws.close_code)

    @property
    def url(self) -> str:
        assert self.server is not None
        port = next(iter(self.server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/v1"

    async def close_code(self) -> int | None:
        async with asyncio.timeout(TIMEOUT):
            return await self.codes.get()


@pytest.fixture
async def ws_server() -> AsyncIterator[WSServer]:
    srv = WSServer()
    async with serve(srv.handler, "127.0.0.1", 0, ping_interval=None, compression=None) as s:
        srv.server = s
        yield srv


async def answer_handshake_then_go_silent(ws: ServerConnection) -> None:
    """Be a Noise responder (our sans-I/O channel) until the session is open, then say nothing."""
    await answer_handshake(ws)
    async for _ in ws:  # the client's PINGs, never answered
        pass


async def answer_handshake(ws: ServerConnection) -> Channel:
    """Be a Noise responder (our sans-I/O channel) until the session is open; the channel (it
    reports PINGs and never answers them)."""
    private, _ = generate_keypair(os.urandom)
    forever = KeepaliveParams(ping_interval=None, dead_after=600.0, handshake_timeout=600.0)
    responder = PipesResponder(private, prologue=PROLOGUE, rng=os.urandom)
    channel = Channel(responder, forever, 0.0, answer_pings=False)
    while channel.state is ChannelState.HANDSHAKE:
        message = await ws.recv()
        assert isinstance(message, bytes)
        channel.receive_message(message, time.monotonic())
        for reply in channel.data_to_send():
            await ws.send(reply)
    channel.events()  # HandshakeDone
    return channel


async def test_a_client_close_is_normal(ws_server: WSServer) -> None:
    private, _ = generate_keypair(os.urandom)
    ws_server.behaviour = answer_handshake_then_go_silent
    peer = RawPeer()
    conn = await open_channel(ws_server.url, peer, private, None)
    async with asyncio.timeout(TIMEOUT):
        await peer.handshake.wait()
    conn.close()
    assert await ws_server.close_code() == 1000


async def test_a_garbage_handshake_reply_is_a_protocol_error(ws_server: WSServer) -> None:
    async def garbage(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send(b"\x01 not a Noise message")
        await ws.wait_closed()

    ws_server.behaviour = garbage
    private, _ = generate_keypair(os.urandom)
    conn = await open_channel(ws_server.url, RawPeer(), private, None)
    assert await ws_server.close_code() == 1002
    async with asyncio.timeout(TIMEOUT):
        await conn.disconnected.wait()


async def test_a_silent_server_is_a_keepalive_policy_violation(ws_server: WSServer) -> None:
    """On virtual time: PING at ``ping_interval``, the close at ``dead_after``, not before."""
    received: asyncio.Queue[object] = asyncio.Queue()

    async def record_after_handshake(ws: ServerConnection) -> None:
        channel = await answer_handshake(ws)
        async for message in ws:  # the client's PINGs, never answered
            assert isinstance(message, bytes)
            channel.receive_message(message, 0.0)
            for event in channel.events():
                received.put_nowait(event)

    ws_server.behaviour = record_after_handshake
    private, _ = generate_keypair(os.urandom)
    keepalive = KeepaliveParams(ping_interval=10.0, dead_after=15.0, handshake_timeout=5.0)
    timers = VirtualTimers()
    peer = RawPeer()
    conn = await open_channel(ws_server.url, peer, private, None, keepalive, timers=timers)
    async with asyncio.timeout(TIMEOUT):
        await peer.handshake.wait()
    timers.advance(9.9)
    assert received.empty()
    timers.advance(0.1)  # ping_interval of silence: one PING
    async with asyncio.timeout(TIMEOUT):
        ping = await received.get()
    assert isinstance(ping, FrameReceived) and isinstance(ping.frame, Ping)
    timers.advance(4.9)
    assert peer.closed is None and not conn.disconnected.is_set()
    timers.advance(0.1)  # dead_after of silence: closed
    assert peer.closed is not None and peer.closed.code == ErrorCode.KEEPALIVE_TIMEOUT
    assert await ws_server.close_code() == 1008
    async with asyncio.timeout(TIMEOUT):
        await conn.disconnected.wait()
        told = await received.get()  # the ERROR before the close
    assert isinstance(told, ChannelClosed) and told.code == ErrorCode.KEEPALIVE_TIMEOUT
    assert received.empty()


def test_the_protocol_doc_lists_the_same_table() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
    transport = doc[doc.index("## 2. Transport") : doc.index("## 3. Noise")]
    rows = re.findall(r"^  \| (\d{4}) [a-z ]+ \| [^|]+ \| ([^|]+) \|$", transport, re.M)
    listed = {
        ErrorCode[name]: int(code)
        for code, names in rows
        for name in re.findall(r"[A-Z_]{4,}", names)
    }
    assert listed == {error: int(ws) for error, ws in CLOSE_CODES.items()}
    assert {int(code) for code, _ in rows} == {int(c) for c in WSClose}


async def test_a_close_towards_a_peer_that_stopped_reading_ends_within_the_linger(
    ws_server: WSServer,
) -> None:
    revived = asyncio.Event()

    async def stop_reading(ws: ServerConnection) -> None:
        ws.transport.pause_reading()  # a dead path: nothing is acknowledged any more
        await revived.wait()
        ws.transport.resume_reading()  # to see the reset and finish (the fixture waits)
        await ws.wait_closed()

    ws_server.behaviour = stop_reading
    private, _ = generate_keypair(os.urandom)
    timers = VirtualTimers()
    conn = await open_channel(ws_server.url, RawPeer(), private, None, timers=timers)
    assert conn.transport is not None
    tcp = conn.transport.underlying_transport
    for _ in range(1000):  # bounded: fill the kernel's buffers until our own backlog grows
        if tcp.get_write_buffer_size() > 0:
            break
        conn.transport.send(WSMsgType.BINARY, b"\0" * 65_536)
    assert tcp.get_write_buffer_size() > 0
    conn.close()  # a graceful close would wait for the backlog to drain: for ever
    for _ in range(20):  # the loop runs; nothing drains
        await asyncio.sleep(0)
    timers.advance(CLOSE_LINGER - 0.01)
    for _ in range(20):
        await asyncio.sleep(0)
    assert not conn.disconnected.is_set()
    timers.advance(0.01)  # the linger is over: the connection is aborted
    async with asyncio.timeout(TIMEOUT):
        await conn.disconnected.wait()
    revived.set()
