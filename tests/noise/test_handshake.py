"""HandshakeState: call order, missing inputs, limits and sticky failure (Noise §5.3)."""

from __future__ import annotations

import pytest

from tidings.errors import HandshakeError
from tidings.noise import MAX_MESSAGE, HandshakeState, MessageTooLargeError

from ._support import CLIENT_PRIVATE, SERVER_PRIVATE, SERVER_PUBLIC, seeded_rng

XX = "Noise_XX_25519_ChaChaPoly_SHA256"
IK = "Noise_IK_25519_AESGCM_BLAKE2b"


def xx_pair() -> tuple[HandshakeState, HandshakeState]:
    initiator = HandshakeState(
        XX, initiator=True, static_private=CLIENT_PRIVATE, rng=seeded_rng(b"i")
    )
    responder = HandshakeState(
        XX, initiator=False, static_private=SERVER_PRIVATE, rng=seeded_rng(b"r")
    )
    return initiator, responder


def test_full_xx_and_split_once() -> None:
    initiator, responder = xx_pair()
    assert responder.read_message(initiator.write_message(b"a")) == b"a"
    assert initiator.read_message(responder.write_message(b"b")) == b"b"
    assert responder.read_message(initiator.write_message(b"c")) == b"c"
    assert initiator.complete and responder.complete
    assert initiator.remote_static == SERVER_PUBLIC
    i1, i2 = initiator.split()
    r1, r2 = responder.split()
    assert r1.decrypt_with_ad(b"", i1.encrypt_with_ad(b"", b"x")) == b"x"
    assert i2.decrypt_with_ad(b"", r2.encrypt_with_ad(b"", b"y")) == b"y"
    with pytest.raises(HandshakeError):
        initiator.split()


def test_out_of_turn_calls_raise_without_killing_the_handshake() -> None:
    initiator, responder = xx_pair()
    with pytest.raises(HandshakeError):
        initiator.read_message(b"")
    with pytest.raises(HandshakeError):
        responder.write_message()
    with pytest.raises(HandshakeError):
        initiator.split()
    responder.read_message(initiator.write_message())


def test_calls_after_completion_raise() -> None:
    initiator, responder = xx_pair()
    responder.read_message(initiator.write_message())
    initiator.read_message(responder.write_message())
    responder.read_message(initiator.write_message())
    with pytest.raises(HandshakeError):
        initiator.write_message()
    with pytest.raises(HandshakeError):
        responder.read_message(b"")


def test_a_bad_message_kills_the_handshake() -> None:
    initiator, responder = xx_pair()
    responder.read_message(initiator.write_message())
    message = bytearray(responder.write_message(b"payload"))
    message[40] ^= 1
    with pytest.raises(HandshakeError):
        initiator.read_message(bytes(message))
    message[40] ^= 1
    with pytest.raises(HandshakeError):
        initiator.read_message(bytes(message))  # the untouched message is too late


@pytest.mark.parametrize("cut", [0, 31, 32, 32 + 47, 32 + 48 + 15])
def test_truncated_messages(cut: int) -> None:
    initiator, responder = xx_pair()
    responder.read_message(initiator.write_message())
    message = responder.write_message()
    assert len(message) == 32 + 48 + 16
    with pytest.raises(HandshakeError):
        initiator.read_message(message[:cut])


def test_oversize_write_is_refused_before_any_change() -> None:
    initiator, responder = xx_pair()
    largest = MAX_MESSAGE - 32  # message 0 is e plus a cleartext payload
    with pytest.raises(MessageTooLargeError):
        initiator.write_message(bytes(largest + 1))
    message = initiator.write_message(bytes(largest))
    assert len(message) == MAX_MESSAGE
    responder.read_message(message)
    largest = MAX_MESSAGE - 32 - 48 - 16
    with pytest.raises(MessageTooLargeError):
        responder.write_message(bytes(largest + 1))
    assert len(responder.write_message(bytes(largest))) == MAX_MESSAGE


def test_oversize_read_is_refused() -> None:
    _, responder = xx_pair()
    with pytest.raises(HandshakeError):
        responder.read_message(bytes(MAX_MESSAGE + 1))


def test_missing_or_malformed_inputs() -> None:
    with pytest.raises(ValueError):
        HandshakeState(XX, initiator=True, rng=seeded_rng(b"x"))  # no static key
    with pytest.raises(ValueError):
        HandshakeState(XX, initiator=True, static_private=CLIENT_PRIVATE)  # no rng
    with pytest.raises(ValueError):
        HandshakeState(IK, initiator=True, static_private=CLIENT_PRIVATE, rng=seeded_rng(b"x"))
    with pytest.raises(ValueError):
        HandshakeState(XX, initiator=True, static_private=bytes(31), rng=seeded_rng(b"x"))
    with pytest.raises(ValueError):
        HandshakeState(
            IK,
            initiator=True,
            static_private=CLIENT_PRIVATE,
            remote_static=bytes(33),
            rng=seeded_rng(b"x"),
        )
    with pytest.raises(ValueError):  # XXfallback's responder needs its pre-message ephemeral
        HandshakeState(
            "Noise_XXfallback_25519_AESGCM_SHA256",
            initiator=False,
            static_private=CLIENT_PRIVATE,
            rng=seeded_rng(b"x"),
        )


def test_psk_count_and_length_are_checked() -> None:
    name = "Noise_NNpsk0_25519_AESGCM_SHA256"
    with pytest.raises(ValueError):
        HandshakeState(name, initiator=True, rng=seeded_rng(b"x"))
    with pytest.raises(ValueError):
        HandshakeState(name, initiator=True, psks=[bytes(31)], rng=seeded_rng(b"x"))
    with pytest.raises(ValueError):
        HandshakeState(name, initiator=True, psks=[bytes(32)] * 2, rng=seeded_rng(b"x"))


def test_wrong_psk_fails() -> None:
    name = "Noise_NNpsk2_25519_ChaChaPoly_BLAKE2s"
    initiator = HandshakeState(name, initiator=True, psks=[b"a" * 32], rng=seeded_rng(b"i"))
    responder = HandshakeState(name, initiator=False, psks=[b"b" * 32], rng=seeded_rng(b"r"))
    responder.read_message(initiator.write_message())
    with pytest.raises(HandshakeError):
        initiator.read_message(responder.write_message())


def test_low_order_ephemeral_is_rejected() -> None:
    _, responder = xx_pair()
    responder.read_message(bytes(32))  # e only: no DH yet
    with pytest.raises(HandshakeError):
        responder.write_message()  # ee with the zero point
    with pytest.raises(HandshakeError):
        responder.write_message()
