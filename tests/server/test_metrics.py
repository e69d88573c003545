"""Tests for tidings.server.metrics: the registry, and the HTTP endpoint over real loopback."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tidings.server.metrics import (
    CONTENT_TYPE,
    MAX_REQUEST,
    HealthCheck,
    Metrics,
    label,
    serve_http,
)
from tidings.wire.frames import FrameType
from tidings.wire.limits import ErrorCode

EXPECTED = {
    "tidings_connections": "gauge",
    "tidings_queue_depth_items": "gauge",
    "tidings_frames_received": "counter",
    "tidings_frames_sent": "counter",
    "tidings_messages_stored": "counter",
    "tidings_messages_duplicate": "counter",
    "tidings_sends_refused": "counter",
    "tidings_acks": "counter",
    "tidings_items_delivered": "counter",
    "tidings_items_expired": "counter",
    "tidings_store_commit_batch_size": "histogram",
    "tidings_store_commit_seconds": "histogram",
    "tidings_errors": "counter",
    "tidings_handshakes": "counter",
    # connection caps, the accept loop, the store's health (issue 8)
    "tidings_connections_limit": "gauge",
    "tidings_connections_refused": "counter",
    "tidings_accepting": "gauge",
    "tidings_accept_pauses": "counter",
    "tidings_store_writable": "gauge",
    "tidings_store_unavailable": "counter",
    # push wake-ups (issue 13)
    "tidings_push_sent": "counter",
    "tidings_push_wake_latency_seconds": "histogram",
    # several nodes (issue 14)
    "tidings_node_info": "gauge",
    "tidings_redis_up": "gauge",
    "tidings_hint_publishes": "counter",
    "tidings_hinted_devices": "counter",
    "tidings_hints_received": "counter",
    "tidings_hints_woken": "counter",
    "tidings_polls": "counter",
    # sealed sender (issue 12)
    "tidings_sealed_sends": "counter",
}


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


# --- Metrics ------------------------------------------------------------------------------------


def test_every_metric_is_exposed_with_its_type() -> None:
    families = {f.name: f.type for f in text_string_to_metric_families(Metrics().render().decode())}
    assert families == EXPECTED


def test_registries_are_independent() -> None:
    a, b = Metrics(), Metrics()  # would raise "Duplicated timeseries" on a shared registry
    a.acks.inc(3)
    assert sample(a, "tidings_acks_total") == 3
    assert sample(b, "tidings_acks_total") == 0


def test_enum_labels_exist_at_zero() -> None:
    m = Metrics()
    assert sample(m, "tidings_frames_received_total", type="deliver") == 0
    assert sample(m, "tidings_sends_refused_total", code="rate_limited") == 0
    assert sample(m, "tidings_errors_total", code="malformed_frame") == 0


def test_helpers_count_by_label() -> None:
    m = Metrics()
    m.frame_received(FrameType.SEND)
    m.frame_received(FrameType.SEND)
    m.frame_sent(FrameType.DELIVER)
    m.send_refused(ErrorCode.QUEUE_FULL)
    m.error(ErrorCode.KEEPALIVE_TIMEOUT)
    m.handshakes.labels(pattern="IK").inc()
    assert sample(m, "tidings_frames_received_total", type="send") == 2
    assert sample(m, "tidings_frames_sent_total", type="deliver") == 1
    assert sample(m, "tidings_sends_refused_total", code="queue_full") == 1
    assert sample(m, "tidings_errors_total", code="keepalive_timeout") == 1
    assert sample(m, "tidings_handshakes_total", pattern="IK") == 1
    assert label(FrameType.LINK_CODE_REQUEST) == "link_code_request"


def test_gauges_and_histograms() -> None:
    m = Metrics()
    m.connections.inc()
    m.connections.inc()
    m.connections.dec()
    m.queue_depth.set(1234)
    m.store_commit_batch_size.observe(3)
    m.store_commit_seconds.observe(0.002)
    assert sample(m, "tidings_connections") == 1
    assert sample(m, "tidings_queue_depth_items") == 1234
    assert sample(m, "tidings_store_commit_batch_size_bucket", le="4.0") == 1
    assert sample(m, "tidings_store_commit_batch_size_bucket", le="2.0") == 0
    assert sample(m, "tidings_store_commit_seconds_count") == 1


# --- HTTP endpoint ------------------------------------------------------------------------------
#
# Real loopback sockets on port 0, no sleeps. Each test runs a private loop (``serve``) rather
# than being ``async def``: with pytest-asyncio 1.5 + looptime 0.9, looptime's
# ``pytest_pyfunc_call`` makes the policy create a "current" loop that nobody closes; replacing
# it (as pytest-asyncio's runner or ``asyncio.run`` do) gets it collected unclosed, and
# ``filterwarnings = error`` turns that ResourceWarning into a failure. A runner with its own
# ``loop_factory`` never touches the current loop.

T = TypeVar("T")
Response = tuple[int, dict[str, str], bytes]


class Endpoint:
    """A running endpoint on 127.0.0.1:<free port> with a switchable health answer."""

    def __init__(self, server: asyncio.Server, metrics: Metrics) -> None:
        self.server = server
        self.metrics = metrics
        self.port: int = server.sockets[0].getsockname()[1]

    async def request(self, raw: bytes) -> Response:
        """Send ``raw``, read to EOF (the server closes), return (status, headers, body)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(raw)
        await writer.drain()
        response = await reader.read()
        writer.close()
        await writer.wait_closed()
        head, _, body = response.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("ascii").split("\r\n")
        version, status, _ = status_line.split(" ", 2)
        assert version == "HTTP/1.1"
        headers = dict(line.split(": ", 1) for line in header_lines)
        return int(status), headers, body

    async def get(self, path: str) -> Response:
        return await self.request(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())


