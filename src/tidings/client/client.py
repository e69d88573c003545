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
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import ClassVar

from ..delivery import (
    ContentKind,
    OutboxScheduler,
    Receipt,
    ReceiptKind,
    RetryPolicy,
    Status,
    direct_conversation,
)
from ..delivery.outbox import Failed, RefreshDevices, RetryAt
from ..errors import ConfigError, ConnectionBroken, FrameError, StoreError
from ..net.channel import ChannelClosed, Event, FrameReceived, HandshakeDone, KeepaliveParams
from ..net.ws import ChannelConnection
from ..store.base import DeviceRef
from ..wire import (
    PROTOCOL_VERSION,
    Ack,
    Deliver,
    Devices,
    ErrorCode,
    Frame,
    GetDevices,
    Hello,
    LinkCode,
    LinkCodeRequest,
    Refused,
    Send,
    Sent,
    Target,
    Welcome,
    check_account,
)
from .connect import CLIENT_KEEPALIVE, DB_NAME, TcpAckWatcher, open_channel
from .events import (
    ClientEvent,
    Connected,
    Disconnected,
    StatusChanged,
)
from .inbox import Inbox
from .store import (
    ClientStore,
    OutboxItem,
    OutboxRequest,
    TraceEntry,
    TracePoint,
)

log = logging.getLogger("tidings.client")

#: Reconnect backoff: full jitter over ``min(cap, base * 2**n)`` (capped exponential).
RECONNECT_BASE = 0.5
RECONNECT_CAP = 30.0

#: Close codes after which reconnecting cannot help; the client stops and reports them.
FATAL_CODES = frozenset({ErrorCode.UNKNOWN_DEVICE, ErrorCode.UNSUPPORTED_VERSION})


class EventStream:
    """An async iterator over a client's events, registered when created (nothing is missed
    between creating it and iterating)."""

    def __init__(self, registry: list[asyncio.Queue[ClientEvent]]) -> None:
        self._queue: asyncio.Queue[ClientEvent] = asyncio.Queue()
        self._registry = registry
        registry.append(self._queue)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> ClientEvent:
        return await self._queue.get()

    async def next(self, timeout: float | None = None) -> ClientEvent:
        """The next event, waiting at most ``timeout`` seconds."""
        return await asyncio.wait_for(self._queue.get(), timeout)

    def close(self) -> None:
        """Stop receiving events."""
        if self._queue in self._registry:
            self._registry.remove(self._queue)


