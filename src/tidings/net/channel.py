"""A secure frame channel: Noise Pipes handshake + encrypted frame stream + keepalive, sans-I/O.

The channel sits between a message transport (WebSocket binary messages) and the frames of
``tidings.wire``. It has three sources of input — messages from the peer
(:meth:`Channel.receive_message`), API calls (:meth:`Channel.send_frame`, :meth:`Channel.close`)
and a timer (:meth:`Channel.handle_timer`) — and two outputs: :meth:`Channel.data_to_send` (the
messages to write, in order) and :meth:`Channel.events`. After any input, call both.

Invariants:

* Nothing the peer sends makes a method raise: a bad handshake, a ciphertext that fails
  authentication or an invalid frame moves the channel to the sticky ``CLOSED`` state, queues an
  ERROR frame when the peer can still read one, and reports :class:`ChannelClosed`.
* Frames are only accepted after the handshake completed, and are delivered in stream order.
* Frames queued together are encrypted together: one Noise message carries as many frames as fit
  in :data:`~tidings.noise.MAX_PLAINTEXT` bytes, so a burst costs one AEAD call, not one per frame.
* Keepalive: when nothing was received for ``ping_interval`` the channel sends PING; when nothing
  was received for ``dead_after`` it closes with KEEPALIVE_TIMEOUT. The channel answers a PING
  itself, unless built with ``answer_pings=False``: then it reports the PING like any frame and
  the owner answers it, in order with its answers to the frames before it (the relay, §7). TCP
  would take its 1–60 s RTO (and minutes of retries) to notice a dead path; this notices in
  ``dead_after`` (G7).
* Admission (server side, with :class:`AdmissionParams`): a peer that finished the handshake but
  has not said who it is yet may send frames of at most ``max_frame`` bytes until its HELLO, and
  must send REGISTER or HELLO within ``auth_timeout`` (PINGs do not extend it), else the channel
  closes with FRAME_TOO_LARGE / AUTH_TIMEOUT. Without it, such a peer holds a connection for
  ever by pinging and can make the relay buffer a 1 MiB frame it trickles in.

This module imports no asyncio: it only pumps bytes and takes ``now`` as an argument.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import ConnectionClosed, DecryptionError, FrameError, HandshakeError
from ..noise import MAX_PLAINTEXT, NoiseTransport, PipesInitiator, PipesPattern, PipesResponder
from ..wire import Error, ErrorCode, Frame, FrameDecoder, FrameType, Ping, Pong, encode
from ..wire.limits import MAX_PRE_AUTH_FRAME, MAX_REASON


class ChannelState(enum.Enum):
    """Where the channel is in its life."""

    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class KeepaliveParams:
    """Keepalive and handshake deadlines, in seconds.

    Attributes:
        ping_interval: send PING after this long without receiving anything (None: never ping;
            the server relies on the client's pings).
        dead_after: close after this long without receiving anything.
        handshake_timeout: close if the handshake has not completed after this long.
    """

    ping_interval: float | None = 10.0
    dead_after: float = 15.0
    handshake_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.ping_interval is not None and not 0 < self.ping_interval < self.dead_after:
            raise ValueError("ping_interval must be positive and below dead_after")
        if self.dead_after <= 0 or self.handshake_timeout <= 0:
            raise ValueError("deadlines must be positive")


@dataclass(frozen=True, slots=True)
class AdmissionParams:
    """What a server allows a peer that finished the handshake but has not said who it is.

    Attributes:
        auth_timeout: seconds from the end of the handshake (and from each
            :meth:`Channel.expect_auth`) until REGISTER or HELLO must have arrived.
        max_frame: largest frame body accepted before the peer's HELLO (a longer length
            prefix is refused at once with FRAME_TOO_LARGE, nothing of it buffered).
    """

    auth_timeout: float = 10.0
    max_frame: int = MAX_PRE_AUTH_FRAME

    def __post_init__(self) -> None:
        if self.auth_timeout <= 0 or self.max_frame <= 0:
            raise ValueError("auth_timeout and max_frame must be positive")


#: The frames that end the wait for a peer to say who it is.
_AUTH_FRAMES = frozenset({FrameType.REGISTER, FrameType.HELLO})


@dataclass(frozen=True, slots=True)
class HandshakeDone:
    """The Noise handshake completed. ``remote_static`` is the peer's static public key."""

    remote_static: bytes
    pattern: str


@dataclass(frozen=True, slots=True)
class FrameReceived:
    """A frame arrived (PONG and ERROR are handled by the channel and not reported; PING too,
    unless the channel was built with ``answer_pings=False``)."""

    frame: Frame


@dataclass(frozen=True, slots=True)
class ChannelClosed:
    """The channel closed. ``by_peer``: the peer sent ERROR (its code, reason and the type of
    the frame it blamed, 0 for none, are given)."""

    code: int
    reason: str
    by_peer: bool = False
    frame_type: int = 0


Event = HandshakeDone | FrameReceived | ChannelClosed


