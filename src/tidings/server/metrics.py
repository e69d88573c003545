"""Prometheus metrics and the tiny HTTP endpoint that serves them with a health check.

Invariants:

- Each :class:`Metrics` owns its own ``CollectorRegistry``, never the process-global default, so
  tests and the lab can run several servers in one process.
- Only ``tidings_*`` series are exposed, without ``*_created`` extras (plain counts have none;
  gauges never had them).
- Label values are bounded sets: ``type`` is a lower-case ``FrameType`` name, ``code`` a
  lower-case ``ErrorCode`` name (both pre-created at zero, so ``rate()`` works from the first
  scrape), ``pattern`` a Noise handshake pattern name. Never an account, device or id.
- :func:`serve_http` speaks just enough HTTP/1.1 for a scraper and a load balancer: one GET (or
  HEAD) per connection, then close. Requests are bounded (:data:`MAX_REQUEST` bytes,
  :data:`REQUEST_TIMEOUT` seconds), so a misbehaving client costs one small buffer, briefly.

Routes: ``GET /metrics`` → 200 Prometheus text format 0.0.4; ``GET /healthz`` → 200 if
``health()`` says healthy, else 503, with its details as JSON; anything else → 404; a request
that does not parse → 400; a non-GET/HEAD method → 405; a head over 8 KiB → 431.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from ..wire.frames import FrameType
from ..wire.limits import ErrorCode
from .counters import CountCollector

__all__ = [
    "CONTENT_TYPE",
    "MAX_REQUEST",
    "REQUEST_TIMEOUT",
    "HealthCheck",
    "Metrics",
    "label",
    "serve_http",
]

log = logging.getLogger(__name__)

#: The exposition format :func:`prometheus_client.generate_latest` writes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Largest request head accepted: a scraper's GET is ~200 bytes; 8 KiB matches nginx's default.
MAX_REQUEST = 8 * 1024
#: Seconds a client gets to send its request: scrapers send at once; slow ones are attacks.
REQUEST_TIMEOUT = 10.0
#: Seconds we keep reading (and discarding) after answering, so the client gets the response.
LINGER_SECONDS = 2.0
#: Most bytes discarded after answering; a client sending more is cut off.
LINGER_BYTES = 64 * 1024
#: Store commits per batch: powers of two up to far beyond a realistic group commit.
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
#: Commit latency: from a page-cache write (0.1 ms) to a struggling disk (2.5 s).
COMMIT_SECONDS_BUCKETS = (
    0.0001,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1,
    2.5,
)

#: Push wake-up sent → device connected: a phone awake on Wi-Fi (0.1 s) to one asleep for hours.
PUSH_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)

#: ``health()`` returns (healthy, details); details are sent as the JSON body.
HealthCheck = Callable[[], tuple[bool, Mapping[str, object]]]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def label(value: FrameType | ErrorCode) -> str:
    """The label value for a frame type or error code: its lower-case name (``"send"``)."""
    return value.name.lower()


class Metrics:
    """The server's metrics, registered in a registry of their own.

    Counters and histograms are plain counts (:mod:`tidings.server.counters`) read at scrape
    time: count with ``metrics.acks.inc()``, ``metrics.frames_received.labels(type="send")
    .inc()`` or the enum-taking helpers below, from one thread per count (the event loop; the
    store thread for the commit histograms). Gauges are ``prometheus_client`` gauges, set
    rarely.

    Attributes:
        registry: the ``CollectorRegistry`` holding every metric here.
        connections: gauge ``tidings_connections``, open client connections.
        queue_depth: gauge ``tidings_queue_depth_items``, items queued over all devices.
        frames_received: counter ``tidings_frames_received_total{type}``.
        frames_sent: counter ``tidings_frames_sent_total{type}``.
        messages_stored: counter ``tidings_messages_stored_total``, sends durably stored.
        messages_duplicate: counter ``tidings_messages_duplicate_total``, retried sends
            recognised by their message id (answered without storing again).
        sends_refused: counter ``tidings_sends_refused_total{code}``.
        sealed_sends: counter ``tidings_sealed_sends_total{result}``, SEALED_SENDs (and
            SEALED_MULTI_SENDs) answered:
            ``stored``, ``duplicate``, or the refusal's error code (no label names an account;
            a sealed send also counts in ``messages_stored``/``sends_refused``).
        acks: counter ``tidings_acks_total``, ACK frames applied.
        items_delivered: counter ``tidings_items_delivered_total``, items removed by an ack.
        items_expired: counter ``tidings_items_expired_total``, items removed by expiry.
        store_commit_batch_size: histogram ``tidings_store_commit_batch_size``, writes per
            group commit.
        store_commit_seconds: histogram ``tidings_store_commit_seconds``, commit latency.
        errors: counter ``tidings_errors_total{code}``, ERROR frames sent (connections failed).
        handshakes: counter ``tidings_handshakes_total{pattern}``, completed Noise handshakes.
        connections_limit: gauge ``tidings_connections_limit``, the cap on connections served.
        connections_refused: counter ``tidings_connections_refused_total{cap}``, connections
            over the ``total`` or ``per_address`` cap (told TOO_MANY_CONNECTIONS, or closed).
        accepting: gauge ``tidings_accepting``, 1 while new connections are accepted.
        accept_pauses: counter ``tidings_accept_pauses_total{reason}``, times accepting stopped:
            at the ``cap``, or out of ``resources`` (EMFILE, ENFILE, ENOBUFS, ENOMEM).
        store_writable: gauge ``tidings_store_writable``, 0 while the store cannot write.
        store_unavailable: counter ``tidings_store_unavailable_total``, requests that failed
            because the store could not write (answered STORE_UNAVAILABLE).
        push_sent: counter ``tidings_push_sent_total{result}``, wake-up POSTs by what the push
            service made of them: ``accepted`` (2xx), ``failed`` (retried), ``gone`` (dead).
        push_wake_latency: histogram ``tidings_push_wake_latency_seconds``, from a wake-up the
            push service accepted to its device's connection.
        node_info: gauge ``tidings_node_info{node}``, 1, labelled with this node's id.
        redis_up: gauge ``tidings_redis_up``, 1 while this node is connected to Redis (0 while
            it polls, and without ``redis_url``).
        hint_publishes: counter ``tidings_hint_publishes_total``, messages published to the
            other nodes (one per flush: a commit batch's devices together).
        hinted_devices: counter ``tidings_hinted_devices_total``, devices named in them.
        hints_received: counter ``tidings_hints_received_total``, other nodes' messages read.
        hints_woken: counter ``tidings_hints_woken_total``, sessions here a hint made read
            the store.
        polls: counter ``tidings_polls_total``, store polls for this node's devices (while
            Redis is down, and once when it is back).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        counts = CountCollector()
        types = [label(t) for t in FrameType]
        codes = [label(c) for c in ErrorCode]
        self.connections = Gauge("tidings_connections", "Open client connections.", registry=r)
        self.queue_depth = Gauge(
            "tidings_queue_depth_items", "Items queued for all devices.", registry=r
        )
        self.frames_received = counts.labelled(
            "tidings_frames_received", "Frames received, by type.", "type", types
        )
        self.frames_sent = counts.labelled(
            "tidings_frames_sent", "Frames sent, by type.", "type", types
        )
        self.messages_stored = counts.count("tidings_messages_stored", "Sends durably stored.")
        self.messages_duplicate = counts.count(
            "tidings_messages_duplicate", "Retried sends already stored."
        )
        self.sends_refused = counts.labelled(
            "tidings_sends_refused", "Sends refused, by error code.", "code", codes
        )
        self.sealed_sends = counts.labelled(
            "tidings_sealed_sends",
            "Sealed sends, by result (stored, duplicate, or the error code).",
            "result",
            ["stored", "duplicate", *codes],
        )
        self.acks = counts.count("tidings_acks", "ACK frames applied.")
        self.items_delivered = counts.count(
            "tidings_items_delivered", "Queue items removed by an ack."
        )
        self.items_expired = counts.count("tidings_items_expired", "Queue items removed by expiry.")
        self.store_commit_batch_size = counts.histogram(
            "tidings_store_commit_batch_size", "Writes per store group commit.", BATCH_SIZE_BUCKETS
        )
        self.store_commit_seconds = counts.histogram(
            "tidings_store_commit_seconds",
            "Duration of store group commits.",
            COMMIT_SECONDS_BUCKETS,
        )
        self.errors = counts.labelled(
            "tidings_errors", "ERROR frames sent, by error code.", "code", codes
        )
        self.handshakes = counts.labelled(
            "tidings_handshakes", "Completed handshakes, by pattern.", "pattern", ()
        )
        self.connections_refused = counts.labelled(
            "tidings_connections_refused",
            "Connections over a connection cap, by cap.",
            "cap",
            ("total", "per_address"),
        )
        self.accept_pauses = counts.labelled(
            "tidings_accept_pauses",
            "Times accepting stopped, by reason (cap, resources).",
            "reason",
            ("cap", "resources"),
        )
        self.store_unavailable = counts.count(
            "tidings_store_unavailable", "Requests failed because the store could not write."
        )
        self.push_sent = counts.labelled(
            "tidings_push_sent",
            "Push wake-up POSTs, by result (accepted, failed, gone).",
            "result",
            ("accepted", "failed", "gone"),
        )
        self.push_wake_latency = counts.histogram(
            "tidings_push_wake_latency_seconds",
            "From a push wake-up accepted by the push service to its device connecting.",
            PUSH_LATENCY_BUCKETS,
        )
        self.connections_limit = Gauge(
            "tidings_connections_limit", "Cap on connections served at once.", registry=r
        )
        self.accepting = Gauge(
            "tidings_accepting", "1 while new connections are accepted.", registry=r
        )
        self.store_writable = Gauge(
            "tidings_store_writable", "0 while the store cannot write.", registry=r
        )
        self.store_writable.set(1)
        self.node_info = Gauge(
            "tidings_node_info", "This relay node's id (value 1).", ["node"], registry=r
        )
        self.redis_up = Gauge(
            "tidings_redis_up", "1 while connected to Redis (cross-node hints).", registry=r
        )
        self.hint_publishes = counts.count(
            "tidings_hint_publishes", "Hint messages published to the other nodes."
        )
        self.hinted_devices = counts.count(
            "tidings_hinted_devices", "Devices named in published hint messages."
        )
        self.hints_received = counts.count(
            "tidings_hints_received", "Hint messages of other nodes read."
        )
        self.hints_woken = counts.count(
            "tidings_hints_woken", "Sessions here that a hint made read the store."
        )
        self.polls = counts.count("tidings_polls", "Store polls for this node's devices.")
        r.register(counts)

    def frame_received(self, frame_type: FrameType) -> None:
        """Count one frame of ``frame_type`` received."""
        self.frames_received.labels(type=label(frame_type)).inc()

    def frame_sent(self, frame_type: FrameType) -> None:
        """Count one frame of ``frame_type`` sent."""
        self.frames_sent.labels(type=label(frame_type)).inc()

    def send_refused(self, code: ErrorCode) -> None:
        """Count one send refused with ``code``."""
        self.sends_refused.labels(code=label(code)).inc()

    def sealed_send(self, code: int, duplicate: bool) -> None:
        """Count one SEALED_SEND answered ``code`` (0: ✓, ``duplicate`` or not)."""
        ok = "duplicate" if duplicate else "stored"
        result = label(ErrorCode(code)) if code else ok
        self.sealed_sends.labels(result=result).inc()

    def error(self, code: ErrorCode) -> None:
        """Count one ERROR frame sent with ``code``."""
        self.errors.labels(code=label(code)).inc()

    def render(self) -> bytes:
        """Return every metric in the Prometheus text format (version 0.0.4)."""
        return generate_latest(self.registry)


