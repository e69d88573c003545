"""The relay's session on the wire: what ERROR says, and in which order answers come.

Real relay on loopback, raw Noise connections driven by the test (tests/harness.py). Tests wait
on frames and closes, never on the clock.
"""

from __future__ import annotations

import os

import pytest

from tests.harness import ObservedRelay, RelayLab, open_raw, send_sealed, wait_closed
from tests.server.noise_ws import NoiseWS
from tidings.client import register
from tidings.client.store import Identity
from tidings.noise import generate_keypair
from tidings.wire import (
    PROTOCOL_VERSION,
    Ack,
    Devices,
    ErrorCode,
    Frame,
    FrameType,
    GetDevices,
    Hello,
    Ping,
    Pong,
    Register,
    Registered,
    Welcome,
)


async def relay_with_bob(relays: RelayLab) -> tuple[ObservedRelay, Identity]:
    relay = await relays.start()
    return relay, await register(relays.tmp / "bob", relay.url, "bob")


def stranger() -> bytes:
    private, _ = generate_keypair(os.urandom)
    return private


@pytest.mark.parametrize(
    ("as_bob", "frame", "code"),
    [
        (True, Hello(PROTOCOL_VERSION + 1, 0), ErrorCode.UNSUPPORTED_VERSION),
        (False, Register(PROTOCOL_VERSION + 1, "carol", "c", None), ErrorCode.UNSUPPORTED_VERSION),
        (False, Hello(PROTOCOL_VERSION, 0), ErrorCode.UNKNOWN_DEVICE),
        (True, Hello(PROTOCOL_VERSION, 1_000), ErrorCode.INVALID_ACK),  # cursor above last seq
        (False, Register(PROTOCOL_VERSION, "bob", "b", None), ErrorCode.ACCOUNT_EXISTS),
        (True, Register(PROTOCOL_VERSION, "dave", "d", None), ErrorCode.KEY_ALREADY_REGISTERED),
        (True, Ack(1), ErrorCode.UNEXPECTED_FRAME),  # before HELLO
    ],
    ids=lambda v: v.name if isinstance(v, ErrorCode) else None,
)
async def test_error_names_the_frame_that_caused_it(
    relays: RelayLab, as_bob: bool, frame: Frame, code: ErrorCode
) -> None:
    relay, bob = await relay_with_bob(relays)
    conn, peer = await open_raw(relay.url, bob.noise_private_key if as_bob else stranger())
    send_sealed(conn, frame)
    await wait_closed(conn)
    assert peer.closed is not None and peer.closed.by_peer
    assert (peer.closed.code, peer.closed.frame_type) == (code, frame.TYPE)


async def test_an_ack_above_what_was_delivered_names_ack(relays: RelayLab) -> None:
    relay, bob = await relay_with_bob(relays)
    conn, peer = await open_raw(relay.url, bob.noise_private_key)
    send_sealed(conn, Hello(PROTOCOL_VERSION, 0))
    await peer.frame(Welcome)
    send_sealed(conn, Ack(5))
    await wait_closed(conn)
    assert peer.closed is not None
    assert (peer.closed.code, peer.closed.frame_type) == (ErrorCode.INVALID_ACK, FrameType.ACK)


# ------------------------------------------------------------------ strict order (§7)


async def test_a_ping_after_hello_is_answered_after_welcome(relays: RelayLab) -> None:
    relay, bob = await relay_with_bob(relays)
    peer = await NoiseWS.open(relay.url, bob.noise_private_key)
    await peer.send(Hello(PROTOCOL_VERSION, 0), Ping(7))
    welcome, pong = await peer.next(2)
    assert isinstance(welcome, Welcome) and pong == Pong(7)


async def test_a_ping_after_register_is_answered_after_registered(relays: RelayLab) -> None:
    relay = await relays.start()
    peer = await NoiseWS.open(relay.url)
    await peer.send(Register(PROTOCOL_VERSION, "carol", "c", None), Ping(8))
    registered, pong = await peer.next(2)
    assert registered == Registered("carol", 1) and pong == Pong(8)


async def test_pings_between_requests_keep_their_place(relays: RelayLab) -> None:
    relay, bob = await relay_with_bob(relays)
    peer = await NoiseWS.open(relay.url, bob.noise_private_key)
    await peer.send(Hello(PROTOCOL_VERSION, 0))
    assert isinstance((await peer.next())[0], Welcome)
    await peer.send(Ping(1), GetDevices(2, "bob"), Ping(3), GetDevices(4, "nobody"), Ping(5))
    assert await peer.next(5) == [
        Pong(1),
        Devices(2, "bob", (1,)),
        Pong(3),
        Devices(4, "nobody", ()),
        Pong(5),
    ]
