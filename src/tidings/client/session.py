"""A device's connection to its relay: the asyncio pump of the sans-I/O
:class:`~tidings.client.core.ConnectionCore`.

One :class:`Session` per :class:`~tidings.client.Client`. Every decision — when to connect
again (the backoff), whether the relay's key is the pinned one, HELLO and its cursor, the
own-devices query that opens the session, request ids, the cumulative ACK, what a close means —
is the core's. The session only pumps: it opens the connection the core asks for, feeds it the
channel's events with the loop's monotonic time, writes the frames the core gives, re-arms one
timer at the core's deadline, and turns the core's actions into futures, store writes and
calls of its owner (``on_open``, ``on_close``, ``on_frame``).

What goes wrong is reported, never raised from the background: a failed attempt is a
:class:`~tidings.client.events.ConnectFailed` event (with the reason, and the wait before the
next try), a closed session a :class:`~tidings.client.events.Disconnected`; callers that need
the relay (:meth:`wait_open` with ``fail_fast``, :meth:`request`) get
:class:`~tidings.errors.RelayUnreachable` with the same reason.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from typing import Protocol
from urllib.parse import urlparse

from ..errors import (
    ConfigError,
    ConnectionBroken,
    LocalProtocolError,
    RefusedError,
    RelayUnreachable,
    StoreUnavailable,
)
from ..net.channel import ChannelClosed, Event, FrameReceived, HandshakeDone, KeepaliveParams
from ..net.ws import ChannelConnection
from ..wire import ErrorCode, Frame, MultiAccount, MultiSend, MultiSent
from .addresses import RelayAddresses
from .catchup import CatchUp
from .connect import open_channel, peer_address
from .core import (
    FATAL_CODES,
    Answered,
    CloseConnection,
    ConnectionCore,
    Incoming,
    OpenConnection,
    Opened,
    PinServerKey,
    RequestRefused,
    RequestsLost,
    Welcomed,
)
from .events import CatchingUp, ClientEvent, Connected, ConnectFailed, Disconnected
from .reconnect import RECONNECT_BASE, RECONNECT_CAP
from .store import ClientStore, Identity

__all__ = ["FATAL_CODES", "Session", "SessionOwner"]

log = logging.getLogger("tidings.client")


class SessionOwner(Protocol):
    """What a :class:`Session` tells the client it belongs to."""

    def on_open(self, own_devices: tuple[int, ...]) -> None:
        """A session is open: the outbox may send (``own_devices``: the account's devices)."""

    def on_close(self) -> None:
        """The connection is gone (open or not): nothing more may be sent on it."""

    def on_frame(self, frame: object) -> None:
        """A frame of the session that is not an answer to a request (DELIVER, SENT, …)."""

    def settle(self) -> None:
        """Commit what is pending in the store: the relay is about to be told something that
        may depend on it (HELLO's cursor, a request)."""


class Session:
    """The pump of one device's connection core.

    Args:
        store: the device's store (the pinned server key, the cursor).
        identity: the device's identity.
        owner: the client (:class:`SessionOwner`).
        emit: where events go (``Connected``, ``ConnectFailed``, ``Disconnected``,
            ``CatchingUp``).
        keepalive: the connection's keepalive timing.
        clock: the wall clock (the server-time estimate).
        accept_new_server_key: accept a relay whose static key changed (and pin the new one).
        rng: the backoff's jitter.
        reconnect: the reconnect backoff's first and largest delay ceilings, in seconds.
    """

    def __init__(
        self,
        store: ClientStore,
        identity: Identity,
        owner: SessionOwner,
        emit: Callable[[ClientEvent], None],
        keepalive: KeepaliveParams,
        clock: Callable[[], float],
        accept_new_server_key: bool,
        rng: random.Random,
        reconnect: tuple[float, float] = (RECONNECT_BASE, RECONNECT_CAP),
    ) -> None:
        self.store = store
        self.identity = identity
        self._owner = owner
        self._emit = emit
        self._keepalive = keepalive
        self._clock = clock
        #: The connection protocol: every decision about the connection is its.
        self.core = ConnectionCore(
            identity.account,
            identity.server_url,
            identity.server_key,
            cursor=store.cursor(),
            accept_new_key=accept_new_server_key,
            rng=rng.random,
            reconnect=reconnect,
            catchup=CatchUp(),
            alternates=identity.alternate_urls,
        )
        #: Per relay host, its addresses: the last good one outlives a resolver that fails.
        self.addresses: dict[str, RelayAddresses] = {}
        self._answers: dict[int, asyncio.Future[object]] = {}
        #: Callers waiting for the session to open that want to hear of a failed attempt.
        self._open_waiters: list[asyncio.Future[None]] = []
        self._conn: ChannelConnection | None = None
        #: How the last connection ended (a relay's ERROR code when ``by_peer``), or None.
        self.last_close: ChannelClosed | None = None
        self._open = asyncio.Event()
        self._closing = False
        self._halted: StoreUnavailable | None = None
        #: The connection attempt running now (None between attempts).
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        #: Set once the session will never connect again (closed, halted, fatal).
        self.ended = asyncio.Event()
        #: The relay's clock minus ours, from the last WELCOME.
        self.server_time_offset = 0.0
        #: The URL of the last connection attempt (the node a failure is about).
        self._attempted = self.core.server_url

    # ---------------------------------------------------------------- life cycle

    @property
    def pattern(self) -> str:
        """The Noise pattern of the current session (``XX`` or ``IK``)."""
        return self.core.pattern

    @property
    def fatal(self) -> Disconnected | None:
        """Set when the relay refused this device for good (or its key changed)."""
        return self.core.fatal

    def start(self) -> None:
        """Start connecting (in the background)."""
        self.core.start(self._now())
        self._pump()

    async def close(self) -> None:
        """Close the connection and end the loop."""
        self._closing = True
        self.core.close()
        self._pump()
        if self._conn is not None:
            self._conn.close()
        task = self._task
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._cancel_timer()
        self.ended.set()
        self._wake_open_waiters(ConnectionBroken("the client is closed"))

    def halt(self, exc: StoreUnavailable) -> None:
        """The store cannot write: close the connection (not from inside the failing call)
        and never reconnect; waiting callers get ``exc``."""
        self._halted = exc
        self._closing = True
        self._open.clear()
        self._wake_open_waiters(exc)
        try:
            asyncio.get_running_loop().call_soon(self._halt_now, str(exc))
        except RuntimeError:
            self.core.halt(str(exc))  # no loop: not started, so no connection to close

    def _halt_now(self, why: str) -> None:
        self.core.halt(why)
        self._pump()
        if self._conn is None:
            self.ended.set()

    def reconnect_now(self) -> None:
        """Skip the backoff wait (e.g. the network came back)."""
        self.core.reconnect_now(self._now())
        self._pump()

    # ---------------------------------------------------------------- using the session

    @property
    def fatal_message(self) -> str:
        """Why the client stopped connecting for good, in one line for people ("" if not)."""
        fatal = self.core.fatal
        if fatal is None:
            return ""
        if fatal.code == ErrorCode.HANDSHAKE_FAILED:
            return fatal.reason
        return f"the relay refused this device: {fatal.reason}"

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def current(self) -> ChannelConnection | None:
        """The connection to send on: the session's, once it is open."""
        if self._halted is not None or not self._open.is_set():
            return None
        return self._conn

    def stored(self, seq: int) -> None:
        """The DELIVER ``seq`` is stored in the batch being committed."""
        self.core.stored(seq)

    def committed(self) -> None:
        """The batch committed: the core acks it (one cumulative ACK) and reports progress."""
        self.core.committed(self._now())
        self._pump()

    def aborted(self) -> None:
        """The batch was rolled back: nothing of it is acked."""
        self.core.aborted()

    def drop(self) -> None:
        """Close the current connection; the core reconnects (unless closing)."""
        if self._conn is not None:
            self._conn.close()

    async def wait_open(self, timeout: float | None = None, *, fail_fast: bool = False) -> None:
        """Wait until a session is open (see :meth:`tidings.client.Client.wait_connected`)."""
        if fail_fast:
            async with asyncio.timeout(timeout):
                await self._until_open()
        else:  # through failed attempts and the backoff, but not past a stop for good
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        await self._until_open()
                        return
                    except RelayUnreachable:
                        continue

    async def request(self, build: Callable[[int], Frame]) -> object:
        """Send the frame ``build(request_id)`` once a session is open; return its answer.

        Raises:
            RelayUnreachable: no session, and the next attempt failed.
            ConnectionBroken: the connection was lost before the answer.
            RefusedError: REQUEST_FAILED.
        """
        await self._until_open()
        self._owner.settle()
        try:
            rid = self.core.request(build)
        except LocalProtocolError:
            raise ConnectionBroken("disconnected") from None
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._answers[rid] = fut
        self._pump()
        return await fut

    async def multi_send(
        self, message_id: bytes, shared: bytes, recipients: Sequence[MultiAccount]
    ) -> MultiSent:
        """Send one MULTI_SEND (docs/protocol.md §6.27) once a session is open; its answer.

        ``shared`` goes to every device named in ``recipients``, each after its own part. The
        answer's ``code`` is 0 when the relay committed it for every device (✓), else the
        refusal (nothing stored; ``refusals`` names the accounts whose device sets to fix).
        After :class:`ConnectionBroken` the outcome is unknown: retry with the same
        ``message_id`` (the relay stores nothing twice).

        Raises:
            RelayUnreachable: no session, and the next attempt failed.
            ConnectionBroken: the connection was lost before the answer.
            FrameError: the send breaks a wire limit (nothing was sent).
        """
        frame = MultiSend(0, message_id, shared, tuple(recipients))  # checked before it waits
        answer = await self.request(
            lambda rid: MultiSend(rid, frame.message_id, frame.shared, frame.recipients)
        )
        assert isinstance(answer, MultiSent)
        return answer

    async def _until_open(self) -> None:
        if self._open.is_set():
            return
        if self._halted is not None:
            raise self._halted
        if self.core.fatal is not None:
            raise ConfigError(self.fatal_message)
        if self._closing:
            raise ConnectionBroken("the client is closed")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._open_waiters.append(fut)
        try:
            await fut
        finally:
            if fut in self._open_waiters:
                self._open_waiters.remove(fut)

    def _wake_open_waiters(self, exc: BaseException | None) -> None:
        waiters, self._open_waiters = self._open_waiters, []
        for fut in waiters:
            if fut.done():
                continue
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)

    # ---------------------------------------------------------------- the pump

    def _now(self) -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return 0.0

    def _pump(self) -> None:
        """Write the core's frames, carry out its actions, re-arm its timer."""
        frames = self.core.frames_to_send()
        if frames and self._conn is not None:
            for frame in frames:
                self._conn.send_frame(frame)
        for action in self.core.actions():
            self._do(action)
        self._arm_timer()

    def _do(self, action: object) -> None:
        handler = self._ACTIONS.get(type(action))
        if handler is not None:
            handler(self, action)
        elif isinstance(action, Connected | CatchingUp):
            self._emit(action)

    def _do_open_connection(self, action: OpenConnection) -> None:
        self._task = asyncio.ensure_future(self._connect(action.url))

    def _do_close_connection(self, action: CloseConnection) -> None:
        conn = self._conn
        if conn is not None:
            asyncio.get_running_loop().call_soon(conn.close)

    def _do_pin(self, action: PinServerKey) -> None:
        if self.identity.server_key is not None:
            log.warning("! server key changed; accepting the new key as configured")
        self.store.set_server_key(action.key)
        self.identity = self.store.get_identity() or self.identity

    def _do_welcomed(self, action: Welcomed) -> None:
        self.server_time_offset = action.frame.server_time - self._clock()

    def _do_opened(self, action: Opened) -> None:
        if self._halted is not None:
            return
        self._open.set()
        self._wake_open_waiters(None)
        self._owner.on_open(action.own_devices)

    def _do_answered(self, action: Answered) -> None:
        fut = self._answers.pop(action.request_id, None)
        if fut is not None and not fut.done():
            fut.set_result(action.frame)

    def _do_refused(self, action: RequestRefused) -> None:
        f = action.frame
        fut = self._answers.pop(f.request_id, None)
        if fut is not None and not fut.done():
            fut.set_exception(RefusedError(f.code, f.reason, f.retry_after))

    def _do_lost(self, action: RequestsLost) -> None:
        for rid in action.request_ids:
            fut = self._answers.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_exception(ConnectionBroken("disconnected"))

    def _do_incoming(self, action: Incoming) -> None:
        self._owner.on_frame(action.frame)

    def _do_connect_failed(self, action: ConnectFailed) -> None:
        url = self._attempted
        log.info("! cannot reach the relay at %s: %s", url, action.reason)
        self._wake_open_waiters(RelayUnreachable(url, action.reason))
        self._emit(action)

    def _do_disconnected(self, action: Disconnected) -> None:
        log.info("= closed %s %s", action.code, action.reason)
        if action.fatal:
            why: BaseException = self._halted or ConfigError(self.fatal_message)
            self._wake_open_waiters(why)
            self.ended.set()
        self._emit(action)

    _ACTIONS: dict[type, Callable[[Session, object], None]] = {  # noqa: RUF012
        OpenConnection: _do_open_connection,  # type: ignore[dict-item]
        CloseConnection: _do_close_connection,  # type: ignore[dict-item]
        PinServerKey: _do_pin,  # type: ignore[dict-item]
        Welcomed: _do_welcomed,  # type: ignore[dict-item]
        Opened: _do_opened,  # type: ignore[dict-item]
        Answered: _do_answered,  # type: ignore[dict-item]
        RequestRefused: _do_refused,  # type: ignore[dict-item]
        RequestsLost: _do_lost,  # type: ignore[dict-item]
        Incoming: _do_incoming,  # type: ignore[dict-item]
        ConnectFailed: _do_connect_failed,  # type: ignore[dict-item]
        Disconnected: _do_disconnected,  # type: ignore[dict-item]
    }

    def _arm_timer(self) -> None:
        deadline = self.core.next_deadline()
        if self._timer is not None:
            if deadline is not None and self._timer.when() == deadline:
                return
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        self.core.handle_timer(self._now())
        self._pump()

    @property
    def url(self) -> str:
        """The relay URL of the current session (or of the next attempt)."""
        return self.core.server_url

    def _addresses(self, url: str) -> RelayAddresses:
        host = urlparse(url).hostname or ""
        if host not in self.addresses:
            self.addresses[host] = RelayAddresses(host)
        return self.addresses[host]

    async def _connect(self, url: str) -> None:
        """Open the connection the core asked for (to ``url``); report a failure to it."""
        self._attempted = url
        try:
            conn = await open_channel(
                url,
                self,
                self.identity.noise_private_key,
                self.identity.server_key,
                self._keepalive,
                addresses=self._addresses(url),
            )
        except RelayUnreachable as exc:
            failure = exc.reason
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failed attempt is retried; the pump must never die
            log.exception("! connection attempt failed")
            failure = str(exc) or type(exc).__name__
        else:
            if self._conn is None and not conn.disconnected.is_set():
                self._conn = conn
            if self._closing:
                conn.close()
            return
        self.core.connect_failed(failure, self._now())
        self._pump()

    # ---------------------------------------------------------------- channel events

    def on_channel_event(self, conn: ChannelConnection, event: Event) -> None:
        try:
            if isinstance(event, FrameReceived):
                if self._halted is None:
                    self.core.frame_received(event.frame, self._now())
            elif isinstance(event, HandshakeDone):
                # This connection is the session from now on, even if _connect has not yet
                # resumed from open_channel (the whole handshake can complete before it does).
                self._conn = conn
                self._owner.settle()  # HELLO's cursor acks what it covers: only what is committed
                self.core.cursor = self.store.cursor()
                self.core.handshake_done(event.remote_static, event.pattern, self._now())
                address = peer_address(conn)
                if self.core.fatal is None and address is not None:
                    self._addresses(self._attempted).confirm(address)  # the pinned relay
            elif isinstance(event, ChannelClosed):
                # Nothing more may be written to this connection.
                self._open.clear()
            self._pump()
        except StoreUnavailable:
            return  # reported by the store's hook (the client halts this session)

    def on_disconnected(self, conn: ChannelConnection) -> None:
        if conn is not self._conn and self._conn is not None:
            return
        self._conn = None
        self._open.clear()
        closed = conn.closed_event or ChannelClosed(0, "connection lost")
        self.last_close = closed
        self._owner.on_close()
        self.core.connection_lost(closed.code, closed.reason, closed.by_peer, self._now())
        self._pump()
        if self._closing or self.core.fatal is not None:
            self.ended.set()
            why: BaseException = ConnectionBroken("the client is closed")
            if self.core.fatal is not None:
                why = ConfigError(self.fatal_message)
            self._wake_open_waiters(self._halted or why)
