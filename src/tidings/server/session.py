"""One client connection on the relay: the asyncio adapter of its connection core.

The rules (states, registration, HELLO and its cursor, the delivery window, acks, sends and
their SENT after the commit, requests, prekeys) are the sans-I/O :class:`~tidings.server.core.
RelayCore`'s. A :class:`Session` only pumps: it feeds the core the channel's events and the
store's answers with the relay's clocks, and after each input drains what the core gave —
frames onto the connection (written together at the end of the loop iteration, one Noise
message per flush), store commands onto the store (each started at once, in order, without a
task: :func:`~tidings.server.stepper.drive`; the store's group commit takes all those waiting
into one transaction), and actions to the relay (routing, metrics, logs) and, last, the close.
No frame waits in a queue of its own and no task runs per frame or per command.

It depends on the relay through :class:`RelayHost` only, so this module imports neither
:mod:`.app` nor its own callers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar, Protocol

from ..errors import StoreUnavailable
from ..net.channel import ChannelClosed, ChannelState, Event, FrameReceived, HandshakeDone
from ..net.ws import ChannelConnection
from ..noise import PipesPattern
from ..store import (
    DeviceCard,
    DeviceRef,
    InboxItem,
    MultiSubmission,
    PreKeyCounts,
    SealedMultiSubmission,
    SealedSubmission,
    Store,
    Stored,
    Submission,
)
from ..wire import ErrorCode, Frame, FrameType
from . import core_actions as ca
from .config import ServerConfig
from .core import QUEUE_FULL_RETRY_AFTER, RelayCore, item_frame
from .core import State as SessionState
from .core_base import ALLOWED as ALLOWED
from .core_base import INTERNAL_RETRY_AFTER as INTERNAL_RETRY_AFTER
from .core_certs import seen_at
from .health import STORE_RETRY_AFTER
from .limits import Limits, client_address

# The prekey constants live in :mod:`.prekeys`; those imported from here stay importable.
from .prekeys import MAX_STORED_PREKEYS as MAX_STORED_PREKEYS
from .prekeys import PREKEY_FETCH_BURST as PREKEY_FETCH_BURST
from .prekeys import PREKEY_FETCH_WINDOW as PREKEY_FETCH_WINDOW
from .prekeys import PREKEY_LOW_WATERMARK as PREKEY_LOW_WATERMARK
from .sealed_certs import CertIssuer
from .stepper import drive

__all__ = [
    "QUEUE_FULL_RETRY_AFTER",
    "STORE_RETRY_AFTER",
    "RelayHost",
    "Session",
    "SessionState",
    "item_frame",
    "peer_ip",
]

log = logging.getLogger("tidings.server")


class PushHost(Protocol):
    """What a session's push requests need (:class:`~tidings.server.wakeups.WakeUps`)."""

    async def register(
        self, device: DeviceRef, endpoint: str, p256dh: bytes, auth: bytes, now: float
    ) -> ca.PushInfo: ...
    async def unregister(self, device: DeviceRef) -> ca.PushInfo: ...
    async def status(self, device: DeviceRef) -> ca.PushInfo: ...


class RelayHost(Protocol):
    """What a session needs of its relay (:class:`~tidings.server.app.Relay`)."""

    config: ServerConfig
    store: Store

    @property
    def push(self) -> PushHost: ...

    limits: Limits
    sessions: dict[DeviceRef, Session]
    monotonic: Callable[[], float]
    random_bytes: Callable[[int], bytes]
    issuer: CertIssuer

    def now(self) -> float: ...
    def attach(self, session: Session) -> None: ...
    def detach(self, session: Session) -> None: ...
    def evict(self, device: DeviceRef) -> None: ...
    def announce_devices(self, account: str, device_ids: tuple[int, ...]) -> None: ...
    def offer(self, items: Iterable[tuple[DeviceRef, InboxItem]]) -> None: ...
    def store_unavailable(self, exc: StoreUnavailable) -> None: ...
    def metrics_frame_in(self, frame: Frame) -> None: ...
    def metrics_frame_out(self, frame_type: FrameType, n: int = 1) -> None: ...
    def metrics_handshake(self, pattern: str) -> None: ...
    def metrics_error(self, code: int) -> None: ...
    def metrics_refused(self, code: ErrorCode) -> None: ...
    def metrics_ack(self) -> None: ...
    def metrics_delivered(self, n: int) -> None: ...
    def metrics_stored(self, result: Stored) -> None: ...
    def metrics_sealed(self, code: int, duplicate: bool) -> None: ...


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


