"""Sealed sends at a real relay, over raw frames on a Noise NK (unidentified) session.

The NK session runs on the relay's one WebSocket endpoint; the relay tells it from XX/IK by the
handshake's tag byte (noise/pipes.py). It never authenticates a device, so it may only send
the sealed frames (docs/protocol.md §14): anything else is UNEXPECTED_FRAME.
"""

from __future__ import annotations

from tests.harness import RelayLab
from tests.server.noise_ws import NoiseWS, error_codes
from tidings.net.timers import VirtualTimers
from tidings.wire import PROTOCOL_VERSION, ErrorCode, Hello, Ping, Pong


async def test_an_nk_session_is_unidentified_and_needs_no_hello(relays: RelayLab) -> None:
    timers = relays.relay_options["timers"] = VirtualTimers()
    relay = await relays.start(auth_timeout=10.0)
    peer = await NoiseWS.open_nk(relay.url, relay.static_public)
    for nonce in range(3):  # well past the HELLO deadline: an NK session has none
        await peer.send(Ping(nonce))
        assert await peer.next() == [Pong(nonce)]
        timers.advance(8.0)
    await peer.send(Ping(9))
    assert await peer.next() == [Pong(9)]


async def test_an_nk_session_may_not_say_hello(relays: RelayLab) -> None:
    relay = await relays.start()
    peer = await NoiseWS.open_nk(relay.url, relay.static_public)
    await peer.send(Hello(PROTOCOL_VERSION, 0))
    code, frames = await peer.close_seen()
    assert error_codes(frames) == [ErrorCode.UNEXPECTED_FRAME]
    assert code == 1002  # protocol error, as any frame out of place
