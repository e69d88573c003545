"""e2e.bundle: the relay's prekey bundle to a PQXDH bundle, signatures checked, one error."""

from __future__ import annotations

import pytest

from tidings.e2e import (
    BundleError,
    PreKeyBundle,
    Session,
    bundle_for_session,
    verify_identity_signature,
)
from tidings.e2e.x3dh import X3DHBundle
from tidings.errors import RemoteProtocolError
from tidings.wire.limits import ErrorCode

from ._pq_scenario import ALICE, BOB, KEM_SEED, OPK, SPK, relay_bundle, replay_encapsulate
from ._support import seeded_rng


def test_a_genuine_bundle_converts_field_by_field() -> None:
    relay = PreKeyBundle.parse(relay_bundle().serialize())  # as the relay hands it out
    bundle = bundle_for_session(relay, registration_id=2222)
    assert bundle.x3dh == X3DHBundle(
        2222,
        BOB.public,
        5,
        SPK.public,
        relay.signed_prekey.signature,
        9,
        OPK.public,
    )
    assert bundle.kem_prekey == relay.kem_prekey
    assert bundle.verify_signatures()


def test_a_bundle_without_one_time_prekey() -> None:
    relay = relay_bundle()
    without = PreKeyBundle(relay.identity_key, relay.signed_prekey, None, relay.kem_prekey)
    bundle = bundle_for_session(without)
    assert bundle.x3dh.one_time_prekey is None and bundle.x3dh.one_time_prekey_id is None
    assert bundle.x3dh.registration_id == 0


def test_bad_kem_prekey_signature_is_refused() -> None:
    relay = relay_bundle(kem_signature=ALICE.sign(b"\x0a" + KEM_SEED))
    with pytest.raises(BundleError, match="kem prekey") as caught:
        bundle_for_session(relay)
    assert isinstance(caught.value.__cause__, RemoteProtocolError)


def test_bad_signed_prekey_signature_is_refused() -> None:
    relay = relay_bundle()
    spk = relay.signed_prekey
    forged = type(spk)(spk.key_id, spk.public, bytes(64), spk.created_at)
    with pytest.raises(BundleError, match="signed prekey"):
        bundle_for_session(PreKeyBundle(relay.identity_key, forged, None, relay.kem_prekey))


def test_another_identity_is_refused() -> None:
    relay = relay_bundle()
    swapped = PreKeyBundle(
        ALICE.public.raw, relay.signed_prekey, relay.one_time_prekey, relay.kem_prekey
    )
    with pytest.raises(BundleError):
        bundle_for_session(swapped)


def test_bundle_error_is_the_one_remote_protocol_error() -> None:
    error = BundleError("bad kem prekey signature")
    assert isinstance(error, RemoteProtocolError)
    assert error.code == ErrorCode.INVALID_FIELD and error.reason == "bad kem prekey signature"
    # x3dh and pqxdh raise the same class
    session = Session(ALICE.dh_key_pair, 1)
    relay = relay_bundle()
    forged = X3DHBundle(1, BOB.public, 5, SPK.public, bytes(64))
    with pytest.raises(RemoteProtocolError):
        session.initiate(forged, seeded_rng(1))
    bad_kem = bundle_for_session(relay)
    bad_kem = type(bad_kem)(
        bad_kem.x3dh,
        type(relay.kem_prekey)(7, relay.kem_prekey.public, bytes(64), False),
    )
    with pytest.raises(BundleError):
        session.initiate_pq(bad_kem, seeded_rng(1), replay_encapsulate)
    assert session.open is None


def test_verify_identity_signature() -> None:
    message = b"\x05" + SPK.public.raw
    assert verify_identity_signature(BOB.public.raw, message, BOB.sign(message))
    assert not verify_identity_signature(ALICE.public.raw, message, BOB.sign(message))
    assert not verify_identity_signature(BOB.public.raw, message, bytes(64))
