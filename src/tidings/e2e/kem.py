"""ML-KEM-1024 (FIPS 203), the post-quantum KEM of PQXDH, on ``cryptography``'s OpenSSL backend.

Keys are raw bytes. A private key is the 64-byte seed ``d ‖ z`` of FIPS 203 §6.1
(``ML-KEM.KeyGen_internal(d, z)``), the same seed format as OpenSSL and RFC 9935; the expanded
3168-byte decapsulation key is never stored, only re-derived inside :func:`decapsulate`. A public
key (encapsulation key) is 1568 bytes, a ciphertext 1568 bytes, a shared secret 32 bytes.

Randomness. Key generation is deterministic in the seed, which is drawn from the injected
``rng`` (CONVENTIONS §2). Encapsulation is not: ``cryptography`` (48.0) exposes no way to pass
the 32-byte message ``m`` of FIPS 203 §6.2 (OpenSSL's ``ikme`` parameter is not reachable), so
:func:`encapsulate` draws it from OpenSSL's own CSPRNG. It is the one place in ``e2e/`` that
reads randomness we do not inject; code above it that must be deterministic in tests should take
an ``Encapsulate`` callable and be given a fake (e.g. one that replays a known-answer vector).

Invariants:
    * Decapsulating a well-sized but wrong ciphertext never raises: it returns the FIPS 203
      implicit-rejection secret ``J(z ‖ c)``, so a peer learns nothing from our reaction.
    * A public key that fails the FIPS 203 §7.2 modulus check is refused, never encapsulated to.
    * Every operation raises :class:`~tidings.errors.ConfigError` when the ``cryptography`` build
      lacks ML-KEM-1024; call :func:`check_mlkem_support` at start-up to fail early instead.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING

import cryptography
from cryptography.exceptions import UnsupportedAlgorithm

from tidings.errors import ConfigError, DecryptionError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.mlkem import (
        MLKEM1024PrivateKey,
        MLKEM1024PublicKey,
    )

try:  # ML-KEM-1024 arrived in cryptography 48.0 (ML-KEM-768 in 47.0).
    from cryptography.hazmat.primitives.asymmetric import mlkem as _mlkem_module

    _mlkem: ModuleType | None = _mlkem_module
except ImportError:  # pragma: no cover - depends on the installed cryptography
    _mlkem = None

__all__ = [
    "KEM_CIPHERTEXT_LEN",
    "KEM_PUBLIC_KEY_LEN",
    "KEM_SEED_LEN",
    "KEM_SHARED_SECRET_LEN",
    "Encapsulate",
    "Rng",
    "check_kem_public_key",
    "check_mlkem_support",
    "decapsulate",
    "encapsulate",
    "generate_kem_keypair",
    "kem_public_key",
]

#: ML-KEM-1024 encapsulation (public) key: 384·k + 32 bytes with k = 4 (FIPS 203 §8, Table 3).
KEM_PUBLIC_KEY_LEN = 1568
#: ML-KEM-1024 ciphertext: 32·(d_u·k + d_v) bytes with d_u = 11, d_v = 5 (FIPS 203 Table 3).
KEM_CIPHERTEXT_LEN = 1568
#: Shared secret length (FIPS 203 §6.2, §6.3).
KEM_SHARED_SECRET_LEN = 32
#: Private key as stored: the seed ``d ‖ z``, two 32-byte strings (FIPS 203 §7.1).
KEM_SEED_LEN = 64

#: An injected source of randomness: ``rng(n)`` returns ``n`` uniformly random bytes.
Rng = Callable[[int], bytes]

#: The shape of :func:`encapsulate`, for code that wants a deterministic fake in tests.
Encapsulate = Callable[[bytes], tuple[bytes, bytes]]

# OpenSSL added ML-KEM in 3.5; cryptography's wheels bundle a recent enough OpenSSL, but a build
# against an older system OpenSSL (or LibreSSL) has none.
_REQUIREMENT = "ML-KEM-1024 needs cryptography >= 48 built against OpenSSL >= 3.5 (or AWS-LC)"


def _openssl_version() -> str:
    try:
        from cryptography.hazmat.backends.openssl.backend import backend

        return str(backend.openssl_version_text())
    except Exception:  # pragma: no cover - only for the error message
        return "an unknown OpenSSL"


def _unsupported(exc: BaseException | None = None) -> ConfigError:
    found = f"cryptography {cryptography.__version__} with {_openssl_version()}"
    error = ConfigError(f"{_REQUIREMENT}; this build is {found}")
    error.__cause__ = exc
    return error


def _module() -> ModuleType:
    if _mlkem is None:
        raise _unsupported()
    return _mlkem


def check_mlkem_support() -> None:
    """Check that this ``cryptography`` build can do ML-KEM-1024; call it at start-up.

    Raises:
        ConfigError: no ML-KEM-1024 here; the message names the ``cryptography`` and OpenSSL
            versions found and what is needed.
    """
    kem_public_key(bytes(KEM_SEED_LEN))


def _private_key(seed: bytes) -> MLKEM1024PrivateKey:
    if type(seed) is not bytes or len(seed) != KEM_SEED_LEN:
        raise ValueError(f"an ML-KEM-1024 private key is a {KEM_SEED_LEN}-byte seed")
    try:
        key: MLKEM1024PrivateKey = _module().MLKEM1024PrivateKey.from_seed_bytes(seed)
    except UnsupportedAlgorithm as exc:
        raise _unsupported(exc) from exc
    return key


def kem_public_key(private: bytes) -> bytes:
    """The 1568-byte public key of a 64-byte private seed (FIPS 203 ``KeyGen_internal``).

    Raises:
        ValueError: ``private`` is not 64 bytes.
        ConfigError: no ML-KEM-1024 in this build.
    """
    return _private_key(private).public_key().public_bytes_raw()


def generate_kem_keypair(rng: Rng) -> tuple[bytes, bytes]:
    """A new ML-KEM-1024 key pair, deterministic in the 64 bytes drawn from ``rng``.

    Returns:
        ``(private, public)``: the 64-byte seed ``d ‖ z`` and the 1568-byte public key.

    Raises:
        ValueError: ``rng`` broke its contract (did not return 64 bytes).
        ConfigError: no ML-KEM-1024 in this build.
    """
    seed = rng(KEM_SEED_LEN)
    if type(seed) is not bytes or len(seed) != KEM_SEED_LEN:
        raise ValueError(f"rng({KEM_SEED_LEN}) must return {KEM_SEED_LEN} bytes")
    return seed, kem_public_key(seed)


def _public_key(public: bytes) -> MLKEM1024PublicKey:
    if type(public) is not bytes or len(public) != KEM_PUBLIC_KEY_LEN:
        raise ValueError(f"an ML-KEM-1024 public key is {KEM_PUBLIC_KEY_LEN} bytes")
    try:
        key: MLKEM1024PublicKey = _module().MLKEM1024PublicKey.from_public_bytes(public)
    except UnsupportedAlgorithm as exc:
        raise _unsupported(exc) from exc
    except ValueError as exc:  # right length, but a coefficient >= q
        raise ValueError("invalid ML-KEM-1024 public key (FIPS 203 §7.2 modulus check)") from exc
    return key


def check_kem_public_key(public: bytes) -> None:
    """Check ``public`` is a valid ML-KEM-1024 public key: 1568 bytes passing the FIPS 203 §7.2
    modulus check (every 12-bit coefficient below q = 3329).

    Raises:
        ValueError: it is not.
        ConfigError: no ML-KEM-1024 in this build.
    """
    _public_key(public)


def encapsulate(public: bytes) -> tuple[bytes, bytes]:
    """Encapsulate a fresh shared secret to ``public`` (FIPS 203 ``ML-KEM.Encaps``, §7.2).

    The 32-byte randomness comes from OpenSSL's CSPRNG, not from an injected ``rng``: the
    ``cryptography`` API has no parameter for it (see the module docstring).

    Returns:
        ``(ciphertext, shared_secret)``: 1568 and 32 bytes. (``cryptography`` returns them the
        other way round; this order follows the data flow: the ciphertext goes to the peer.)

    Raises:
        ValueError: ``public`` is not a valid ML-KEM-1024 public key.
        ConfigError: no ML-KEM-1024 in this build.
    """
    key = _public_key(public)
    secret, ciphertext = key.encapsulate()
    return ciphertext, secret


def decapsulate(private: bytes, ciphertext: bytes) -> bytes:
    """The 32-byte shared secret in ``ciphertext`` (FIPS 203 ``ML-KEM.Decaps``, §7.3).

    A ciphertext of the right length always yields a secret: one not made for this key yields
    the implicit-rejection secret ``J(z ‖ c)``, pseudo-random and unrelated to the real one,
    so the failure shows up later as an authentication failure, as ML-KEM intends.

    Raises:
        ValueError: ``private`` is not a 64-byte seed (our bug, not the peer's).
        DecryptionError: ``ciphertext`` is not 1568 bytes (the §7.3 input check; the one
            failure a peer can cause, reported like any other failed decryption).
        ConfigError: no ML-KEM-1024 in this build.
    """
    key = _private_key(private)
    if type(ciphertext) is not bytes or len(ciphertext) != KEM_CIPHERTEXT_LEN:
        raise DecryptionError()
    return key.decapsulate(ciphertext)
