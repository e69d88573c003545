"""The relay's limits on peers that have not said who they are, over real loopback sockets.

A hostile peer can finish the Noise handshake and then (a) never send REGISTER/HELLO, pinging to
stay alive, or (b) announce a large frame and trickle it in, pinning the buffer. Here the relay
closes (a) at ``auth_timeout`` and refuses (b) from the length prefix; the memory the trickling
peers pin is counted from the relay's buffers (:attr:`Channel.buffered`), not from RSS. At the
WebSocket layer picows refuses a frame over MAX_WS_FRAME from its header. Tests wait on frames,
closes and WebSocket pongs (which picows sends in order, after handling every earlier message).
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct

import pytest

from tests.harness import TIMEOUT, ObservedRelay, RelayLab
from tests.server.noise_ws import NoiseWS, error_codes
from tidings.client import register
from tidings.errors import ConfigError
from tidings.net.timers import VirtualTimers
from tidings.net.ws import MAX_WS_FRAME
from tidings.server.config import ServerConfig, load_config
from tidings.server.session import SessionState
from tidings.wire import (
    MAX_PRE_AUTH_FRAME,
    PROTOCOL_VERSION,
    ErrorCode,
    Hello,
    Ping,
    Pong,
    Register,
    Registered,
    Welcome,
)

#: How many hostile peers each test opens at once.
PEERS = 20


async def test_a_peer_that_only_pings_is_closed_at_the_auth_deadline(relays: RelayLab) -> None:
    """On virtual time: PINGs are answered and do not extend the wait; the close comes at
    ``auth_timeout`` after the handshake, not earlier."""
    timers = relays.relay_options["timers"] = VirtualTimers()
    relay = await relays.start(auth_timeout=10.0)  # idle_timeout stays 30 s
    peer = await NoiseWS.open(relay.url)
    for nonce in range(10):  # pinging all along, up to 9 s (the first Pong: the handshake done)
        timers.advance(1.0 if nonce else 0.0)
        await peer.send(Ping(nonce))
        assert await peer.next() == [Pong(nonce)]
    timers.advance(1.0)  # 10 s after the handshake
    code, frames = await peer.close_seen()
    assert code == 1008 and error_codes(frames) == [ErrorCode.AUTH_TIMEOUT]
    assert not relay._all  # the session is gone


async def test_registered_is_followed_by_a_new_wait_for_hello(relays: RelayLab) -> None:
    """On virtual time: the new wait is ``auth_timeout`` from REGISTERED, not less."""
    timers = relays.relay_options["timers"] = VirtualTimers()
    relay = await relays.start(auth_timeout=10.0)
    peer = await NoiseWS.open(relay.url)
    await peer.send(Ping(0))
    assert await peer.next() == [Pong(0)]  # the relay's side of the handshake is done at 0
    timers.advance(9.0)  # most of the first wait
    await peer.send(Register(PROTOCOL_VERSION, "carol", "c", None))
    assert await peer.next() == [Registered("carol", 1)]
    timers.advance(9.9)  # past the first deadline, not the new one
    await peer.send(Ping(1))
    assert await peer.next() == [Pong(1)]
    timers.advance(0.1)  # no HELLO
    code, frames = await peer.close_seen()
    assert code == 1008 and error_codes(frames) == [ErrorCode.AUTH_TIMEOUT]


async def test_a_device_that_says_hello_in_time_stays(relays: RelayLab) -> None:
    relay = await relays.start(auth_timeout=0.3)
    bob = await register(relays.tmp / "bob", relay.url, "bob")  # REGISTER, then HELLO
    peer = await NoiseWS.open(relay.url, bob.noise_private_key)
    await peer.send(Hello(PROTOCOL_VERSION, 0))
    assert isinstance((await peer.next())[0], Welcome)
    loop = asyncio.get_running_loop()
    until = loop.time() + 3 * 0.3
    for nonce in range(100_000):  # ping past three auth deadlines: every PING answered
        await peer.send(Ping(nonce))
        assert await peer.next() == [Pong(nonce)]
        if loop.time() > until:
            break
    (session,) = relay._all
    assert session.state is SessionState.OPEN


async def relay_pong(peer: NoiseWS) -> None:
    """Wait until the relay has handled every message the peer sent before (a WebSocket ping:
    picows answers it after delivering every earlier message to the channel)."""
    pong = await peer.ws.ping()
    await pong


def pinned(relay: ObservedRelay) -> list[int]:
    """The bytes each connection's channel holds for an incomplete frame."""
    return [
        s.conn.channel.buffered
        for s in relay._all
        if s.conn is not None and s.conn.channel is not None
    ]


