"""e2e.x3dh: both sides agree, with and without a one-time prekey; bad bundles are refused.

The known answers (libsignal's ratchet KATs) are in ``test_signal_vectors.py``.
"""

from __future__ import annotations

import pytest

from tidings.e2e import BundleError, IdentityKeyPair, KeyPair, PublicKey, X3DHBundle
from tidings.e2e.x3dh import derive_session_keys, initiate, respond

from ._support import seeded_rng

RNG = seeded_rng(7)
ALICE = IdentityKeyPair.generate(RNG)
BOB = IdentityKeyPair.generate(RNG)
SPK = KeyPair.generate(RNG)
OPK = KeyPair.generate(RNG)
BASE = KeyPair.generate(RNG)


def _bundle(with_one_time: bool, signature: bytes | None = None) -> X3DHBundle:
    return X3DHBundle(
        registration_id=42,
        identity_key=BOB.public,
        signed_prekey_id=1,
        signed_prekey=SPK.public,
        signed_prekey_signature=signature or BOB.sign(SPK.public.serialize()),
        one_time_prekey_id=7 if with_one_time else None,
        one_time_prekey=OPK.public if with_one_time else None,
    )


@pytest.mark.parametrize("with_one_time", [False, True])
def test_both_sides_agree(with_one_time: bool) -> None:
    alice = initiate(ALICE.dh_key_pair, BASE, _bundle(with_one_time))
    bob = respond(BOB.dh_key_pair, SPK, OPK if with_one_time else None, ALICE.public, BASE.public)
    assert alice == bob
    assert len(alice.root_key) == len(alice.chain_key) == 32


def test_one_time_prekey_changes_the_keys() -> None:
    assert initiate(ALICE.dh_key_pair, BASE, _bundle(False)) != initiate(
        ALICE.dh_key_pair, BASE, _bundle(True)
    )


def test_bad_signature_is_refused() -> None:
    with pytest.raises(BundleError):
        initiate(ALICE.dh_key_pair, BASE, _bundle(False, signature=bytes(64)))


def test_small_order_key_is_refused() -> None:
    zero = PublicKey(bytes(32))
    bundle = X3DHBundle(42, BOB.public, 1, zero, BOB.sign(zero.serialize()))
    with pytest.raises(BundleError):
        initiate(ALICE.dh_key_pair, BASE, bundle)
    with pytest.raises(ValueError):
        respond(BOB.dh_key_pair, SPK, None, ALICE.public, zero)


def test_one_time_prekey_needs_both_fields() -> None:
    with pytest.raises(ValueError):
        X3DHBundle(42, BOB.public, 1, SPK.public, bytes(64), one_time_prekey_id=3)


def test_extra_secret_is_appended() -> None:
    dh = [bytes(32)] * 3
    assert derive_session_keys(dh, extra=b"kem") == derive_session_keys([*dh, b"kem"])
    assert derive_session_keys(dh, extra=b"kem") != derive_session_keys(dh)
    assert derive_session_keys(dh, info=b"other") != derive_session_keys(dh)
