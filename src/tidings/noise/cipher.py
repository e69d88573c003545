"""Noise CipherState (Noise §5.1) over the two AEADs of the spec (Noise §12.3, §12.4).

Invariants:

* A nonce is never used twice with one key: ``n`` only grows, and only after a successful
  encryption or decryption (a failed decryption leaves ``n`` alone, Noise §5.1).
* Nonce ``2**64 - 1`` is reserved (Noise §5.1): reaching it raises `NonceExhaustedError`;
  the session must then be re-established.
* No Noise message is longer than `MAX_MESSAGE` bytes (Noise §3): a larger ciphertext is
  refused before any state changes.
* Without a key, ``encrypt_with_ad``/``decrypt_with_ad`` return their input unchanged
  (Noise §5.1), as the first handshake messages require.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from tidings.errors import DecryptionError, TidingsError

__all__ = [
    "CIPHERS",
    "KEY_LEN",
    "MAX_MESSAGE",
    "MAX_NONCE",
    "TAG_LEN",
    "CipherState",
    "MessageTooLargeError",
    "NonceExhaustedError",
]

#: Largest Noise message, handshake or transport (Noise §3): lengths fit a 16-bit prefix.
MAX_MESSAGE = 65535
#: AEAD authentication tag length (Noise §4.2).
TAG_LEN = 16
#: Cipher key length (Noise §4.2).
KEY_LEN = 32
#: The reserved nonce (Noise §5.1): a CipherState whose ``n`` reaches it refuses to work.
MAX_NONCE = 2**64 - 1


class NonceExhaustedError(TidingsError):
    """A CipherState has used its last nonce (Noise §5.1); re-establish the session."""


class MessageTooLargeError(TidingsError, ValueError):
    """We asked for a Noise message longer than `MAX_MESSAGE` (local misuse, nothing was sent).

    Also a `ValueError`, as the argument is what is wrong.
    """


_Aead = AESGCM | ChaCha20Poly1305


@dataclass(frozen=True, slots=True)
class _CipherFunctions:
    """One AEAD of Noise §12 and the way it turns the 64-bit counter into a nonce."""

    name: str
    aead: Callable[[bytes], _Aead]
    byteorder: Literal[
        "big", "little"
    ]  # of the 64-bit counter: AESGCM big-endian (§12.4), ChaChaPoly little (§12.3)

    def nonce(self, n: int) -> bytes:
        """The 96-bit AEAD nonce: 32 zero bits then the counter (Noise §12.3, §12.4)."""
        return b"\x00\x00\x00\x00" + n.to_bytes(8, self.byteorder)


#: The cipher functions by their Noise name.
CIPHERS: dict[str, _CipherFunctions] = {
    "AESGCM": _CipherFunctions("AESGCM", AESGCM, "big"),
    "ChaChaPoly": _CipherFunctions("ChaChaPoly", ChaCha20Poly1305, "little"),
}


class CipherState:
    """A key ``k`` (possibly empty) and a nonce counter ``n`` (Noise §5.1).

    Args:
        cipher: the Noise cipher name, ``"AESGCM"`` or ``"ChaChaPoly"``.
        key: a 32-byte key, or ``None`` for the empty key.

    Raises:
        ValueError: unknown cipher name or key of the wrong length.
    """

    # The AEAD object is made from the key when first used and may be dropped (:meth:`release`):
    # ``cryptography``'s holds ~1.1 KiB outside Python's heap, for every idle connection.
    __slots__ = ("_aead", "_cipher", "_key", "_n")

    def __init__(self, cipher: str, key: bytes | None = None) -> None:
        if cipher not in CIPHERS:
            raise ValueError(f"unknown noise cipher {cipher!r}")
        self._cipher = CIPHERS[cipher]
        self._key: bytes | None = None
        self._aead: _Aead | None = None
        self._n = 0
        self.initialize_key(key)

    @property
    def cipher_name(self) -> str:
        """The Noise name of the cipher (``"AESGCM"`` or ``"ChaChaPoly"``)."""
        return self._cipher.name

    @property
    def nonce(self) -> int:
        """The nonce the next encryption or decryption will use."""
        return self._n

    def initialize_key(self, key: bytes | None) -> None:
        """Set ``k = key`` and ``n = 0`` (Noise §5.1 InitializeKey)."""
        if key is not None and len(key) != KEY_LEN:
            raise ValueError(f"a noise cipher key is {KEY_LEN} bytes")
        self._key = key
        self._aead = None
        self._n = 0

    def has_key(self) -> bool:
        """Whether ``k`` is non-empty (Noise §5.1 HasKey)."""
        return self._key is not None

    def release(self) -> None:
        """Drop the AEAD object (the key stays; the next use makes it again)."""
        self._aead = None

    def _cipher_of(self, key: bytes) -> _Aead:
        aead = self._aead = self._cipher.aead(key)
        return aead

    def set_nonce(self, nonce: int) -> None:
        """Set ``n`` (Noise §5.1 SetNonce); for out-of-order transports and tests.

        Raises:
            ValueError: ``nonce`` is not in ``[0, MAX_NONCE]``.
        """
        if not 0 <= nonce <= MAX_NONCE:
            raise ValueError("a noise nonce is an unsigned 64-bit integer")
        self._n = nonce

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        """Encrypt ``plaintext`` with associated data ``ad``, then increment ``n``.

        Returns ``plaintext`` unchanged when there is no key.

        Raises:
            MessageTooLargeError: the ciphertext would exceed `MAX_MESSAGE`.
            NonceExhaustedError: ``n`` has reached the reserved `MAX_NONCE`.
        """
        key = self._key
        if key is None:
            return plaintext
        if len(plaintext) + TAG_LEN > MAX_MESSAGE:
            raise MessageTooLargeError(f"noise ciphertext over {MAX_MESSAGE} bytes")
        self._check_nonce()
        aead = self._aead or self._cipher_of(key)
        ciphertext = aead.encrypt(self._cipher.nonce(self._n), plaintext, ad)
        self._n += 1
        return ciphertext

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        """Authenticate and decrypt ``ciphertext``; increment ``n`` only on success.

        Returns ``ciphertext`` unchanged when there is no key.

        Raises:
            DecryptionError: authentication failed or the ciphertext is over `MAX_MESSAGE`.
            NonceExhaustedError: ``n`` has reached the reserved `MAX_NONCE`.
        """
        key = self._key
        if key is None:
            return ciphertext
        if len(ciphertext) > MAX_MESSAGE:
            raise DecryptionError()
        self._check_nonce()
        aead = self._aead or self._cipher_of(key)
        try:
            plaintext = aead.decrypt(self._cipher.nonce(self._n), ciphertext, ad)
        except InvalidTag as exc:
            raise DecryptionError() from exc
        self._n += 1
        return plaintext

    def rekey(self) -> None:
        """Replace ``k`` by ``REKEY(k)`` (Noise §4.2, §11.3); ``n`` is unchanged.

        Raises:
            ValueError: there is no key to rekey.
        """
        key = self._key
        if key is None:
            raise ValueError("cannot rekey an empty noise key")
        # Noise §4.2: REKEY(k) = first 32 bytes of ENCRYPT(k, maxnonce, zerolen, zeros).
        aead = self._aead or self._cipher_of(key)
        new_key = aead.encrypt(self._cipher.nonce(MAX_NONCE), bytes(KEY_LEN), b"")
        self._key = new_key[:KEY_LEN]
        self._aead = None

    def _check_nonce(self) -> None:
        if self._n >= MAX_NONCE:
            raise NonceExhaustedError("noise nonce space exhausted")
