"""The relay: accepts WebSocket connections, routes stored items to connected devices, expires.

:class:`Relay` owns the store, the live sessions (at most one per device: a new connection of a
device replaces the old one), the per-account rate limiter, the prekey fetch limiter, the expiry
sweep, the metrics and the server's Noise static key (its identity; clients pin it).

Shutdown (:meth:`Relay.stop`, on SIGTERM): stop accepting, tell every client SHUTTING_DOWN and
close, flush the store's pending commit batch, close the store.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from picows import WSUpgradeRequest, ws_create_server

from ..delivery.ratelimit import RateLimiter
from ..net.channel import AdmissionParams, Channel, KeepaliveParams
from ..net.ws import MAX_WS_FRAME, ChannelConnection
from ..noise import PipesResponder, fingerprint, generate_keypair, public_key
from ..store import DeviceRef, InboxItem, Store, Stored
from ..wire import PROLOGUE, ErrorCode, Frame, FrameType
from .config import ServerConfig
from .metrics import Metrics, label, serve_http
from .session import PREKEY_FETCH_BURST, PREKEY_FETCH_WINDOW, Session

log = logging.getLogger("tidings.server")

#: Longest wait for in-progress store writes on shutdown.
SHUTDOWN_DRAIN_SECONDS = 10.0

#: The WebSocket path of protocol version 1 (``ws://host:port/v1``).
WS_PATH = b"/v1"

#: How many expired items one sweep transaction removes at most: bounds the transaction size.
EXPIRY_BATCH = 5000


def load_or_create_key(path: Path, rng: Callable[[int], bytes] = os.urandom) -> bytes:
    """The server's Noise static private key, created (mode 0600) on first start."""
    if path.exists():
        key = path.read_bytes()
        if len(key) != 32:
            raise ValueError(f"{path} is not a 32-byte key")
        return key
    private, _ = generate_keypair(rng)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
        f.flush()
        os.fsync(f.fileno())
    return private


