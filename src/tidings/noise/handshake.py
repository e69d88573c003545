"""The Noise HandshakeState (Noise §5.3): runs one handshake pattern to completion.

Call order: build the state, then alternate `HandshakeState.write_message` and
`HandshakeState.read_message` as the pattern dictates (the initiator writes message 0), until
`HandshakeState.complete`; then call `HandshakeState.split` once for the transport ciphers.

Invariants:

* A write that would exceed ``MAX_MESSAGE`` is refused before any state changes.
* Any other failure of a read or write (bad message, bad key) is sticky: the handshake is
  dead and every later call raises `HandshakeError`. Noise §5.3 says to abort; we make it
  impossible to carry on by accident. A call out of turn raises without killing it.
* ``split()`` hands out the transport keys once, so two transports never share a nonce space.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tidings.errors import DecryptionError, HandshakeError, TidingsError

from .cipher import MAX_MESSAGE, TAG_LEN, CipherState, MessageTooLargeError
from .keys import DHLEN, Rng, dh, random_bytes
from .patterns import parse_protocol_name
from .symmetric import SymmetricState

__all__ = ["PSK_LEN", "HandshakeState"]

#: Length of a pre-shared key (Noise §9.1).
PSK_LEN = 32


class HandshakeState:
    """One side of a Noise handshake (Noise §5.3 Initialize, WriteMessage, ReadMessage).

    Args:
        protocol_name: e.g. ``"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"``.
        initiator: whether we send message 0.
        prologue: data both sides must agree on (Noise §6); mixed into ``h``.
        static_private: our 32-byte static private key, if the pattern sends or pre-shares it.
        ephemeral_private: a fixed ephemeral private key (test vectors, or an ephemeral that a
            pre-message of the ``fallback`` modifier refers to); else one is drawn from ``rng``.
        remote_static: the peer's static public key, when a pre-message holds it (IK).
        remote_ephemeral: the peer's ephemeral public key, when a pre-message holds it.
        psks: the 32-byte PSKs, in the order the ``psk`` tokens consume them (Noise §9).
        rng: randomness for the ephemeral key when ``ephemeral_private`` is not given.

    Raises:
        ValueError: unsupported protocol name, or a key, PSK or RNG missing or malformed.
    """

    def __init__(
        self,
        protocol_name: str,
        *,
        initiator: bool,
        prologue: bytes = b"",
        static_private: bytes | None = None,
        ephemeral_private: bytes | None = None,
        remote_static: bytes | None = None,
        remote_ephemeral: bytes | None = None,
        psks: Sequence[bytes] = (),
        rng: Rng | None = None,
    ) -> None:
        protocol = parse_protocol_name(protocol_name)
        self._protocol = protocol
        self._pattern = protocol.pattern
        self._initiator = initiator
        self._rng = rng
        self._s = _private(static_private)
        self._e = _private(ephemeral_private)
        self._rs = _public(remote_static)
        self._re = _public(remote_ephemeral)
        self._psks = list(psks)
        self._index = 0
        self._failed = False
        self._split_done = False
        self._check_inputs()
        self._symmetric = SymmetricState(protocol_name, protocol.cipher, protocol.hash)
        self._symmetric.mix_hash(prologue)
        self._mix_pre_messages()

    # -- state --------------------------------------------------------------------------------

    @property
    def protocol_name(self) -> str:
        """The full Noise protocol name."""
        return self._protocol.name

    @property
    def is_initiator(self) -> bool:
        """Whether we are the Noise initiator (sender of message 0, user of ``c1``)."""
        return self._initiator

    @property
    def complete(self) -> bool:
        """Whether every message of the pattern has been written or read."""
        return self._index == len(self._pattern.messages)

    @property
    def writes_next(self) -> bool:
        """Whether the next message is ours to write (meaningless once complete)."""
        return (self._index % 2 == 0) == self._initiator

    @property
    def handshake_hash(self) -> bytes:
        """``h`` (Noise §5.2); the channel-binding value once complete (Noise §11.2)."""
        return self._symmetric.handshake_hash

    @property
    def remote_static(self) -> bytes | None:
        """The peer's static public key, once known."""
        return self._rs

    @property
    def remote_ephemeral(self) -> bytes | None:
        """The peer's ephemeral public key, once known."""
        return self._re

    # -- messages ------------------------------------------------------------------------------

    def write_message(self, payload: bytes = b"") -> bytes:
        """Build our next handshake message carrying ``payload`` (Noise §5.3 WriteMessage).

        Returns:
            The message to send.

        Raises:
            MessageTooLargeError: the message would exceed ``MAX_MESSAGE`` (state unchanged).
            HandshakeError: not our turn, handshake over or failed, or a DH failed.
        """
        self._check_turn(writing=True)
        if self._message_length(len(payload)) > MAX_MESSAGE:
            raise MessageTooLargeError(f"noise handshake message over {MAX_MESSAGE} bytes")
        try:
            parts = [self._write_token(token) for token in self._pattern.messages[self._index]]
            parts.append(self._symmetric.encrypt_and_hash(payload))
        except TidingsError:
            self._failed = True
            raise
        self._index += 1
        return b"".join(parts)

    def read_message(self, message: bytes) -> bytes:
        """Process the peer's next handshake message (Noise §5.3 ReadMessage).

        Returns:
            The payload it carried.

        Raises:
            HandshakeError: not our turn, handshake over or failed, or a bad message (too
                long, truncated, failed authentication, invalid key). The state is then dead.
        """
        self._check_turn(writing=False)
        try:
            if len(message) > MAX_MESSAGE:
                raise HandshakeError(f"noise handshake message over {MAX_MESSAGE} bytes")
            offset = 0
            for token in self._pattern.messages[self._index]:
                offset = self._read_token(token, message, offset)
            payload = self._symmetric.decrypt_and_hash(message[offset:])
        except DecryptionError as exc:
            self._failed = True
            raise HandshakeError("noise handshake message failed authentication") from exc
        except TidingsError:
            self._failed = True
            raise
        self._index += 1
        return payload

    def split(self) -> tuple[CipherState, CipherState]:
        """The transport CipherStates (Noise §5.2 Split); callable once, after completion.

        Returns:
            ``(c1, c2)``: ``c1`` for initiator→responder, ``c2`` for responder→initiator.

        Raises:
            HandshakeError: not complete, failed, or already split.
        """
        if self._failed or not self.complete or self._split_done:
            raise HandshakeError("noise split needs a complete handshake, once")
        self._split_done = True
        self._e = None  # the ephemeral has served its purpose (forward secrecy)
        return self._symmetric.split()

    # -- internals ---------------------------------------------------------------------------

    def _check_turn(self, *, writing: bool) -> None:
        if self._failed:
            raise HandshakeError("noise handshake already failed")
        if self.complete:
            raise HandshakeError("noise handshake already complete")
        if self.writes_next != writing:
            raise HandshakeError("not our turn to " + ("write" if writing else "read"))

    def _check_inputs(self) -> None:
        if len(self._psks) != self._pattern.psk_count:
            raise ValueError(f"{self._protocol.name} needs {self._pattern.psk_count} psks")
        if any(len(psk) != PSK_LEN for psk in self._psks):
            raise ValueError(f"a noise psk is {PSK_LEN} bytes")
        local_pre, remote_pre = self._pre_messages()
        local_sends = {t for i, m in enumerate(self._pattern.messages) for t in m if self._ours(i)}
        if ("s" in local_pre or "s" in local_sends) and self._s is None:
            raise ValueError(f"{self._protocol.name} needs our static key")
        if "e" in local_pre and self._e is None:
            raise ValueError(f"{self._protocol.name} needs our pre-message ephemeral key")
        if "e" in local_sends and self._e is None and self._rng is None:
            raise ValueError(f"{self._protocol.name} needs an rng or a fixed ephemeral key")
        if ("s" in remote_pre and self._rs is None) or ("e" in remote_pre and self._re is None):
            raise ValueError(f"{self._protocol.name} needs the peer's pre-message keys")

    def _ours(self, index: int) -> bool:
        return (index % 2 == 0) == self._initiator

    def _pre_messages(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``(our pre-message tokens, the peer's)``."""
        pattern = self._pattern
        if self._initiator:
            return pattern.initiator_pre, pattern.responder_pre
        return pattern.responder_pre, pattern.initiator_pre

    def _mix_pre_messages(self) -> None:
        # Noise §5.3 Initialize: the initiator's pre-message keys are hashed first;
        # Noise §9.2: in a PSK handshake every "e", pre-message ones included, is also MixKey'd.
        for pre, local in (
            (self._pattern.initiator_pre, self._initiator),
            (self._pattern.responder_pre, not self._initiator),
        ):
            for token in pre:
                key = self._local_public(token) if local else self._remote_public(token)
                self._symmetric.mix_hash(key)
                if token == "e" and self._pattern.uses_psk():
                    self._symmetric.mix_key(key)

    def _local_public(self, token: str) -> bytes:
        key = self._s if token == "s" else self._e
        assert key is not None  # _check_inputs
        return key.public_key().public_bytes_raw()

    def _remote_public(self, token: str) -> bytes:
        key = self._rs if token == "s" else self._re
        assert key is not None  # _check_inputs
        return key

    def _message_length(self, payload_len: int) -> int:
        """The length our next message will have, computed without touching any state."""
        has_key = self._symmetric.has_key()
        length = 0
        for token in self._pattern.messages[self._index]:
            if token == "e":
                length += DHLEN
                has_key = has_key or self._pattern.uses_psk()
            elif token == "s":
                length += DHLEN + (TAG_LEN if has_key else 0)
            else:  # a DH or psk token: MixKey/MixKeyAndHash always set a key
                has_key = True
        return length + payload_len + (TAG_LEN if has_key else 0)

    def _write_token(self, token: str) -> bytes:
        if token == "e":
            if self._e is None:
                assert self._rng is not None  # _check_inputs
                self._e = X25519PrivateKey.from_private_bytes(random_bytes(self._rng, DHLEN))
            e_pub = self._e.public_key().public_bytes_raw()
            self._mix_ephemeral(e_pub)
            return e_pub
        if token == "s":
            return self._symmetric.encrypt_and_hash(self._local_public("s"))
        self._mix_token(token)
        return b""

    def _read_token(self, token: str, message: bytes, offset: int) -> int:
        if token == "e":
            self._re = _take(message, offset, DHLEN)
            self._mix_ephemeral(self._re)
            return offset + DHLEN
        if token == "s":
            size = DHLEN + (TAG_LEN if self._symmetric.has_key() else 0)
            self._rs = self._symmetric.decrypt_and_hash(_take(message, offset, size))
            return offset + size
        self._mix_token(token)
        return offset

    def _mix_ephemeral(self, e_pub: bytes) -> None:
        self._symmetric.mix_hash(e_pub)
        if self._pattern.uses_psk():  # Noise §9.2
            self._symmetric.mix_key(e_pub)

    def _mix_token(self, token: str) -> None:
        """A DH token (Noise §5.3) or ``psk`` (Noise §9.2), the same for writer and reader."""
        if token == "psk":
            self._symmetric.mix_key_and_hash(self._psks.pop(0))
            return
        # token[0] names the initiator's key, token[1] the responder's (canonical form).
        mine, theirs = (token[0], token[1]) if self._initiator else (token[1], token[0])
        private = self._s if mine == "s" else self._e
        public = self._rs if theirs == "s" else self._re
        if private is None or public is None:
            raise HandshakeError(f"noise token {token!r} without its keys")
        self._symmetric.mix_key(dh(private, public))


def _private(key: bytes | None) -> X25519PrivateKey | None:
    if key is None:
        return None
    if len(key) != DHLEN:
        raise ValueError(f"an x25519 private key is {DHLEN} bytes")
    return X25519PrivateKey.from_private_bytes(key)


def _public(key: bytes | None) -> bytes | None:
    if key is not None and len(key) != DHLEN:
        raise ValueError(f"an x25519 public key is {DHLEN} bytes")
    return key


def _take(message: bytes, offset: int, size: int) -> bytes:
    if len(message) < offset + size:
        raise HandshakeError("noise handshake message truncated")
    return message[offset : offset + size]