class Health:
    """A health check whose answer the test sets."""

    def __init__(self) -> None:
        self.healthy = True
        self.details: dict[str, object] = {"store": "ok", "connections": 0}
        self.fail = False

    def __call__(self) -> tuple[bool, Mapping[str, object]]:
        if self.fail:
            raise RuntimeError("db gone")
        return self.healthy, self.details


def serve(
    scenario: Callable[[Endpoint], Awaitable[T]],
    health: HealthCheck | None = None,
    metrics: Metrics | None = None,
    **kwargs: float,
) -> T:
    """Start an endpoint, run ``scenario`` against it, stop it; return the scenario's result."""

    async def main() -> T:
        m = metrics or Metrics()
        server = await serve_http(m, health or Health(), "127.0.0.1", 0, **kwargs)
        try:
            return await scenario(Endpoint(server, m))
        finally:
            server.close()
            await server.wait_closed()

    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        return runner.run(main())


def get(path: str, health: HealthCheck | None = None, metrics: Metrics | None = None) -> Response:
    return serve(lambda ep: ep.get(path), health, metrics)


def request(raw: bytes) -> Response:
    return serve(lambda ep: ep.request(raw))


def test_get_metrics() -> None:
    metrics = Metrics()
    metrics.acks.inc(5)
    status, headers, body = get("/metrics", metrics=metrics)
    assert status == 200
    assert headers["Content-Type"] == CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
    assert headers["Connection"] == "close"
    assert int(headers["Content-Length"]) == len(body)
    assert b"\ntidings_acks_total 5.0\n" in body
    assert b"_created" not in body


def test_query_string_is_ignored() -> None:
    assert get("/metrics?name[]=tidings_acks_total")[0] == 200


def test_healthz_healthy() -> None:
    status, headers, body = get("/healthz")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"store": "ok", "connections": 0}


def test_healthz_unhealthy() -> None:
    health = Health()
    health.healthy = False
    health.details = {"store": "commit failing"}
    status, _, body = get("/healthz", health)
    assert status == 503
    assert json.loads(body) == {"store": "commit failing"}


def test_healthz_check_raising_is_503(caplog: pytest.LogCaptureFixture) -> None:
    health = Health()
    health.fail = True
    with caplog.at_level(logging.ERROR, logger="tidings.server.metrics"):
        status, _, body = get("/healthz", health)
    assert status == 503
    assert json.loads(body) == {"error": "health check failed: RuntimeError"}
    assert "health check failed" in caplog.text


def test_head_has_headers_without_body() -> None:
    status, headers, body = request(b"HEAD /healthz HTTP/1.1\r\n\r\n")
    assert status == 200
    assert body == b""
    assert int(headers["Content-Length"]) > 0


@pytest.mark.parametrize("path", ["/", "/metrics/", "/admin", "/healthz/x"])
def test_unknown_path_is_404(path: str) -> None:
    assert get(path)[0] == 404


