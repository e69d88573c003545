"""Key types of the end-to-end layer: X25519 key pairs and Ed25519-based identity keys.

Invariants:

* a `PublicKey` is always a 32-byte X25519 u-coordinate; on the wire (libsignal v3) it is
  33 bytes, the type byte ``0x05`` then the u-coordinate (`PublicKey.serialize`);
* a `KeyPair`'s public key is always the one computed from its private key;
* randomness comes only from an injected ``rng(n) -> n bytes``; nothing here reads the OS.

Identity keys. libsignal's identity keys are X25519 keys that sign with XEdDSA. The
``cryptography`` package has no XEdDSA *signing* primitive, so our identity key is an
**Ed25519** key, and its X25519 key (for X3DH) is derived from it the way RFC 8032 and
RFC 7748 relate the two curves: the private scalar is the clamped first half of
SHA-512(seed), the public u-coordinate is ``(1 + y) / (1 - y) mod p``. Signing uses
``cryptography``'s Ed25519; the Edwards sign bit, which the u-coordinate loses, goes in the top
bit of ``sig[63]`` (always zero in an Ed25519 signature, since S < L < 2**253) — exactly the
convention of libsignal's XEdDSA verification. So libsignal verifies our signatures, and we
verify libsignal's (`tidings.e2e.xeddsa.verify`); only the *private* key formats differ.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

__all__ = [
    "KEY_LEN",
    "KEY_TYPE_DJB",
    "SERIALIZED_PUBLIC_KEY_LEN",
    "IdentityKeyPair",
    "KeyPair",
    "PublicKey",
    "Rng",
    "edwards_to_montgomery",
    "montgomery_to_edwards",
]

#: An injected source of randomness: ``rng(n)`` returns ``n`` uniformly random bytes.
Rng = Callable[[int], bytes]

#: Length of X25519 keys, Ed25519 seeds and DH outputs.
KEY_LEN = 32
#: libsignal's type byte for Curve25519 public keys ("DJB" type).
KEY_TYPE_DJB = 0x05
#: Length of a public key on the wire: type byte and u-coordinate.
SERIALIZED_PUBLIC_KEY_LEN = 1 + KEY_LEN

#: The field prime of Curve25519 / Ed25519.
P = 2**255 - 19


def _draw(rng: Rng, n: int) -> bytes:
    data = rng(n)
    if not isinstance(data, bytes) or len(data) != n:
        raise ValueError(f"rng({n}) must return {n} bytes")
    return data


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An X25519 public key (its 32-byte u-coordinate).

    Raises:
        ValueError: on construction, if ``raw`` is not 32 bytes.
    """

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != KEY_LEN:
            raise ValueError("an x25519 public key is 32 bytes")

    def serialize(self) -> bytes:
        """The 33-byte wire form: ``0x05 || u``."""
        return bytes([KEY_TYPE_DJB]) + self.raw

    @classmethod
    def parse(cls, data: bytes) -> PublicKey:
        """Parse the 33-byte wire form.

        Raises:
            ValueError: not 33 bytes, or a type byte other than ``0x05``.
        """
        if len(data) != SERIALIZED_PUBLIC_KEY_LEN or data[0] != KEY_TYPE_DJB:
            raise ValueError("a public key is 0x05 followed by 32 bytes")
        return cls(bytes(data[1:]))


@dataclass(frozen=True, slots=True)
class KeyPair:
    """An X25519 key pair; build it with `from_private` or `generate`.

    Attributes:
        private: the 32 bytes fed to X25519 (clamped by the primitive).
        public: the matching public key.
    """

    private: bytes = field(repr=False)
    public: PublicKey
    # The loaded private key, kept so that agreements do not reload it (loading computes the
    # public key, which costs more than the agreement itself). Not compared, not shown.
    _key: X25519PrivateKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.private) != KEY_LEN:
            raise ValueError("an x25519 private key is 32 bytes")
        key = X25519PrivateKey.from_private_bytes(self.private)
        if key.public_key().public_bytes_raw() != self.public.raw:
            raise ValueError("the public key does not match the private key")
        object.__setattr__(self, "_key", key)

    @classmethod
    def from_private(cls, private: bytes) -> KeyPair:
        """The key pair of a 32-byte private key."""
        key = X25519PrivateKey.from_private_bytes(private)
        public = PublicKey(key.public_key().public_bytes_raw())
        # The public key is computed from the private one here, so the constructor's check
        # (which would compute it again) is skipped.
        pair = object.__new__(cls)
        object.__setattr__(pair, "private", private)
        object.__setattr__(pair, "public", public)
        object.__setattr__(pair, "_key", key)
        return pair

    @classmethod
    def generate(cls, rng: Rng) -> KeyPair:
        """A new key pair from 32 bytes of ``rng``."""
        return cls.from_private(_draw(rng, KEY_LEN))

    def dh(self, their: PublicKey) -> bytes:
        """X25519(our private, their public).

        Raises:
            ValueError: the result is all zeros (a small-order public key).
        """
        return self._key.exchange(X25519PublicKey.from_public_bytes(their.raw))

    def __reduce__(self) -> tuple[Callable[[bytes], KeyPair], tuple[bytes]]:
        # copy and pickle rebuild the pair from its private key (the loaded key is not
        # picklable).
        return (KeyPair.from_private, (self.private,))


