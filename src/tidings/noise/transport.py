"""The transport phase of a Noise session: one CipherState per direction (Noise §5.2, §7.8).

Invariants:

* Sending and receiving nonces only grow, one per message, so a replayed, reordered or
  dropped ciphertext fails to decrypt (the transport assumes an ordered, reliable stream).
* The first failure is final: after a `DecryptionError` the transport is dead, every
  ``decrypt`` raises `DecryptionError` and every ``encrypt`` raises `ConnectionBroken`
  (``__cause__`` is the first failure). A peer gets one guess, never an oracle.
* A transport message is at most ``MAX_MESSAGE`` bytes, so a plaintext is at most
  `MAX_PLAINTEXT` bytes.
"""

from __future__ import annotations

from tidings.errors import ConnectionBroken, DecryptionError

from .cipher import MAX_MESSAGE, TAG_LEN, CipherState, MessageTooLargeError, NonceExhaustedError
from .handshake import HandshakeState

__all__ = ["MAX_PLAINTEXT", "NoiseTransport"]

#: Largest plaintext of one transport message: a Noise message less the AEAD tag.
MAX_PLAINTEXT = MAX_MESSAGE - TAG_LEN


class NoiseTransport:
    """Encrypts what we send and decrypts what we receive after a Noise handshake.

    Normally obtained from ``PipesInitiator.transport()`` or ``PipesResponder.transport()``;
    messages carry no associated data (Noise §5.2, ``ad`` is empty).

    Args:
        send: the CipherState for our direction.
        receive: the CipherState for the peer's direction.

    Raises:
        ValueError: either CipherState has no key.
    """

    __slots__ = ("_failure", "_receive", "_send")

    def __init__(self, send: CipherState, receive: CipherState) -> None:
        if not (send.has_key() and receive.has_key()):
            raise ValueError("a noise transport needs keyed cipher states")
        self._send = send
        self._receive = receive
        self._failure: DecryptionError | None = None

    @classmethod
    def from_handshake(cls, handshake: HandshakeState) -> NoiseTransport:
        """Split a complete handshake; the Noise initiator sends under ``c1`` (Noise §5.2).

        Raises:
            HandshakeError: the handshake is not complete, or was split already.
        """
        c1, c2 = handshake.split()
        return cls(c1, c2) if handshake.is_initiator else cls(c2, c1)

    @property
    def send_nonce(self) -> int:
        """The nonce of the next message we encrypt (the count of messages sent so far)."""
        return self._send.nonce

    @property
    def receive_nonce(self) -> int:
        """The nonce the next received message must carry (the count received so far)."""
        return self._receive.nonce

    @property
    def broken(self) -> bool:
        """Whether a decryption has failed, which kills the transport for good."""
        return self._failure is not None

    def release(self) -> None:
        """Drop both directions' AEAD objects while the session is quiet (keys and nonces stay;
        the next message makes them again): memory an idle connection need not hold."""
        self._send.release()
        self._receive.release()

    def encrypt(self, plaintext: bytes) -> bytes:
        """Encrypt one transport message.

        Raises:
            MessageTooLargeError: ``plaintext`` is over `MAX_PLAINTEXT` bytes.
            NonceExhaustedError: 2**64 - 1 messages were sent; re-establish the session.
            ConnectionBroken: the transport died on an earlier decryption failure.
        """
        if self._failure is not None:
            raise ConnectionBroken("noise transport is dead") from self._failure
        if len(plaintext) > MAX_PLAINTEXT:
            raise MessageTooLargeError(f"noise plaintext over {MAX_PLAINTEXT} bytes")
        return self._send.encrypt_with_ad(b"", plaintext)

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Authenticate and decrypt the peer's next transport message.

        Raises:
            DecryptionError: whatever was wrong (forged, replayed, reordered, truncated, too
                long, or the transport is already dead). The transport is dead afterwards.
        """
        if self._failure is not None:
            raise DecryptionError()
        try:
            if not TAG_LEN <= len(ciphertext) <= MAX_MESSAGE:
                raise DecryptionError()
            return self._receive.decrypt_with_ad(b"", ciphertext)
        except (DecryptionError, NonceExhaustedError) as exc:
            self._failure = DecryptionError()
            raise self._failure from exc