def test_other_method_is_405() -> None:
    status, headers, _ = request(b"POST /metrics HTTP/1.1\r\n\r\n")
    assert status == 405
    assert headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /metrics\r\n\r\n",  # no version
        b"GET /metrics HTTP/2\r\n\r\n",
        b"GET  /metrics HTTP/1.1\r\n\r\n",
        b"get /metrics HTTP/1.1\r\n\r\n",
        b"GET metrics HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
        b"GET /m\xe9trics HTTP/1.1\r\n\r\n",
        b"\r\n\r\n",
    ],
)
def test_malformed_request_is_400(raw: bytes) -> None:
    assert request(raw)[0] == 400


async def _send_then_eof(ep: Endpoint, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", ep.port)
    writer.write(raw)
    writer.write_eof()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    return response


def test_incomplete_request_is_400() -> None:
    response = serve(lambda ep: _send_then_eof(ep, b"GET /metrics HTTP/1.1\r\n"))
    assert response.startswith(b"HTTP/1.1 400 ")


def test_oversized_request_is_refused() -> None:
    padding = b"X-Pad: " + b"a" * MAX_REQUEST + b"\r\n"
    assert request(b"GET /metrics HTTP/1.1\r\n" + padding + b"\r\n")[0] == 431


def test_oversized_request_without_end_is_refused() -> None:
    assert request(b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * (4 * MAX_REQUEST))[0] == 431


def test_request_of_exactly_the_limit_is_served() -> None:
    start = b"GET /metrics HTTP/1.1\r\n"
    pad_len = MAX_REQUEST - len(start) - len(b"X-Pad: \r\n\r\n")
    raw = start + b"X-Pad: " + b"a" * pad_len + b"\r\n\r\n"
    assert len(raw) == MAX_REQUEST
    assert request(raw)[0] == 200


def test_connect_and_close_without_request() -> None:
    async def scenario(ep: Endpoint) -> tuple[bytes, Response]:
        silent = await _send_then_eof(ep, b"")
        return silent, await ep.get("/metrics")  # the server is still serving

    silent, (status, _, _) = serve(scenario)
    assert silent == b""
    assert status == 200


def test_silent_client_gets_408() -> None:
    async def scenario(ep: Endpoint) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", ep.port)
        response = await reader.read()  # we send nothing; the deadline has already passed
        writer.close()
        await writer.wait_closed()
        return response

    assert serve(scenario, request_timeout=0.0).startswith(b"HTTP/1.1 408 ")


def test_concurrent_requests() -> None:
    async def scenario(ep: Endpoint) -> list[Response]:
        return await asyncio.gather(*(ep.get("/metrics") for _ in range(20)))

    assert {status for status, _, _ in serve(scenario)} == {200}


def test_plain_counts_render_as_prometheus_client_own_metrics_would() -> None:
    """The scrape-time counts (tidings.server.counters) against prometheus_client's own
    Counter and Histogram fed the same values: the same samples, bucket by bucket."""
    from prometheus_client import CollectorRegistry, Counter, Histogram

    from tidings.server.counters import CountCollector

    ours, theirs = CollectorRegistry(), CollectorRegistry()
    counts = CountCollector()
    buckets = (0.0001, 0.001, 0.25, 1, 2.5)
    mine_h = counts.histogram("h_seconds", "h", buckets)
    their_h = Histogram("h_seconds", "h", buckets=buckets, registry=theirs)
    mine_c = counts.labelled("c", "c", "type", ("a",))
    their_c = Counter("c", "c", ["type"], registry=theirs)
    ours.register(counts)
    for v in (0.00005, 0.0001, 0.0002, 0.25, 0.3, 2.5, 7.0, 0.0):
        mine_h.observe(v)
        their_h.observe(v)
    for t, n in (("a", 2), ("b", 3), ("a", 1)):
        mine_c.labels(type=t).inc(n)
        their_c.labels(type=t).inc(n)

    def samples(registry: CollectorRegistry) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
        return {
            (s.name, tuple(sorted(s.labels.items())), s.value)
            for family in registry.collect()
            for s in family.samples
            if not s.name.endswith("_created")
        }

    assert samples(ours) == samples(theirs)
    assert ours.get_sample_value("h_seconds_bucket", {"le": "+Inf"}) == 8


def test_sealed_sends_are_counted_by_result_without_accounts() -> None:
    metrics = Metrics()
    metrics.sealed_send(0, False)
    metrics.sealed_send(0, True)
    metrics.sealed_send(int(ErrorCode.ACCESS_DENIED), False)
    name = "tidings_sealed_sends_total"
    assert sample(metrics, name, result="stored") == 1
    assert sample(metrics, name, result="duplicate") == 1
    assert sample(metrics, name, result="access_denied") == 1
