"""X3DH key agreement (Signal's X3DH specification, revision 1) as libsignal v3 runs it.

Both sides compute (X3DH §3.3)::

    DH1 = DH(IK_A, SPK_B)   DH2 = DH(EK_A, IK_B)   DH3 = DH(EK_A, SPK_B)   [DH4 = DH(EK_A, OPK_B)]
    RK || CK = HKDF-SHA256(salt = none, ikm = 0xFF*32 || DH1 || DH2 || DH3 [|| DH4],
                           info = "WhisperText", 64 bytes)

The 32 ``0xFF`` bytes are X3DH §2.2's ``F`` for X25519; libsignal's info string is
``WhisperText``. ``RK`` seeds the Double Ratchet's root chain; libsignal v3 uses ``CK`` as the
chain of the responder's initial ratchet key, which in practice never sends (the responder
ratchets on the first message it receives), so `tidings.e2e.ratchet` does not need it — it is
returned for the known-answer tests.

Extension point for PQXDH: the key derivation is `derive_session_keys`, which takes the DH
outputs and an optional ``extra`` secret appended after them (PQXDH §3.3 appends the ML-KEM
shared secret) and an ``info`` string; a ``pqxdh`` module adds the KEM steps around the same
functions without touching this one.

Invariants: pure functions of their arguments; no randomness is drawn here (the initiator's
base key is an argument, so tests can fix it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tidings.errors import RemoteProtocolError
from tidings.wire.limits import ErrorCode

from . import xeddsa
from .keys import KeyPair, PublicKey

__all__ = [
    "X3DH_INFO",
    "BundleError",
    "SessionKeys",
    "X3DHBundle",
    "derive_session_keys",
    "initiate",
    "initiator_dh_outputs",
    "respond",
    "responder_dh_outputs",
]

#: libsignal v3's HKDF info string for X3DH.
X3DH_INFO = b"WhisperText"
#: X3DH §2.2: 32 0xFF bytes before the DH outputs (domain separation from XEdDSA) for X25519.
_F = b"\xff" * 32
_KEY_LEN = 32


class BundleError(RemoteProtocolError):
    """The peer's prekey bundle is unusable: a signature does not verify, or a key is unusable.

    The one bundle error of `tidings.e2e` (`x3dh`, `pqxdh` and `bundle.bundle_for_session`
    raise it): a `tidings.errors.RemoteProtocolError` with code ``INVALID_FIELD``, the same
    blame and code as `prekeys.verify_bundle`'s error, which `bundle_for_session` translates.

    Args:
        reason: a short lower-case explanation.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(ErrorCode.INVALID_FIELD, reason)


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """What X3DH yields: the first root key, and the responder's initial chain key."""

    root_key: bytes = field(repr=False)
    chain_key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class X3DHBundle:
    """The peer device's published keys, as the initiator fetched them (X3DH §3.2).

    Attributes:
        registration_id: the peer device's libsignal registration id.
        identity_key: the peer's identity public key (X25519 form).
        signed_prekey_id: id of the signed prekey.
        signed_prekey: the signed prekey ``SPK_B``.
        signed_prekey_signature: XEdDSA signature by ``identity_key`` over the 33-byte
            ``signed_prekey.serialize()``.
        one_time_prekey_id: id of the one-time prekey, or ``None`` if the server had none.
        one_time_prekey: the one-time prekey ``OPK_B``, or ``None``.
    """

    registration_id: int
    identity_key: PublicKey
    signed_prekey_id: int
    signed_prekey: PublicKey
    signed_prekey_signature: bytes
    one_time_prekey_id: int | None = None
    one_time_prekey: PublicKey | None = None

    def __post_init__(self) -> None:
        if (self.one_time_prekey_id is None) != (self.one_time_prekey is None):
            raise ValueError("a one-time prekey needs its id and its key")

    def verify_signature(self) -> bool:
        """Whether the signed prekey is signed by the identity key (X3DH §3.3)."""
        return xeddsa.verify(
            self.identity_key, self.signed_prekey.serialize(), self.signed_prekey_signature
        )


def derive_session_keys(
    dh_outputs: Sequence[bytes], *, extra: bytes = b"", info: bytes = X3DH_INFO
) -> SessionKeys:
    """``RK || CK = HKDF(0xFF*32 || DH1 || … || extra, info)``; ``extra`` is for PQXDH."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=2 * _KEY_LEN, salt=None, info=info)
    okm = hkdf.derive(_F + b"".join(dh_outputs) + extra)
    return SessionKeys(root_key=okm[:_KEY_LEN], chain_key=okm[_KEY_LEN:])


def initiator_dh_outputs(identity: KeyPair, base_key: KeyPair, bundle: X3DHBundle) -> list[bytes]:
    """DH1..DH3 [DH4] from the initiator's side (X3DH §3.3).

    Raises:
        ValueError: a peer key is of small order (an all-zero DH output).
    """
    outputs = [
        identity.dh(bundle.signed_prekey),
        base_key.dh(bundle.identity_key),
        base_key.dh(bundle.signed_prekey),
    ]
    if bundle.one_time_prekey is not None:
        outputs.append(base_key.dh(bundle.one_time_prekey))
    return outputs


def initiate(identity: KeyPair, base_key: KeyPair, bundle: X3DHBundle) -> SessionKeys:
    """Alice's side: verify the bundle, then derive the session keys.

    Args:
        identity: our identity's X25519 key pair (``IK_A``).
        base_key: our fresh ephemeral key pair (``EK_A``, libsignal's "base key").
        bundle: the peer's keys.

    Raises:
        BundleError: the signed prekey's signature does not verify, or a key is of small order.
    """
    if not bundle.verify_signature():
        raise BundleError("the signed prekey's signature does not verify")
    try:
        return derive_session_keys(initiator_dh_outputs(identity, base_key, bundle))
    except ValueError as exc:
        raise BundleError("a key in the bundle is of small order") from exc


def responder_dh_outputs(
    identity: KeyPair,
    signed_prekey: KeyPair,
    one_time_prekey: KeyPair | None,
    their_identity: PublicKey,
    their_base_key: PublicKey,
) -> list[bytes]:
    """DH1..DH3 [DH4] from the responder's side, in the initiator's order (X3DH §3.4).

    Raises:
        ValueError: a peer key is of small order (an all-zero DH output).
    """
    outputs = [
        signed_prekey.dh(their_identity),
        identity.dh(their_base_key),
        signed_prekey.dh(their_base_key),
    ]
    if one_time_prekey is not None:
        outputs.append(one_time_prekey.dh(their_base_key))
    return outputs


def respond(
    identity: KeyPair,
    signed_prekey: KeyPair,
    one_time_prekey: KeyPair | None,
    their_identity: PublicKey,
    their_base_key: PublicKey,
) -> SessionKeys:
    """Bob's side: the session keys from the initiator's identity and base key.

    Raises:
        ValueError: a peer key is of small order. (Callers handling peer messages turn this
            into `tidings.errors.DecryptionError`.)
    """
    outputs = responder_dh_outputs(
        identity, signed_prekey, one_time_prekey, their_identity, their_base_key
    )
    return derive_session_keys(outputs)
