"""One client connection on the relay: registration, the delivery stream, sends, acks, prekeys.

States (the legal frames of each are the table :data:`ALLOWED`)::

    HANDSHAKE --Noise done--> EXPECT_HELLO --REGISTER--> REGISTERING --ok--> EXPECT_HELLO
                                          --HELLO-----> AUTHENTICATING --known key--> OPEN
    any state --ERROR / violation / keepalive timeout / disconnect--> CLOSED

Delivery (DESIGN §5): after HELLO(cursor) the session streams DELIVER frames with seq above the
cursor, at most ``delivery_window`` unacknowledged at a time. ACK(seq) is cumulative; the items up
to it are deleted from the store. Live items stored while the device is connected are pushed
straight from memory when they are next in line; otherwise the pump reads them from the store in
pages. A send is answered SENT only after the store committed it (G1).

Prekeys (DESIGN §3, issue 3): PREKEYS_UPLOAD and PREKEY_FETCH are handled by
:mod:`tidings.server.prekeys`, which also tells a live session PREKEYS_LOW.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import hashlib
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import IntegrityError, Rule, StoreUnavailable
from ..net.channel import ChannelClosed, Event, FrameReceived, HandshakeDone
from ..net.ws import ChannelConnection
from ..store import (
    DeviceMismatch,
    DeviceRef,
    InboxItem,
    PreKeyCounts,
    QueueFull,
    Stored,
    Submission,
)
from ..wire import (
    PROTOCOL_VERSION,
    Ack,
    Deliver,
    Devices,
    ErrorCode,
    Frame,
    FrameType,
    GetDevices,
    Hello,
    LinkCode,
    LinkCodeRequest,
    Ping,
    Pong,
    Refused,
    Register,
    Registered,
    RequestFailed,
    Send,
    Sent,
    Welcome,
)
from . import prekeys
from .health import STORE_RETRY_AFTER
from .limits import client_address
from .prekeys import INTERNAL_RETRY_AFTER

# The prekey constants live in :mod:`.prekeys`; those imported from here stay importable.
from .prekeys import MAX_STORED_PREKEYS as MAX_STORED_PREKEYS
from .prekeys import PREKEY_FETCH_BURST as PREKEY_FETCH_BURST
from .prekeys import PREKEY_FETCH_WINDOW as PREKEY_FETCH_WINDOW
from .prekeys import PREKEY_LOW_WATERMARK as PREKEY_LOW_WATERMARK

if TYPE_CHECKING:
    from .app import Relay

log = logging.getLogger("tidings.server")

#: Seconds a sender is asked to wait when a recipient's queue is full.
QUEUE_FULL_RETRY_AFTER = 5.0


class SessionState(enum.Enum):
    """Where a connection is in its protocol."""

    HANDSHAKE = "handshake"
    EXPECT_HELLO = "expect-hello"
    REGISTERING = "registering"
    AUTHENTICATING = "authenticating"
    OPEN = "open"
    CLOSED = "closed"


#: The legal client frames in each state: the spec of the session. A state is only looked up
#: between two frames, so the transient REGISTERING and AUTHENTICATING need no row. PING is
#: legal in both: it is answered in the worker, in order with the frames before it (§7).
ALLOWED: dict[SessionState, frozenset[FrameType]] = {
    SessionState.EXPECT_HELLO: frozenset({FrameType.HELLO, FrameType.REGISTER, FrameType.PING}),
    SessionState.OPEN: frozenset(
        {
            FrameType.PING,
            FrameType.SEND,
            FrameType.ACK,
            FrameType.GET_DEVICES,
            FrameType.LINK_CODE_REQUEST,
            FrameType.PREKEYS_UPLOAD,
            FrameType.PREKEY_FETCH,
        }
    ),
}


def peer_ip(conn: ChannelConnection, proxy_header: str) -> str | None:
    """The client's address on ``conn``: its socket peer, or the reverse proxy's header."""
    transport = conn.transport
    if transport is None:
        return None
    peer = transport.underlying_transport.get_extra_info("peername")
    request = transport.request
    return client_address(
        peer[0] if peer else None, request.headers if request else None, proxy_header
    )


def item_frame(item: InboxItem) -> Deliver:
    """The DELIVER frame of an inbox item."""
    return Deliver(
        item.seq,
        int(item.kind),
        item.sender.account,
        item.sender.device_id,
        item.message_id,
        item.enqueued_at,
        item.expires_at,
        item.payload,
    )


class Session:
    """The relay's side of one connection. Created per WebSocket by :class:`Relay`."""

    def __init__(self, relay: Relay, conn_id: int) -> None:
        self.relay = relay
        self.conn_id = conn_id
        self.state = SessionState.HANDSHAKE
        self.conn: ChannelConnection | None = None
        self.noise_key: bytes | None = None
        self.device: DeviceRef | None = None
        #: The client's address (the proxy's header when configured), known once the handshake
        #: is done; the key of the per-address limits.
        self.peer_ip: str | None = None
        self._account_created: float | None = None  # read on first need (account_is_new)
        # delivery stream
        self._acked = 0  # highest seq the device acked (or its HELLO cursor)
        self._sent_upto = 0  # highest seq sent on this connection
        self._in_flight: collections.deque[int] = collections.deque()
        self._fetching = False
        self._backlog = False  # items may be waiting in the store
        self._queue: asyncio.Queue[Frame] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._log = logging.LoggerAdapter(log, {"conn": conn_id})

    # ---------------------------------------------------------------- channel events

    def on_channel_event(self, conn: ChannelConnection, event: Event) -> None:
        self.conn = conn
        if isinstance(event, FrameReceived):
            self.relay.metrics_frame_in(event.frame)
            self._queue.put_nowait(event.frame)
        elif isinstance(event, HandshakeDone):
            self.noise_key = event.remote_static
            self.peer_ip = peer_ip(conn, self.relay.config.proxy_header)
            self.state = SessionState.EXPECT_HELLO
            self.relay.metrics_handshake(event.pattern)
            self._worker = asyncio.ensure_future(self._work())
        elif isinstance(event, ChannelClosed):
            self._log.info("= closed code=%s reason=%s", event.code, event.reason)
            if event.code and not event.by_peer:
                self.relay.metrics_error(event.code)
            self._closed()

    def on_disconnected(self, conn: ChannelConnection) -> None:
        self._closed()

    def _closed(self) -> None:
        if self.state is SessionState.CLOSED:
            return
        self.state = SessionState.CLOSED
        if self._worker is not None:
            self._worker.cancel()
        self.relay.detach(self)

    # ---------------------------------------------------------------- frame dispatch

    async def _work(self) -> None:
        """Handle frames one at a time, in order (sends only start their store write here)."""
        while self.state is not SessionState.CLOSED:
            frame = await self._queue.get()
            allowed = ALLOWED.get(self.state, frozenset())
            if frame.TYPE not in allowed:
                self._violation(ErrorCode.UNEXPECTED_FRAME, "frame not allowed now", frame.TYPE)
                return
            try:
                await self._HANDLERS[frame.TYPE](self, frame)
            except asyncio.CancelledError:
                raise
            except StoreUnavailable as exc:  # logged by the relay, once per interval
                self.relay.store_unavailable(exc)
                self._close(
                    ErrorCode.STORE_UNAVAILABLE, "store unavailable; retry later", frame.TYPE
                )
                return
            except Exception:
                self._log.exception("! internal error handling %s", frame.TYPE.name)
                self._violation(ErrorCode.INTERNAL, "internal server error", frame.TYPE)
                return

    def _violation(self, code: ErrorCode, reason: str, frame_type: int) -> None:
        """ERROR ``code`` and close. ``frame_type`` is the type of the frame that caused it (every
        violation here is caused by one; ERROR carries it, §6.14)."""
        self._log.warning("! %s: %s", code.name, reason)
        self._close(code, reason, frame_type)

    def _close(self, code: ErrorCode, reason: str, frame_type: int = 0) -> None:
        conn = self.conn
        if conn is not None and conn.channel is not None:
            conn.channel.close(int(code), reason, int(frame_type))
            conn.flush()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task, keeping a reference until it is done."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the sends and fetches this session started (graceful shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def send_frame(self, frame: Frame) -> None:
        """Send ``frame`` on this connection if it is still open (e.g. an unsolicited one)."""
        self._send(frame)

    def _send(self, frame: Frame) -> None:
        if self.conn is not None and self.state is not SessionState.CLOSED:
            self.relay.metrics_frame_out(frame.TYPE)
            self.conn.send_frame(frame)

    # ---------------------------------------------------------------- registration

    async def _handle_register(self, frame: Register) -> None:
        assert self.noise_key is not None
        if frame.version != PROTOCOL_VERSION:
            reason = f"server speaks v{PROTOCOL_VERSION}"
            self._violation(ErrorCode.UNSUPPORTED_VERSION, reason, FrameType.REGISTER)
            return
        retry_after = self.relay.limits.register(self.peer_ip, self.relay.monotonic())
        if retry_after > 0:
            # ERROR has no retry_after field: the wait goes in the reason, for the person.
            reason = (
                f"too many registrations from this address; retry in {math.ceil(retry_after)} s"
            )
            self._violation(ErrorCode.RATE_LIMITED, reason, FrameType.REGISTER)
            return
        self.state = SessionState.REGISTERING
        store, now = self.relay.store, self.relay.now()
        try:
            if frame.link_code is None:
                device = await store.create_account(
                    frame.account, self.noise_key, frame.device_name, now
                )
            else:
                code_hash = hashlib.sha256(frame.link_code).digest()
                device = await store.add_device(
                    frame.account, self.noise_key, frame.device_name, code_hash, now
                )
        except IntegrityError as exc:
            code = {
                Rule.ACCOUNT_EXISTS: ErrorCode.ACCOUNT_EXISTS,
                Rule.KEY_ALREADY_REGISTERED: ErrorCode.KEY_ALREADY_REGISTERED,
            }.get(exc.rule, ErrorCode.INVALID_LINK_CODE)
            self._violation(code, str(exc), FrameType.REGISTER)
            return
        self._log.info("= registered %s", device.ref)
        self.state = SessionState.EXPECT_HELLO
        if frame.link_code is not None:  # before REGISTERED: the others know first
            devices = await store.devices(frame.account)
            self.relay.announce_devices(frame.account, tuple(d.ref.device_id for d in devices))
        self._send(Registered(device.ref.account, device.ref.device_id))
        if self.conn is not None:
            self.conn.expect_auth()  # HELLO is due within auth_timeout of REGISTERED

    async def _handle_hello(self, frame: Hello) -> None:
        assert self.noise_key is not None
        if frame.version != PROTOCOL_VERSION:
            reason = f"server speaks v{PROTOCOL_VERSION}"
            self._violation(ErrorCode.UNSUPPORTED_VERSION, reason, FrameType.HELLO)
            return
        self.state = SessionState.AUTHENTICATING
        device = await self.relay.store.device_by_key(self.noise_key)
        if device is None:
            reason = "no device has this key; register first"
            self._violation(ErrorCode.UNKNOWN_DEVICE, reason, FrameType.HELLO)
            return
        last = await self.relay.store.last_seq(device.ref)
        if frame.cursor > last:
            # The device claims items that were never queued: trusting it would delete (or skip)
            # items it never stored. Refuse, and change nothing (G8).
            reason = f"cursor above the last seq ({last})"
            self._violation(ErrorCode.INVALID_ACK, reason, FrameType.HELLO)
            return
        self.device = device.ref
        self._acked = self._sent_upto = frame.cursor
        if frame.cursor:
            await self.relay.store.ack(device.ref, frame.cursor)
        backlog = await self.relay.store.queue_depth(device.ref)  # all of it is beyond the cursor
        self.state = SessionState.OPEN
        self.relay.attach(self)
        cfg = self.relay.config
        self._log.info("= open %s cursor=%d", device.ref, frame.cursor)
        self._send(
            Welcome(
                device.ref.account,
                device.ref.device_id,
                self.relay.now(),
                float(cfg.retention_seconds),
                cfg.max_payload,
                backlog,
                last,
            )
        )
        self._backlog = True
        self._pump()
        counts = await self.relay.store.prekey_counts(device.ref)
        if counts is not None:  # a device that never uploaded prekeys is not nagged
            self.prekeys_low(counts)

    async def _handle_ping(self, frame: Ping) -> None:
        self._send(Pong(frame.nonce))

    async def _handle_link_code_request(self, frame: LinkCodeRequest) -> None:
        assert self.device is not None
        retry_after = self.relay.limits.link_code(self.device.account, self.relay.monotonic())
        if retry_after > 0:
            reason = "link code rate limit"
            self.request_failed(frame.request_id, ErrorCode.RATE_LIMITED, reason, retry_after)
            return
        code = self.relay.random_bytes(16)
        now = self.relay.now()
        expires_at = now + self.relay.config.link_code_ttl
        await self.relay.store.put_link_code(
            self.device, hashlib.sha256(code).digest(), expires_at, now
        )
        self._send(LinkCode(frame.request_id, code, expires_at))

    async def _handle_get_devices(self, frame: GetDevices) -> None:
        assert self.device is not None
        # A device asks for its own account's devices on every connect: that is no enumeration.
        if frame.account != self.device.account:
            limits, now = self.relay.limits, self.relay.monotonic()
            retry_after = limits.lookup(self.device.account, self.peer_ip, now)
            if retry_after > 0:
                reason = "device lookup rate limit"
                self.request_failed(frame.request_id, ErrorCode.RATE_LIMITED, reason, retry_after)
                return
        devices = await self.relay.store.devices(frame.account)
        self._send(
            Devices(frame.request_id, frame.account, tuple(d.ref.device_id for d in devices))
        )

    # ---------------------------------------------------------------- sends

    async def _handle_send(self, frame: Send) -> None:
        assert self.device is not None
        relay = self.relay
        now = relay.now()
        limit = relay.config.max_payload
        for target in frame.targets:
            if len(target.payload) > limit:
                self._refuse(frame, ErrorCode.PAYLOAD_TOO_LARGE, f"payload over {limit} bytes")
                return
        new = await self.account_is_new()
        retry_after = relay.limits.send(self.device.account, new, relay.monotonic())
        if retry_after > 0:
            self._refuse(frame, ErrorCode.RATE_LIMITED, "send rate limit", retry_after=retry_after)
            return
        sub = Submission(
            sender=self.device,
            message_id=frame.message_id,
            recipient=frame.recipient,
            payloads=tuple((DeviceRef(t.account, t.device_id), t.payload) for t in frame.targets),
            now=now,
            expires_at=now + relay.config.retention_seconds,
            max_queue=relay.config.max_queue,
            max_stranger_queue=relay.config.max_stranger_queue,
        )
        # Do not wait for the durable write here: the next frames (more sends, acks) are handled
        # while the group commit is in progress. Tasks start in creation order, so writes are
        # queued to the store in frame order.
        self._spawn(self._finish_send(frame, relay.store.submit(sub)))

    async def _finish_send(self, frame: Send, pending: object) -> None:
        relay = self.relay
        try:
            result = await pending  # type: ignore[misc]
        except StoreUnavailable as exc:  # logged by the relay, once per interval
            relay.store_unavailable(exc)
            reason = "store unavailable; retry later"
            self._refuse(frame, ErrorCode.STORE_UNAVAILABLE, reason, retry_after=STORE_RETRY_AFTER)
            return
        except Exception:
            self._log.exception("! store failed a send")
            self._refuse(frame, ErrorCode.INTERNAL, "store failure; retry", retry_after=1.0)
            return
        if isinstance(result, Stored):
            relay.metrics_stored(result)
            self._send(Sent(frame.message_id, result.stored_at, result.duplicate))
            relay.offer(result.items)
        elif isinstance(result, DeviceMismatch):
            if not await relay.store.devices(frame.recipient):
                self._refuse(frame, ErrorCode.NO_SUCH_ACCOUNT, f"no account {frame.recipient}")
                return
            self._refuse(
                frame,
                ErrorCode.DEVICE_MISMATCH,
                "device set is not current",
                missing=tuple((r.account, r.device_id) for r in result.missing),
                stale=tuple((r.account, r.device_id) for r in result.stale),
            )
        elif isinstance(result, QueueFull):
            whose = "" if result.limit == relay.config.max_queue else " for new senders"
            self._refuse(
                frame,
                ErrorCode.QUEUE_FULL,
                f"queue of {result.device} is full{whose} ({result.limit} items)",
                retry_after=QUEUE_FULL_RETRY_AFTER,
            )

    def _refuse(
        self,
        frame: Send,
        code: ErrorCode,
        reason: str,
        *,
        missing: tuple[tuple[str, int], ...] = (),
        stale: tuple[tuple[str, int], ...] = (),
        retry_after: float = 0.0,
    ) -> None:
        self.relay.metrics_refused(code)
        self._send(Refused(frame.message_id, int(code), reason, missing, stale, retry_after))

    async def account_is_new(self) -> bool:
        """Whether this session's account gets the new-account budgets: it was created (its
        first device registered, a stored time) less than ``new_account_age`` ago."""
        assert self.device is not None
        relay = self.relay
        if not relay.config.new_account_age:
            return False
        if self._account_created is None:
            devices = await relay.store.devices(self.device.account)
            self._account_created = min((d.created_at for d in devices), default=relay.now())
        return relay.limits.is_new(self._account_created, relay.now())

    def request_failed(
        self, request_id: int, code: ErrorCode, reason: str, retry_after: float = 0.0
    ) -> None:
        """Answer request ``request_id`` REQUEST_FAILED (INTERNAL: retry after a second)."""
        if code is ErrorCode.INTERNAL:
            retry_after = INTERNAL_RETRY_AFTER
        self._log.info("! request %d failed: %s %s", request_id, code.name, reason)
        self._send(RequestFailed(request_id, int(code), reason, retry_after))

    # ---------------------------------------------------------------- prekeys

    def prekeys_low(self, counts: PreKeyCounts) -> None:
        """Tell this device PREKEYS_LOW if the relay holds fewer than the watermark of its
        one-time prekeys (of either kind)."""
        prekeys.notify_if_low(self, counts)

    # ---------------------------------------------------------------- delivery stream

    async def _handle_ack(self, frame: Ack) -> None:
        assert self.device is not None
        if frame.seq > self._sent_upto:
            reason = "ack above the highest seq delivered"
            self._violation(ErrorCode.INVALID_ACK, reason, FrameType.ACK)
            return
        if frame.seq <= self._acked:
            return
        self._acked = frame.seq
        in_flight = self._in_flight
        while in_flight and in_flight[0] <= frame.seq:
            in_flight.popleft()
        self.relay.metrics_ack()
        self._pump()
        removed = await self.relay.store.ack(self.device, frame.seq)
        self.relay.metrics_delivered(removed)

    def offer(self, item: InboxItem) -> None:
        """A new item was stored for this device: push it now if it is next in line."""
        if self.state is not SessionState.OPEN:
            return
        if (
            not self._backlog
            and not self._fetching
            and item.seq == self._sent_upto + 1
            and len(self._in_flight) < self.relay.config.delivery_window
        ):
            self._deliver([item])
        else:
            self._backlog = True
            self._pump()

    def _deliver(self, items: list[InboxItem]) -> None:
        frames: list[Frame] = []
        for item in items:
            if item.seq <= self._sent_upto:
                continue
            frames.append(item_frame(item))
            self._in_flight.append(item.seq)
            self._sent_upto = item.seq
        if frames and self.conn is not None:
            self.relay.metrics_frame_out(FrameType.DELIVER, len(frames))
            self.conn.send_frames(frames)

    def _pump(self) -> None:
        if self._backlog and not self._fetching and self.state is SessionState.OPEN:
            room = self.relay.config.delivery_window - len(self._in_flight)
            if room > 0:
                self._fetching = True
                self._spawn(self._fetch(room))

    async def _fetch(self, room: int) -> None:
        assert self.device is not None
        # Items offered while the read is in flight set _backlog again, so none is left behind.
        self._backlog = False
        try:
            items = await self.relay.store.fetch(self.device, self._sent_upto, room)
        finally:
            self._fetching = False
        if self.state is not SessionState.OPEN:
            return
        if len(items) == room:
            self._backlog = True  # a full page: there may be more
        self._deliver(items)
        self._pump()

    _HANDLERS: ClassVar[dict[FrameType, Callable[[Session, Any], Awaitable[None]]]] = {
        FrameType.REGISTER: _handle_register,
        FrameType.HELLO: _handle_hello,
        FrameType.PING: _handle_ping,
        FrameType.LINK_CODE_REQUEST: _handle_link_code_request,
        FrameType.GET_DEVICES: _handle_get_devices,
        FrameType.SEND: _handle_send,
        FrameType.ACK: _handle_ack,
        FrameType.PREKEYS_UPLOAD: prekeys.handle_upload,
        FrameType.PREKEY_FETCH: prekeys.handle_fetch,
    }