@dataclass(frozen=True, slots=True)
class IdentityKeyPair:
    """Our long-term identity: an Ed25519 key with the X25519 key derived from it.

    See the module docstring for why it is Ed25519 rather than libsignal's XEdDSA key.

    Attributes:
        seed: the 32-byte Ed25519 private key (RFC 8032 seed).
    """

    seed: bytes = field(repr=False)
    # `dh_key_pair`, computed on first use. Not compared, not shown.
    _dh_key_pair: KeyPair = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.seed) != KEY_LEN:
            raise ValueError("an ed25519 seed is 32 bytes")

    def __reduce__(self) -> tuple[type[IdentityKeyPair], tuple[bytes]]:
        return (IdentityKeyPair, (self.seed,))

    @classmethod
    def generate(cls, rng: Rng) -> IdentityKeyPair:
        """A new identity from 32 bytes of ``rng``."""
        return cls(_draw(rng, KEY_LEN))

    @property
    def ed25519_public(self) -> bytes:
        """The 32-byte Ed25519 public key (compressed Edwards point)."""
        return Ed25519PrivateKey.from_private_bytes(self.seed).public_key().public_bytes_raw()

    @property
    def dh_key_pair(self) -> KeyPair:
        """The X25519 key pair used in X3DH: the clamped first half of SHA-512(seed)."""
        try:
            return self._dh_key_pair
        except AttributeError:
            pass
        scalar = bytearray(hashlib.sha512(self.seed).digest()[:KEY_LEN])
        scalar[0] &= 248  # RFC 7748 §5 / RFC 8032 §5.1.5 clamping
        scalar[31] &= 127
        scalar[31] |= 64
        pair = KeyPair.from_private(bytes(scalar))
        object.__setattr__(self, "_dh_key_pair", pair)
        return pair

    @property
    def public(self) -> PublicKey:
        """The identity's public key as libsignal sees it (the X25519 form)."""
        return self.dh_key_pair.public

    def sign(self, message: bytes) -> bytes:
        """An Ed25519 signature with the Edwards sign bit in the top bit of ``sig[63]``.

        Verifiable with `tidings.e2e.xeddsa.verify` against `public`, as libsignal does.
        """
        key = Ed25519PrivateKey.from_private_bytes(self.seed)
        signature = bytearray(key.sign(message))
        signature[63] |= key.public_key().public_bytes_raw()[31] & 0x80
        return bytes(signature)


def edwards_to_montgomery(ed_public: bytes) -> bytes:
    """The X25519 u-coordinate of a compressed Ed25519 point: ``u = (1 + y) / (1 - y)``.

    Raises:
        ValueError: not 32 bytes, or ``y = 1`` (the neutral element, which has no u).
    """
    if len(ed_public) != KEY_LEN:
        raise ValueError("an ed25519 public key is 32 bytes")
    y = int.from_bytes(ed_public, "little") & ((1 << 255) - 1)
    denominator = (1 - y) % P
    if denominator == 0:
        raise ValueError("the ed25519 point has no montgomery form")
    u = (1 + y) * pow(denominator, P - 2, P) % P
    return u.to_bytes(KEY_LEN, "little")


def montgomery_to_edwards(u_bytes: bytes, sign: int) -> bytes:
    """The compressed Edwards point ``y = (u - 1) / (u + 1)`` with the given sign bit.

    As in libsignal, the top bit of ``u_bytes`` is ignored and ``u`` is reduced mod p.

    Raises:
        ValueError: not 32 bytes, or ``u = -1`` (no Edwards form).
    """
    if len(u_bytes) != KEY_LEN:
        raise ValueError("an x25519 public key is 32 bytes")
    u = (int.from_bytes(u_bytes, "little") & ((1 << 255) - 1)) % P
    denominator = (u + 1) % P
    if denominator == 0:
        raise ValueError("the x25519 point has no edwards form")
    y = (u - 1) * pow(denominator, P - 2, P) % P
    encoded = bytearray(y.to_bytes(KEY_LEN, "little"))
    encoded[31] |= (sign & 1) << 7
    return bytes(encoded)
