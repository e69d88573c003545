"""Noise Pipes NK: the unidentified session of sealed sends (no client static key)."""

from __future__ import annotations

import pytest

from tidings.errors import HandshakeError
from tidings.noise import HandshakeState, HandshakeTag, PipesInitiator, PipesPattern, PipesResponder

from ._support import OLD_SERVER_PUBLIC, PROLOGUE, SERVER_PRIVATE, SERVER_PUBLIC, seeded_rng


def nk_pair(pinned: bytes = SERVER_PUBLIC) -> tuple[PipesInitiator, PipesResponder]:
    client = PipesInitiator(
        None, server_static=pinned, prologue=PROLOGUE, rng=seeded_rng(b"client rng")
    )
    server = PipesResponder(
        SERVER_PRIVATE, prologue=PROLOGUE, rng=seeded_rng(b"server rng"), payload=b"hi"
    )
    return client, server


def test_nk_round_trip_leaves_the_client_anonymous() -> None:
    client, server = nk_pair()
    hello = client.start(b"sealed")
    assert hello[0] == HandshakeTag.NK and len(hello) == 1 + 32 + len(b"sealed") + 16
    reply = server.receive(hello)
    assert reply is not None and reply[0] == HandshakeTag.NK
    assert server.complete and server.pattern == PipesPattern.NK
    assert client.receive(reply) is None and client.complete
    assert server.remote_static == b""  # nobody in particular
    assert client.remote_static == SERVER_PUBLIC
    assert server.remote_payload == b"sealed" and client.remote_payload == b"hi"
    assert client.handshake_hash == server.handshake_hash
    up, down = client.transport(), server.transport()
    assert down.decrypt(up.encrypt(b"up")) == b"up"
    assert up.decrypt(down.encrypt(b"down")) == b"down"


def test_nk_is_the_plain_noise_nk_handshake() -> None:
    """Cross-check with the HandshakeState the public NK vectors pin: same bytes, same hash."""
    client, server = nk_pair()
    hello = client.start(b"p")
    reply = server.receive(hello)
    assert reply is not None
    client.receive(reply)
    initiator = HandshakeState(
        PipesPattern.NK.protocol_name,
        initiator=True,
        prologue=PROLOGUE,
        ephemeral_private=seeded_rng(b"client rng")(32),
        remote_static=SERVER_PUBLIC,
    )
    responder = HandshakeState(
        PipesPattern.NK.protocol_name,
        initiator=False,
        prologue=PROLOGUE,
        static_private=SERVER_PRIVATE,
        ephemeral_private=seeded_rng(b"server rng")(32),
    )
    assert initiator.write_message(b"p") == hello[1:]
    assert responder.read_message(hello[1:]) == b"p"
    assert responder.write_message(b"hi") == reply[1:]
    assert initiator.read_message(reply[1:]) == b"hi"
    assert initiator.handshake_hash == client.handshake_hash


def test_a_stale_pin_fails_nk_without_fallback() -> None:
    client, server = nk_pair(OLD_SERVER_PUBLIC)
    with pytest.raises(HandshakeError):
        server.receive(client.start(b"x"))
    assert server.failed


def test_tampered_nk_reply_fails_the_client() -> None:
    client, server = nk_pair()
    reply = bytearray(server.receive(client.start()) or b"")
    reply[-1] ^= 1
    with pytest.raises(HandshakeError):
        client.receive(bytes(reply))
    assert client.failed


def test_nk_needs_the_server_key() -> None:
    with pytest.raises(ValueError, match="NK"):
        PipesInitiator(None, server_static=None, prologue=PROLOGUE, rng=seeded_rng(b"r"))


def test_an_nk_client_rejects_an_ik_reply() -> None:
    client, _ = nk_pair()
    client.start()
    with pytest.raises(HandshakeError):
        client.receive(bytes([HandshakeTag.IK]) + bytes(48))
