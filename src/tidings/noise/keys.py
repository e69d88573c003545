"""X25519 keys for Noise (Noise §12.1): key pairs from an injected RNG, DH, fingerprints.

Keys are raw bytes: a private key is the 32 bytes fed to X25519 (clamped by the primitive),
a public key the 32-byte u-coordinate. Randomness is never read from the OS here: callers
pass ``rng(n) -> n bytes`` (the adapters give ``os.urandom``, tests a seeded generator).
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from tidings.errors import HandshakeError

__all__ = ["DHLEN", "Rng", "dh", "fingerprint", "generate_keypair", "public_key", "random_bytes"]

#: Length of X25519 keys and DH outputs (Noise §12.1).
DHLEN = 32

#: An injected source of randomness: ``rng(n)`` returns ``n`` uniformly random bytes.
Rng = Callable[[int], bytes]

# Fingerprint: 128 bits of SHA-256 resist second preimages at any realistic scale, and 32 hex
# digits in 8 groups of 4 are about the most two people will read aloud to each other.
_FINGERPRINT_BYTES = 16
_FINGERPRINT_GROUP = 4


def random_bytes(rng: Rng, n: int) -> bytes:
    """Draw ``n`` bytes from ``rng``, checking it kept its contract.

    Raises:
        ValueError: ``rng`` returned something other than ``n`` bytes.
    """
    data = rng(n)
    if not isinstance(data, bytes) or len(data) != n:
        raise ValueError(f"rng({n}) must return {n} bytes")
    return data


def generate_keypair(rng: Rng) -> tuple[bytes, bytes]:
    """A new X25519 key pair (Noise §12.1 GENERATE_KEYPAIR) from ``rng``.

    Returns:
        ``(private, public)``, 32 raw bytes each.
    """
    private = random_bytes(rng, DHLEN)
    return private, public_key(private)


def public_key(private: bytes) -> bytes:
    """The X25519 public key of a 32-byte private key.

    Raises:
        ValueError: ``private`` is not 32 bytes.
    """
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def dh(private: X25519PrivateKey, public: bytes) -> bytes:
    """``DH(private, public)`` (Noise §12.1).

    Raises:
        HandshakeError: ``public`` is not 32 bytes or is a low-order point (all-zero output);
            Noise §12.1 allows rejecting those, and we do.
    """
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as exc:
        raise HandshakeError("invalid x25519 public key") from exc


def fingerprint(public: bytes) -> str:
    """A human-comparable fingerprint of a 32-byte public key.

    The first 16 bytes of ``SHA-256(public)`` as lower-case hex in 8 groups of 4 digits
    separated by spaces, e.g. ``"3f2a 9c01 …"`` (39 characters). Two people compare it to
    check they hold the same key; it is not a key and cannot be turned back into one.

    Raises:
        ValueError: ``public`` is not 32 bytes.
    """
    if len(public) != DHLEN:
        raise ValueError(f"an x25519 public key is {DHLEN} bytes")
    digest = hashes.Hash(hashes.SHA256())
    digest.update(public)
    text = digest.finalize()[:_FINGERPRINT_BYTES].hex()
    groups = (text[i : i + _FINGERPRINT_GROUP] for i in range(0, len(text), _FINGERPRINT_GROUP))
    return " ".join(groups)
