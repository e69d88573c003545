"""libsignal's XEdDSA signatures (XEdDSA spec §2.3, libsignal's sign-bit variant): verify, sign.

libsignal signs with the X25519 identity key by XEdDSA, and, unlike the XEdDSA specification
(which always uses the Edwards point of sign 0), stores the Edwards sign bit of its signing key
in the top bit of ``sig[63]``. Verifying is then plain Ed25519 verification against
``montgomery_to_edwards(u, sign)`` with that bit cleared from the signature — field arithmetic
on a public key followed by ``cryptography``'s Ed25519, no new primitive.

Our own identity keys (`tidings.e2e.keys.IdentityKeyPair`) sign in the same format, so one
verifier serves both.

:func:`sign` signs with a plain X25519 private key (the relay's Noise static key signs the
sealed-sender server certificate, so that clients need no new pin): libsignal's
``calculate_signature`` — ``a`` the clamped scalar, ``A = aB`` with its own sign bit, ``r =
SHA-512(0xFE || 0xFF*31 || a || M || Z) mod q``, ``s = r + SHA-512(R || A || M)·a mod q``, the
sign bit of ``A`` in the top bit of ``sig[63]``. ``cryptography`` cannot sign with a raw scalar,
so the Edwards arithmetic here is Python's integers (RFC 8032 §6's formulas): correct, **not
constant-time** and about a millisecond — the relay signs once per start, never per request.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .keys import P, PublicKey, Rng, montgomery_to_edwards

__all__ = ["NONCE_LEN", "SIGNATURE_LEN", "XEdDSAKey", "sign", "verify"]

#: Length of the random ``Z`` of an XEdDSA signature.
NONCE_LEN = 64

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


# Ed25519 (RFC 8032 §5.1): the group order, d, and the base point in extended coordinates.
_Q = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, P - 2, P) % P
_Point = tuple[int, int, int, int]


def _add(a: _Point, b: _Point) -> _Point:
    """Point addition in extended coordinates (RFC 8032 §5.1.4)."""
    p1 = (a[1] - a[0]) * (b[1] - b[0]) % P
    p2 = (a[1] + a[0]) * (b[1] + b[0]) % P
    c = 2 * a[3] * b[3] * _D % P
    d = 2 * a[2] * b[2] % P
    e, f, g, h = p2 - p1, d - c, d + c, p2 + p1
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _base() -> _Point:
    y = 4 * pow(5, P - 2, P) % P
    x2 = (y * y - 1) * pow(_D * y * y + 1, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * pow(2, (P - 1) // 4, P) % P
    if x & 1:
        x = P - x
    return (x, y, 1, x * y % P)


_B = _base()


def _mul(scalar: int, point: _Point) -> _Point:
    result: _Point = (0, 1, 1, 0)
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _encode(point: _Point) -> bytes:
    z_inv = pow(point[2], P - 2, P)
    x, y = point[0] * z_inv % P, point[1] * z_inv % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def _hash(*parts: bytes) -> int:
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little") % _Q


def sign(private: bytes, message: bytes, nonce: bytes) -> bytes:
    """libsignal's XEdDSA signature of ``message`` by the X25519 private key ``private``.

    Args:
        private: a 32-byte X25519 private key (clamped here, as X25519 does).
        message: what to sign.
        nonce: :data:`NONCE_LEN` fresh random bytes (``Z``).

    Raises:
        ValueError: a key or nonce of the wrong length.
    """
    if len(private) != 32 or len(nonce) != NONCE_LEN:
        raise ValueError(f"xeddsa signs with a 32-byte key and a {NONCE_LEN}-byte nonce")
    clamped = bytearray(private)
    clamped[0] &= 248
    clamped[31] = (clamped[31] & 127) | 64
    a = int.from_bytes(clamped, "little")
    public = _encode(_mul(a, _B))
    r = _hash(b"\xfe" + b"\xff" * 31, bytes(clamped), message, nonce)
    big_r = _encode(_mul(r, _B))
    s = (r + _hash(big_r, public, message) * a) % _Q
    signature = bytearray(big_r + s.to_bytes(32, "little"))
    signature[63] = (signature[63] & 0x7F) | (public[31] & 0x80)
    return bytes(signature)


@dataclass(frozen=True, slots=True)
class XEdDSAKey:
    """An X25519 private key that signs (a :class:`~tidings.e2e.certificates.Signer`)."""

    private: bytes = field(repr=False)
    rng: Rng = field(repr=False, compare=False)

    def sign(self, message: bytes) -> bytes:
        """:func:`sign` with a fresh nonce from ``rng``."""
        return sign(self.private, message, self.rng(NONCE_LEN))