# --- HTTP endpoint ------------------------------------------------------------------------------


async def serve_http(
    metrics: Metrics,
    health: HealthCheck,
    host: str,
    port: int,
    *,
    request_timeout: float = REQUEST_TIMEOUT,
) -> asyncio.Server:
    """Start serving ``/metrics`` and ``/healthz`` on ``host:port``.

    Args:
        metrics: the metrics to render on ``GET /metrics``.
        health: called on each ``GET /healthz``; returns (healthy, details). If it raises, the
            answer is 503 ``{"error": ...}`` and the exception is logged.
        host: interface to bind.
        port: TCP port; 0 lets the OS pick (read it from ``server.sockets``).
        request_timeout: seconds a client has to send its request head (then 408).

    Returns:
        The listening ``asyncio.Server``; the caller closes it (``close()``,
        ``await wait_closed()``).
    """

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, headers, body = await _answer(reader, metrics, health, request_timeout)
            writer.write(_response(status, headers, body))
            await writer.drain()
            writer.write_eof()
            await _discard_input(reader)
            writer.close()
            await writer.wait_closed()
        except (ConnectionError, asyncio.IncompleteReadError):
            writer.close()  # the client went away; nothing to answer
        except asyncio.CancelledError:
            # The loop is shutting down. Nobody awaits this task, and Python 3.11's streams
            # log a cancelled handler as an error ("Exception in callback"): end quietly, as
            # 3.12 does.
            writer.transport.abort()

    return await asyncio.start_server(on_connection, host, port, limit=MAX_REQUEST)


