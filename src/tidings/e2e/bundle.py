"""From the relay's prekey bundle to the key agreement's: `bundle_for_session`.

The relay hands out a `tidings.e2e.prekeys.PreKeyBundle` (raw bytes, validated in shape only);
`tidings.e2e.session.Session.initiate_pq` takes a `tidings.e2e.pqxdh.PQXDHBundle` (typed keys).
`bundle_for_session` converts one into the other after checking both signatures with our
identity scheme (`tidings.e2e.xeddsa.verify`, which verifies our Ed25519-based identity
signatures and libsignal's XEdDSA alike) — PQXDH §3.3: "Alice verifies the signatures and
aborts the protocol if verification fails".

Errors: every unusable bundle is the one `tidings.e2e.x3dh.BundleError` (a
`tidings.errors.RemoteProtocolError`, code ``INVALID_FIELD``); `prekeys.verify_bundle`'s
``RemoteProtocolError`` is translated with ``raise … from exc``.

Invariants: pure functions; whether ``identity_key`` is the *expected* identity of the device
(safety numbers, the account's device list) is the caller's business, as in `prekeys`.
"""

from __future__ import annotations

from tidings.errors import RemoteProtocolError

from . import xeddsa
from .keys import PublicKey
from .pqxdh import PQXDHBundle
from .prekeys import PreKeyBundle, verify_bundle
from .x3dh import BundleError, X3DHBundle

__all__ = ["bundle_for_session", "verify_identity_signature"]


def verify_identity_signature(identity_key: bytes, message: bytes, signature: bytes) -> bool:
    """`tidings.e2e.prekeys.Verify` for our identity scheme: XEdDSA-format signatures by the
    32-byte X25519 identity key (`tidings.e2e.keys.IdentityKeyPair.sign` makes them)."""
    return xeddsa.verify(PublicKey(identity_key), message, signature)


def bundle_for_session(bundle: PreKeyBundle, *, registration_id: int = 0) -> PQXDHBundle:
    """The PQXDH bundle of a relay bundle, once both of its signatures verify.

    Args:
        bundle: the bundle as the relay handed it out (`PreKeyBundle.parse` of its bytes).
        registration_id: the device's libsignal registration id, if the caller knows it from
            elsewhere (our bundle format carries none); it is only recorded in the session.

    Returns:
        The bundle to pass to `tidings.e2e.session.Session.initiate_pq`.

    Raises:
        BundleError: the signed prekey's or the KEM prekey's signature does not verify (the
            reason says which).
    """
    try:
        verify_bundle(bundle, verify_identity_signature)
    except RemoteProtocolError as exc:
        raise BundleError(exc.reason) from exc
    spk, opk = bundle.signed_prekey, bundle.one_time_prekey
    x3dh = X3DHBundle(
        registration_id=registration_id,
        identity_key=PublicKey(bundle.identity_key),
        signed_prekey_id=spk.key_id,
        signed_prekey=PublicKey(spk.public),
        signed_prekey_signature=spk.signature,
        one_time_prekey_id=None if opk is None else opk.key_id,
        one_time_prekey=None if opk is None else PublicKey(opk.public),
    )
    return PQXDHBundle(x3dh, bundle.kem_prekey)
