"""e2e.keys: public key encoding, key pairs, Ed25519 identity keys and curve conversions."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tidings.e2e import (
    IdentityKeyPair,
    KeyPair,
    PublicKey,
    edwards_to_montgomery,
    montgomery_to_edwards,
    xeddsa_verify,
)

from ._support import seeded_rng

# RFC 8032 §7.1, TEST 1.
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
# Our own frozen answer: the X25519 key derived from that seed (clamped SHA-512(seed)[:32]).
RFC8032_X25519 = "05" + "d85e07ec22b0ad881537c2f44d662d1a143cf830c57aca4305d85c7a90f6b62e"


def test_public_key_wire_form() -> None:
    raw = bytes(range(32))
    key = PublicKey(raw)
    assert key.serialize() == b"\x05" + raw
    assert PublicKey.parse(key.serialize()) == key


@pytest.mark.parametrize("data", [b"", b"\x05" + bytes(31), b"\x06" + bytes(32), bytes(33)])
def test_public_key_parse_rejects(data: bytes) -> None:
    with pytest.raises(ValueError):
        PublicKey.parse(data)


def test_key_pair_rejects_a_foreign_public_key() -> None:
    one = KeyPair.generate(seeded_rng(1))
    two = KeyPair.generate(seeded_rng(2))
    with pytest.raises(ValueError):
        KeyPair(one.private, two.public)


def test_dh_agrees() -> None:
    one = KeyPair.generate(seeded_rng(1))
    two = KeyPair.generate(seeded_rng(2))
    assert one.dh(two.public) == two.dh(one.public)


def test_dh_rejects_small_order_key() -> None:
    with pytest.raises(ValueError):
        KeyPair.generate(seeded_rng(1)).dh(PublicKey(bytes(32)))


def test_rng_contract_is_checked() -> None:
    with pytest.raises(ValueError):
        KeyPair.generate(lambda n: bytes(n - 1))


def test_identity_from_rfc8032_seed() -> None:
    identity = IdentityKeyPair(RFC8032_SEED)
    assert identity.ed25519_public == RFC8032_PUBLIC
    assert identity.public.serialize().hex() == RFC8032_X25519
    assert edwards_to_montgomery(RFC8032_PUBLIC) == identity.public.raw


@pytest.mark.parametrize("seed", range(20))
def test_identity_signatures_verify_as_xeddsa(seed: int) -> None:
    identity = IdentityKeyPair.generate(seeded_rng(seed))
    message = b"signed prekey"
    signature = identity.sign(message)
    assert xeddsa_verify(identity.public, message, signature)
    assert not xeddsa_verify(identity.public, message + b"!", signature)
    # The top bit of sig[63] carries the Edwards sign; clearing it is the plain Ed25519 one.
    plain = signature[:63] + bytes([signature[63] & 0x7F])
    Ed25519PrivateKey.from_private_bytes(identity.seed).public_key().verify(plain, message)


@pytest.mark.parametrize("seed", range(10))
def test_conversions_round_trip(seed: int) -> None:
    ed_public = IdentityKeyPair.generate(seeded_rng(seed)).ed25519_public
    u = edwards_to_montgomery(ed_public)
    assert montgomery_to_edwards(u, ed_public[31] >> 7) == ed_public


def test_conversion_exceptional_points() -> None:
    with pytest.raises(ValueError):
        edwards_to_montgomery((1).to_bytes(32, "little"))  # y = 1: the neutral element
    with pytest.raises(ValueError):
        montgomery_to_edwards((2**255 - 20).to_bytes(32, "little"), 0)  # u = -1
    with pytest.raises(ValueError):
        edwards_to_montgomery(bytes(31))
    with pytest.raises(ValueError):
        IdentityKeyPair(bytes(31))
