"""Noise Pipes for tidings (Noise §10.4): XX, IK with zero-RTT, the XXfallback switch, and NK.

Suites: ``Noise_XX_25519_AESGCM_SHA256``, ``Noise_IK_25519_AESGCM_SHA256``,
``Noise_XXfallback_25519_AESGCM_SHA256`` and ``Noise_NK_25519_AESGCM_SHA256``, all with the
same prologue.

Wire format. Each handshake message is one tag byte followed by one Noise message (so at
most ``1 + MAX_MESSAGE`` bytes); the tag tells the peer which pattern the message belongs to::

    0x01  XX           0x02  IK           0x03  XXfallback           0x04  NK

Flows (client = `PipesInitiator`, server = `PipesResponder`; tokens in Alice/Bob notation)::

    XX        client -> 0x01 e                  (empty payload: nothing is encrypted yet)
              server <- 0x01 e, ee, s, es       server payload
              client -> 0x01 s, se              client payload
    IK        client -> 0x02 e, es, s, ss       client payload (zero-RTT, see below)
              server <- 0x02 e, ee, se          server payload
    fallback  client -> 0x02 e, es, s, ss       the server cannot decrypt it (stale pinned key)
              server <- 0x03 e, ee, s, es       server payload; re = the client's IK ephemeral
              client -> 0x03 s, se              client payload, sent again
    NK        client -> 0x04 e, es              client payload (readable by the server's key)
              server <- 0x04 e, ee              server payload

NK is the *unidentified* session of sealed sends (docs/protocol.md §14): the client proves no
static key of its own, so the server learns nothing of who it is; it needs the server's pinned
key, and has no fallback (a server that cannot read it fails the handshake: the client learns
the relay's current key on an authenticated session first). On the server ``remote_static`` of
an NK session is empty (``b""``).

In XXfallback the *server* is the Noise initiator (Noise §10.2): it transmits under the first
CipherState of ``Split()`` and the client under the second; `NoiseTransport` handles the swap.

Payloads. The client's payload (given to `PipesInitiator.start`) always travels encrypted in
the message that also carries the client's static key: the IK message, or the client's last
message in XX and XXfallback. In IK it is zero-RTT data: readable by anyone who later learns
the server's static key, and replayable to the server, so it must be safe to replay. The
server's payload travels in its only handshake message. Each side reads the other's from
``remote_payload`` once the handshake is complete.

Trust. After a fallback, ``remote_static`` is the server's *current* key, which differs from
the pinned one: the caller decides whether to accept it (and re-pin). This module only proves
that the peer holds the private key of ``remote_static``.

Invariants: ``receive`` raises only `HandshakeError` for peer input, and any failure is
final (the object is dead; start a new connection). The transport is created once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum, IntEnum, StrEnum, auto
from typing import Self, TypeVar

from tidings.errors import HandshakeError, TidingsError

from .cipher import MAX_MESSAGE, TAG_LEN, MessageTooLargeError
from .handshake import HandshakeState
from .keys import DHLEN, Rng, random_bytes
from .transport import NoiseTransport

__all__ = [
    "MAX_HANDSHAKE_PAYLOAD",
    "HandshakeTag",
    "PipesInitiator",
    "PipesPattern",
    "PipesResponder",
]

_T = TypeVar("_T")

_SUITE = "25519_AESGCM_SHA256"
# The biggest handshake overhead in these flows: e + encrypted s + payload tag (IK, XX msg 2).
_MAX_OVERHEAD = DHLEN + (DHLEN + TAG_LEN) + TAG_LEN
#: Largest handshake payload of either side, so that every message fits in ``MAX_MESSAGE``.
MAX_HANDSHAKE_PAYLOAD = MAX_MESSAGE - _MAX_OVERHEAD


class HandshakeTag(IntEnum):
    """The first byte of every Pipes handshake message: which pattern it belongs to."""

    XX = 0x01
    IK = 0x02
    XX_FALLBACK = 0x03
    NK = 0x04


class PipesPattern(StrEnum):
    """The pattern a Pipes handshake ran (compares equal to ``"XX"``, ``"IK"``…)."""

    XX = "XX"
    IK = "IK"
    XX_FALLBACK = "XXfallback"
    NK = "NK"

    @property
    def protocol_name(self) -> str:
        """The full Noise protocol name, e.g. ``"Noise_XX_25519_AESGCM_SHA256"``."""
        return f"Noise_{self.value}_{_SUITE}"


class _Step(Enum):
    """Where a Pipes handshake is, named by what it waits for."""

    START = auto()  # client: start() not called yet
    EXPECT_HELLO = auto()  # server: waits for the client's first message
    EXPECT_XX_REPLY = auto()  # client: sent XX e
    EXPECT_IK_REPLY = auto()  # client: sent IK e, es, s, ss
    EXPECT_NK_REPLY = auto()  # client: sent NK e, es
    EXPECT_XX_FINISH = auto()  # server: sent XX e, ee, s, es
    EXPECT_FALLBACK_FINISH = auto()  # server: sent XXfallback e, ee, s, es
    DONE = auto()
    FAILED = auto()


_P = TypeVar("_P", bound="_PipesPeer")
# (where we are, tag of the incoming message) -> handler; the handler moves the step on.
_Transitions = Mapping[tuple[_Step, HandshakeTag], Callable[[_P, bytes], bytes | None]]


class _PipesPeer:
    """What the client and the server share: parsing, failure handling, results."""

    def __init__(
        self, static_private: bytes | None, prologue: bytes, rng: Rng, step: _Step
    ) -> None:
        if static_private is not None and len(static_private) != DHLEN:
            raise ValueError(f"an x25519 private key is {DHLEN} bytes")
        self._static = static_private
        self._prologue = prologue
        self._rng = rng
        self._step = step
        self._pattern: PipesPattern | None = None
        self._handshake: HandshakeState | None = None
        self._remote_payload: bytes | None = None
        self._remote_static: bytes | None = None
        self._handshake_hash: bytes | None = None
        self._transport: NoiseTransport | None = None

    @property
    def complete(self) -> bool:
        """Whether the handshake is complete and `transport` is available."""
        return self._step is _Step.DONE

    @property
    def failed(self) -> bool:
        """Whether the handshake failed; the object is then dead."""
        return self._step is _Step.FAILED

    @property
    def pattern(self) -> PipesPattern | None:
        """The pattern in progress or completed (``None`` before the first message)."""
        return self._pattern

    @property
    def remote_static(self) -> bytes:
        """The peer's 32-byte static public key, authenticated by the handshake (``b""``: the
        peer is an NK client, which has none).

        Raises:
            HandshakeError: the handshake is not complete.
        """
        return self._result(self._remote_static)

    @property
    def remote_payload(self) -> bytes:
        """The payload the peer sent in the handshake (see the module docstring).

        Raises:
            HandshakeError: the handshake is not complete.
        """
        return self._result(self._remote_payload)

    @property
    def handshake_hash(self) -> bytes:
        """The Noise handshake hash, for channel binding (Noise §11.2).

        Raises:
            HandshakeError: the handshake is not complete.
        """
        return self._result(self._handshake_hash)

    def transport(self) -> NoiseTransport:
        """The transport of this session: the same object on every call.

        Raises:
            HandshakeError: the handshake is not complete.
        """
        return self._result(self._transport)

    def _result(self, value: _T | None) -> _T:
        if self._step is not _Step.DONE or value is None:
            raise HandshakeError("noise handshake not complete")
        return value

    def _receive(self, message: bytes, table: _Transitions[Self]) -> bytes | None:
        """Dispatch ``message`` through the transition ``table``; any failure is final."""
        if self._step is _Step.FAILED:
            raise HandshakeError("noise handshake already failed")
        if self._step is _Step.DONE:
            raise HandshakeError("noise handshake already complete")
        try:
            if not 1 <= len(message) <= 1 + MAX_MESSAGE:
                raise HandshakeError("pipes handshake message empty or too long")
            try:
                tag = HandshakeTag(message[0])
            except ValueError:
                raise HandshakeError(f"unknown pipes handshake tag {message[0]:#04x}") from None
            handler = table.get((self._step, tag))
            if handler is None:
                raise HandshakeError(f"unexpected {tag.name} message in {self._step.name}")
            return handler(self, message[1:])
        except TidingsError:
            self._step = _Step.FAILED
            self._handshake = None
            raise

    def _finish(self, handshake: HandshakeState, remote_payload: bytes) -> None:
        assert handshake.complete
        self._remote_payload = remote_payload
        self._remote_static = handshake.remote_static or b""  # NK: the client has no key
        self._handshake_hash = handshake.handshake_hash
        self._transport = NoiseTransport.from_handshake(handshake)
        self._handshake = None
        self._step = _Step.DONE

    def _current(self) -> HandshakeState:
        assert self._handshake is not None  # guaranteed by the transition tables
        return self._handshake

    def _begin(
        self,
        pattern: PipesPattern,
        step: _Step,
        *,
        initiator: bool,
        ephemeral_private: bytes | None = None,
        remote_static: bytes | None = None,
        remote_ephemeral: bytes | None = None,
    ) -> HandshakeState:
        """Start running ``pattern`` with our static key; wait for ``step`` next."""
        self._pattern = pattern
        self._step = step
        self._handshake = HandshakeState(
            pattern.protocol_name,
            initiator=initiator,
            prologue=self._prologue,
            static_private=self._static,
            ephemeral_private=ephemeral_private,
            remote_static=remote_static,
            remote_ephemeral=remote_ephemeral,
            rng=self._rng,
        )
        return self._handshake


class PipesInitiator(_PipesPeer):
    """The client side of a Pipes handshake.

    Call `start` once, send what it returns, then feed each server message to `receive`
    and send what it returns (if anything) until `complete`; then use `transport`.

    Args:
        static_private: the client's 32-byte static private key; ``None`` for an NK
            (unidentified) session, which then needs ``server_static``.
        server_static: the server's pinned static public key: IK if known, else XX; NK
            without ``static_private``.
        prologue: bytes both sides must agree on (e.g. protocol name and version).
        rng: ``rng(n) -> n random bytes``, for the ephemeral key.

    Raises:
        ValueError: a key is not 32 bytes.
    """

    def __init__(
        self,
        static_private: bytes | None,
        *,
        server_static: bytes | None,
        prologue: bytes,
        rng: Rng,
    ) -> None:
        super().__init__(static_private, prologue, rng, _Step.START)
        if server_static is not None and len(server_static) != DHLEN:
            raise ValueError(f"an x25519 public key is {DHLEN} bytes")
        if static_private is None and server_static is None:
            raise ValueError("an NK session (no static key) needs the server's static key")
        self._server_static = server_static
        self._payload = b""
        self._ephemeral: bytes | None = None

    def start(self, payload: bytes = b"") -> bytes:
        """Build the first handshake message: IK if the server key is pinned, else XX; NK
        without a static key of our own.

        Args:
            payload: the client's handshake payload, delivered encrypted with the client's
                static key (zero-RTT in IK: replayable; see the module docstring).

        Returns:
            The tagged message to send.

        Raises:
            MessageTooLargeError: ``payload`` is over `MAX_HANDSHAKE_PAYLOAD` bytes.
            HandshakeError: already started, or the pinned server key is invalid.
        """
        if self._step is not _Step.START:
            raise HandshakeError("pipes handshake already started")
        if len(payload) > MAX_HANDSHAKE_PAYLOAD:
            raise MessageTooLargeError(f"pipes handshake payload over {MAX_HANDSHAKE_PAYLOAD}")
        self._payload = payload
        # Kept for a fallback, where this ephemeral becomes our pre-message (Noise §10.2).
        self._ephemeral = random_bytes(self._rng, DHLEN)
        try:
            if self._static is None:
                assert self._server_static is not None  # checked by __init__
                nk = self._begin(
                    PipesPattern.NK,
                    _Step.EXPECT_NK_REPLY,
                    initiator=True,
                    ephemeral_private=self._ephemeral,
                    remote_static=self._server_static,
                )
                return bytes([HandshakeTag.NK]) + nk.write_message(payload)
            if self._server_static is None:
                xx = self._begin(
                    PipesPattern.XX,
                    _Step.EXPECT_XX_REPLY,
                    initiator=True,
                    ephemeral_private=self._ephemeral,
                )
                return bytes([HandshakeTag.XX]) + xx.write_message(b"")
            ik = self._begin(
                PipesPattern.IK,
                _Step.EXPECT_IK_REPLY,
                initiator=True,
                ephemeral_private=self._ephemeral,
                remote_static=self._server_static,
            )
            return bytes([HandshakeTag.IK]) + ik.write_message(payload)
        except TidingsError:
            self._step = _Step.FAILED
            raise

    def receive(self, message: bytes) -> bytes | None:
        """Process one tagged handshake message from the server.

        Returns:
            The tagged message to send next, or ``None`` if there is none (IK done).
            Check `complete` afterwards.

        Raises:
            HandshakeError: the message is malformed, unexpected or fails authentication;
                the handshake is then dead.
        """
        return self._receive(message, _CLIENT_TRANSITIONS)

    def _on_xx_reply(self, body: bytes) -> bytes:
        xx = self._current()
        server_payload = xx.read_message(body)
        reply = xx.write_message(self._payload)
        self._finish(xx, server_payload)
        return bytes([HandshakeTag.XX]) + reply

    def _on_ik_reply(self, body: bytes) -> None:
        ik = self._current()
        self._finish(ik, ik.read_message(body))

    _on_nk_reply = _on_ik_reply  # one message back, then done

    def _on_fallback(self, body: bytes) -> bytes:
        # Noise §10.4: the server could not read our IK message; we are now the responder
        # of XXfallback, with our IK ephemeral as pre-message.
        fallback = self._begin(
            PipesPattern.XX_FALLBACK,
            self._step,  # completes within this call
            initiator=False,
            ephemeral_private=self._ephemeral,
        )
        server_payload = fallback.read_message(body)
        reply = fallback.write_message(self._payload)
        self._finish(fallback, server_payload)
        return bytes([HandshakeTag.XX_FALLBACK]) + reply

    def _finish(self, handshake: HandshakeState, remote_payload: bytes) -> None:
        super()._finish(handshake, remote_payload)
        self._ephemeral = None


class PipesResponder(_PipesPeer):
    """The server side of a Pipes handshake.

    Feed each client message to `receive` and send what it returns (if anything) until
    `complete`; then use `transport`. An IK message the server cannot decrypt is answered
    with XXfallback (Noise §10.4).

    Args:
        static_private: the server's 32-byte static private key.
        prologue: bytes both sides must agree on.
        rng: ``rng(n) -> n random bytes``, for the ephemeral key.
        payload: the server's handshake payload, sent encrypted in its reply.

    Raises:
        ValueError: the key is not 32 bytes.
        MessageTooLargeError: ``payload`` is over `MAX_HANDSHAKE_PAYLOAD` bytes.
    """

    def __init__(
        self, static_private: bytes, *, prologue: bytes, rng: Rng, payload: bytes = b""
    ) -> None:
        super().__init__(static_private, prologue, rng, _Step.EXPECT_HELLO)
        if len(payload) > MAX_HANDSHAKE_PAYLOAD:
            raise MessageTooLargeError(f"pipes handshake payload over {MAX_HANDSHAKE_PAYLOAD}")
        self._payload = payload

    def receive(self, message: bytes) -> bytes | None:
        """Process one tagged handshake message from the client.

        Returns:
            The tagged reply to send, or ``None`` if there is none (XX and fallback done).
            Check `complete` afterwards: an IK handshake completes with a reply.

        Raises:
            HandshakeError: the message is malformed, unexpected or fails authentication;
                the handshake is then dead.
        """
        return self._receive(message, _SERVER_TRANSITIONS)

    def _on_xx_hello(self, body: bytes) -> bytes:
        xx = self._begin(PipesPattern.XX, _Step.EXPECT_XX_FINISH, initiator=False)
        if xx.read_message(body):
            raise HandshakeError("pipes xx hello carries a cleartext payload")
        return bytes([HandshakeTag.XX]) + xx.write_message(self._payload)

    def _on_ik_hello(self, body: bytes) -> bytes:
        ik = self._begin(PipesPattern.IK, self._step, initiator=False)  # completes or falls back
        try:
            client_payload = ik.read_message(body)
        except HandshakeError:
            return self._fall_back(body)
        reply = ik.write_message(self._payload)
        self._finish(ik, client_payload)
        return bytes([HandshakeTag.IK]) + reply

    def _on_nk_hello(self, body: bytes) -> bytes:
        # No fallback: a client that pinned a stale key learns the new one authenticated.
        nk = self._begin(PipesPattern.NK, self._step, initiator=False)
        client_payload = nk.read_message(body)
        reply = nk.write_message(self._payload)
        self._finish(nk, client_payload)
        return bytes([HandshakeTag.NK]) + reply

    def _fall_back(self, body: bytes) -> bytes:
        # Noise §10.4: the client's IK ephemeral becomes its pre-message and we, the former
        # responder, start XXfallback as the Noise initiator (Noise §10.2).
        if len(body) < DHLEN:
            raise HandshakeError("pipes ik message truncated")
        fallback = self._begin(
            PipesPattern.XX_FALLBACK,
            _Step.EXPECT_FALLBACK_FINISH,
            initiator=True,
            remote_ephemeral=body[:DHLEN],
        )
        return bytes([HandshakeTag.XX_FALLBACK]) + fallback.write_message(self._payload)

    def _on_finish(self, body: bytes) -> None:
        handshake = self._current()
        self._finish(handshake, handshake.read_message(body))


# The protocol, one line per legal (state, incoming tag); anything else is a HandshakeError.
_CLIENT_TRANSITIONS: _Transitions[PipesInitiator] = {
    (_Step.EXPECT_XX_REPLY, HandshakeTag.XX): PipesInitiator._on_xx_reply,
    (_Step.EXPECT_IK_REPLY, HandshakeTag.IK): PipesInitiator._on_ik_reply,
    (_Step.EXPECT_IK_REPLY, HandshakeTag.XX_FALLBACK): PipesInitiator._on_fallback,
    (_Step.EXPECT_NK_REPLY, HandshakeTag.NK): PipesInitiator._on_nk_reply,
}
_SERVER_TRANSITIONS: _Transitions[PipesResponder] = {
    (_Step.EXPECT_HELLO, HandshakeTag.XX): PipesResponder._on_xx_hello,
    (_Step.EXPECT_HELLO, HandshakeTag.IK): PipesResponder._on_ik_hello,
    (_Step.EXPECT_HELLO, HandshakeTag.NK): PipesResponder._on_nk_hello,
    (_Step.EXPECT_XX_FINISH, HandshakeTag.XX): PipesResponder._on_finish,
    (_Step.EXPECT_FALLBACK_FINISH, HandshakeTag.XX_FALLBACK): PipesResponder._on_finish,
}
