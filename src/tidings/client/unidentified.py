"""The client's unidentified connection (docs/protocol.md §14.1): a second channel to the same
relay URL, Noise NK to the relay's pinned static key, for what must not name this device —
sealed sends (SEALED_SEND, SEALED_MULTI_SEND for group messages) and the questions about them
(TAG_QUERY).

* It is opened only when there is something to send on it, and never sends HELLO: the relay
  cannot tell which device (or account) it is.
* It closes after :data:`UNIDENTIFIED_IDLE` seconds with nothing awaiting an answer.
* It reconnects with the client's usual backoff (:class:`~tidings.client.reconnect.Reconnect`)
  while something awaits an answer; what was not answered is sent again on the next channel
  (a SEALED_SEND is idempotent on its ``(recipient, tag)``, a TAG_QUERY asks again).
* A failure here never disturbs the authenticated session: it has its own connection, its own
  backoff, and its answers reach the client like any frame.
* A relay that closes it with UNEXPECTED_FRAME does not accept sealed sends:
  ``on_unsupported`` hears of it (the client sends those messages unsealed), as it does after
  :data:`MAX_UNIDENTIFIED_FAILURES` attempts in a row that opened no channel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from ..errors import RelayUnreachable
from ..net.channel import ChannelClosed, Event, FrameReceived, HandshakeDone, KeepaliveParams
from ..net.ws import ChannelConnection
from ..wire import (
    ErrorCode,
    Frame,
    SealedMultiSend,
    SealedMultiSent,
    SealedSend,
    SealedSent,
    TagQuery,
    TagStatus,
)
from .reconnect import Reconnect

__all__ = ["MAX_UNIDENTIFIED_FAILURES", "UNIDENTIFIED_IDLE", "Opener", "UnidentifiedLink"]

log = logging.getLogger("tidings.client")

#: Seconds the unidentified connection stays open with nothing awaiting an answer. Long enough
#: for a burst of sends and receipts to share it, short enough that the relay does not see one
#: long-lived anonymous connection next to each authenticated one.
UNIDENTIFIED_IDLE = 30.0

#: Attempts in a row that end without a handshake (unreachable, refused, cut) while something
#: waits, after which what waits goes another way (``on_unsupported``): a network that lets the
#: authenticated connection through but not a second one must not keep messages back for ever
#: (G2). Each attempt waits out the reconnect backoff, so this is a few seconds.
MAX_UNIDENTIFIED_FAILURES = 3

#: ``opener(url, handler, server_key)`` opens an NK channel (``connect.open_channel`` with no
#: static key); tests pass their own.
Opener = Callable[[str, object, bytes], Awaitable[ChannelConnection]]


class UnidentifiedLink:
    """The unidentified channel and what awaits an answer on it (see the module docstring).

    Args:
        url: the relay URL to use now (the authenticated session's).
        server_key: the relay's pinned static key (``None``: not pinned yet, nothing is sent).
        on_frame: SEALED_SENT and TAG_STATUS frames, as they arrive.
        on_unsupported: the relay does not accept sealed sends (the reason).
        opener: how a channel is opened.
        rng: the jitter of the reconnect backoff.
        idle: seconds before an idle channel is closed.
        backoff: the reconnect backoff's first and largest ceilings, in seconds.
        keepalive: the channel's keepalive.
    """

    def __init__(
        self,
        url: Callable[[], str],
        server_key: Callable[[], bytes | None],
        on_frame: Callable[[Frame], None],
        on_unsupported: Callable[[str], None],
        opener: Opener,
        rng: Callable[[], float],
        idle: float = UNIDENTIFIED_IDLE,
        backoff: tuple[float, float] = (0.5, 30.0),
        keepalive: KeepaliveParams | None = None,
    ) -> None:
        self._url = url
        self._server_key = server_key
        self._on_frame = on_frame
        self._on_unsupported = on_unsupported
        #: How a channel is opened (tests swap it).
        self.opener = opener
        self._idle = idle
        self._reconnect = Reconnect(rng, *backoff)
        self.keepalive = keepalive
        #: SEALED_SENDs awaiting SEALED_SENT, by (recipient, tag).
        self._sends: dict[tuple[str, bytes], SealedSend] = {}
        #: SEALED_MULTI_SENDs (sealed group messages) awaiting SEALED_MULTI_SENT, by tag.
        self._multi: dict[bytes, SealedMultiSend] = {}
        #: TAG_QUERYs awaiting TAG_STATUS, by request id.
        self._queries: dict[int, TagQuery] = {}
        self._conn: ChannelConnection | None = None
        self._ready = False  # the handshake is done on _conn
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._idle_timer: asyncio.TimerHandle | None = None
        self._closing = False
        #: Channels whose handshake completed.
        self.opened = 0

    @property
    def pending(self) -> int:
        """Frames awaiting an answer."""
        return len(self._sends) + len(self._multi) + len(self._queries)

    @property
    def connected(self) -> bool:
        """Whether an unidentified channel is open now."""
        return self._conn is not None and self._ready

    def send(self, frames: Sequence[SealedSend | SealedMultiSend | TagQuery]) -> None:
        """Send ``frames`` (now if the channel is open, else once it is)."""
        if self._closing or not frames:
            return
        for f in frames:
            if isinstance(f, SealedSend):
                self._sends[(f.recipient, f.tag)] = f
            elif isinstance(f, SealedMultiSend):
                self._multi[f.tag] = f
            else:
                self._queries[f.request_id] = f
        self._cancel_idle()
        if self._conn is not None and self._ready:
            self._conn.send_frames(list(frames))
            self._conn.flush()
        self._ensure_running()

    def forget(self, recipient: str, tag: bytes) -> None:
        """Stop awaiting the answer to a sealed send (it goes another way)."""
        self._sends.pop((recipient, tag), None)
        self._maybe_idle()

    def forget_multi(self, tag: bytes) -> None:
        """Stop awaiting the answer to a sealed multi-send (it goes another way)."""
        self._multi.pop(tag, None)
        self._maybe_idle()

    async def close(self) -> None:
        """Close the channel and stop reconnecting."""
        self._closing = True
        self._cancel_idle()
        if self._conn is not None:
            self._conn.close()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    # ---------------------------------------------------------------- the loop

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while self.pending and not self._closing:
            key = self._server_key()
            if key is None:
                return  # nothing unidentified before the relay's key is pinned
            handshakes = self.opened
            try:
                conn = await self.opener(self._url(), self, key)
            except RelayUnreachable as exc:
                log.info("! unidentified connection: %s", exc.reason)
                conn = None
            except asyncio.CancelledError:
                raise
            except Exception:  # retried like any failed attempt; the loop must not die
                log.exception("! unidentified connection attempt failed")
                conn = None
            if conn is not None:
                if self._conn is None:
                    self._conn = conn
                self._reconnect.opened(loop.time())
                await conn.disconnected.wait()
                self._conn = None
                self._ready = False
                if not self.pending:
                    return
            failures = 0 if self.opened > handshakes else failures + 1
            if failures >= MAX_UNIDENTIFIED_FAILURES and self.pending:
                self._sends.clear()
                self._multi.clear()
                self._queries.clear()
                self._on_unsupported(f"no unidentified connection after {failures} attempts")
                return
            delay = self._reconnect.ended(loop.time())
            self._wake.clear()
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass

    # ---------------------------------------------------------------- the channel's events

    def on_channel_event(self, conn: ChannelConnection, event: Event) -> None:
        if isinstance(event, HandshakeDone):
            self._conn = conn
            self._ready = True
            self.opened += 1
            frames: list[Frame] = [
                *self._sends.values(),
                *self._multi.values(),
                *self._queries.values(),
            ]
            if frames:
                conn.send_frames(frames)
            self._maybe_idle()
        elif isinstance(event, FrameReceived):
            frame = event.frame
            if isinstance(frame, SealedSent):
                self._sends.pop((frame.recipient, frame.tag), None)
            elif isinstance(frame, SealedMultiSent):
                self._multi.pop(frame.tag, None)
            elif isinstance(frame, TagStatus):
                self._queries.pop(frame.request_id, None)
            else:
                return
            self._on_frame(frame)
            self._maybe_idle()
        elif isinstance(event, ChannelClosed):
            self._ready = False
            # a relay that knows SEALED_SEND but not SEALED_MULTI_SEND (type 19) closes with
            # MALFORMED_FRAME: the same, until the next authenticated session
            older = event.code == ErrorCode.MALFORMED_FRAME and bool(self._multi)
            if event.by_peer and (event.code == ErrorCode.UNEXPECTED_FRAME or older):
                # a relay that does not know sealed sends: what waited goes another way
                self._sends.clear()
                self._multi.clear()
                self._queries.clear()
                self._on_unsupported(f"the relay does not accept sealed sends ({event.reason})")

    def on_disconnected(self, conn: ChannelConnection) -> None:
        if conn is self._conn:
            self._ready = False

    # ---------------------------------------------------------------- idle

    def _maybe_idle(self) -> None:
        if self.pending or self._conn is None or self._idle_timer is not None:
            return
        self._idle_timer = asyncio.get_running_loop().call_later(self._idle, self._on_idle)

    def _cancel_idle(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _on_idle(self) -> None:
        self._idle_timer = None
        if not self.pending and self._conn is not None:
            self._conn.close()
