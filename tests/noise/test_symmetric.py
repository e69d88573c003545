"""Hash functions, Noise's HKDF and the SymmetricState (Noise §4.3, §5.2)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from tidings.noise import SymmetricState
from tidings.noise.symmetric import HASHES


@pytest.mark.parametrize("name", sorted(HASHES))
def test_noise_hkdf_equals_rfc5869_expand_with_empty_info(name: str) -> None:
    # Noise's HKDF with salt ck is RFC 5869's: PRK = HMAC(ck, ikm), T(i) = HMAC(PRK, T(i-1)||i).
    functions = HASHES[name]
    ck, ikm = bytes(range(functions.hashlen)), b"input key material" * 2
    prk = functions.hmac(ck, ikm)
    for count in (2, 3):
        outputs = functions.hkdf(ck, ikm, count)
        assert [len(o) for o in outputs] == [functions.hashlen] * count
        expand = HKDFExpand(functions.algorithm(), functions.hashlen * count, b"")
        assert b"".join(outputs) == expand.derive(prk)


def test_hkdf_output_count_is_checked() -> None:
    with pytest.raises(ValueError):
        HASHES["SHA256"].hkdf(bytes(32), b"", 4)


def test_hash_lengths() -> None:
    assert {name: h.hashlen for name, h in HASHES.items()} == {
        "SHA256": 32,
        "SHA512": 64,
        "BLAKE2s": 32,
        "BLAKE2b": 64,
    }


def test_short_protocol_name_is_padded_long_one_is_hashed() -> None:
    short = "Noise_NN_25519_AESGCM_SHA256"  # 28 bytes <= 32
    assert SymmetricState(short, "AESGCM", "SHA256").handshake_hash == short.encode().ljust(
        32, b"\x00"
    )
    long = "Noise_XXfallback_25519_AESGCM_SHA256"  # 36 bytes > 32
    digest = hashes.Hash(hashes.SHA256())
    digest.update(long.encode())
    assert SymmetricState(long, "AESGCM", "SHA256").handshake_hash == digest.finalize()


def test_two_states_agree_and_split_keys_differ_by_direction() -> None:
    a = SymmetricState("Noise_NN_25519_ChaChaPoly_BLAKE2b", "ChaChaPoly", "BLAKE2b")
    b = SymmetricState("Noise_NN_25519_ChaChaPoly_BLAKE2b", "ChaChaPoly", "BLAKE2b")
    for state in (a, b):
        state.mix_hash(b"prologue")
        state.mix_key(b"k" * 32)
    assert b.decrypt_and_hash(a.encrypt_and_hash(b"payload")) == b"payload"
    assert a.handshake_hash == b.handshake_hash
    a1, a2 = a.split()
    b1, b2 = b.split()
    assert b1.decrypt_with_ad(b"", a1.encrypt_with_ad(b"", b"x")) == b"x"
    assert a2.decrypt_with_ad(b"", b2.encrypt_with_ad(b"", b"y")) == b"y"
    assert a1.encrypt_with_ad(b"", b"z") != a2.encrypt_with_ad(b"", b"z")


def test_unknown_hash() -> None:
    with pytest.raises(ValueError):
        SymmetricState("Noise_NN_25519_AESGCM_MD5", "AESGCM", "MD5")