#: How each store command runs on a :class:`~tidings.store.Store`.
_RUN: dict[type, Callable[[Store, Any], Awaitable[object]]] = {
    ca.CreateAccount: lambda s, o: s.create_account(o.account, o.noise_key, o.name, o.now),
    ca.AddDevice: lambda s, o: s.add_device(
        o.account, o.noise_key, o.name, o.code_hash, o.now, o.max_devices
    ),
    ca.RemoveDevice: lambda s, o: s.remove_device(o.device),
    ca.GetDeviceByKey: lambda s, o: s.device_by_key(o.noise_key),
    ca.ListDevices: lambda s, o: s.devices(o.account),
    ca.ReadLastSeq: lambda s, o: s.last_seq(o.device),
    ca.ReadQueueDepth: lambda s, o: s.queue_depth(o.device),
    ca.AckItems: lambda s, o: s.ack(o.device, o.up_to_seq),
    ca.FetchItems: lambda s, o: s.fetch(o.device, o.after_seq, o.limit),
    Submission: lambda s, o: s.submit(o),
    MultiSubmission: lambda s, o: s.submit_multi(o),
    SealedSubmission: lambda s, o: s.submit_sealed(o),
    SealedMultiSubmission: lambda s, o: s.submit_sealed_multi(o),
    ca.ReadTagStates: lambda s, o: s.tag_states(o.tags),
    ca.PutLinkCode: lambda s, o: s.put_link_code(o.device, o.code_hash, o.expires_at, o.now),
    ca.CountPrekeys: lambda s, o: s.prekey_counts(o.device),
    ca.PutPrekeys: lambda s, o: s.put_prekeys(
        o.device, o.identity_key, o.signed_prekey, o.one_time, o.kem, o.now
    ),
    ca.TakePrekeyBundle: lambda s, o: s.take_prekey_bundle(o.device, o.now, one_time=o.one_time),
    ca.PutCertificate: lambda s, o: s.put_certificate(o.device, o.certificate),
    ca.MarkSeen: lambda s, o: s.mark_seen(o.device, o.at),
    ca.ReadIdentityKey: lambda s, o: s.identity_key(o.device),
    ca.PutAccessKey: lambda s, o: s.put_access_key(o.device, o.access_key),
}


async def _device_cards(relay: RelayHost, account: str) -> list[tuple[DeviceCard, bool]]:
    """``ReadDeviceCards``: the store's cards, each with whether its device is live here."""
    cards = await relay.store.device_cards(account)
    return [(card, card.ref in relay.sessions) for card in cards]


def _ignore(result: object, exc: BaseException | None) -> None:
    """A write nobody waits for (last seen at a close): a failure changes nothing."""


#: How each push operation runs on the relay's push sender (in order with the store commands).
_PUSH_RUN: dict[type, Callable[[PushHost, Any], Awaitable[object]]] = {
    ca.RegisterPush: lambda p, o: p.register(o.device, o.endpoint, o.p256dh, o.auth, o.now),
    ca.UnregisterPush: lambda p, o: p.unregister(o.device),
    ca.QueryPush: lambda p, o: p.status(o.device),
}


