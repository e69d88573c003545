"""The asyncio adapter: a :class:`~tidings.net.channel.Channel` carried over a WebSocket (picows).

It only pumps: WebSocket binary messages go into the channel, the channel's output goes out as
binary messages, one timer is re-armed from ``next_deadline()``, and events go to a handler. It
makes no protocol decision: the WebSocket close code of a close comes from the one table of
:mod:`.closecodes`. picows was chosen by measurement (README, "Dependencies").

Nothing is written once the TCP transport is closing: a write that failed (the peer reset the
connection) closes the asyncio transport at once, but picows reports the loss only in a later
loop iteration, and every write in between would log asyncio's "write() called after
connection lost." (hundreds per client after a relay is killed). :meth:`ChannelConnection.flush`
checks the transport before and after each write and closes the channel as "connection lost".

Each WebSocket message carries exactly one handshake message or one Noise transport message;
fragmented WebSocket messages are refused (our peers never fragment: a Noise message is at most
65,535 bytes, well under picows' frame limit).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from typing import Any, Protocol

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from ..noise import MAX_MESSAGE
from ..wire import ErrorCode, Frame
from .channel import Channel, ChannelClosed, ChannelState, Event
from .closecodes import close_code, echo_code
from .timers import Later, Timers, monotonic

#: Seconds a closed connection may take to flush its last bytes (ERROR, close frame) before
#: the TCP connection is aborted. A graceful close waits for the write backlog to drain, and
#: towards a dead path (a keepalive timeout) it never drains: the kernel would retransmit for
#: ~15 minutes (tcp_retries2) and the owner would not learn of the disconnect until then.
CLOSE_LINGER = 2.0

#: Largest WebSocket frame we accept: one Noise message plus slack. Anything bigger is garbage.
#: Also picows' ``max_frame_size`` on both sides, so a bigger frame is refused from its header
#: (close 1009) instead of being buffered whole first.
MAX_WS_FRAME = MAX_MESSAGE + 64


#: The headers of every upgrade once forgotten: one empty multidict (picows' type) shared by all
#: connections, since nothing writes to them after the upgrade (an own one costs 88 bytes).
_NO_HEADERS: Any = None


class ChannelHandler(Protocol):
    """What the owner of a connection implements."""

    def on_channel_event(self, conn: ChannelConnection, event: Event) -> None:
        """Called for every channel event, in order (the last one is ChannelClosed)."""

    def on_disconnected(self, conn: ChannelConnection) -> None:
        """Called once when the WebSocket is gone."""


__all__ = ["CLOSE_LINGER", "MAX_WS_FRAME", "ChannelConnection", "ChannelHandler", "monotonic"]


class ChannelConnection(WSListener):
    """A picows listener that pumps one :class:`Channel`.

    Args:
        make_channel: builds the channel when the WebSocket is up (given ``now``).
        handler: gets the channel's events and the disconnect.
        timers: where its deadlines run, and their clock (default: the loop's shared
            :class:`~tidings.net.timers.Timers` on the monotonic clock; tests pass a
            :class:`~tidings.net.timers.VirtualTimers`).
        keep_headers: the upgrade request's headers to keep after the upgrade (e.g. the
            reverse proxy's client-address header); picows would keep them all, ~1 KiB.
    """

    # Slots: one of these lives per connection, idle or not (issue 10: bytes per connection).
    __slots__ = (
        "_disconnected",
        "_flush_scheduled",
        "_gone",
        "_keep_headers",
        "_linger",
        "_loop",
        "_make_channel",
        "_timer_at",
        "_timers",
        "bytes_written",
        "channel",
        "closed_event",
        "handler",
        "pump",
        "transport",
    )

    def __init__(
        self,
        make_channel: Callable[[float], Channel],
        handler: ChannelHandler,
        timers: Timers | None = None,
        keep_headers: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self._make_channel = make_channel
        self.handler = handler
        self.channel: Channel | None = None
        self.transport: WSTransport | None = None
        self._loop = asyncio.get_running_loop()
        self._timers = timers if timers is not None else Timers.of(self._loop)
        self._keep_headers = keep_headers
        self._disconnected: asyncio.Event | None = None  # made when asked for: ~800 bytes
        self._gone = False
        self.bytes_written = 0
        self.closed_event: ChannelClosed | None = None
        self._flush_scheduled = False
        self._timer_at: float | None = None  # the deadline scheduled on the timers
        self._linger: Later | None = None
        #: The owner's pump, called by every :meth:`flush` after the channel's events and
        #: before the write: what it queues on the channel leaves in that write.
        self.pump: Callable[[], None] | None = None

    # ---------------------------------------------------------------- picows callbacks

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self._forget_upgrade(transport)
        self.channel = self._make_channel(self._timers.clock())
        self.after_connect()
        self.flush()

    def _forget_upgrade(self, transport: WSTransport) -> None:
        """Drop the upgrade's headers but the kept ones: picows holds the request and the
        response for the connection's whole life, and nothing reads them after the upgrade."""
        global _NO_HEADERS
        request, response = transport.request, transport.response
        if request is not None:
            headers = request.headers
            if _NO_HEADERS is None:
                _NO_HEADERS = type(headers)()
            kept = _NO_HEADERS
            for name in self._keep_headers:
                for value in headers.getall(name, ()):
                    if kept is _NO_HEADERS:
                        kept = type(headers)()
                    kept.add(name, value)
            request.headers = kept
        if response is not None and _NO_HEADERS is not None:
            response.headers = _NO_HEADERS

    def after_connect(self) -> None:
        """Hook: the client starts the handshake here."""

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        channel = self.channel
        if channel is None:
            return
        mtype = frame.msg_type
        if mtype == WSMsgType.BINARY and frame.fin:
            if frame.payload_size > MAX_WS_FRAME:
                too_large = int(ErrorCode.FRAME_TOO_LARGE)
                channel.close(too_large, "websocket message too large", notify=False)
            else:
                channel.receive_message(frame.get_payload_as_bytes(), self._timers.clock())
        elif mtype == WSMsgType.CLOSE:
            if not self._lost(transport):
                transport.send_close(WSCloseCode(echo_code(frame.get_close_code().value)))
            transport.disconnect()
            return
        elif mtype in (WSMsgType.PING, WSMsgType.PONG):
            return  # picows answers pings itself
        else:
            malformed = int(ErrorCode.MALFORMED_FRAME)
            channel.close(
                malformed, "only whole binary websocket messages are allowed", notify=False
            )
            self.flush()
            return
        self.schedule_flush()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._cancel_timer()
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        channel = self.channel
        if channel is not None and channel.state is not ChannelState.CLOSED:
            channel.close(0, "connection lost")
            for event in channel.events():
                self._dispatch(event)
        self._gone = True
        if self._disconnected is not None:
            self._disconnected.set()
        self.handler.on_disconnected(self)

    # ---------------------------------------------------------------- API

    @property
    def disconnected(self) -> asyncio.Event:
        """Set once the WebSocket is gone."""
        if self._disconnected is None:
            self._disconnected = asyncio.Event()
            if self._gone:
                self._disconnected.set()
        return self._disconnected

    def send_frame(self, frame: Frame) -> None:
        """Queue a frame; it is written at the end of this loop iteration, together with every
        other frame queued meanwhile (one Noise message, one write). A no-op once closed."""
        channel = self.channel
        if channel is None or channel.state is ChannelState.CLOSED:
            return
        channel.send_frame(frame)
        self.schedule_flush()

    def send_frames(self, frames: list[Frame]) -> None:
        """Queue several frames (see :meth:`send_frame`)."""
        channel = self.channel
        if channel is None or channel.state is ChannelState.CLOSED:
            return
        for frame in frames:
            channel.send_frame(frame)
        self.schedule_flush()

    def expect_auth(self) -> None:
        """Server side: start the wait for HELLO anew (see :meth:`Channel.expect_auth`)."""
        if self.channel is not None:
            self.channel.expect_auth(self._timers.clock())
            self.schedule_flush()  # re-arms the timer

    def close(self, code: int = 0, reason: str = "") -> None:
        """Close the channel (sending ERROR first if ``code``) and then the WebSocket."""
        if self.channel is not None:
            self.channel.close(code, reason)
        self.flush()

    def flush(self) -> None:
        """Now: report the channel's events, write what it has to send, re-arm the timer.

        Events go first, then the owner's :attr:`pump`, so the frames their handlers queue
        leave in the same write: all the frames of one read are decided before anything is
        written, and the answers of one commit leave together.
        """
        self._flush_scheduled = False
        channel = self.channel
        transport = self.transport
        if channel is None or transport is None:
            return
        for event in channel.events():
            self._dispatch(event)
        if self.pump is not None:
            self.pump()
        for message in channel.data_to_send():
            if self._lost(transport):  # before the first write, or the last one failed
                channel.close(0, "connection lost")
                break
            transport.send(WSMsgType.BINARY, message)
            self.bytes_written += len(message)
        for event in channel.events():  # a close caused by a handler, or the loss
            self._dispatch(event)
        if channel.state is ChannelState.CLOSED:
            self._cancel_timer()
            if not self._lost(transport):
                transport.send_close(WSCloseCode(self._close_code(channel)))
            transport.disconnect()  # a no-op once closed
            if not transport.is_disconnected and self._linger is None:
                self._linger = self._timers.call_later(CLOSE_LINGER, self._abort)
            return
        self._timers.touch(self)
        self._arm_timer()

    def release_ciphers(self) -> None:
        """Quiet for a while (the timers' sweep): drop the channel's AEAD objects."""
        if self.channel is not None:
            self.channel.release_ciphers()

    # ---------------------------------------------------------------- internals

    @staticmethod
    def _lost(transport: WSTransport) -> bool:
        """Whether the connection is gone or going: nothing may be written to it any more."""
        return bool(transport.is_disconnected or transport.underlying_transport.is_closing())

    def _close_code(self, channel: Channel) -> int:
        """The WebSocket status code for the channel's close (see :mod:`.closecodes`)."""
        closed = self.closed_event
        return int(
            close_code(channel.close_code or 0, by_peer=closed is not None and closed.by_peer)
        )

    def schedule_flush(self) -> None:
        """Flush at the end of this loop iteration (once, however often it is asked for)."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, ChannelClosed):
            self.closed_event = event
        self.handler.on_channel_event(self, event)

    def _arm_timer(self) -> None:
        """Keep one timer at or before the channel's deadline. Deadlines mostly move later
        (each received message pushes the keepalive out), so an early timer is left alone: when
        it fires, the channel finds nothing due and the timer is armed again for the rest."""
        channel = self.channel
        assert channel is not None
        deadline = channel.next_deadline()
        if deadline is None:
            self._cancel_timer()
            return
        at = self._timer_at
        if at is not None and at <= deadline:
            return
        if at is not None:
            self._timers.discard()
        self._timer_at = deadline
        self._timers.schedule(self, deadline)

    def _cancel_timer(self) -> None:
        if self._timer_at is not None:
            self._timer_at = None
            self._timers.discard()

    def _deadline_valid(self, when: float) -> bool:
        """Whether ``when`` is still this connection's timer (the timers' question)."""
        return self._timer_at == when

    def _deadline_passed(self, when: float) -> None:
        self._on_timer()

    def _abort(self) -> None:
        """The graceful close did not finish within CLOSE_LINGER: drop what is unsent."""
        self._linger = None
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.disconnect(graceful=False)

    def _on_timer(self) -> None:
        self._timer_at = None
        if self.channel is not None:
            self.channel.handle_timer(self._timers.clock())
            self.flush()


# ---------------------------------------------------------------- TCP_INFO (Linux)

_TCP_INFO_LEN = 232
_BYTES_ACKED_OFFSET = 120  # struct tcp_info.tcpi_bytes_acked (u64), Linux ≥ 4.1
_SIOCOUTQ = 0x5411  # ioctl: bytes in the send queue, not yet acknowledged by the peer


def tcp_bytes_acked(sock: socket.socket) -> int | None:
    """Bytes of this socket the peer's TCP stack has acknowledged, or None where unavailable."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    except (OSError, AttributeError, ValueError):
        return None
    if len(info) < _BYTES_ACKED_OFFSET + 8:
        return None
    return int(struct.unpack_from("=Q", info, _BYTES_ACKED_OFFSET)[0])


def tcp_unacked_bytes(sock: socket.socket) -> int | None:
    """Bytes queued in the kernel that the peer has not acknowledged yet (SIOCOUTQ)."""
    import fcntl

    try:
        raw = fcntl.ioctl(sock.fileno(), _SIOCOUTQ, b"\0\0\0\0")
    except (OSError, ValueError):  # ValueError: the socket is already closed (fileno -1)
        return None
    return int(struct.unpack("=i", raw)[0])
