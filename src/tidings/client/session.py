"""A device's connection to its relay: connecting and reconnecting, the session's opening, and
requests with one answer each.

One :class:`Session` per :class:`~tidings.client.Client`. It runs the connection loop (connect,
wait for the end, back off, again: :mod:`tidings.client.reconnect`), checks the relay's static
key against the one pinned at registration, sends HELLO with the store's cursor, and on WELCOME
first asks for the account's own devices (a send must name them all) before it calls the
client's ``on_open``: only then may the outbox send. Answers to requests (DEVICES, LINK_CODE,
PREKEY_BUNDLE, PREKEYS_STORED, REQUEST_FAILED) are matched here (:mod:`tidings.client.requests`);
every other frame goes to the client's ``on_frame``.

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
from collections.abc import Callable
from typing import Protocol

from ..errors import ConfigError, ConnectionBroken, RelayUnreachable, StoreUnavailable
from ..net.channel import ChannelClosed, Event, FrameReceived, HandshakeDone, KeepaliveParams
from ..net.ws import ChannelConnection
from ..wire import (
    PROTOCOL_VERSION,
    Devices,
    ErrorCode,
    GetDevices,
    Hello,
    LinkCode,
    PrekeyBundle,
    PrekeysStored,
    RequestFailed,
    Welcome,
)
from .connect import open_channel
from .events import ClientEvent, ConnectFailed, Disconnected
from .reconnect import RECONNECT_BASE, RECONNECT_CAP, Reconnect
from .requests import Requests
from .store import ClientStore, Identity

__all__ = ["FATAL_CODES", "Session", "SessionOwner"]

log = logging.getLogger("tidings.client")

#: Close codes after which reconnecting cannot help; the client stops and reports them.
FATAL_CODES = frozenset({ErrorCode.UNKNOWN_DEVICE, ErrorCode.UNSUPPORTED_VERSION})

#: Frames that answer a request (matched by request id here, never passed on).
_ANSWERS = (Devices, LinkCode, PrekeyBundle, PrekeysStored)


class SessionOwner(Protocol):
    """What a :class:`Session` tells the client it belongs to."""

    def on_open(self, own_devices: tuple[int, ...]) -> None:
        """A session is open: the outbox may send (``own_devices``: the account's devices)."""

    def on_welcome(self, backlog: int, upto: int) -> None:
        """WELCOME: ``backlog`` items wait for this device, up to seq ``upto`` (the catch-up)."""

    def on_close(self) -> None:
        """The connection is gone (open or not): nothing more may be sent on it."""

    def on_frame(self, frame: object) -> None:
        """A frame of the session that is not an answer to a request (DELIVER, SENT, …)."""

    def settle(self) -> None:
        """Commit what is pending in the store: the relay is about to be told something that
        may depend on it (HELLO's cursor, a request)."""


class Session:
    """The connection loop and session state of one device.

    Args:
        store: the device's store (the identity, the pinned server key, the cursor).
        owner: the client (:class:`SessionOwner`).
        emit: where events go (``ConnectFailed``, ``Disconnected``).
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
        self._accept_new_key = accept_new_server_key
        self._reconnect = Reconnect(rng.random, *reconnect)
        self._requests = Requests()
        #: Callers waiting for the session to open that want to hear of a failed attempt.
        self._open_waiters: list[asyncio.Future[None]] = []
        #: How the current connection ended, if the relay (or our side) said why.
        self._close_reason = ""
        self._opened = False  # the current connection became a session
        self._conn: ChannelConnection | None = None
        self._open = asyncio.Event()
        self._wake = asyncio.Event()
        self._closing = False
        self._halted: StoreUnavailable | None = None
        self._task: asyncio.Task[None] | None = None
        #: The Noise pattern of the current session (``XX`` or ``IK``).
        self.pattern = ""
        #: Set when the relay refused this device for good (or its key changed); no reconnect.
        self.fatal: Disconnected | None = None
        #: The relay's clock minus ours, from the last WELCOME.
        self.server_time_offset = 0.0

    # ---------------------------------------------------------------- life cycle

    def start(self) -> None:
        """Start the connection loop (in the background)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        """Close the connection and end the loop."""
        self._closing = True
        self._wake.set()
        if self._conn is not None:
            self._conn.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        self._wake_open_waiters(ConnectionBroken("the client is closed"))

    def halt(self, exc: StoreUnavailable) -> None:
        """The store cannot write: close the connection (not from inside the failing call)
        and never reconnect; waiting callers get ``exc``."""
        self._halted = exc
        self._closing = True
        self._open.clear()
        self._wake.set()
        self._wake_open_waiters(exc)
        try:
            asyncio.get_running_loop().call_soon(self.drop)
        except RuntimeError:
            pass  # no loop: not started, so no connection to close

    def reconnect_now(self) -> None:
        """Skip the backoff wait (e.g. the network came back)."""
        self._wake.set()

    # ---------------------------------------------------------------- using the session

    @property
    def fatal_message(self) -> str:
        """Why the client stopped connecting for good, in one line for people ("" if not)."""
        if self.fatal is None:
            return ""
        if self.fatal.code == ErrorCode.HANDSHAKE_FAILED:
            return self.fatal.reason
        return f"the relay refused this device: {self.fatal.reason}"

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def current(self) -> ChannelConnection | None:
        """The connection to send on: the session's, once it is open."""
        if self._halted is not None or not self._open.is_set():
            return None
        return self._conn

    def send(self, frame: object) -> None:
        """Send ``frame`` on the current connection, if there is one (ACK)."""
        if self._conn is not None:
            self._conn.send_frame(frame)  # type: ignore[arg-type]

    def drop(self) -> None:
        """Close the current connection; the loop reconnects (unless closing)."""
        if self._conn is not None:
            self._conn.close()

    async def wait_open(self, timeout: float | None = None, *, fail_fast: bool = False) -> None:
        """Wait until a session is open (see :meth:`tidings.client.Client.wait_connected`)."""
        if fail_fast:
            async with asyncio.timeout(timeout):
                await self._until_open()
        else:
            async with asyncio.timeout(timeout):
                await self._open.wait()

    async def request(self, build: Callable[[int], object]) -> object:
        """Send the frame ``build(request_id)`` once a session is open; return its answer.

        Raises:
            RelayUnreachable: no session, and the next attempt failed.
            ConnectionBroken: the connection was lost before the answer.
            RefusedError: REQUEST_FAILED.
        """
        await self._until_open()
        self._owner.settle()
        rid, fut = self._requests.new()
        assert self._conn is not None
        self._conn.send_frame(build(rid))  # type: ignore[arg-type]
        return await fut

    async def _until_open(self) -> None:
        if self._open.is_set():
            return
        if self._halted is not None:
            raise self._halted
        if self.fatal is not None:
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

    # ---------------------------------------------------------------- the loop

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        url = self.identity.server_url
        while not self._closing:
            self._wake.clear()  # a reconnect_now() from here on cuts the next backoff short
            failure = ""
            self._close_reason = ""
            self._opened = False
            try:
                conn = await open_channel(
                    url,
                    self,
                    self.identity.noise_private_key,
                    self.identity.server_key,
                    self._keepalive,
                )
            except RelayUnreachable as exc:
                failure = exc.reason
            except Exception as exc:  # any failed attempt is retried; the loop must never die
                log.exception("! connection attempt failed")
                failure = str(exc) or type(exc).__name__
            else:
                self._conn = conn
                await conn.disconnected.wait()
                self._conn = None
                if not self._opened:
                    failure = (
                        self._close_reason or "the connection closed before the session opened"
                    )
            self._open.clear()
            self._owner.on_close()
            self._requests.disconnected(ConnectionBroken("disconnected"))
            if self.fatal is not None or self._closing:
                why: Exception = ConnectionBroken("the client is closed")
                if self.fatal is not None:
                    why = ConfigError(self.fatal_message)
                self._wake_open_waiters(self._halted or why)
                return
            delay = self._reconnect.ended(loop.time())
            if failure:
                log.info("! cannot reach the relay at %s: %s", url, failure)
                self._wake_open_waiters(RelayUnreachable(url, failure))
                self._emit(ConnectFailed(failure, self._reconnect.attempt, delay))
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass

    # ---------------------------------------------------------------- channel events

    def on_channel_event(self, conn: ChannelConnection, event: Event) -> None:
        try:
            if isinstance(event, FrameReceived):
                if self._halted is None:
                    self._on_frame(event.frame)
            elif isinstance(event, HandshakeDone):
                # This connection is the session from now on, even if _run has not yet resumed
                # from open_channel (the whole handshake can complete before it does).
                self._conn = conn
                self._on_handshake(conn, event)
        except StoreUnavailable:
            return  # reported by the store's hook (the client halts this session)
        if isinstance(event, ChannelClosed):
            # Nothing more may be written to this connection; _run notices the disconnect.
            self._open.clear()
            log.info("= closed %s %s", event.code, event.reason)
            if event.reason:
                who = "the relay closed the connection: " if event.by_peer else ""
                self._close_reason = who + event.reason
            fatal = (event.code in FATAL_CODES and event.by_peer) or self._halted is not None
            ev = Disconnected(event.code, event.reason, fatal)
            if fatal:
                self.fatal = ev
            self._emit(ev)

    def on_disconnected(self, conn: ChannelConnection) -> None:
        pass  # _run notices through conn.disconnected

    def _on_frame(self, frame: object) -> None:
        if isinstance(frame, _ANSWERS):
            self._on_answer(frame)
        elif isinstance(frame, RequestFailed):
            self._requests.failed(frame)
        elif isinstance(frame, Welcome):
            self._on_welcome(frame)
        else:
            self._owner.on_frame(frame)

    def _on_handshake(self, conn: ChannelConnection, event: HandshakeDone) -> None:
        pinned = self.identity.server_key
        if pinned is not None and pinned != event.remote_static:
            if not self._accept_new_key:
                reason = (
                    f"the relay at {self.identity.server_url} presents another key than the one "
                    "pinned at registration (another relay at this address, or its server.key "
                    "was replaced): ask its operator; this device does not connect to it"
                )
                self.fatal = Disconnected(int(ErrorCode.HANDSHAKE_FAILED), reason, fatal=True)
                self._emit(self.fatal)
                conn.close()
                return
            log.warning("! server key changed; accepting the new key as configured")
        if pinned != event.remote_static:
            self.store.set_server_key(event.remote_static)
            self.identity = self.store.get_identity() or self.identity
        self.pattern = event.pattern
        self._owner.settle()  # HELLO's cursor acks what it covers: only what is committed
        conn.send_frame(Hello(PROTOCOL_VERSION, self.store.cursor()))

    def _on_welcome(self, frame: Welcome) -> None:
        """The session is open. First learn this account's current devices (sends must name
        them all), then let the outbox go."""
        self.server_time_offset = frame.server_time - self._clock()
        self._owner.on_welcome(frame.backlog, frame.backlog_upto)
        rid, fut = self._requests.new()
        fut.add_done_callback(self._on_own_devices)
        if self._conn is not None:
            self._conn.send_frame(GetDevices(rid, self.identity.account))

    def _on_own_devices(self, fut: asyncio.Future[object]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return  # disconnected meanwhile; the next session asks again
        frame = fut.result()
        assert isinstance(frame, Devices)
        if self._halted is not None:
            return
        self._open.set()
        self._opened = True
        self._reconnect.opened(asyncio.get_running_loop().time())
        self._wake_open_waiters(None)
        self._owner.on_open(frame.device_ids)

    def _on_answer(self, frame: Devices | LinkCode | PrekeyBundle | PrekeysStored) -> None:
        if isinstance(frame, Devices) and frame.request_id == 0:
            # Unsolicited (protocol §6.10): a device was linked to this account while this
            # session was open. Request ids start at 1, so 0 answers nothing.
            if frame.account == self.identity.account:
                self._owner.on_frame(frame)
            return
        self._requests.answered(frame.request_id, frame)