class Client:
    """One registered device (see the module docstring for the call order)."""

    def __init__(
        self,
        home: Path,
        *,
        keepalive: KeepaliveParams = CLIENT_KEEPALIVE,
        clock: Callable[[], float] = time.time,
        accept_new_server_key: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self.home = home
        self.store = ClientStore(home / DB_NAME)
        identity = self.store.get_identity()
        if identity is None:
            self.store.close()
            raise ConfigError(f"{home} holds no registered device: run `tidings register`")
        self.identity = identity
        self.me = DeviceRef(identity.account, identity.device_id)
        self._keepalive = keepalive
        self._clock = clock
        self._accept_new_key = accept_new_server_key
        self._rng = rng or random.Random()
        self._scheduler = OutboxScheduler(RetryPolicy(self._rng.random))
        self._reconnect = RetryPolicy(self._rng.random, RECONNECT_BASE, RECONNECT_CAP)
        self._devices: dict[str, tuple[int, ...]] = {}
        self._targets: dict[bytes, tuple[DeviceRef, ...]] = {}
        self._requests: dict[int, asyncio.Future[object]] = {}
        self._request_ids = 0
        self._conn: ChannelConnection | None = None
        self._open = asyncio.Event()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()  # set whenever an outbox entry is done (sent or failed)
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._queues: list[asyncio.Queue[ClientEvent]] = []
        self._ack_seq = 0
        self._ack_scheduled = False
        self._tcp = TcpAckWatcher(self._on_tcp_acked)
        self._trace_buffer: dict[bytes, list[tuple[str, float, str | None]]] = {}
        self._pattern = ""
        self.fatal: Disconnected | None = None
        self.server_time_offset = 0.0
        self._items: dict[bytes, OutboxItem] = {}  # the outbox, mirrored in memory
        for item in self.store.pending():
            self._items[item.message_id] = item
            self._scheduler.add(item.entry())
        self._inbox = Inbox(self.store, self.me, self._emit, clock)

    # ---------------------------------------------------------------- life cycle

    async def start(self) -> None:
        """Start connecting (in the background). Returns at once."""
        if self._task is None:
            self._inbox.start()
            self._task = asyncio.ensure_future(self._run())

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until a session with the server is open."""
        await asyncio.wait_for(self._open.wait(), timeout)

    async def close(self) -> None:
        """Disconnect and close the store. What is in the outbox stays there."""
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
        if self._timer is not None:
            self._timer.cancel()
        self._tcp.reset()
        self._inbox.close()
        self.store.close()

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
        """
        check_account(to)
        data = body.encode() if isinstance(body, str) else body
        message_id = os.urandom(16)
        conversation = direct_conversation(self.me.account, to)
        item, _ = self.store.compose(message_id, to, conversation, data, self._clock())
        self._items[message_id] = item
        self._scheduler.add(item.entry())
        self._pump_outbox()
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
        self._add_queued(r.message_id for r in receipts)
        return len(newly)

    async def drain(self, timeout: float) -> bool:
        """Wait until the outbox is empty (every message and receipt stored by the relay, or
        failed), at most ``timeout`` seconds. Returns whether it emptied."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self._scheduler):
            self._drained.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._drained.wait(), remaining)
            except TimeoutError:
                return False
        return True

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

    async def link_code(self) -> tuple[bytes, float]:
        """Ask the server for a one-use code that lets a new device join this account."""
        frame = await self._request(lambda rid: LinkCodeRequest(rid))
        assert isinstance(frame, LinkCode)
        return frame.code, frame.expires_at

    async def devices(self, account: str) -> tuple[int, ...]:
        """The current device ids of ``account`` (empty: no such account)."""
        check_account(account)
        frame = await self._request(lambda rid: GetDevices(rid, account))
        assert isinstance(frame, Devices)
        self._devices[account] = frame.device_ids
        return frame.device_ids

    # ---------------------------------------------------------------- connection loop

    async def _run(self) -> None:
        attempt = 0
        while not self._closing:
            self._wake.clear()  # a reconnect_now() from here on cuts the next backoff short
            try:
                conn = await open_channel(
                    self.identity.server_url,
                    self,
                    self.identity.noise_private_key,
                    self.identity.server_key,
                    self._keepalive,
                )
            except ConnectionBroken as exc:
                log.info("! %s", exc)
            except Exception:  # any failed attempt is retried; the loop must never die
                log.exception("! connection attempt failed")
            else:
                self._conn = conn
                await conn.disconnected.wait()
                if self._open.is_set():
                    attempt = 0
                self._conn = None
            self._on_disconnect()
            if self.fatal is not None or self._closing:
                return
            attempt += 1
            delay = self._reconnect.delay(attempt)
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass

    def _on_disconnect(self) -> None:
        self._open.clear()
        self._scheduler.on_disconnect()
        self._tcp.reset()
        for fut in self._requests.values():
            if not fut.done():
                fut.set_exception(ConnectionBroken("disconnected"))
        self._requests.clear()

    async def _request(self, build: Callable[[int], object]) -> object:
        await self._open.wait()
        self._request_ids += 1
        rid = self._request_ids
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._requests[rid] = fut
        assert self._conn is not None
        self._conn.send_frame(build(rid))  # type: ignore[arg-type]
        return await fut

    # ---------------------------------------------------------------- channel events

    def on_channel_event(self, conn: ChannelConnection, event: Event) -> None:
        if isinstance(event, FrameReceived):
            handler = self._FRAME_HANDLERS.get(type(event.frame))
            if handler is not None:
                handler(self, event.frame)
        elif isinstance(event, HandshakeDone):
            # This connection is the session from now on, even if _run has not yet resumed
            # from open_channel (the whole handshake can complete before it does).
            self._conn = conn
            self._on_handshake(conn, event)
        elif isinstance(event, ChannelClosed):
            # Nothing more may be written to this connection; _run notices the disconnect.
            self._open.clear()
            log.info("= closed %s %s", event.code, event.reason)
            fatal = event.code in FATAL_CODES and event.by_peer
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
        self._request_ids += 1
        rid = self._request_ids
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._requests[rid] = fut
        fut.add_done_callback(self._on_own_devices)
        if self._conn is not None:
            self._conn.send_frame(GetDevices(rid, self.me.account))

    def _on_own_devices(self, fut: asyncio.Future[object]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return  # disconnected meanwhile; the next session asks again
        frame = fut.result()
        assert isinstance(frame, Devices)
        self._devices[self.me.account] = frame.device_ids
        self._open.set()
        self._scheduler.on_connect()
        self._emit(Connected(self._pattern))
        self._pump_outbox()

    def _on_devices_or_link(self, frame: Devices | LinkCode) -> None:
        fut = self._requests.pop(frame.request_id, None)
        if fut is not None and not fut.done():
            fut.set_result(frame)

    # ---------------------------------------------------------------- outbox

    def _add_queued(self, ids: Iterable[bytes]) -> None:
        for mid in ids:
            item = self.store.outbox_item(mid)
            if item is not None:
                self._items[mid] = item
                self._scheduler.add(item.entry())
        self._pump_outbox()

    def _pump_outbox(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        conn = self._conn
        if conn is None or not self._open.is_set():
            return
        now = self._clock()
        entries = self._scheduler.handle_timer(now)
        if entries:
            frames: list[Frame] = []
            ids = []
            for e in entries:
                item = self._items.get(e.message_id)
                if item is None:
                    continue
                try:
                    frame = self._send_frame(item)
                except FrameError as exc:  # cannot be sent as it is: fail it, keep the rest going
                    self._fail_locally(e.message_id, exc.code, exc.reason)
                    continue
                if frame is None:  # a note to self with no other device: nothing to relay
                    self._on_sent(Sent(e.message_id, self._clock() + self.server_time_offset))
                    continue
                frames.append(frame)
                ids.append(e.message_id)
            conn.send_frames(frames)
            conn.flush()  # write now: the trace's "written" and the TCP-ack target need it
            written = self._clock()
            for mid in ids:
                self._trace_later(mid, TracePoint.WRITTEN, written)
            self._tcp.written(conn, ids)
        deadline = self._scheduler.next_deadline()
        if deadline is not None:
            delay = max(0.0, deadline - self._clock())
            self._timer = asyncio.get_running_loop().call_later(delay, self._pump_outbox)

    def _fail_locally(self, message_id: bytes, code: int, reason: str) -> None:
        now = self._clock()
        self._scheduler.on_refused(message_id, int(ErrorCode.INVALID_FIELD), reason, 0.0, now)
        self._items.pop(message_id, None)
        self._drained.set()
        self.store.mark_failed(message_id, code, reason, now)
        self._emit(StatusChanged(message_id, None, Status.FAILED, Status.FAILED, now))

    def _send_frame(self, item: OutboxItem) -> Send | None:
        own = self.me.account
        targets = [DeviceRef(item.recipient, d) for d in self._known_devices(item.recipient)]
        if item.recipient != own:
            targets += [DeviceRef(own, d) for d in self._known_devices(own)]
        targets = [t for t in targets if t != self.me]
        if not targets:
            return None
        self._targets[item.message_id] = tuple(targets)
        return Send(
            item.message_id,
            item.recipient,
            tuple(Target(t.account, t.device_id, item.content) for t in targets),
        )

    def _on_sent(self, frame: Sent) -> None:
        self._tcp.poll_now()
        if self._scheduler.on_sent(frame.message_id) is None:
            return
        self._drained.set()
        now = self._clock()
        self._items.pop(frame.message_id, None)
        targets = self._targets.pop(frame.message_id, ())
        recipients = [t for t in targets if t.account != self.me.account or t == self.me]
        if self.store.mark_sent(frame.message_id, frame.stored_at, now, recipients):
            self._flush_trace(frame.message_id)
            overall = self.store.message_status(frame.message_id)
            if overall is not None:
                for device in recipients:
                    self._emit(StatusChanged(frame.message_id, device, Status.SENT, overall, now))
        self._pump_outbox()

    def _on_refused(self, frame: Refused) -> None:
        now = self._clock()
        action = self._scheduler.on_refused(
            frame.message_id, frame.code, frame.reason, frame.retry_after, now
        )
        self._targets.pop(frame.message_id, None)
        if isinstance(action, RefreshDevices):
            self._apply_device_diff(frame)
            self._scheduler.devices_refreshed(action.lane)
        elif isinstance(action, RetryAt):
            self.store.set_attempt(frame.message_id, action.attempts, action.at)
        elif isinstance(action, Failed):
            self._drained.set()
            self._items.pop(frame.message_id, None)
            self.store.mark_failed(frame.message_id, frame.code, frame.reason, now)
            self._emit(StatusChanged(frame.message_id, None, Status.FAILED, Status.FAILED, now))
        self._pump_outbox()

    def _known_devices(self, account: str) -> tuple[int, ...]:
        """The devices of ``account`` as far as this client knows. Unknown accounts are
        guessed to have device 1 (own account: only this device); a wrong guess costs one
        DEVICE_MISMATCH answer, which names the real set."""
        known = self._devices.get(account)
        if known is not None:
            return known
        return (self.me.device_id,) if account == self.me.account else (1,)

    def _apply_device_diff(self, frame: Refused) -> None:
        changed: dict[str, set[int]] = {}
        for account, device_id in frame.missing:
            cur = changed.setdefault(account, set(self._known_devices(account)))
            cur.add(device_id)
        for account, device_id in frame.stale:
            cur = changed.setdefault(account, set(self._known_devices(account)))
            cur.discard(device_id)
        for account, ids in changed.items():
            self._devices[account] = tuple(sorted(ids))

    # ---------------------------------------------------------------- trace

    def _trace_later(self, mid: bytes, point: str, at: float, detail: str | None = None) -> None:
        self._trace_buffer.setdefault(mid, []).append((point, at, detail))

    def _flush_trace(self, mid: bytes) -> None:
        points = self._trace_buffer.pop(mid, None)
        if points:
            self.store.add_traces(mid, points)

    def _on_tcp_acked(self, ids: list[bytes], at: float) -> None:
        for mid in ids:
            if mid in self._trace_buffer:
                self._trace_later(mid, TracePoint.TCP_ACKED, at)
            else:  # ✓ came first: the trace is already committed
                self.store.add_traces(mid, [(TracePoint.TCP_ACKED, at, None)])

    # ---------------------------------------------------------------- inbox

    def _on_deliver(self, frame: Deliver) -> None:
        try:
            queued = self._inbox.on_deliver(frame)
        except StoreError:
            # Nothing was committed and the item stays unacked: the relay sends it again after
            # we reconnect. The inbox has already reloaded its ordering state from the store.
            log.exception("! could not store an incoming item; reconnecting")
            if self._conn is not None:
                self._conn.close()
            return
        if queued:
            self._add_queued(queued)
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

    _FRAME_HANDLERS: ClassVar[dict[type, Callable[[Client, object], None]]] = {
        Welcome: _on_welcome,  # type: ignore[dict-item]
        Sent: _on_sent,  # type: ignore[dict-item]
        Refused: _on_refused,  # type: ignore[dict-item]
        Deliver: _on_deliver,  # type: ignore[dict-item]
        Devices: _on_devices_or_link,  # type: ignore[dict-item]
        LinkCode: _on_devices_or_link,  # type: ignore[dict-item]
    }