class Session:
    """The relay's side of one connection. Created per WebSocket by the relay."""

    __slots__ = (
        "_detached",
        "_idle",
        "_pumping",
        "_running",
        "conn",
        "conn_id",
        "core",
        "relay",
    )

    def __init__(self, relay: RelayHost, conn_id: int) -> None:
        self.relay = relay
        self.conn_id = conn_id
        self.conn: ChannelConnection | None = None
        # The retry-afters are read here, so that tests may shorten them on this module.
        self.core = RelayCore(
            relay.config,
            relay.limits,
            relay.random_bytes,
            store_retry_after=STORE_RETRY_AFTER,
            queue_full_retry_after=QUEUE_FULL_RETRY_AFTER,
            issuer=relay.issuer,
        )
        self._detached = False
        self._pumping = False  # inside pump(): a new output is drained by its loop
        self._running = 0  # store commands started and not yet answered
        self._idle: asyncio.Future[None] | None = None  # drain() waits on it

    @property
    def _log(self) -> logging.LoggerAdapter[logging.Logger]:
        """The connection's logger (made per line: logging is rare, connections are many)."""
        return logging.LoggerAdapter(log, {"conn": self.conn_id})

    @property
    def state(self) -> SessionState:
        """Where the connection is in its protocol (the core's state)."""
        return self.core.state

    @property
    def device(self) -> DeviceRef | None:
        """The connection's device, once HELLO found it."""
        return self.core.device

    @property
    def peer_ip(self) -> str | None:
        """The client's address (the proxy's header when configured)."""
        return self.core.peer_ip

    # ---------------------------------------------------------------- channel events

    def on_channel_event(self, conn: ChannelConnection, event: Event) -> None:
        self.conn = conn
        relay = self.relay
        if isinstance(event, FrameReceived):  # the flush that reports it pumps after its events
            relay.metrics_frame_in(event.frame)
            self.core.receive_frame(event.frame, relay.now(), relay.monotonic())
        elif isinstance(event, HandshakeDone):
            address = peer_ip(conn, relay.config.proxy_header)
            unidentified = event.pattern == PipesPattern.NK
            self.core.handshake_done(
                event.remote_static, address, relay.now(), unidentified=unidentified
            )
            relay.metrics_handshake(event.pattern)
        elif isinstance(event, ChannelClosed):
            self._log.info("= closed code=%s reason=%s", event.code, event.reason)
            if event.code and not event.by_peer:
                relay.metrics_error(event.code)
            self._closed()

    def on_disconnected(self, conn: ChannelConnection) -> None:
        self._closed()

    def _closed(self) -> None:
        was_open = self.core.state is SessionState.OPEN
        self.core.connection_closed()
        if not self._detached:
            self._detached = True
            self.relay.detach(self)
            device = self.core.device
            if was_open and device is not None:  # last seen: when the connection ended
                drive(self.relay.store.mark_seen(device, seen_at(self.relay.now())), _ignore)

    # ---------------------------------------------------------------- the relay's calls

    def send_frame(self, frame: Frame) -> None:
        """Send ``frame`` on this connection if it is still open (e.g. an unsolicited one)."""
        self.core.send_frame(frame)
        self._kick()

    def offer(self, item: InboxItem) -> None:
        """A new item was stored for this device: push it now if it is next in line."""
        relay = self.relay
        self.core.offer(item, relay.now(), relay.monotonic())
        self._kick()

    def recheck(self) -> None:
        """Items may wait in the store that this session was not offered (another relay node
        stored them): read them if the connection is open."""
        relay = self.relay
        self.core.recheck(relay.now(), relay.monotonic())
        self._kick()

    @property
    def sent_upto(self) -> int:
        """The highest seq sent on this connection."""
        return self.core.sent_upto

    def prekeys_low(self, counts: PreKeyCounts) -> None:
        """Tell this device PREKEYS_LOW if the relay holds fewer than the watermark of its
        one-time prekeys (of either kind)."""
        self.core.prekeys_low(counts)
        self._kick()

    async def drain(self) -> None:
        """Wait for the store commands this session started (graceful shutdown)."""
        while self._running:
            self._idle = asyncio.get_running_loop().create_future()
            await self._idle

    # ---------------------------------------------------------------- the pump

    def _kick(self) -> None:
        """The core has new output: pump it in this connection's next flush (one per loop
        iteration, whatever number of inputs came meanwhile: the answers of one commit, the
        items of one batch, leave in one write)."""
        if not self._pumping and self.conn is not None:
            self.conn.schedule_flush()

    def pump(self) -> None:
        """Carry out what the core gave: actions, then frames, then store commands, then the
        close (the core gives it last, after the frames queued before it). Called by the
        connection's flush, which writes what it queued right after; again until the core is
        quiet (a store that answers at once feeds it more)."""
        core = self.core
        conn = self.conn
        channel = conn.channel if conn is not None else None
        self._pumping = True
        try:
            while core.has_output:
                close: ca.CloseConnection | None = None
                if core.has_actions:
                    for action in core.actions():
                        if type(action) is ca.CloseConnection:
                            close = action
                        else:
                            self._ACT[type(action)](self, action)
                frames = core.frames_to_send()
                if frames and channel is not None and channel.state is not ChannelState.CLOSED:
                    count = self.relay.metrics_frame_out
                    for frame in frames:
                        count(frame.TYPE)
                    channel.send_frames(frames)
                for command in core.store_commands():
                    self._run(command)
                if close is not None and channel is not None:
                    channel.close(close.code, close.reason, close.frame_type)
        finally:
            self._pumping = False

    def _run(self, command: ca.StoreCommand) -> None:
        """Start one store command; its result goes to the core, then the pump runs."""
        command_id, op = command
        self._running += 1

        def done(result: object, exc: BaseException | None) -> None:
            relay, core = self.relay, self.core
            self._running -= 1
            if self._running == 0 and self._idle is not None and not self._idle.done():
                self._idle.set_result(None)
            if exc is None:
                core.stored(command_id, result, relay.now(), relay.monotonic())
            elif isinstance(exc, Exception):
                core.store_failed(command_id, exc, relay.now(), relay.monotonic())
            else:  # cancelled (shutdown): nobody waits for it any more
                return
            self._kick()

        run = _RUN.get(type(op))
        if type(op) is ca.ReadDeviceCards:
            drive(_device_cards(self.relay, op.account), done)
        elif run is not None:
            drive(run(self.relay.store, op), done)
        else:  # a task: it resolves names under a timeout (a blocking ask: frames wait for it)
            drive(asyncio.ensure_future(_PUSH_RUN[type(op)](self.relay.push, op)), done)

    # ---------------------------------------------------------------- actions

    def _attach(self, _: ca.Attach) -> None:
        self.relay.attach(self)

    def _announce(self, action: ca.AnnounceDevices) -> None:
        self.relay.announce_devices(action.account, action.device_ids)

    def _evict(self, action: ca.EvictDevice) -> None:
        self.relay.evict(action.device)

    def _send_stored(self, action: ca.SendStored) -> None:
        relay = self.relay
        relay.metrics_stored(action.result)
        relay.offer(action.result.items)

    def _notify_prekeys_low(self, action: ca.NotifyPrekeysLow) -> None:
        owner = self.relay.sessions.get(action.device)
        if owner is not None:
            owner.prekeys_low(action.counts)

    def _expect_auth(self, _: ca.ExpectAuth) -> None:
        if self.conn is not None:
            self.conn.expect_auth()

    def _store_trouble(self, action: ca.StoreTrouble) -> None:
        self.relay.store_unavailable(action.exc)

    def _failure(self, action: ca.Failure) -> None:
        self._log.error(action.message, exc_info=action.exc)

    def _write_log(self, action: ca.Log) -> None:
        self._log.log(action.level, "%s", action.message)

    def _refused(self, action: ca.SendRefused) -> None:
        self.relay.metrics_refused(ErrorCode(action.code))

    def _sealed_counted(self, action: ca.SealedCounted) -> None:
        self.relay.metrics_sealed(action.code, action.duplicate)

    def _ack_taken(self, _: ca.AckTaken) -> None:
        self.relay.metrics_ack()

    def _delivered(self, action: ca.ItemsDelivered) -> None:
        self.relay.metrics_delivered(action.removed)

    _ACT: ClassVar[dict[type, Callable[[Session, Any], None]]] = {
        ca.Attach: _attach,
        ca.AnnounceDevices: _announce,
        ca.EvictDevice: _evict,
        ca.SendStored: _send_stored,
        ca.NotifyPrekeysLow: _notify_prekeys_low,
        ca.ExpectAuth: _expect_auth,
        ca.StoreTrouble: _store_trouble,
        ca.Failure: _failure,
        ca.Log: _write_log,
        ca.SendRefused: _refused,
        ca.SealedCounted: _sealed_counted,
        ca.AckTaken: _ack_taken,
        ca.ItemsDelivered: _delivered,
    }
