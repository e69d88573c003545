"""e2e.pqxdh: our frozen PQXDH vector, both sides, and refused bundles.

``tests/vectors/signal/tidings-pqxdh.json`` is our own (no public PQXDH vector exists): the
expected keys are also recomputed here from the specification's formula with ``cryptography``
alone, so the vector pins the formula, not just our code's past output.
"""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tidings.e2e import BundleError, IdentityKeyPair, KeyPair, X3DHBundle, kem
from tidings.e2e.pqxdh import PQXDH_INFO, PQXDHBundle, initiate, respond
from tidings.e2e.prekeys import KEM_KEY_TYPE_MLKEM1024, KemPreKey
from tidings.errors import DecryptionError

from ._support import load_vectors

VECTOR = load_vectors("tidings-pqxdh.json")


def _b(name: str) -> bytes:
    return bytes.fromhex(VECTOR["keys"][name])


ALICE = IdentityKeyPair(_b("alice_identity_seed"))
BOB = IdentityKeyPair(_b("bob_identity_seed"))
SPK = KeyPair.from_private(_b("bob_signed_prekey_private"))
OPK = KeyPair.from_private(_b("bob_one_time_prekey_private"))
BASE = KeyPair.from_private(_b("alice_base_private"))
KEM_SEED = _b("bob_kem_seed")
CIPHERTEXT = bytes.fromhex(VECTOR["kem_ciphertext"])
EXPECTED: dict[str, Any] = VECTOR["expected"]


def _bundle(kem_signature: bytes | None = None) -> PQXDHBundle:
    public = kem.kem_public_key(KEM_SEED)
    signature = kem_signature or BOB.sign(bytes([KEM_KEY_TYPE_MLKEM1024]) + public)
    x3dh = X3DHBundle(1, BOB.public, 5, SPK.public, BOB.sign(SPK.public.serialize()), 9, OPK.public)
    return PQXDHBundle(x3dh, KemPreKey(7, public, signature, False))


def _replay(public: bytes) -> tuple[bytes, bytes]:
    assert public == kem.kem_public_key(KEM_SEED)
    return CIPHERTEXT, bytes.fromhex(EXPECTED["kem_shared_secret"])


def test_vector_formula() -> None:
    dh = [
        ALICE.dh_key_pair.dh(SPK.public),
        BASE.dh(BOB.public),
        BASE.dh(SPK.public),
        BASE.dh(OPK.public),
    ]
    ikm = b"\xff" * 32 + b"".join(dh) + bytes.fromhex(EXPECTED["kem_shared_secret"])
    okm = HKDF(hashes.SHA256(), 64, None, PQXDH_INFO).derive(ikm)
    assert okm.hex() == EXPECTED["root_key"] + EXPECTED["chain_key"]


def test_vector_as_initiator() -> None:
    result = initiate(ALICE.dh_key_pair, BASE, _bundle(), encapsulate=_replay)
    assert result.kem_ciphertext == CIPHERTEXT
    assert result.keys.root_key.hex() == EXPECTED["root_key"]
    assert result.keys.chain_key.hex() == EXPECTED["chain_key"]


def test_vector_as_responder() -> None:
    keys = respond(BOB.dh_key_pair, SPK, OPK, KEM_SEED, ALICE.public, BASE.public, CIPHERTEXT)
    assert keys.root_key.hex() == EXPECTED["root_key"]
    assert keys.chain_key.hex() == EXPECTED["chain_key"]


def test_real_encapsulation_agrees() -> None:
    result = initiate(ALICE.dh_key_pair, BASE, _bundle())
    keys = respond(
        BOB.dh_key_pair, SPK, OPK, KEM_SEED, ALICE.public, BASE.public, result.kem_ciphertext
    )
    assert keys == result.keys
    assert keys.root_key.hex() != EXPECTED["root_key"]  # a fresh KEM secret


def test_bad_kem_signature_is_refused() -> None:
    with pytest.raises(BundleError):
        initiate(ALICE.dh_key_pair, BASE, _bundle(kem_signature=bytes(64)), encapsulate=_replay)


def test_wrong_ciphertext_gives_other_keys_or_error() -> None:
    other = bytes([CIPHERTEXT[0] ^ 1]) + CIPHERTEXT[1:]
    keys = respond(BOB.dh_key_pair, SPK, OPK, KEM_SEED, ALICE.public, BASE.public, other)
    assert keys.root_key.hex() != EXPECTED["root_key"]  # implicit rejection
    with pytest.raises(DecryptionError):
        respond(BOB.dh_key_pair, SPK, OPK, KEM_SEED, ALICE.public, BASE.public, CIPHERTEXT[:-1])
