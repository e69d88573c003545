"""CipherState: nonce encodings, the reserved nonce, limits, rekey (Noise §5.1, §12)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from tidings.errors import DecryptionError
from tidings.noise import (
    MAX_MESSAGE,
    MAX_NONCE,
    TAG_LEN,
    CipherState,
    MessageTooLargeError,
    NonceExhaustedError,
)

KEY = bytes(range(32))
AD = b"associated"


def test_aesgcm_nonce_is_32_zero_bits_then_big_endian_counter() -> None:
    state = CipherState("AESGCM", KEY)
    state.set_nonce(0x0102030405060708)
    nonce = bytes(4) + bytes.fromhex("0102030405060708")
    assert state.encrypt_with_ad(AD, b"hi") == AESGCM(KEY).encrypt(nonce, b"hi", AD)


def test_chachapoly_nonce_is_32_zero_bits_then_little_endian_counter() -> None:
    state = CipherState("ChaChaPoly", KEY)
    state.set_nonce(0x0102030405060708)
    nonce = bytes(4) + bytes.fromhex("0807060504030201")
    assert state.encrypt_with_ad(AD, b"hi") == ChaCha20Poly1305(KEY).encrypt(nonce, b"hi", AD)


@pytest.mark.parametrize("cipher", ["AESGCM", "ChaChaPoly"])
def test_round_trip_advances_both_nonces(cipher: str) -> None:
    sender, receiver = CipherState(cipher, KEY), CipherState(cipher, KEY)
    for n in range(3):
        assert (sender.nonce, receiver.nonce) == (n, n)
        assert receiver.decrypt_with_ad(AD, sender.encrypt_with_ad(AD, b"m")) == b"m"


def test_without_key_data_passes_through_and_nonce_stays() -> None:
    state = CipherState("AESGCM")
    assert not state.has_key()
    assert state.encrypt_with_ad(AD, b"clear") == b"clear"
    assert state.decrypt_with_ad(AD, b"clear") == b"clear"
    assert state.nonce == 0


def test_failed_decryption_keeps_the_nonce() -> None:
    sender, receiver = CipherState("AESGCM", KEY), CipherState("AESGCM", KEY)
    ciphertext = sender.encrypt_with_ad(AD, b"m")
    with pytest.raises(DecryptionError):
        receiver.decrypt_with_ad(b"other ad", ciphertext)
    assert receiver.nonce == 0
    assert receiver.decrypt_with_ad(AD, ciphertext) == b"m"


def test_reserved_nonce_is_never_used() -> None:
    sender, receiver = CipherState("ChaChaPoly", KEY), CipherState("ChaChaPoly", KEY)
    sender.set_nonce(MAX_NONCE - 1)
    receiver.set_nonce(MAX_NONCE - 1)
    assert receiver.decrypt_with_ad(AD, sender.encrypt_with_ad(AD, b"last")) == b"last"
    assert sender.nonce == MAX_NONCE
    with pytest.raises(NonceExhaustedError):
        sender.encrypt_with_ad(AD, b"one too many")
    with pytest.raises(NonceExhaustedError):
        receiver.decrypt_with_ad(AD, bytes(TAG_LEN))
    assert sender.nonce == MAX_NONCE


def test_set_nonce_bounds() -> None:
    state = CipherState("AESGCM", KEY)
    with pytest.raises(ValueError):
        state.set_nonce(-1)
    with pytest.raises(ValueError):
        state.set_nonce(MAX_NONCE + 1)


def test_message_limit() -> None:
    sender, receiver = CipherState("AESGCM", KEY), CipherState("AESGCM", KEY)
    biggest = sender.encrypt_with_ad(b"", bytes(MAX_MESSAGE - TAG_LEN))
    assert len(biggest) == MAX_MESSAGE
    assert receiver.decrypt_with_ad(b"", biggest) == bytes(MAX_MESSAGE - TAG_LEN)
    with pytest.raises(MessageTooLargeError):
        sender.encrypt_with_ad(b"", bytes(MAX_MESSAGE - TAG_LEN + 1))
    assert sender.nonce == 1
    with pytest.raises(DecryptionError):
        receiver.decrypt_with_ad(b"", bytes(MAX_MESSAGE + 1))


@pytest.mark.parametrize("cipher", ["AESGCM", "ChaChaPoly"])
def test_rekey_is_encrypt_of_zeros_under_max_nonce(cipher: str) -> None:
    state = CipherState(cipher, KEY)
    state.set_nonce(5)
    state.rekey()
    # Noise §4.2: REKEY(k) = ENCRYPT(k, maxnonce, zerolen, zeros)[:32]; maxnonce is all ones
    # in either byte order.
    aead = AESGCM(KEY) if cipher == "AESGCM" else ChaCha20Poly1305(KEY)
    new_key = aead.encrypt(bytes(4) + b"\xff" * 8, bytes(32), b"")[:32]
    expected = CipherState(cipher, new_key)
    expected.set_nonce(5)
    assert state.nonce == 5
    assert state.encrypt_with_ad(AD, b"m") == expected.encrypt_with_ad(AD, b"m")


def test_bad_construction() -> None:
    with pytest.raises(ValueError):
        CipherState("DES")
    with pytest.raises(ValueError):
        CipherState("AESGCM", bytes(31))
    with pytest.raises(ValueError):
        CipherState("AESGCM").rekey()
