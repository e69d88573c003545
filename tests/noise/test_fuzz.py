"""Fuzzing: peer garbage is rejected with the documented exception, never a crash.

``PipesResponder.receive``/``PipesInitiator.receive`` accept or raise `HandshakeError`;
``NoiseTransport.decrypt`` raises `DecryptionError`. Nothing else may escape.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.errors import DecryptionError, HandshakeError
from tidings.noise import MAX_MESSAGE, NoiseTransport, PipesInitiator, PipesResponder

from ._support import OLD_SERVER_PUBLIC, SERVER_PUBLIC, pair, run

FUZZ = settings(max_examples=150, deadline=None, database=None)

# Bytes with a plausible tag in front more often than chance would give.
tagged = st.builds(
    lambda tag, body: bytes([tag]) + body,
    st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x04, 0xFF]),
    st.binary(max_size=200),
)
messages = st.one_of(st.binary(max_size=200), tagged)
pins = st.sampled_from([None, SERVER_PUBLIC, OLD_SERVER_PUBLIC])


def feed(peer: PipesInitiator | PipesResponder, inputs: list[bytes]) -> None:
    """Feed every input; only HandshakeError may escape, and a failure is final."""
    failed = False
    for data in inputs:
        try:
            reply = peer.receive(data)
        except HandshakeError:
            failed = True
            continue
        assert not failed, "a failed handshake accepted input"
        assert reply is None or 1 <= len(reply) <= 1 + MAX_MESSAGE


@FUZZ
@given(st.lists(messages, min_size=1, max_size=4))
def test_responder_survives_garbage(inputs: list[bytes]) -> None:
    _, server = pair(pinned=None)
    feed(server, inputs)


@FUZZ
@given(pins, st.lists(messages, min_size=1, max_size=3))
def test_responder_survives_garbage_after_a_genuine_hello(
    pinned: bytes | None, inputs: list[bytes]
) -> None:
    client, server = pair(pinned=pinned)
    server.receive(client.start())
    feed(server, inputs)


@FUZZ
@given(pins, st.lists(messages, min_size=1, max_size=3))
def test_initiator_survives_garbage(pinned: bytes | None, inputs: list[bytes]) -> None:
    client, _ = pair(pinned=pinned)
    client.start()
    feed(client, inputs)


@FUZZ
@given(pins, st.data())
def test_mutated_exchanges_complete_consistently_or_fail(
    pinned: bytes | None, data: st.DataObject
) -> None:
    """Mutate one message of a genuine exchange: never a crash, never a split brain."""
    client, server = pair(pinned=pinned)
    genuine = run(*pair(pinned=pinned))
    target = data.draw(st.integers(0, len(genuine) - 1), label="target")
    message = genuine[target]
    position = data.draw(st.integers(0, len(message) - 1), label="position")
    mutated = bytearray(message)
    mutated[position] ^= data.draw(st.integers(1, 255), label="xor")
    wire = [client.start()]
    try:
        while True:
            sent = bytes(mutated) if len(wire) - 1 == target else wire[-1]
            peer = server if len(wire) % 2 == 1 else client
            reply = peer.receive(sent)
            if reply is None:
                break
            wire.append(reply)
    except HandshakeError:
        return
    # Completed despite the mutation: only possible by falling back from a tampered IK
    # message, and then both sides agree and are authenticated.
    assert client.complete and server.complete
    assert client.handshake_hash == server.handshake_hash
    assert client.remote_static == SERVER_PUBLIC


@FUZZ
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=4))
def test_transport_decrypt_raises_only_decryption_error(inputs: list[bytes]) -> None:
    client, server = pair(pinned=None)
    run(client, server)
    transport: NoiseTransport = server.transport()
    for data in inputs:
        try:
            transport.decrypt(data)
        except DecryptionError:
            pass
        else:  # pragma: no cover - would be a forgery
            raise AssertionError("garbage decrypted")
    assert transport.broken
