"""Verification of libsignal's XEdDSA signatures (XEdDSA spec §2.3, libsignal's sign-bit variant).

libsignal signs with the X25519 identity key by XEdDSA, and, unlike the XEdDSA specification
(which always uses the Edwards point of sign 0), stores the Edwards sign bit of its signing key
in the top bit of ``sig[63]``. Verifying is then plain Ed25519 verification against
``montgomery_to_edwards(u, sign)`` with that bit cleared from the signature — field arithmetic
on a public key followed by ``cryptography``'s Ed25519, no new primitive.

Our own identity keys (`tidings.e2e.keys.IdentityKeyPair`) sign in the same format, so one
verifier serves both.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .keys import PublicKey, montgomery_to_edwards

__all__ = ["SIGNATURE_LEN", "verify"]

#: Length of an XEdDSA (and Ed25519) signature.
SIGNATURE_LEN = 64


def verify(public: PublicKey, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is libsignal's XEdDSA signature of ``message`` by ``public``.

    Never raises for malformed input: anything that is not a valid signature is ``False``.
    """
    if len(signature) != SIGNATURE_LEN:
        return False
    try:
        edwards = montgomery_to_edwards(public.raw, signature[63] >> 7)
        key = Ed25519PublicKey.from_public_bytes(edwards)
    except ValueError:  # u = -1, or y with no x on the curve
        return False
    stripped = signature[:63] + bytes([signature[63] & 0x7F])
    try:
        key.verify(stripped, message)
    except InvalidSignature:
        return False
    return True
