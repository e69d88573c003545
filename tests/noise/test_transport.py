"""NoiseTransport: ordering, replay, tampering, limits, nonce exhaustion, death on failure."""

from __future__ import annotations

import pytest

from tidings.errors import ConnectionBroken, DecryptionError
from tidings.noise import (
    MAX_MESSAGE,
    MAX_NONCE,
    MAX_PLAINTEXT,
    CipherState,
    MessageTooLargeError,
    NoiseTransport,
    NonceExhaustedError,
)

from ._support import pair, run


def transports() -> tuple[NoiseTransport, NoiseTransport]:
    client, server = pair(pinned=None)
    run(client, server)
    return client.transport(), server.transport()


def assert_dead(transport: NoiseTransport, genuine: bytes) -> None:
    assert transport.broken
    with pytest.raises(DecryptionError):
        transport.decrypt(genuine)
    with pytest.raises(ConnectionBroken) as info:
        transport.encrypt(b"anything")
    assert isinstance(info.value.__cause__, DecryptionError)


def test_both_directions_and_nonces_increase() -> None:
    client, server = transports()
    seen = set()
    for n in range(5):
        assert (client.send_nonce, server.receive_nonce) == (2 * n, 2 * n)
        assert (server.send_nonce, client.receive_nonce) == (n, n)
        ciphertext = client.encrypt(b"same plaintext")
        assert ciphertext not in seen
        seen.add(ciphertext)
        assert server.decrypt(ciphertext) == b"same plaintext"
        assert server.decrypt(client.encrypt(b"")) == b""
        assert client.decrypt(server.encrypt(b"back")) == b"back"
    assert client.send_nonce == server.receive_nonce == 10
    assert server.send_nonce == client.receive_nonce == 5


def test_the_transport_object_is_shared_not_re_split() -> None:
    client, server = pair(pinned=None)
    run(client, server)
    assert client.transport() is client.transport()


@pytest.mark.parametrize("position", [0, 3, -1])
def test_tampered_ciphertext_kills_the_transport(position: int) -> None:
    client, server = transports()
    ciphertext = client.encrypt(b"hello")
    tampered = bytearray(ciphertext)
    tampered[position] ^= 0x80
    with pytest.raises(DecryptionError):
        server.decrypt(bytes(tampered))
    assert_dead(server, ciphertext)


def test_replay_kills_the_transport() -> None:
    client, server = transports()
    first = client.encrypt(b"one")
    assert server.decrypt(first) == b"one"
    with pytest.raises(DecryptionError):
        server.decrypt(first)
    assert_dead(server, client.encrypt(b"two"))


def test_reordering_kills_the_transport() -> None:
    client, server = transports()
    first, second = client.encrypt(b"one"), client.encrypt(b"two")
    with pytest.raises(DecryptionError):
        server.decrypt(second)
    assert_dead(server, first)


def test_reflection_is_rejected() -> None:
    client, _ = transports()
    with pytest.raises(DecryptionError):
        client.decrypt(client.encrypt(b"mirror"))


@pytest.mark.parametrize("size", [0, 15, MAX_MESSAGE + 1])
def test_ciphertexts_of_impossible_length_fail(size: int) -> None:
    _, server = transports()
    with pytest.raises(DecryptionError):
        server.decrypt(bytes(size))
    assert server.broken


def test_plaintext_limit() -> None:
    client, server = transports()
    with pytest.raises(MessageTooLargeError):
        client.encrypt(bytes(MAX_PLAINTEXT + 1))
    assert client.send_nonce == 0
    ciphertext = client.encrypt(bytes(MAX_PLAINTEXT))
    assert len(ciphertext) == MAX_MESSAGE
    assert server.decrypt(ciphertext) == bytes(MAX_PLAINTEXT)


def test_nonce_exhaustion() -> None:
    key = bytes(range(32))
    send, receive = CipherState("AESGCM", key), CipherState("AESGCM", key)
    send.set_nonce(MAX_NONCE - 1)
    receive.set_nonce(MAX_NONCE - 1)
    sender = NoiseTransport(send, CipherState("AESGCM", key))
    receiver = NoiseTransport(CipherState("AESGCM", key), receive)
    assert receiver.decrypt(sender.encrypt(b"last")) == b"last"
    with pytest.raises(NonceExhaustedError):
        sender.encrypt(b"one too many")
    with pytest.raises(DecryptionError):
        receiver.decrypt(bytes(32))
    assert receiver.broken


def test_needs_keyed_cipher_states() -> None:
    with pytest.raises(ValueError):
        NoiseTransport(CipherState("AESGCM"), CipherState("AESGCM", bytes(32)))
