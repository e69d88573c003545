"""Sealed sends at a real relay, over raw frames on a Noise NK (unidentified) session.

The NK session runs on the relay's one WebSocket endpoint; the relay tells it from XX/IK by the
handshake's tag byte (noise/pipes.py). It never authenticates a device, so it may only send
the sealed frames (docs/protocol.md §14): anything else is UNEXPECTED_FRAME.
"""

from __future__ import annotations

from tests.harness import RelayLab
from tests.server.noise_ws import NoiseWS, error_codes
from tests.server.test_prekeys import kem, signed
from tidings.e2e.certificates import SenderCertificate
from tidings.e2e.keys import PublicKey
from tidings.net.timers import VirtualTimers
from tidings.wire import (
    PROTOCOL_VERSION,
    ErrorCode,
    Hello,
    Ping,
    Pong,
    PrekeysStored,
    PrekeysUpload,
    Register,
    Registered,
    SenderCert,
    SenderCertRequest,
    SetAccessKey,
    TagQuery,
    TagStatus,
    Welcome,
)
from tidings.wire.limits import MAX_PRE_AUTH_FRAME

IDENTITY = b"\x05" + bytes(range(100, 132))


async def device(url: str, account: str) -> NoiseWS:
    """A new account's device 1 on a raw authenticated session, its identity key uploaded."""
    peer = await NoiseWS.open(url)
    await peer.send(Register(PROTOCOL_VERSION, account, "phone"))
    assert isinstance((await peer.next())[0], Registered)
    await peer.send(Hello(PROTOCOL_VERSION, 0))
    assert isinstance((await peer.next())[0], Welcome)
    await peer.send(PrekeysUpload(1, IDENTITY, signed(1), (), kem(1)))
    assert isinstance((await peer.next())[0], PrekeysStored)
    return peer


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


async def test_the_relay_issues_a_certificate_under_its_pinned_key(relays: RelayLab) -> None:
    relay = await relays.start()
    alice = await device(relay.url, "alice")
    await alice.send(SenderCertRequest(7))
    (answer,) = await alice.next()
    assert isinstance(answer, SenderCert) and answer.request_id == 7
    now = relays.clock()
    assert answer.expires_at == now + 24 * 3600
    cert = SenderCertificate.parse(answer.certificate)
    assert (cert.account, cert.device, cert.identity_key) == ("alice", 1, PublicKey.parse(IDENTITY))
    cert.validate(PublicKey(relay.static_public), int(now * 1000))  # the key clients pin
    await alice.send(SetAccessKey(8, bytes(16)))
    (again,) = await alice.next()
    assert isinstance(again, SenderCert) and again.request_id == 8
    assert await relay.store.access_key("alice") == bytes(16)


async def test_an_nk_session_may_send_big_frames_from_the_start(relays: RelayLab) -> None:
    """No HELLO lifts the pre-auth frame limit on an NK session: it is lifted at once."""
    relay = await relays.start()
    peer = await NoiseWS.open_nk(relay.url, relay.static_public)
    query = TagQuery(1, tuple(i.to_bytes(16, "big") for i in range(256)))
    assert len(query.serialize()) > MAX_PRE_AUTH_FRAME
    await peer.send(query)
    # The relay decoded it (a frame over the limit would be FRAME_TOO_LARGE from its length
    # prefix) and answered it: none of these tags was ever stored.
    (status,) = await peer.next()
    assert status == TagStatus(1, tuple((tag, 0) for tag in query.tags))
