"""e2e.xeddsa.sign: libsignal's XEdDSA signing with a plain X25519 key (the relay's Noise
static key signs the sealed-sender server certificate). Checked by our verifier, by the
independent ``XEdDSA`` package's Ed25519 verification (a dev dependency, tests only), and by
frozen golden bytes."""

from __future__ import annotations

import pytest
import xeddsa as reference

from tidings.e2e.keys import PublicKey
from tidings.e2e.xeddsa import NONCE_LEN, XEdDSAKey, sign, verify
from tidings.noise import generate_keypair, public_key

from ._support import seeded_rng

KEY = bytes(range(32))
NONCE = bytes(range(NONCE_LEN))
#: sign(KEY, b"tidings", NONCE), computed once and frozen.
GOLDEN = (
    "fe7c25ecd5365a19f7dbf3169ad3a5fa70b1113f91eaae5d3a3c93492d6680bd"
    "e1aa98cb9f3d3d6bea519c0316e6c0609d24f47fae59e0aba69d9854ade5ef06"
)


def test_golden_signature() -> None:
    assert sign(KEY, b"tidings", NONCE).hex() == GOLDEN
    assert verify(PublicKey(public_key(KEY)), b"tidings", bytes.fromhex(GOLDEN))


@pytest.mark.parametrize("n", range(8))
def test_signatures_verify_here_and_in_the_reference_package(n: int) -> None:
    private, public = generate_keypair(seeded_rng(100 + n))
    message = b"message %d" % n
    signature = sign(private, message, seeded_rng(200 + n)(NONCE_LEN))
    assert verify(PublicKey(public), message, signature)
    assert not verify(PublicKey(public), message + b"!", signature)
    other = generate_keypair(seeded_rng(300 + n))[1]
    assert not verify(PublicKey(other), message, signature)
    # The sign bit rides in sig[63] (libsignal's variant); without it, plain Ed25519 under
    # the Edwards form of the key, as the reference package derives it from the scalar.
    edwards = reference.priv_to_ed25519_pub(private)
    assert signature[63] >> 7 == edwards[31] >> 7
    plain = signature[:63] + bytes([signature[63] & 0x7F])
    assert reference.ed25519_verify(plain, edwards, message)


def test_a_signer_draws_a_fresh_nonce() -> None:
    signer = XEdDSAKey(KEY, seeded_rng(7))
    first, second = signer.sign(b"m"), signer.sign(b"m")
    assert first != second
    assert all(verify(PublicKey(public_key(KEY)), b"m", s) for s in (first, second))


def test_bad_lengths_are_refused() -> None:
    with pytest.raises(ValueError):
        sign(bytes(31), b"m", NONCE)
    with pytest.raises(ValueError):
        sign(KEY, b"m", bytes(63))
