"""The asyncio client SDK: a device's durable outbox, its inbox stream, receipts and statuses.

Usage::

    client = Client(home)            # a home registered with tidings.client.register()
    await client.start()             # connects in the background, reconnects by itself
    mid = await client.send("bob", b"hello")   # durable in the outbox before this returns
    async for event in client.events(): ...    # MessageReceived, StatusChanged, …
    await client.close()

The SDK only pumps: the decisions live in the sans-I/O cores — which outbox entries go when
(:class:`~tidings.delivery.OutboxScheduler`), in which order messages are shown
(:class:`~tidings.delivery.Reorderer`), how statuses move (:func:`~tidings.delivery.advance`) —
and everything it learns is committed to the :class:`~tidings.client.store.ClientStore` before
it is acknowledged or reported.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import ClassVar

from ..delivery import (
    ContentKind,
    Receipt,
    ReceiptKind,
    Status,
    direct_conversation,
)
from ..errors import (
    ConfigError,
    ConnectionBroken,
    RelayUnreachable,
    StoreError,
    StoreUnavailable,
)
from ..net.channel import ChannelClosed, Event, FrameReceived, HandshakeDone, KeepaliveParams
from ..net.ws import ChannelConnection
from ..store.base import DeviceRef
from ..wire import (
    PROTOCOL_VERSION,
    Ack,
    Deliver,
    Devices,
    ErrorCode,
    GetDevices,
    Hello,
    LinkCode,
    LinkCodeRequest,
    PrekeyBundle,
    PrekeysLow,
    PrekeysStored,
    Refused,
    RequestFailed,
    Sent,
    Welcome,
    check_account,
)
from .clocks import Clocks
from .connect import CLIENT_KEEPALIVE, open_channel
from .crypto import DeviceCrypto, SafetyNumber
from .events import (
    ClientEvent,
    Connected,
    ConnectFailed,
    Disconnected,
    EventStream,
    StorageFailed,
)
from .home import prepare_home
from .inbox import Inbox
from .keysync import KeySync
from .lock import DeviceLock, process_name
from .outbox import Outbox
from .prekeys import DeviceKeys
from .reconnect import Reconnect
from .requests import Requests
from .store import ClientStore, OutboxRequest, TraceEntry

__all__ = ["FATAL_CODES", "Client", "EventStream"]

log = logging.getLogger("tidings.client")

#: Close codes after which reconnecting cannot help; the client stops and reports them.
FATAL_CODES = frozenset({ErrorCode.UNKNOWN_DEVICE, ErrorCode.UNSUPPORTED_VERSION})


class Client:
    """One registered device (see the module docstring for the call order).

    Args:
        home: the device's directory.
        keepalive: the connection's keepalive timing.
        clock: the wall clock, for times shown to people and stored (composed at, trace, the
            server-time estimate).
        monotonic: the clock of every delay (outbox retries, ordering holds, rate limits); it
            must never jump, so a step of the wall clock neither stalls nor hastens them. (The
            keepalive and the reconnect backoff run on the event loop's clock, monotonic too.)
        accept_new_server_key: accept a server whose static key changed.
        rng: the jitter source of the backoffs.
        owner: what this process is, for the message another process that wants this home
            gets (``"tidings listen"``; default: the program's name and arguments).

    The home is checked and made owner-only (:mod:`tidings.client.home`); nothing is created
    in a home that holds no device. If the store cannot write (disk full, I/O error: see
    :class:`~tidings.client.events.StorageFailed`) the client reports it once and stops.

    Raises:
        ConfigError: ``home`` holds no registered device (run ``tidings register`` first).
        DeviceBusy: another process (or another open Client) runs this device: the home's lock
            (:mod:`tidings.client.lock`) is held from here until :meth:`close`.
        StoreUnavailable: the store cannot be opened or written.
    """

    def __init__(
        self,
        home: Path,
        *,
        keepalive: KeepaliveParams = CLIENT_KEEPALIVE,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        accept_new_server_key: bool = False,
        rng: random.Random | None = None,
        owner: str = "",
    ) -> None:
        self.home = home
        db = prepare_home(home)
        # One process per device (DESIGN §9): held until close(), or the process's end.
        self._lock = DeviceLock.acquire(home, owner or process_name())
        try:
            self.store = ClientStore(db)
        except BaseException:
            self._lock.release()
            raise
        identity = self.store.get_identity()
        if identity is None:
            self.store.close()
            self._lock.release()
            raise ConfigError(f"{home} holds no registered device: run `tidings register` first")
        self.identity = identity
        self.me = DeviceRef(identity.account, identity.device_id)
        try:
            DeviceKeys.create(self.store, clock())  # a home registered before end-to-end keys
        except BaseException:
            self.store.close()
            self._lock.release()
            raise
        self.crypto = DeviceCrypto(self.store, self.me, self._emit, clock, monotonic=monotonic)
        self._tasks: set[asyncio.Task[None]] = set()
        self._keepalive = keepalive
        self._clock = clock
        self._accept_new_key = accept_new_server_key
        self._rng = rng or random.Random()
        self._reconnect = Reconnect(self._rng.random)
        self._requests = Requests()
        #: Callers waiting for the session to open that want to hear of a failed attempt.
        self._open_waiters: list[asyncio.Future[None]] = []
        #: How the last connection ended before a session opened (the relay's close reason).
        self._refused_open: str = ""
        self._reconnect_opened = False
        self._conn: ChannelConnection | None = None
        self._open = asyncio.Event()
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._queues: list[asyncio.Queue[ClientEvent]] = []
        self._ack_seq = 0
        self._ack_scheduled = False
        self._pattern = ""
        self.fatal: Disconnected | None = None
        #: Set when the store could not write; the client has stopped (see StorageFailed).
        self.storage_failed: StorageFailed | None = None
        self.server_time_offset = 0.0
        clocks = Clocks(clock, monotonic)
        self._outbox = Outbox(
            self.store,
            self.me,
            self._emit,
            clocks,
            self._rng.random,
            self._session,
            lambda: self._clock() + self.server_time_offset,
            self.crypto,
            self._fetch_sessions,
        )
        self._inbox = Inbox(self.store, self.me, self._emit, clocks, self.crypto)
        self._keysync = KeySync(self.crypto, self._outbox, self._request, self.devices, clocks)
        self.store.on_unavailable = self._on_store_unavailable

    # ---------------------------------------------------------------- life cycle

    async def start(self) -> None:
        """Start connecting (in the background). Returns at once."""
        if self._task is None:
            self._inbox.start()
            self._task = asyncio.ensure_future(self._run())

    async def wait_connected(
        self, timeout: float | None = None, *, fail_fast: bool = False
    ) -> None:
        """Wait until a session with the server is open.

        Args:
            timeout: seconds to wait at most (``TimeoutError`` after).
            fail_fast: raise :class:`~tidings.errors.RelayUnreachable` as soon as a connection
                attempt fails, instead of waiting through the reconnect backoff (the client
                keeps trying in the background either way).

        Raises:
            TimeoutError: no session opened within ``timeout``.
            RelayUnreachable: ``fail_fast``, and an attempt failed (``reason`` says why).
            ConnectionBroken: the client stopped (the relay refused this device for good, or
                :meth:`close`).
            StoreUnavailable: the client stopped because its store cannot write.
        """
        if fail_fast:
            await asyncio.wait_for(self._until_open(), timeout)
        else:
            await asyncio.wait_for(self._open.wait(), timeout)

    async def _until_open(self) -> None:
        """Wait for the session; fail with the first failed attempt's reason."""
        if self._open.is_set():
            return
        self._check_running()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._open_waiters.append(fut)
        try:
            await fut
        finally:
            if fut in self._open_waiters:
                self._open_waiters.remove(fut)

    def _check_running(self) -> None:
        if self.storage_failed is not None:
            raise StoreUnavailable(self.storage_failed.state, self.storage_failed.message)
        if self.fatal is not None:
            raise ConnectionBroken(f"the relay refused this device: {self.fatal.reason}")
        if self._closing:
            raise ConnectionBroken("the client is closed")

    def _wake_open_waiters(self, exc: BaseException | None) -> None:
        waiters, self._open_waiters = self._open_waiters, []
        for fut in waiters:
            if fut.done():
                continue
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)

    async def close(self) -> None:
        """Disconnect and close the store. What is in the outbox stays there."""
        self._closing = True
        self._wake.set()
        if self._conn is not None:
            self._conn.close()
        for task in [self._task, *self._tasks]:
            if task is None:
                continue
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._outbox.close()
        self._inbox.close()
        self.store.close()
        self._lock.release()

    def reconnect_now(self) -> None:
        """Skip the backoff wait (e.g. the network came back)."""
        self._wake.set()

    # ---------------------------------------------------------------- API

    async def send(self, to: str, body: bytes | str) -> bytes:
        """Queue a message to account ``to``; return its id once it is durable in the outbox.

        Raises:
            FrameError: ``to`` is not a valid account name.
            ContentError: the body is too large.
            OutboxFullError: the outbox is full.
            StoreUnavailable: the store cannot write (the message is not queued), now or
                earlier: the client has stopped (:class:`StorageFailed`).
        """
        check_account(to)
        data = body.encode() if isinstance(body, str) else body
        message_id = os.urandom(16)
        conversation = direct_conversation(self.me.account, to)
        if self.storage_failed is not None:
            raise StoreUnavailable(self.storage_failed.state, self.storage_failed.message)
        try:
            item, _ = self.store.compose(message_id, to, conversation, data, self._clock())
        except StoreUnavailable as exc:
            failed = self.storage_failed or StorageFailed(exc.state, str(exc))
            raise StoreUnavailable(failed.state, failed.message) from exc
        try:
            self._outbox.add(item)
        except StoreUnavailable:
            pass  # it is queued (committed above); the client stops (StorageFailed)
        return message_id

    async def mark_read(self, message_ids: Iterable[bytes]) -> int:
        """Record that received messages were displayed; send read receipts if enabled.

        Returns:
            How many messages were newly marked read.
        """
        now = self._clock()
        by_sender: dict[str, list[bytes]] = {}
        keys = []
        for mid in message_ids:
            m = self.store.message(mid)
            if m is None or m.read_at is not None or m.sender == self.me:
                continue
            keys.append(m.key)
            if m.sender.account != self.me.account:
                by_sender.setdefault(m.sender.account, []).append(mid)
        receipts = []
        if self.identity.read_receipts:
            for account, ids in by_sender.items():
                for i in range(0, len(ids), 256):
                    content = Receipt(ReceiptKind.READ, tuple(ids[i : i + 256]), now).serialize()
                    receipts.append(
                        OutboxRequest(os.urandom(16), account, content, ContentKind.RECEIPT, now)
                    )
        newly = self.store.mark_read(keys, now, receipts)
        try:
            self._outbox.add_queued(r.message_id for r in receipts)
        except StoreUnavailable:
            pass  # they are queued (committed above); the client stops (StorageFailed)
        return len(newly)

    async def drain(self, timeout: float) -> bool:
        """Wait until the outbox is empty (every message and receipt stored by the relay, or
        failed), at most ``timeout`` seconds. Returns whether it emptied."""
        return await self._outbox.drain(timeout)

    def events(self) -> EventStream:
        """Incoming messages and status changes, as they are committed, from this call on.

        Use as ``async for event in client.events()``; ``stream.close()`` stops it.
        """
        stream = EventStream(self._queues)
        return stream

    def trace(self, message_id: bytes) -> list[TraceEntry]:
        """The confirmation points this device saw for a message, in time order."""
        return self.store.trace(message_id)

    def status(self, message_id: bytes) -> Status | None:
        """The roll-up status of a message this device sent."""
        return self.store.message_status(message_id)

    def safety_number(self, account: str) -> SafetyNumber | None:
        """The safety number with ``account`` (``None`` before any session with it)."""
        check_account(account)
        return self.crypto.safety_number(account)

    async def link_code(self) -> tuple[bytes, float]:
        """Ask the server for a one-use code that lets a new device join this account.

        Waits for the session if there is none yet (call :meth:`start` first).

        Raises:
            RelayUnreachable: not connected, and the next connection attempt failed.
            ConnectionBroken: the connection was lost before the answer.
            RefusedError: the relay refused (e.g. ``RATE_LIMITED``).
        """
        frame = await self._request(lambda rid: LinkCodeRequest(rid))
        assert isinstance(frame, LinkCode)
        return frame.code, frame.expires_at

    async def devices(self, account: str) -> tuple[int, ...]:
        """The current device ids of ``account`` (empty: no such account).

        Raises: as :meth:`link_code`.
        """
        check_account(account)
        frame = await self._request(lambda rid: GetDevices(rid, account))
        assert isinstance(frame, Devices)
        self._outbox.devices[account] = frame.device_ids
        return frame.device_ids

    # ---------------------------------------------------------------- connection loop

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        url = self.identity.server_url
        while not self._closing:
            self._wake.clear()  # a reconnect_now() from here on cuts the next backoff short
            failure = ""
            self._refused_open = ""
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
                if not self._reconnect_opened:
                    failure = (
                        self._refused_open or "the connection closed before the session opened"
                    )
            self._reconnect_opened = False
            self._on_disconnect()
            if self.fatal is not None or self._closing:
                self._wake_open_waiters(
                    ConnectionBroken(self.fatal.reason if self.fatal else "closed")
                )
                return
            delay = self._reconnect.ended(loop.time())
            if failure:
                log.info("! cannot reach the relay at %s: %s", url, failure)
                self._wake_open_waiters(RelayUnreachable(url, failure))
                self._emit(ConnectFailed(failure, self._reconnect.attempt, delay))
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass

    def _on_disconnect(self) -> None:
        self._open.clear()
        self._outbox.on_disconnect()
        self._requests.disconnected(ConnectionBroken("disconnected"))

    async def _request(self, build: Callable[[int], object]) -> object:
        await self._until_open()
        rid, fut = self._requests.new()
        assert self._conn is not None
        self._conn.send_frame(build(rid))  # type: ignore[arg-type]
        return await fut

    # ---------------------------------------------------------------- channel events

    def on_channel_event(self, conn: ChannelConnection, event: Event) -> None:
        try:
            if isinstance(event, FrameReceived):
                handler = self._FRAME_HANDLERS.get(type(event.frame))
                if handler is not None and self.storage_failed is None:
                    handler(self, event.frame)
            elif isinstance(event, HandshakeDone):
                # This connection is the session from now on, even if _run has not yet resumed
                # from open_channel (the whole handshake can complete before it does).
                self._conn = conn
                self._on_handshake(conn, event)
        except StoreUnavailable:
            return  # reported by the store's hook (_on_store_unavailable): the client stops
        if isinstance(event, ChannelClosed):
            # Nothing more may be written to this connection; _run notices the disconnect.
            self._open.clear()
            log.info("= closed %s %s", event.code, event.reason)
            if event.reason:
                who = "the relay closed the connection: " if event.by_peer else ""
                self._refused_open = who + event.reason
            fatal = (event.code in FATAL_CODES and event.by_peer) or bool(self.storage_failed)
            ev = Disconnected(event.code, event.reason, fatal)
            if fatal:
                self.fatal = ev
            self._emit(ev)

    def on_disconnected(self, conn: ChannelConnection) -> None:
        pass  # _run notices through conn.disconnected

    def _on_handshake(self, conn: ChannelConnection, event: HandshakeDone) -> None:
        pinned = self.identity.server_key
        if pinned is not None and pinned != event.remote_static:
            if not self._accept_new_key:
                self.fatal = Disconnected(
                    int(ErrorCode.HANDSHAKE_FAILED), "the server's key changed", fatal=True
                )
                self._emit(self.fatal)
                conn.close()
                return
            log.warning("! server key changed; accepting the new key as configured")
        if pinned != event.remote_static:
            self.store.set_server_key(event.remote_static)
            self.identity = self.store.get_identity() or self.identity
        self._pattern = event.pattern
        conn.send_frame(Hello(PROTOCOL_VERSION, self.store.cursor()))

    def _on_welcome(self, frame: Welcome) -> None:
        """The session is open. First learn this account's current devices (sends must name
        them all), then let the outbox go."""
        self.server_time_offset = frame.server_time - self._clock()
        rid, fut = self._requests.new()
        fut.add_done_callback(self._on_own_devices)
        if self._conn is not None:
            self._conn.send_frame(GetDevices(rid, self.me.account))

    def _on_own_devices(self, fut: asyncio.Future[object]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return  # disconnected meanwhile; the next session asks again
        frame = fut.result()
        assert isinstance(frame, Devices)
        if self.storage_failed is not None:
            return
        self._outbox.devices[self.me.account] = frame.device_ids
        self._open.set()
        self._reconnect_opened = True
        self._reconnect.opened(asyncio.get_running_loop().time())
        self._wake_open_waiters(None)
        self._outbox.on_connect()
        self._emit(Connected(self._pattern))
        try:
            self._outbox.pump()
        except StoreUnavailable:
            return  # reported by the store's hook: the client stops
        self._spawn(self._keysync.sync())

    def _on_answer(self, frame: Devices | LinkCode | PrekeyBundle | PrekeysStored) -> None:
        if isinstance(frame, Devices) and frame.request_id == 0:
            # Unsolicited (protocol §6.10): a device was linked to this account while this
            # session was open. Request ids start at 1, so 0 answers nothing.
            if frame.account == self.me.account:
                self._outbox.devices[frame.account] = frame.device_ids
            return
        self._requests.answered(frame.request_id, frame)

    def _on_request_failed(self, frame: RequestFailed) -> None:
        self._requests.failed(frame)

    def _on_prekeys_low(self, frame: PrekeysLow) -> None:
        self._spawn(self._keysync.sync((frame.one_time_left, frame.kem_left)))

    def _fetch_sessions(self, lane: str, devices: list[DeviceRef]) -> None:
        self._spawn(self._keysync.fetch_bundles(lane, devices))

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---------------------------------------------------------------- outbox

    def _session(self) -> ChannelConnection | None:
        """The connection the outbox may send on: the session's, once it is open."""
        conn = self._conn
        if self.storage_failed is not None:
            return None
        return conn if conn is not None and self._open.is_set() else None

    def _on_sent(self, frame: Sent) -> None:
        self._outbox.on_sent(frame)

    def _on_refused(self, frame: Refused) -> None:
        self._outbox.on_refused(frame)

    # ---------------------------------------------------------------- inbox

    def _on_deliver(self, frame: Deliver) -> None:
        try:
            queued = self._inbox.on_deliver(frame)
        except StoreUnavailable:
            return  # not acked: the relay keeps it (the store's hook stops the client)
        except StoreError:
            # Nothing was committed and the item stays unacked: the relay sends it again after
            # we reconnect. The inbox has already reloaded its ordering state from the store.
            log.exception("! could not store an incoming item; reconnecting")
            if self._conn is not None:
                self._conn.close()
            return
        if self.storage_failed is not None:
            return  # a write failed on the way, even if it was only logged: ack nothing more
        if queued:
            self._outbox.add_queued(queued)
        self._ack(frame.seq)

    def _ack(self, seq: int) -> None:
        """Acknowledge cumulatively, once per loop iteration (a burst gets one ACK)."""
        self._ack_seq = max(self._ack_seq, seq)
        if not self._ack_scheduled:
            self._ack_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_ack)

    def _send_ack(self) -> None:
        self._ack_scheduled = False
        if self._conn is not None:
            self._conn.send_frame(Ack(self._ack_seq))

    def _emit(self, event: ClientEvent) -> None:
        for q in self._queues:
            q.put_nowait(event)

    # ---------------------------------------------------------------- storage failure

    def _on_store_unavailable(self, exc: StoreUnavailable) -> None:
        """The store could not write (disk full, I/O error, …): report it once, then stop,
        since every write would fail again and reconnecting would only replay what cannot be
        stored. Called by the store before it raises, whoever called it; nothing that was not
        committed has been acked, and from here nothing more is (G1)."""
        if self.storage_failed is not None:
            return
        self.storage_failed = StorageFailed(exc.state, _storage_message(exc))
        log.info("! %s", self.storage_failed.message)
        self._closing = True  # the connection loop ends instead of reconnecting
        self._open.clear()
        self._wake.set()
        self._outbox.close()
        self._inbox.close()
        self._emit(self.storage_failed)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: not started, so no connection to close
        loop.call_soon(self._close_for_storage)  # not from inside the failing call

    def _close_for_storage(self) -> None:
        if self._conn is not None:
            self._conn.close()

    _FRAME_HANDLERS: ClassVar[dict[type, Callable[[Client, object], None]]] = {
        Welcome: _on_welcome,  # type: ignore[dict-item]
        Sent: _on_sent,  # type: ignore[dict-item]
        Refused: _on_refused,  # type: ignore[dict-item]
        Deliver: _on_deliver,  # type: ignore[dict-item]
        Devices: _on_answer,  # type: ignore[dict-item]
        LinkCode: _on_answer,  # type: ignore[dict-item]
        PrekeyBundle: _on_answer,  # type: ignore[dict-item]
        PrekeysStored: _on_answer,  # type: ignore[dict-item]
        RequestFailed: _on_request_failed,  # type: ignore[dict-item]
        PrekeysLow: _on_prekeys_low,  # type: ignore[dict-item]
    }


def _storage_message(exc: StoreUnavailable) -> str:
    """What :class:`StorageFailed` says: what failed, that the device stopped, what to do."""
    todo = "free space on its disk" if exc.state == "full" else "check its disk"
    return (
        f"{exc}; the device stopped ({todo}, then start it again; what it could not store "
        "stays with the relay)"
    )
