"""The relay's accept loop: pauses at the connection cap and when out of file descriptors.

Why its own loop rather than picows' ``ws_create_server`` (an ``asyncio.Server``): a server
accepts whatever the kernel queued, so it cannot stop at a cap; and when ``accept()`` fails with
EMFILE, aiofastnet 1.2's server (which picows uses when it is installed) calls
``listening_sock.remove_reader``, a method sockets do not have: the listening socket stays
readable and the loop spins. Measured with ``ulimit -n 1024`` and 1,100 idle connects: 25-79 %
CPU and 56,742 tracebacks in 24 s, and nobody could connect.

Invariants:

- The listening sockets are read only while :class:`~tidings.server.admission.Admission` is not
  full: at ``max_connections`` served plus the refusing slots, the listener stops reading them
  (new connects wait in the kernel's backlog) and starts again when a connection closes.
- An ``accept()`` that fails for want of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM), or for a
  reason it does not know, pauses accepting for :data:`ACCEPT_RETRY_DELAY`: it never spins.
- Each condition (out of resources, at the cap, connections refused) is logged at most once per
  :data:`~tidings.server.logs.REPEAT_LOG_INTERVAL`, with how often it happened, and counted in
  the metrics (``tidings_accept_pauses_total``, ``tidings_connections_refused_total``).
- Every accepted socket is released exactly once: when its transport's ``connection_lost``
  runs, or when its transport could not be made.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import resource
import socket
import time
from collections.abc import Callable
from typing import Any

from picows import WSAutoPingStrategy, WSListener, WSUpgradeRequest
from picows.picows import WSProtocol  # type: ignore[attr-defined]  # not in picows' stubs

from ..errors import StartupError
from ..net.timers import Later, Timers
from ..net.ws import MAX_WS_FRAME
from .admission import Admission, Decision, Verdict, address_key
from .logs import Throttle
from .metrics import Metrics

# An accepted socket gets the event loop's own transport (uvloop's), not aiofastnet's, which
# picows would choose when it is installed: measured on a fresh relay with 1,000 idle
# connections, aiofastnet's costs ~5 KiB more per connection, and in alternating runs of
# bench/relay_bench.py the relay's CPU per message was lower with uvloop's (bench/README.md).

__all__ = [
    "ACCEPT_RETRY_DELAY",
    "LISTEN_BACKLOG",
    "ConnectionFactory",
    "Listener",
    "bind",
    "listen_error",
    "raise_open_file_limit",
]

log = logging.getLogger("tidings.server")

#: Completed connections the kernel queues while the relay is not accepting (at the cap, or
#: paused): nginx's default; Linux caps it at ``net.core.somaxconn`` (4096 since 5.4).
LISTEN_BACKLOG = 511
#: Seconds accepting pauses after EMFILE/ENFILE/ENOBUFS/ENOMEM: the listening socket stays
#: readable, so retrying at once would spin; asyncio waits 1 s, half of it frees a slot sooner.
ACCEPT_RETRY_DELAY = 0.5
#: Errors of ``accept()`` that concern one connection only (accept(2): "treat them like EAGAIN
#: by retrying"); any other error pauses accepting.
PER_CONNECTION_ERRNOS = frozenset(
    {
        errno.ECONNABORTED,
        errno.EPROTO,
        errno.ENOPROTOOPT,
        errno.EHOSTDOWN,
        errno.ENONET,
        errno.EHOSTUNREACH,
        errno.EOPNOTSUPP,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.EPERM,  # a firewall rule refused this connection
    }
)
#: Largest WebSocket frame picows reads: one Noise message plus slack (``net.ws.MAX_WS_FRAME``);
#: picows cuts the connection on a bigger frame header, before buffering it.
WS_MAX_FRAME = MAX_WS_FRAME
#: Seconds a connection has to complete the WebSocket upgrade (an HTTP request) after connect.
WS_UPGRADE_TIMEOUT = 10.0
#: Initial read buffer per connection: most frames are small; picows grows it as needed.
WS_READ_BUFFER = 1024
#: picows' logger. An adapter, not a ``Logger``: given a ``Logger``, picows makes a child
#: ``Logger`` per connection (~1 KiB each, kept as long as the connection).
_PICOWS_LOG = logging.LoggerAdapter(logging.getLogger("picows.server"))
#: Soft limit of open files to ask for when the hard limit is "unlimited" (not on Linux).
FD_LIMIT_IF_UNLIMITED = 1 << 20

#: Makes the picows listener of one upgraded connection: ``(request, cap)``, where ``cap`` is
#: ``None`` for an admitted connection, else the cap it is over (it is to be refused).
ConnectionFactory = Callable[[WSUpgradeRequest, str | None], WSListener | None]


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft limit of open files (RLIMIT_NOFILE) to the hard limit; return (before,
    after). The soft limit is often 1,024 for compatibility with ``select()``, which the relay
    does not use; the hard one is what the operator allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, FD_LIMIT_IF_UNLIMITED)
    if target <= soft:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft, soft
    return soft, target


def listen_error(what: str, host: str, port: int, exc: OSError, flags: tuple[str, str]) -> str:
    """One line saying why ``what`` cannot listen on ``host:port`` and what to do;
    ``flags`` are the options that choose the port and the host."""
    port_flag, host_flag = flags
    hints = {
        errno.EADDRINUSE: f"another process (another relay?) uses it: stop it, or choose "
        f"another port with {port_flag}",
        errno.EADDRNOTAVAIL: f"this machine has no such address: choose another with {host_flag}",
        errno.EACCES: f"ports below 1024 need privileges: choose another with {port_flag}",
    }
    hint = hints.get(exc.errno or 0, f"choose another address with {host_flag}/{port_flag}")
    # asyncio rewrites strerror ("error while attempting to bind on address …"): use errno's.
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return f"{what} cannot listen on {host}:{port}: {reason.lower()}: {hint}"


def bind(
    host: str, port: int, backlog: int = LISTEN_BACKLOG, *, mss: int = 0
) -> list[socket.socket]:
    """Listening sockets for ``host`` (every address it resolves to) on ``port``.

    ``mss`` (if not 0) clamps TCP_MAXSEG on every non-loopback socket before ``listen()``:
    accepted connections inherit it, the SYN-ACK advertises it (so the peer sends no bigger
    segment) and the relay sends none bigger either. Loopback listeners are left alone (their
    64 KiB MTU has no black hole to fear).

    Raises:
        StartupError: the host does not resolve, or an address cannot be bound.
    """
    try:
        infos = socket.getaddrinfo(
            host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise StartupError(
            f"the relay cannot listen on {host}: {exc.strerror}: choose another with --host"
        ) from exc
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if mss and not ipaddress.ip_address(address[0]).is_loopback:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        line = listen_error("the relay", host, port, exc, ("--port", "--host"))
        raise StartupError(line) from exc
    return sockets


class Listener:
    """Accepts connections on listening sockets and hands them to picows (see the module doc).

    Call order: construct (listens at once), then :meth:`close` once.
    """

    def __init__(
        self,
        sockets: list[socket.socket],
        admission: Admission,
        factory: ConnectionFactory,
        metrics: Metrics,
        *,
        retry_delay: float = ACCEPT_RETRY_DELAY,
        clock: Callable[[], float] = time.monotonic,
        timers: Timers | None = None,
    ) -> None:
        self.sockets = sockets
        self.admission = admission
        self._factory = factory
        self._metrics = metrics
        self._retry_delay = retry_delay
        self._clock = clock
        self._loop = asyncio.get_running_loop()
        # The retry after a pause runs on these (tests pass virtual ones); ``clock`` is the
        # log throttles' time.
        self._timers = timers if timers is not None else Timers.of(self._loop)
        self._paused: set[str] = set()
        self._closed = False
        self._retry: Later | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._throttles = {
            "resources": Throttle(),
            "cap": Throttle(),
            "total": Throttle(),
            "per_address": Throttle(),
        }
        metrics.connections_limit.set(admission.caps.max_connections)
        self._watch()

    @property
    def accepting(self) -> bool:
        """Whether new connections are being accepted now."""
        return not self._closed and not self._paused

    def is_serving(self) -> bool:
        """Whether the listener is open (it may be paused)."""
        return not self._closed

    def close(self) -> None:
        """Stop accepting and close the listening sockets (open connections are left alone)."""
        if self._closed:
            return
        self._unwatch()
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
        for sock in self.sockets:
            sock.close()

    # ---------------------------------------------------------------- accepting

    def _on_readable(self, listening: socket.socket) -> None:
        for _ in range(LISTEN_BACKLOG):  # a burst is drained, other callbacks still run
            if self.admission.full:
                self._pause("cap")
                return
            try:
                sock, peer = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in PER_CONNECTION_ERRNOS:
                    continue
                self._out_of_resources(exc)
                return
            self._accepted(sock, peer)

    def _accepted(self, sock: socket.socket, peer: Any) -> None:
        address = address_key(str(peer[0]) if isinstance(peer, tuple) else str(peer))
        decision = self.admission.decide(address)
        if decision.cap is not None:
            self._refused(decision)
        if decision.verdict is Verdict.DROP:
            sock.close()
            return
        sock.setblocking(False)
        slot = _Slot(self, address, decision.verdict)
        task = self._loop.create_task(self._serve(sock, slot, decision.cap))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, sock: socket.socket, slot: _Slot, cap: str | None) -> None:
        def protocol() -> WSProtocol:
            return _TrackedProtocol(slot, lambda request: self._factory(request, cap))

        try:
            await self._loop.connect_accepted_socket(protocol, sock)
        except Exception as exc:  # e.g. no descriptor left for the event loop's bookkeeping
            sock.close()
            slot.release()
            if count := self._throttles["resources"].hit(self._clock()):
                log.error("! cannot set up an accepted connection: %r (%d times)", exc, count)

    def _released(self) -> None:
        if "cap" in self._paused and not self.admission.full:
            self._resume("cap")

    # ---------------------------------------------------------------- pausing

    def _out_of_resources(self, exc: OSError) -> None:
        self._pause("resources")
        self._metrics.accept_pauses.labels(reason="resources").inc()
        if count := self._throttles["resources"].hit(self._clock()):
            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
            log.error(
                "! cannot accept connections: %s (limit of open files %d, %d connections open); "
                "accepting paused for %g s (%d times since the last such line)",
                (exc.strerror or str(exc)).lower(),
                soft,
                self.admission.open,
                self._retry_delay,
                count,
            )
        self._retry = self._timers.call_later(self._retry_delay, self._resume_resources)

    def _resume_resources(self) -> None:
        self._resume("resources")

    def _refused(self, decision: Decision) -> None:
        assert decision.cap is not None
        self._metrics.connections_refused.labels(cap=decision.cap).inc()
        if count := self._throttles[decision.cap].hit(self._clock()):
            caps = self.admission.caps
            limit = caps.max_connections if decision.cap == "total" else caps.max_per_address
            log.warning(
                "! connection over the %s cap of %d: refused (%d since the last such line)",
                decision.cap.replace("_", "-"),
                limit,
                count,
                extra={"event": "conn.refused"},
            )

    def _pause(self, reason: str) -> None:
        if reason in self._paused or self._closed:
            return
        if reason == "cap":
            self._metrics.accept_pauses.labels(reason="cap").inc()
            if count := self._throttles["cap"].hit(self._clock()):
                log.warning(
                    "! at the connection cap (%d served, %d being refused): not accepting until "
                    "one closes (%d times since the last such line)",
                    self.admission.admitted,
                    self.admission.refusing,
                    count,
                )
        if not self._paused:
            self._unwatch()
        self._paused.add(reason)

    def _resume(self, reason: str) -> None:
        if reason not in self._paused:
            return
        self._paused.discard(reason)
        if not self._paused and not self._closed:
            self._watch()

    def _watch(self) -> None:
        for sock in self.sockets:
            self._loop.add_reader(sock.fileno(), self._on_readable, sock)
        self._metrics.accepting.set(1)

    def _unwatch(self) -> None:
        for sock in self.sockets:
            self._loop.remove_reader(sock.fileno())
        self._metrics.accepting.set(0)


class _Slot:
    """One accepted connection's place in the admission counts, released exactly once."""

    __slots__ = ("_address", "_listener", "_verdict")

    def __init__(self, listener: Listener, address: str, verdict: Verdict) -> None:
        self._listener: Listener | None = listener
        self._address = address
        self._verdict = verdict

    def release(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.admission.release(self._address, self._verdict)
            listener._released()


class _TrackedProtocol(WSProtocol):  # type: ignore[misc]  # picows' class is untyped
    """picows' server protocol (built as ``ws_create_server`` builds it), reporting when its
    connection is gone, whether or not it got as far as a WebSocket."""

    # The slot itself, not its bound ``release`` (64 bytes more per connection, for its life).
    __slots__ = ("_slot",)

    def __init__(self, slot: _Slot, factory: Callable[..., Any]) -> None:
        super().__init__(
            host_port=None,
            ws_path=None,
            is_client_side=False,
            ws_listener_factory=factory,
            logger=_PICOWS_LOG,
            disconnect_on_exception=True,
            websocket_handshake_timeout=WS_UPGRADE_TIMEOUT,
            enable_auto_ping=False,
            auto_ping_idle_timeout=20,
            auto_ping_reply_timeout=20,
            auto_ping_strategy=WSAutoPingStrategy.PING_WHEN_IDLE,
            enable_auto_pong=True,
            max_frame_size=WS_MAX_FRAME,
            extra_headers=None,
            read_buffer_init_size=WS_READ_BUFFER,
        )
        self._slot = slot

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            self._slot.release()