class Relay:
    """The store-and-forward relay."""

    def __init__(
        self,
        config: ServerConfig,
        store: Store,
        static_private: bytes,
        *,
        clock: Callable[[], float] | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.config = config
        self.store = store
        self.static_private = static_private
        self.static_public = public_key(static_private)
        self._clock = clock or (lambda: time.time() + config.clock_offset)
        self.random_bytes = random_bytes
        self.limiter: RateLimiter[str] = RateLimiter(config.rate_per_second, config.rate_burst)
        #: Prekey fetches, per (fetching device, target device).
        self.prekey_limiter: RateLimiter[tuple[DeviceRef, DeviceRef]] = RateLimiter(
            PREKEY_FETCH_BURST / PREKEY_FETCH_WINDOW, PREKEY_FETCH_BURST
        )
        self.metrics = Metrics()
        # The labelled children, looked up once: labels() costs more than the increment.
        self._frames_in = {t: self.metrics.frames_received.labels(type=label(t)) for t in FrameType}
        self._frames_out = {t: self.metrics.frames_sent.labels(type=label(t)) for t in FrameType}
        self.sessions: dict[DeviceRef, Session] = {}
        self._all: set[Session] = set()
        self._ids = itertools.count(1)
        self._ws_server: asyncio.Server | None = None
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
        await self.store.open()
        cfg = self.config
        self._ws_server = await ws_create_server(
            self._new_connection,
            cfg.host,
            cfg.port,
            max_frame_size=MAX_WS_FRAME,  # a bigger frame is refused from its header
            websocket_handshake_timeout=10,
            read_buffer_init_size=1024,
        )
        sock = self._ws_server.sockets[0].getsockname()
        self.address = (sock[0], sock[1])
        if cfg.metrics_port:
            self._http_server = await serve_http(
                self.metrics, self.health, cfg.metrics_host, cfg.metrics_port
            )
            msock = self._http_server.sockets[0].getsockname()
            self.metrics_address = (msock[0], msock[1])
        self._expiry_task = asyncio.ensure_future(self._expiry_loop())
        log.info("= listening on %s:%d key %s", *self.address, self.fingerprint)

    async def stop(self) -> None:
        """Graceful shutdown: stop accepting, close clients, flush and close the store."""
        if self._ws_server is not None:
            self._ws_server.close()
        if self._expiry_task is not None:
            self._expiry_task.cancel()
        sessions = list(self._all)
        for session in sessions:
            if session.conn is not None:
                session.conn.close(int(ErrorCode.SHUTTING_DOWN), "server shutting down")
        # Let the writes already accepted finish (their ✓ cannot reach the closed connections,
        # but they are committed and the retried sends will be answered as duplicates).
        await asyncio.wait_for(
            asyncio.gather(*(s.drain() for s in sessions), return_exceptions=True),
            SHUTDOWN_DRAIN_SECONDS,
        )
        if self._http_server is not None:
            self._http_server.close()
        await self.store.close()
        log.info("= stopped")

    def health(self) -> tuple[bool, dict[str, object]]:
        """Health for ``/healthz``: listening and the store open."""
        ok = self._ws_server is not None and self._ws_server.is_serving()
        return ok, {"listening": ok, "connections": len(self._all)}

    def _new_connection(self, request: WSUpgradeRequest) -> ChannelConnection | None:
        if request.path.split(b"?", 1)[0] != WS_PATH:
            return None  # picows answers 404
        session = Session(self, next(self._ids))
        self._all.add(session)
        self.metrics.connections.set(len(self._all))

        def make_channel(now: float) -> Channel:
            responder = PipesResponder(
                self.static_private, prologue=PROLOGUE, rng=self.random_bytes
            )
            # The session answers PINGs, in order with the frames before them (§7).
            return Channel(
                responder, self.keepalive, now, answer_pings=False, admission=self.admission
            )

        conn = ChannelConnection(make_channel, session)
        session.conn = conn
        return conn

    # ---------------------------------------------------------------- routing

    def attach(self, session: Session) -> None:
        """``session`` is now the live connection of its device (replacing an older one)."""
        assert session.device is not None
        old = self.sessions.get(session.device)
        self.sessions[session.device] = session
        if old is not None and old is not session and old.conn is not None:
            old.conn.close(int(ErrorCode.SHUTTING_DOWN), "replaced by a newer connection")

    def detach(self, session: Session) -> None:
        """``session`` closed."""
        self._all.discard(session)
        self.metrics.connections.set(len(self._all))
        if session.device is not None and self.sessions.get(session.device) is session:
            del self.sessions[session.device]

    def offer(self, items: Iterable[tuple[DeviceRef, InboxItem]]) -> None:
        """Newly stored items: hand each to its device's live session, if any."""
        sessions = self.sessions
        for ref, item in items:
            session = sessions.get(ref)
            if session is not None:
                session.offer(item)

    # ---------------------------------------------------------------- expiry

    async def expire_once(self) -> int:
        """Run one full expiry sweep now; return how many message items expired."""
        total = 0
        while True:
            now = self.now()
            result = await self.store.expire(now, now + self.config.retention_seconds, EXPIRY_BATCH)
            total += len(result.expired)
            self.metrics.items_expired.inc(len(result.expired))
            self.offer(result.notices)
            if len(result.expired) + len(result.notices) == 0 or len(result.expired) < EXPIRY_BATCH:
                return total

    async def _expiry_loop(self) -> None:
        while True:
            try:
                n = await self.expire_once()
                if n:
                    log.info("= expired %d items", n)
                self.metrics.queue_depth.set(await self.store.total_queued())
            except asyncio.CancelledError:
                raise
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

    def metrics_ack(self) -> None:
        self.metrics.acks.inc()

    def metrics_delivered(self, n: int) -> None:
        self.metrics.items_delivered.inc(n)

    def metrics_stored(self, result: Stored) -> None:
        if result.duplicate:
            self.metrics.messages_duplicate.inc()
        else:
            self.metrics.messages_stored.inc()
