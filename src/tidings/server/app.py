"""The relay: accepts WebSocket connections, routes stored items to connected devices, expires.

:class:`Relay` owns the store, the live sessions (at most one per device: a new connection of a
device replaces the old one), the limits against hostile peers (:mod:`.limits`), the expiry
sweep, the metrics and the server's Noise static key (its identity; clients pin it). Connections
are accepted by :class:`~tidings.server.listener.Listener` under the connection caps of
:mod:`tidings.server.admission`; the store's health is watched by
:class:`~tidings.server.health.StoreWatch`.

Shutdown (:meth:`Relay.stop`, on SIGTERM): stop accepting, tell every client SHUTTING_DOWN and
close, flush the store's pending commit batch, close the store.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import resource
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric import ec
from picows import WSUpgradeRequest

from ..errors import StartupError, StoreError, StoreUnavailable
from ..net.channel import (
    AdmissionParams,
    Channel,
    ChannelClosed,
    Event,
    HandshakeDone,
    KeepaliveParams,
)
from ..net.timers import Timers
from ..net.ws import ChannelConnection
from ..noise import PipesResponder, fingerprint, public_key
from ..store import DeviceRef, InboxItem, Store, Stored
from ..wire import PROLOGUE, Devices, ErrorCode, Frame, FrameType, PushState, PushStatus
from .admission import Admission, Caps, resolve_max_connections
from .cluster import Cluster
from .config import ServerConfig
from .datadir import load_or_create_key as load_or_create_key
from .health import StoreWatch
from .limits import Limits
from .listener import Listener, bind, listen_error
from .metrics import Metrics, label, serve_http
from .sealed_certs import CertIssuer
from .session import Session
from .wake_schedule import DEFAULT_TIMING, WakeTiming
from .wakeups import PUSH_REQUEST_TIMEOUT, WakeUps

log = logging.getLogger("tidings.server")

#: Longest wait for in-progress store writes on shutdown.
SHUTDOWN_DRAIN_SECONDS = 10.0

#: The WebSocket path of protocol version 1 (``ws://host:port/v1``).
WS_PATH = b"/v1"

#: How many expired items one sweep transaction removes at most: bounds the transaction size.
EXPIRY_BATCH = 5000


class Relay:
    """The store-and-forward relay."""

    def __init__(
        self,
        config: ServerConfig,
        store: Store,
        static_private: bytes,
        *,
        clock: Callable[[], float] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        random_bytes: Callable[[int], bytes] = os.urandom,
        push_key: bytes | None = None,
        sender_cert_key: bytes | None = None,
        push_timing: WakeTiming = DEFAULT_TIMING,
        push_request_timeout: float = PUSH_REQUEST_TIMEOUT,
        store_heartbeat: float | None = None,
        timers: Timers | None = None,
    ) -> None:
        """A relay on ``store`` with the Noise static key ``static_private``.

        ``timers``: where the connections' deadlines (handshake, HELLO, keepalive, close
        linger) and the accept retry run (default: the loop's; tests pass virtual ones).

        ``push_key`` is the VAPID private key (a P-256 scalar, ``push.key``; ``None``: a new one
        for this run only, as tests want); ``push_timing`` and ``push_request_timeout`` are the
        push sender's waits (tests shorten them).

        ``sender_cert_key`` is the seed of the key that signs sender certificates
        (``sender-cert.key``, :mod:`.sealed_certs`; ``None``: a new one for this run only).
        """
        self.config = config
        self.store = store
        self.timers = timers
        self.static_private = static_private
        self.static_public = public_key(static_private)
        offset = config.clock_offset  # the config is frozen: read once
        # The plain clock when there is no offset: it is read for every frame and store answer.
        self._clock = clock or (time.time if not offset else lambda: time.time() + offset)
        #: Seconds that never step (rate limits, retry-afters): a wall clock set back an hour
        #: would freeze every budget for that hour, one set forward would refill them all. Only
        #: times people see and retention/expiry read the wall clock (:meth:`now`).
        self.monotonic = monotonic
        self.random_bytes = random_bytes
        #: Signs the devices' sender certificates under this relay's static key (sealed sender).
        self.issuer = CertIssuer.create(
            static_private,
            sender_cert_key if sender_cert_key is not None else random_bytes(32),
            random_bytes,
        )
        #: Every budget against hostile peers (sends, prekey fetches, lookups, registrations).
        self.limits = Limits(config)
        self.metrics = Metrics()
        #: This node's id (logs, /metrics, /healthz): ``node_id``, or ``<hostname>:<port>``.
        self.node_id = config.node
        self.metrics.node_info.labels(node=self.node_id).set(1)
        # The labelled children, looked up once: labels() costs more than the increment.
        self._frames_in = {t: self.metrics.frames_received.labels(type=label(t)) for t in FrameType}
        self._frames_out = {t: self.metrics.frames_sent.labels(type=label(t)) for t in FrameType}
        self.sessions: dict[DeviceRef, Session] = {}
        self._all: set[Session] = set()
        self._ids = itertools.count(1)
        self.listener: Listener | None = None
        self.store_watch = StoreWatch(store, self.metrics)
        #: Seconds between probes of a healthy store (a database on the network), or ``None``.
        self._store_heartbeat = store_heartbeat
        scalar = push_key if push_key is not None else _new_scalar(random_bytes)
        #: The push wake-ups of devices without a connection (:mod:`.wakeups`).
        self.push = WakeUps(
            config,
            store,
            self.metrics,
            ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256R1()),
            clock=self.now,
            random_bytes=random_bytes,
            timing=push_timing,
            request_timeout=push_request_timeout,
        )
        #: The other nodes on the same database, through Redis (``redis_url``), or ``None``.
        self.cluster: Cluster | None = None
        if config.redis_url:
            last_seqs = getattr(store, "last_seqs", None)
            if last_seqs is None:
                raise StartupError(
                    f"redis_url needs the PostgreSQL store (nodes share its database), "
                    f"not {store!r}: set store to postgresql://…"
                )
            self.cluster = Cluster(self, config.redis_url, self.node_id, last_seqs, self.metrics)
            self.push.elsewhere = self.cluster.connected_elsewhere
            self.push.on_change = self.cluster.push_changed
            self.limits.on_take = self.cluster.took  # the budgets are the relay's, not a node's
            self._push_of = store.push_subscription  # type: ignore[attr-defined]
            self._reloads: set[asyncio.Task[None]] = set()
        self._http_server: asyncio.Server | None = None
        self._expiry_task: asyncio.Task[None] | None = None
        self.address: tuple[str, int] | None = None
        self.metrics_address: tuple[str, int] | None = None
        # Clients ping every few seconds; the relay pings a connection that has been silent
        # for ping_interval and closes it after idle_timeout of silence (G7).
        self.keepalive = KeepaliveParams(
            ping_interval=config.ping_interval,
            dead_after=config.idle_timeout,
            handshake_timeout=10.0,
        )
        #: What a peer may do before REGISTER/HELLO: bounded in time and in buffered bytes.
        self.admission = AdmissionParams(auth_timeout=config.auth_timeout)

    def now(self) -> float:
        """Server wall-clock time (with the configured offset; the lab moves it)."""
        return self._clock()

    @property
    def fingerprint(self) -> str:
        """Human-comparable fingerprint of the server's static key."""
        return fingerprint(self.static_public)

    # ---------------------------------------------------------------- life cycle

    async def start(self) -> None:
        """Open the store and start listening (WebSocket, and metrics if configured)."""
        metrics = self.metrics

        def observe_commit(ops: int, seconds: float) -> None:
            metrics.store_commit_batch_size.observe(ops)
            metrics.store_commit_seconds.observe(seconds)

        self.store.stats.on_commit = observe_commit
        caps = self._caps()
        await self.store.open()
        try:
            if self.cluster is not None:
                await self.cluster.start()
            await self.push.start(self.sessions.__contains__)
            await self._listen(caps)
        except BaseException:
            self._close_listeners()
            await self.push.stop()
            if self.cluster is not None:
                await self.cluster.stop()
            await self.store.close()
            raise
        self._expiry_task = asyncio.ensure_future(self._expiry_loop())
        if self._store_heartbeat is not None:
            self.store_watch.start_heartbeat(self._store_heartbeat)
        assert self.address is not None
        log.info(
            "= listening on %s:%d key %s node %s", *self.address, self.fingerprint, self.node_id
        )

    def _caps(self) -> Caps:
        """The connection caps, the total one checked against the limit of open files.

        Raises:
            StartupError: the limit of open files is too low for the configured cap.
        """
        cfg = self.config
        fd_limit, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        try:
            total = resolve_max_connections(cfg.max_connections, fd_limit)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        log.info(
            "= connection cap %d (%s), per address %s; limit of open files %d",
            total,
            "configured" if cfg.max_connections else "derived",
            cfg.max_connections_per_ip or "none",
            fd_limit,
        )
        return Caps(total, cfg.max_connections_per_ip)

    async def _listen(self, caps: Caps) -> None:
        cfg = self.config
        sockets = bind(cfg.host, cfg.port, mss=cfg.tcp_mss)
        self.listener = Listener(
            sockets, Admission(caps), self._new_connection, self.metrics, timers=self.timers
        )
        sock = sockets[0].getsockname()
        self.address = (sock[0], sock[1])
        if cfg.metrics_port:
            try:
                self._http_server = await serve_http(
                    self.metrics, self.health, cfg.metrics_host, cfg.metrics_port
                )
            except OSError as exc:
                flags = ("--metrics-port", "--metrics-host")
                line = listen_error(
                    "the metrics endpoint", cfg.metrics_host, cfg.metrics_port, exc, flags
                )
                raise StartupError(line) from exc
            msock = self._http_server.sockets[0].getsockname()
            self.metrics_address = (msock[0], msock[1])

    def _close_listeners(self) -> None:
        if self.listener is not None:
            self.listener.close()
        if self._http_server is not None:
            self._http_server.close()

    async def stop(self) -> None:
        """Graceful shutdown: stop accepting, close clients, flush and close the store."""
        if self.listener is not None:
            self.listener.close()
        if self._expiry_task is not None:
            self._expiry_task.cancel()
        sessions = list(self._all)
        for session in sessions:
            if session.conn is not None:
                session.conn.close(int(ErrorCode.SHUTTING_DOWN), "server shutting down")
        # Let the writes already accepted finish (their ✓ cannot reach the closed connections,
        # but they are committed and the retried sends will be answered as duplicates).
        async with asyncio.timeout(SHUTDOWN_DRAIN_SECONDS):
            await asyncio.gather(*(s.drain() for s in sessions), return_exceptions=True)
        if self._http_server is not None:
            self._http_server.close()
        await self.push.stop()
        if self.cluster is not None:
            await self.cluster.stop()
            for task in list(self._reloads):
                task.cancel()
            await asyncio.gather(*self._reloads, return_exceptions=True)
        await self.store_watch.close()
        await self.store.close()
        log.info("= stopped")

    def health(self) -> tuple[bool, dict[str, object]]:
        """Health for ``/healthz``: listening, and the store able to write.

        ``store`` is ``"ok"``, ``"full"`` or ``"error: …"``; ``accepting`` is false while the
        relay is at its connection cap or out of file descriptors (still healthy: it serves).
        With ``redis_url``, ``redis`` is ``"up"`` or ``"down (polling)"``: degraded, still
        healthy (the node delivers, within the poll interval: docs/nodes.md).
        """
        listener = self.listener
        listening = listener is not None and listener.is_serving()
        store = self.store_watch.state
        details: dict[str, object] = {
            "listening": listening,
            "accepting": listener is not None and listener.accepting,
            "connections": len(self._all),
            "store": store,
            "node": self.node_id,
        }
        if self.cluster is not None:
            details["redis"] = self.cluster.state
        if listener is not None:
            details["connections_limit"] = listener.admission.caps.max_connections
        return listening and store == "ok", details

    def store_unavailable(self, exc: StoreUnavailable) -> None:
        """A request failed because the store cannot write (logged once per interval)."""
        self.store_watch.failed(exc)

    def _new_connection(
        self, request: WSUpgradeRequest, refused: str | None = None
    ) -> ChannelConnection | None:
        if request.path.split(b"?", 1)[0] != WS_PATH:
            return None  # picows answers 404
        if refused is not None:
            return ChannelConnection(self._make_channel, _Refusal(self, refused), self.timers)
        session = Session(self, next(self._ids))
        self._all.add(session)
        self.metrics.connections.set(len(self._all))
        proxy = self.config.proxy_header  # the one upgrade header read later (peer_ip)
        conn = ChannelConnection(
            self._make_channel, session, self.timers, () if proxy == "none" else (proxy,)
        )
        conn.pump = session.pump
        session.conn = conn
        return conn

    def _make_channel(self, now: float) -> Channel:
        responder = PipesResponder(self.static_private, prologue=PROLOGUE, rng=self.random_bytes)
        # The session answers PINGs, in order with the frames before them (protocol §7).
        return Channel(responder, self.keepalive, now, answer_pings=False, admission=self.admission)

    # ---------------------------------------------------------------- routing

    def attach(self, session: Session) -> None:
        """``session`` is now the live connection of its device (replacing an older one)."""
        assert session.device is not None
        if self.cluster is not None:
            self.cluster.attached(session.device)
        old = self.sessions.get(session.device)
        self.sessions[session.device] = session
        if old is not None and old is not session and old.conn is not None:
            old.conn.close(int(ErrorCode.SHUTTING_DOWN), "replaced by a newer connection")
        if self.push.connected(session.device):  # its endpoint is dead: register a new one
            sub = self.push.scheduler.get(session.device)
            endpoint = sub.endpoint if sub is not None else ""
            dead = int(PushState.DEAD)
            session.send_frame(PushStatus(0, self.push.vapid_public, dead, endpoint))

    def detach(self, session: Session) -> None:
        """``session`` closed."""
        self._all.discard(session)
        self.metrics.connections.set(len(self._all))
        if session.device is not None and self.sessions.get(session.device) is session:
            del self.sessions[session.device]
            if self.cluster is not None:
                self.cluster.detached(session.device)

    def announce_devices(self, account: str, device_ids: tuple[int, ...]) -> None:
        """Tell every live session of ``account`` its current devices: an unsolicited DEVICES
        (``request_id`` 0), sent when a device was linked, so a device whose session began
        before the link sends its next message with a copy for the new one (protocol §6.10)."""
        self.announce_local(account, device_ids)
        if self.cluster is not None:
            self.cluster.announced(account, device_ids)

    def announce_local(self, account: str, device_ids: tuple[int, ...]) -> None:
        """:meth:`announce_devices` to the sessions on this node only."""
        frame = Devices(0, account, device_ids)
        for ref, session in list(self.sessions.items()):
            if ref.account == account:
                session.send_frame(frame)

    def apply_takes(self, takes: Sequence[tuple[str, object, float]]) -> int:
        """Rate-limit tokens another node took (its hint): take them here too. How many were
        malformed (ignored)."""
        now, refused = self.monotonic(), 0
        for name, key, count in takes:
            try:
                self.limits.apply(name, key, count, now)
            except ValueError:
                refused += 1
        return refused

    def reload_push(self, devices: Sequence[DeviceRef] | None) -> None:
        """Another node changed the push subscriptions of ``devices`` (``None``: maybe any,
        while this node heard nothing): read them again from the store, in the background."""
        task = asyncio.ensure_future(self._reload_push(devices))
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _reload_push(self, devices: Sequence[DeviceRef] | None) -> None:
        try:
            if devices is None:
                stored = {sub.device: sub for sub in await self.store.push_subscriptions()}
                known = {sub.device for sub in self.push.scheduler.subscriptions()}
                for device in sorted(known | set(stored)):
                    self.push.replace(device, stored.get(device))
                return
            for device in devices:
                self.push.replace(device, await self._push_of(device))
        except StoreError as exc:
            log.warning("! push: could not read subscriptions another node changed: %s", exc)

    def evict(self, device: DeviceRef) -> None:
        """``device`` was unlinked: close its live session (UNKNOWN_DEVICE), if it has one
        (on this node or, through Redis, on another)."""
        self.evict_local(device)
        if self.cluster is not None:
            self.cluster.evicted(device)

    def evict_local(self, device: DeviceRef) -> None:
        """:meth:`evict` on this node only."""
        session = self.sessions.get(device)
        if session is not None and session.conn is not None:
            session.conn.close(int(ErrorCode.UNKNOWN_DEVICE), "this device was unlinked")

    def offer(self, items: Iterable[tuple[DeviceRef, InboxItem]]) -> None:
        """Newly stored items: hand each to its device's live session, if any."""
        sessions = self.sessions
        elsewhere: list[DeviceRef] = []
        for ref, item in items:
            session = sessions.get(ref)
            if session is not None:
                session.offer(item)
            else:  # no live connection: a wake-up, if the device has a push subscription
                self.push.queued(ref)
                elsewhere.append(ref)
        if elsewhere and self.cluster is not None:  # it may be connected to another node
            self.cluster.items(elsewhere)

    @property
    def live(self) -> Mapping[DeviceRef, Session]:
        """The live session of each device connected to this node."""
        return self.sessions

    # ---------------------------------------------------------------- expiry

    async def expire_once(self) -> int:
        """Run one full expiry sweep now; return how many message items expired."""
        total = 0
        while True:
            now = self.now()
            result = await self.store.expire(now, now + self.config.retention_seconds, EXPIRY_BATCH)
            total += len(result.expired)
            self.metrics.items_expired.inc(len(result.expired))
            self.offer(sorted(result.notices + result.missed, key=lambda due: due[1].seq))
            if len(result.expired) + len(result.notices) == 0 or len(result.expired) < EXPIRY_BATCH:
                return total

    async def _expiry_loop(self) -> None:
        while True:
            try:
                n = await self.expire_once()
                if n:
                    log.info("= expired %d items", n)
                self.metrics.queue_depth.set(await self.store.total_queued())
                self.push.poke()  # a clock moved by the lab's clock file: look at the schedule
            except asyncio.CancelledError:
                raise
            except StoreUnavailable as exc:
                self.store_unavailable(exc)
            except Exception:
                log.exception("! expiry sweep failed")
            await asyncio.sleep(self.config.expiry_interval)

    # ---------------------------------------------------------------- metrics hooks

    def metrics_frame_in(self, frame: Frame) -> None:
        self._frames_in[frame.TYPE].inc()

    def metrics_frame_out(self, frame_type: FrameType, n: int = 1) -> None:
        self._frames_out[frame_type].inc(n)

    def metrics_handshake(self, pattern: str) -> None:
        self.metrics.handshakes.labels(pattern=pattern).inc()

    def metrics_error(self, code: int) -> None:
        if code in ErrorCode._value2member_map_:
            self.metrics.error(ErrorCode(code))

    def metrics_refused(self, code: ErrorCode) -> None:
        self.metrics.send_refused(code)

    def metrics_sealed(self, code: int, duplicate: bool) -> None:
        self.metrics.sealed_send(code, duplicate)

    def metrics_ack(self) -> None:
        self.metrics.acks.inc()

    def metrics_delivered(self, n: int) -> None:
        self.metrics.items_delivered.inc(n)

    def metrics_stored(self, result: Stored) -> None:
        if result.duplicate:
            self.metrics.messages_duplicate.inc()
        else:
            self.metrics.messages_stored.inc()


def _new_scalar(random_bytes: Callable[[int], bytes]) -> bytes:
    """A P-256 private scalar from ``random_bytes`` (a VAPID key for one run), or from the OS
    if what it gave is no scalar (a test's constant source must not loop for ever)."""
    scalar = random_bytes(32)
    while not 0 < int.from_bytes(scalar, "big") < _P256_ORDER:
        scalar = os.urandom(32)
    return scalar


#: The order of P-256's group (SEC 2 §2.4.2): a scalar is below it.
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class _Refusal:
    """The handler of a connection over a connection cap: once the Noise handshake is done it
    sends ERROR TOO_MANY_CONNECTIONS and closes (the client backs off and retries). The
    handshake comes first because an ERROR can only travel inside the Noise channel."""

    def __init__(self, relay: Relay, cap: str) -> None:
        self._relay = relay
        self._reason = f"too many connections ({cap.replace('_', ' ')}); retry later"

    def on_channel_event(self, conn: ChannelConnection, event: Event) -> None:
        if isinstance(event, HandshakeDone) and conn.channel is not None:
            conn.channel.close(int(ErrorCode.TOO_MANY_CONNECTIONS), self._reason)
        elif isinstance(event, ChannelClosed) and event.code and not event.by_peer:
            self._relay.metrics_error(event.code)

    def on_disconnected(self, conn: ChannelConnection) -> None:
        pass