_Answer = tuple[int, dict[str, str], bytes]


async def _answer(
    reader: asyncio.StreamReader, metrics: Metrics, health: HealthCheck, timeout: float
) -> _Answer:
    """Read one request head and compute the response (status, headers, body)."""
    try:
        async with asyncio.timeout(timeout):
            head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        return _plain(431, "request head over 8 KiB\n")
    except TimeoutError:
        return _plain(408, "request timeout\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise  # connected and closed without a byte: no answer
        return _plain(400, "incomplete request\n")
    request = _parse_head(head)
    if request is None:
        return _plain(400, "malformed request\n")
    method, path = request
    if method not in ("GET", "HEAD"):
        status, headers, body = _plain(405, "method not allowed\n")
        headers["Allow"] = "GET, HEAD"
    else:
        status, headers, body = _route(path, metrics, health)
    log.debug("%s %s -> %d", method, path, status, extra={"event": "http.request"})
    if method == "HEAD":  # RFC 9110 §9.3.2: GET's headers, Content-Length included; no body
        headers["Content-Length"] = str(len(body))
        body = b""
    return status, headers, body


async def _discard_input(reader: asyncio.StreamReader) -> None:
    """Read what the client still sends, until it closes, briefly and boundedly.

    Closing a socket with unread input makes the kernel send a RST, which can destroy the
    response before the client reads it (the "lingering close" of RFC 9112 §9.6).
    """
    received = 0
    try:
        async with asyncio.timeout(LINGER_SECONDS):
            while received <= LINGER_BYTES and (chunk := await reader.read(MAX_REQUEST)):
                received += len(chunk)
    except TimeoutError:
        pass


def _parse_head(head: bytes) -> tuple[str, str] | None:
    """Return (method, path without query) from an HTTP/1.x request head, or None if malformed."""
    try:
        lines = head.decode("ascii").split("\r\n")
    except UnicodeDecodeError:
        return None
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1].startswith("/"):
        return None
    method, target, _ = parts
    if not method.isalpha() or not method.isupper():
        return None
    for line in lines[1:]:
        if line and (":" not in line or line[0] in " \t"):
            return None  # not "Name: value" (obsolete line folding is refused too)
    return method, target.split("?", 1)[0]


def _route(path: str, metrics: Metrics, health: HealthCheck) -> _Answer:
    if path == "/metrics":
        return 200, {"Content-Type": CONTENT_TYPE}, metrics.render()
    if path == "/healthz":
        try:
            healthy, details = health()
            status = 200 if healthy else 503
        except Exception as exc:
            log.exception("! health check failed", extra={"event": "http.health_failed"})
            status, details = 503, {"error": f"health check failed: {type(exc).__name__}"}
        body = json.dumps(dict(details), default=str, sort_keys=True).encode() + b"\n"
        return status, {"Content-Type": "application/json"}, body
    return _plain(404, "not found\n")


def _plain(status: int, text: str) -> _Answer:
    return status, {"Content-Type": "text/plain; charset=utf-8"}, text.encode()


def _response(status: int, headers: dict[str, str], body: bytes) -> bytes:
    """Serialise a response; every one closes the connection."""
    headers.setdefault("Content-Length", str(len(body)))
    lines = [f"HTTP/1.1 {status} {_REASONS[status]}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += ["Connection: close", "", ""]
    return "\r\n".join(lines).encode("ascii") + body