async def test_a_long_length_prefix_before_hello_is_refused_at_once(relays: RelayLab) -> None:
    relay = await relays.start()
    peers = [await NoiseWS.open(relay.url) for _ in range(PEERS)]
    for peer in peers:
        await peer.send_plaintext((1 << 20).to_bytes(4, "big"))  # MAX_FRAME: 1 MiB to come
    for peer in peers:
        code, frames = await peer.close_seen()
        assert code == 1009 and error_codes(frames) == [ErrorCode.FRAME_TOO_LARGE]
    assert pinned(relay) == []


async def test_trickling_peers_pin_at_most_the_pre_auth_limit(relays: RelayLab) -> None:
    relay = await relays.start()
    peers = [await NoiseWS.open(relay.url) for _ in range(PEERS)]
    body = b"\x00" * (MAX_PRE_AUTH_FRAME - 1)  # one byte short of the longest legal frame
    for peer in peers:
        await peer.send_plaintext(MAX_PRE_AUTH_FRAME.to_bytes(4, "big"))
    for start in range(0, len(body), 64):  # 64 bytes per Noise message, round robin
        for peer in peers:
            await peer.send_plaintext(body[start : start + 64])
    for peer in peers:
        async with asyncio.timeout(TIMEOUT):
            await relay_pong(peer)
    assert pinned(relay) == [4 + MAX_PRE_AUTH_FRAME - 1] * PEERS
    for peer in peers:  # the last byte completes a frame of zeros: not MessagePack
        await peer.send_plaintext(b"\x00")
        code, frames = await peer.close_seen()
        assert code == 1002 and error_codes(frames) == [ErrorCode.MALFORMED_FRAME]
    assert pinned(relay) == []


# ------------------------------------------------------------------ the WebSocket layer


async def raw_websocket(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket upgrade by hand (RFC 6455 §4.1) on a plain TCP socket: then the test writes
    frame headers without their payload, which no WebSocket library does."""
    host_port = url.removeprefix("ws://").removesuffix("/v1")
    host, port = host_port.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /v1 HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    async with asyncio.timeout(TIMEOUT):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def binary_header(length: int) -> bytes:
    """A masked, final, binary frame header announcing ``length`` payload bytes (§5.2)."""
    return b"\x82\xff" + struct.pack("!Q", length) + os.urandom(4)


async def close_code_of(reader: asyncio.StreamReader) -> int:
    """The status code of the close frame the relay sends (unmasked, short: §5.5.1)."""
    async with asyncio.timeout(TIMEOUT):
        first = await reader.readexactly(2)
    assert first[0] == 0x88, first  # FIN + CLOSE
    async with asyncio.timeout(TIMEOUT):
        payload = await reader.readexactly(first[1] & 0x7F)
    return int(struct.unpack("!H", payload[:2])[0])


async def test_a_websocket_frame_over_the_limit_is_refused_from_its_header(
    relays: RelayLab,
) -> None:
    relay = await relays.start()
    conns = [await raw_websocket(relay.url) for _ in range(PEERS)]
    for _, writer in conns:
        writer.write(binary_header(MAX_WS_FRAME + 1))  # and never a byte of the payload
    for reader, writer in conns:
        assert await close_code_of(reader) == 1009
        writer.close()


def test_auth_timeout_is_a_validated_setting() -> None:
    assert ServerConfig().auth_timeout == 10.0
    assert load_config(None, {"TIDINGS_AUTH_TIMEOUT": "2s"}, {}).auth_timeout == 2.0
    with pytest.raises(ConfigError, match="auth_timeout"):
        ServerConfig(auth_timeout=0)
