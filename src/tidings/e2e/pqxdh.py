"""PQXDH key agreement (Signal's PQXDH specification, revision 3) over `tidings.e2e.x3dh`.

PQXDH is X3DH plus one KEM encapsulation to the responder's signed ML-KEM prekey (PQXDH §3.3)::

    (CT, SS) = ML-KEM-1024.Encaps(PQPK_B)
    RK || CK = HKDF-SHA256(salt = none,
                           ikm = 0xFF*32 || DH1 || DH2 || DH3 [|| DH4] || SS,
                           info = PQXDH_INFO, 64 bytes)

The DH outputs are exactly X3DH's (`x3dh.initiator_dh_outputs` / `responder_dh_outputs`), the
KEM secret is `x3dh.derive_session_keys`' ``extra``, and the initiator also sends ``CT``.

Profile. The KEM is ML-KEM-1024 (FIPS 203, `tidings.e2e.kem`), not libsignal's pre-standard
Kyber1024, so this is *not* wire-compatible with libsignal's PQXDH; the info string names our
parameters (PQXDH §2.2: curve, hash, KEM), ``WhisperText_X25519_SHA-256_ML-KEM-1024``, so our
secrets can never collide with libsignal's ``…_CRYSTALS-KYBER-1024`` ones. No public PQXDH vector
exists: ``tests/vectors/signal/tidings-pqxdh.json`` is our own frozen one.

Randomness: `tidings.e2e.kem.encapsulate` draws from OpenSSL (``cryptography`` cannot take
injected randomness for ML-KEM), so `initiate` takes the encapsulation as an argument; tests
pass a fake that replays a frozen ciphertext.
"""

from __future__ import annotations

from dataclasses import dataclass

from tidings.errors import DecryptionError

from . import kem, xeddsa
from .keys import KeyPair, PublicKey
from .prekeys import KemPreKey
from .x3dh import (
    BundleError,
    SessionKeys,
    X3DHBundle,
    derive_session_keys,
    initiator_dh_outputs,
    responder_dh_outputs,
)

__all__ = ["PQXDH_INFO", "PQXDHBundle", "PQXDHInitiation", "initiate", "respond"]

#: HKDF info of our PQXDH profile (see the module docstring).
PQXDH_INFO = b"WhisperText_X25519_SHA-256_ML-KEM-1024"


@dataclass(frozen=True, slots=True)
class PQXDHBundle:
    """An X3DH bundle plus the responder's signed KEM prekey (PQXDH §3.2)."""

    x3dh: X3DHBundle
    kem_prekey: KemPreKey

    def verify_signatures(self) -> bool:
        """Whether both the signed prekey and the KEM prekey verify (PQXDH §3.3)."""
        kem_signed = xeddsa.verify(
            self.x3dh.identity_key, self.kem_prekey.signed_message(), self.kem_prekey.signature
        )
        return kem_signed and self.x3dh.verify_signature()


@dataclass(frozen=True, slots=True)
class PQXDHInitiation:
    """The initiator's result: the session keys, and the KEM ciphertext to send."""

    keys: SessionKeys
    kem_ciphertext: bytes


def initiate(
    identity: KeyPair,
    base_key: KeyPair,
    bundle: PQXDHBundle,
    encapsulate: kem.Encapsulate = kem.encapsulate,
) -> PQXDHInitiation:
    """Alice's side: verify both signatures, encapsulate, derive.

    Args:
        identity: our identity's X25519 key pair.
        base_key: our fresh ephemeral key pair ``EK_A``.
        bundle: the responder's keys.
        encapsulate: ``encapsulate(public) -> (ciphertext, secret)``; tests pass a fake.

    Raises:
        BundleError: a signature does not verify, or a key is unusable.
        tidings.errors.ConfigError: this ``cryptography`` build has no ML-KEM-1024.
    """
    if not bundle.verify_signatures():
        raise BundleError("a prekey signature does not verify")
    try:
        outputs = initiator_dh_outputs(identity, base_key, bundle.x3dh)
        ciphertext, secret = encapsulate(bundle.kem_prekey.public)
    except ValueError as exc:
        raise BundleError("a key in the bundle is unusable") from exc
    keys = derive_session_keys(outputs, extra=secret, info=PQXDH_INFO)
    return PQXDHInitiation(keys, ciphertext)


def respond(
    identity: KeyPair,
    signed_prekey: KeyPair,
    one_time_prekey: KeyPair | None,
    kem_private: bytes,
    their_identity: PublicKey,
    their_base_key: PublicKey,
    kem_ciphertext: bytes,
) -> SessionKeys:
    """Bob's side: the session keys from the initiator's keys and KEM ciphertext (PQXDH §3.4).

    Args:
        kem_private: the 64-byte seed of the KEM prekey the initiator used.

    Raises:
        DecryptionError: a small-order peer key or a malformed ciphertext (peer input).
    """
    try:
        outputs = responder_dh_outputs(
            identity, signed_prekey, one_time_prekey, their_identity, their_base_key
        )
    except ValueError as exc:
        raise DecryptionError() from exc
    secret = kem.decapsulate(kem_private, kem_ciphertext)
    return derive_session_keys(outputs, extra=secret, info=PQXDH_INFO)
