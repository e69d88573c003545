"""Noise hash functions, HMAC/HKDF (Noise §4.3) and the SymmetricState (Noise §5.2).

Invariants:

* ``h`` commits to everything sent or received so far (prologue, public keys, ciphertexts):
  both peers hold the same ``h`` after each message, or the next AEAD check fails.
* ``ck`` only changes through HKDF, so every key derives from all DH outputs mixed so far.
* Keys derived from 64-byte hashes are truncated to 32 bytes (Noise §5.2 MixKey, Split).

Noise's HKDF is its own construction on HMAC (Noise §4.3), not RFC 5869's Extract/Expand API,
so it is written here on top of ``cryptography``'s HMAC.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, hmac

from .cipher import KEY_LEN, CipherState

__all__ = ["HASHES", "HashFunctions", "SymmetricState"]


@dataclass(frozen=True, slots=True)
class HashFunctions:
    """One hash of Noise §12.5–12.8 with HMAC and HKDF on top (Noise §4.3).

    Attributes:
        name: the Noise name (``"SHA256"``, ``"SHA512"``, ``"BLAKE2s"``, ``"BLAKE2b"``).
        hashlen: the digest length in bytes (``HASHLEN``).
        algorithm: builds a fresh ``cryptography`` hash algorithm object.
    """

    name: str
    hashlen: int
    algorithm: Callable[[], hashes.HashAlgorithm]

    def hash(self, data: bytes) -> bytes:
        """``HASH(data)``."""
        digest = hashes.Hash(self.algorithm())
        digest.update(data)
        return digest.finalize()

    def hmac(self, key: bytes, data: bytes) -> bytes:
        """``HMAC-HASH(key, data)`` as in RFC 2104 (Noise §4.3)."""
        mac = hmac.HMAC(key, self.algorithm())
        mac.update(data)
        return mac.finalize()

    def hkdf(self, chaining_key: bytes, ikm: bytes, num_outputs: int) -> tuple[bytes, ...]:
        """Noise's ``HKDF(chaining_key, input_key_material, num_outputs)`` (Noise §4.3).

        Args:
            chaining_key: the ``ck`` (``HASHLEN`` bytes).
            ikm: the input key material (empty or 32 bytes, e.g. a DH output).
            num_outputs: 2 or 3.

        Returns:
            ``num_outputs`` values of ``HASHLEN`` bytes each.
        """
        if num_outputs not in (2, 3):
            raise ValueError("noise hkdf yields 2 or 3 outputs")
        temp_key = self.hmac(chaining_key, ikm)
        outputs: list[bytes] = []
        previous = b""
        for i in range(1, num_outputs + 1):
            previous = self.hmac(temp_key, previous + bytes([i]))
            outputs.append(previous)
        return tuple(outputs)


#: The hash functions by their Noise name.
HASHES: dict[str, HashFunctions] = {
    "SHA256": HashFunctions("SHA256", 32, hashes.SHA256),
    "SHA512": HashFunctions("SHA512", 64, hashes.SHA512),
    "BLAKE2s": HashFunctions("BLAKE2s", 32, lambda: hashes.BLAKE2s(32)),
    "BLAKE2b": HashFunctions("BLAKE2b", 64, lambda: hashes.BLAKE2b(64)),
}


class SymmetricState:
    """The chaining key ``ck``, the handshake hash ``h`` and a CipherState (Noise §5.2).

    Construction is ``InitializeSymmetric(protocol_name)``.

    Args:
        protocol_name: the full Noise protocol name, e.g. ``"Noise_XX_25519_AESGCM_SHA256"``.
        cipher: the Noise cipher name.
        hash_name: the Noise hash name.

    Raises:
        ValueError: unknown cipher or hash name.
    """

    __slots__ = ("_cipher", "_cipher_name", "_ck", "_h", "_hash")

    def __init__(self, protocol_name: str, cipher: str, hash_name: str) -> None:
        if hash_name not in HASHES:
            raise ValueError(f"unknown noise hash {hash_name!r}")
        self._hash = HASHES[hash_name]
        self._cipher_name = cipher
        self._cipher = CipherState(cipher)
        name = protocol_name.encode("ascii")
        # Noise §5.2 InitializeSymmetric: pad a short name, hash a long one.
        if len(name) <= self._hash.hashlen:
            self._h = name.ljust(self._hash.hashlen, b"\x00")
        else:
            self._h = self._hash.hash(name)
        self._ck = self._h

    @property
    def handshake_hash(self) -> bytes:
        """``h`` (Noise §5.2 GetHandshakeHash); final once the handshake is complete."""
        return self._h

    def has_key(self) -> bool:
        """Whether the inner CipherState has a key."""
        return self._cipher.has_key()

    def mix_key(self, ikm: bytes) -> None:
        """``MixKey(input_key_material)``: fold a DH output (or psk-mode ``e``) into ``ck``."""
        self._ck, temp_k = self._hash.hkdf(self._ck, ikm, 2)
        self._cipher.initialize_key(temp_k[:KEY_LEN])

    def mix_hash(self, data: bytes) -> None:
        """``MixHash(data)``: ``h = HASH(h || data)``."""
        self._h = self._hash.hash(self._h + data)

    def mix_key_and_hash(self, ikm: bytes) -> None:
        """``MixKeyAndHash(input_key_material)``: used for ``psk`` tokens (Noise §9)."""
        self._ck, temp_h, temp_k = self._hash.hkdf(self._ck, ikm, 3)
        self.mix_hash(temp_h)
        self._cipher.initialize_key(temp_k[:KEY_LEN])

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        """``EncryptAndHash``: encrypt with ``h`` as associated data, then mix the result.

        Raises:
            MessageTooLargeError: the ciphertext would exceed ``MAX_MESSAGE``.
        """
        ciphertext = self._cipher.encrypt_with_ad(self._h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        """``DecryptAndHash``: decrypt with ``h`` as associated data, then mix the input.

        Raises:
            DecryptionError: authentication failed.
        """
        plaintext = self._cipher.decrypt_with_ad(self._h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """``Split()``: the two transport CipherStates (Noise §5.2).

        Returns:
            ``(c1, c2)``: ``c1`` encrypts initiator→responder, ``c2`` responder→initiator.
        """
        temp_k1, temp_k2 = self._hash.hkdf(self._ck, b"", 2)
        return (
            CipherState(self._cipher_name, temp_k1[:KEY_LEN]),
            CipherState(self._cipher_name, temp_k2[:KEY_LEN]),
        )