class Channel:
    """One connection's secure frame channel (client or server side).

    Args:
        handshake: the Noise Pipes initiator (client) or responder (server).
        keepalive: the ping and deadline parameters.
        now: the current time (the handshake deadline starts now).
        answer_pings: answer PING with PONG at once; with False, report PING as a
            :class:`FrameReceived` for the owner to answer in order.
        admission: the server's limits on a peer before its REGISTER/HELLO (None: none).
    """

    # Slots: one channel lives per connection, idle or not (issue 10: bytes per connection).
    __slots__ = (
        "_admission",
        "_answer_pings",
        "_auth_deadline",
        "_decoder",
        "_events",
        "_hello_seen",
        "_hs",
        "_keepalive",
        "_last_received",
        "_out",
        "_ping_nonce",
        "_ping_sent_at",
        "_plain",
        "_started_at",
        "_state",
        "_transport",
        "bytes_received",
        "close_code",
        "remote_static",
    )

    def __init__(
        self,
        handshake: PipesInitiator | PipesResponder,
        keepalive: KeepaliveParams,
        now: float,
        *,
        answer_pings: bool = True,
        admission: AdmissionParams | None = None,
    ) -> None:
        self._hs: PipesInitiator | PipesResponder | None = handshake
        self._keepalive = keepalive
        self._answer_pings = answer_pings
        self._admission = admission
        self._auth_deadline: float | None = None  # REGISTER/HELLO due by then
        self._hello_seen = admission is None
        self._state = ChannelState.HANDSHAKE
        self._transport: NoiseTransport | None = None
        self._decoder = (
            FrameDecoder()
            if admission is None
            else FrameDecoder(admission.max_frame, lifted_by=FrameType.HELLO)
        )
        self._out: list[bytes] = []  # finished messages, in order
        self._plain = bytearray()  # frames waiting to be encrypted
        self._events: list[Event] = []
        self._started_at = now
        self._last_received = now
        self._ping_sent_at: float | None = None
        self._ping_nonce = 0
        self.close_code: int | None = None
        self.remote_static: bytes | None = None
        self.bytes_received = 0

    @property
    def state(self) -> ChannelState:
        """The channel's state."""
        return self._state

    @property
    def buffered(self) -> int:
        """Bytes of the peer's frame stream held for an incomplete frame (the memory a peer that
        trickles a frame pins; bounded by the decoder's limit)."""
        return self._decoder.buffered

    # ------------------------------------------------------------------ inputs

    def start(self, payload: bytes = b"") -> None:
        """Client side: queue the first handshake message. Call ``data_to_send()`` after."""
        if not isinstance(self._hs, PipesInitiator) or self._state is not ChannelState.HANDSHAKE:
            raise TypeError("only the initiator starts the handshake, once")
        self._out.append(self._hs.start(payload))

    def receive_message(self, message: bytes, now: float) -> None:
        """Feed one message from the transport. Never raises for what the peer sent."""
        if self._state is ChannelState.CLOSED:
            return
        self._last_received = now
        self._ping_sent_at = None
        self.bytes_received += len(message)
        if self._state is ChannelState.HANDSHAKE:
            self._receive_handshake(message, now)
            return
        assert self._transport is not None
        try:
            plaintext = self._transport.decrypt(message)
        except DecryptionError:
            # The peer's stream is corrupt or forged: we cannot trust anything after it. Noise
            # §5.1: a failed decryption ends the session; an ERROR would not reach a forger.
            self._fail(ErrorCode.MALFORMED_FRAME, "decryption failed", notify=False)
            return
        try:
            self._decoder.receive_data(plaintext)
        except FrameError as exc:
            self._report_frames()
            self._fail(exc.code, exc.reason, frame_type=exc.frame_type or 0)
            return
        self._report_frames()

    def send_frame(self, frame: Frame) -> None:
        """Queue a frame. Frames sent before the handshake completes wait for it.

        Raises:
            ConnectionClosed: the channel is closed.
        """
        if self._state is ChannelState.CLOSED:
            raise ConnectionClosed("channel is closed")
        self._plain += encode(frame)

    def send_frames(self, frames: list[Frame]) -> None:
        """Queue several frames (see :meth:`send_frame`).

        Raises:
            ConnectionClosed: the channel is closed.
        """
        if self._state is ChannelState.CLOSED:
            raise ConnectionClosed("channel is closed")
        plain = self._plain
        for frame in frames:
            plain += encode(frame)

    def close(
        self, code: int = 0, reason: str = "", frame_type: int = 0, *, notify: bool = True
    ) -> None:
        """Close; with a non-zero ``code``, tell the peer with an ERROR frame first (unless
        ``notify`` is false: the code is then only this side's record of the cause, e.g. for
        the WebSocket close code)."""
        if self._state is ChannelState.CLOSED:
            return
        self._fail(code, reason, frame_type=frame_type, notify=notify and code != 0)

    def expect_auth(self, now: float) -> None:
        """Server side: the peer must now send HELLO within ``auth_timeout`` (after REGISTERED).
        A no-op without admission limits, or once HELLO has arrived (a pipelining peer)."""
        admission = self._admission
        if admission is not None and not self._hello_seen and self._state is ChannelState.OPEN:
            self._auth_deadline = now + admission.auth_timeout

    def handle_timer(self, now: float) -> None:
        """Run the keepalive, handshake and admission deadlines. Call when ``next_deadline()``
        passes."""
        if self._state is ChannelState.CLOSED:
            return
        if self._state is ChannelState.HANDSHAKE:
            if now >= self._started_at + self._keepalive.handshake_timeout:
                self._fail(ErrorCode.HANDSHAKE_FAILED, "handshake timeout", notify=False)
            return
        if self._auth_deadline is not None and now >= self._auth_deadline:
            assert self._admission is not None
            limit = self._admission.auth_timeout
            self._fail(ErrorCode.AUTH_TIMEOUT, f"no REGISTER or HELLO within {limit:g}s")
            return
        silent = now - self._last_received
        if silent >= self._keepalive.dead_after:
            self._fail(ErrorCode.KEEPALIVE_TIMEOUT, f"nothing received for {silent:.1f}s")
            return
        interval = self._keepalive.ping_interval
        if interval is not None and silent >= interval and self._ping_sent_at is None:
            self._ping_nonce += 1
            self._ping_sent_at = now
            self.send_frame(Ping(self._ping_nonce))

    def release_ciphers(self) -> None:
        """The connection is quiet: drop the transport's AEAD objects (~2 KiB outside Python's
        heap); the next message makes them again from the keys. Changes nothing on the wire."""
        if self._transport is not None:
            self._transport.release()

    # ------------------------------------------------------------------ outputs

    def data_to_send(self) -> list[bytes]:
        """Messages to write to the transport, in order. After the channel closed, the last ones
        (an ERROR frame) are still returned once; the adapter then closes the transport."""
        if self._plain and self._transport is not None:
            self._seal()
        out, self._out = self._out, []
        return out

    def events(self) -> list[Event]:
        """Events since the last call."""
        out, self._events = self._events, []
        return out

    def next_deadline(self) -> float | None:
        """When ``handle_timer`` must next be called (None: no timer needed)."""
        if self._state is ChannelState.CLOSED:
            return None
        if self._state is ChannelState.HANDSHAKE:
            return self._started_at + self._keepalive.handshake_timeout
        due = self._last_received + self._keepalive.dead_after
        if self._auth_deadline is not None:
            due = min(due, self._auth_deadline)
        interval = self._keepalive.ping_interval
        if interval is None or self._ping_sent_at is not None:
            return due
        return min(due, self._last_received + interval)

    # ------------------------------------------------------------------ internals

    def _receive_handshake(self, message: bytes, now: float) -> None:
        hs = self._hs
        assert hs is not None
        try:
            reply = hs.receive(message)
        except HandshakeError as exc:
            self._fail(ErrorCode.HANDSHAKE_FAILED, str(exc) or "handshake failed", notify=False)
            return
        if reply is not None:
            self._out.append(reply)
        if hs.complete:
            self._transport = hs.transport()
            self._state = ChannelState.OPEN
            self.remote_static = hs.remote_static
            # The handshake's state (keys, hashes, the DH objects) is not needed any more:
            # each idle connection would keep it for its whole life.
            self._hs = None
            if hs.pattern is PipesPattern.NK and isinstance(hs, PipesResponder):
                # An unidentified (sealed-send) session never says who it is: no HELLO is
                # due, and its sends are as big as any (docs/protocol.md §14).
                self._hello_seen = True
                self._decoder.lift()
            elif self._admission is not None:
                self._auth_deadline = now + self._admission.auth_timeout
            self._events.append(HandshakeDone(hs.remote_static, str(hs.pattern)))

    def _report_frames(self) -> None:
        for frame in self._decoder.frames():
            if frame.TYPE in _AUTH_FRAMES:
                self._auth_deadline = None
                self._hello_seen = self._hello_seen or frame.TYPE is FrameType.HELLO
            if isinstance(frame, Ping) and self._answer_pings:
                if self._state is ChannelState.OPEN:
                    self.send_frame(Pong(frame.nonce))
            elif isinstance(frame, Pong):
                pass  # receiving it already reset the keepalive clock
            elif isinstance(frame, Error):
                self._state = ChannelState.CLOSED
                self.close_code = frame.code
                closed = ChannelClosed(frame.code, frame.reason, True, frame.frame_type)
                self._events.append(closed)
                return
            else:
                self._events.append(FrameReceived(frame))

    def _seal(self) -> None:
        assert self._transport is not None
        plain = self._plain
        for start in range(0, len(plain), MAX_PLAINTEXT):
            self._out.append(self._transport.encrypt(bytes(plain[start : start + MAX_PLAINTEXT])))
        self._plain = bytearray()

    def _fail(self, code: int, reason: str, *, frame_type: int = 0, notify: bool = True) -> None:
        if notify and self._transport is not None:
            short = reason.encode()[:MAX_REASON].decode(errors="ignore")
            self._plain += encode(Error(int(code), frame_type or 0, short))
            self._seal()
        self._plain = bytearray()
        self._state = ChannelState.CLOSED
        self.close_code = int(code)
        self._events.append(ChannelClosed(int(code), reason, False, frame_type))
