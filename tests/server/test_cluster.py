"""Two relay nodes on one PostgreSQL database and a Redis of the test's own (docs/nodes.md).

Each node is a :class:`~tidings.server.app.Relay` in this process, with its own store
connections, listener and :class:`~tidings.server.cluster.Cluster`. Devices are raw clients
(tests/server/noise_ws.py) that speak frames by hand. Nothing sleeps: waits are on frames, on
the nodes' log records and on :meth:`Cluster.settle`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import pgdb
from tests.harness import TIMEOUT, free_port, http_get
from tests.redisd import RedisServer
from tests.server.noise_ws import NoiseWS, error_codes
from tidings.errors import ConfigError, StartupError
from tidings.noise import generate_keypair
from tidings.server.app import Relay
from tidings.server.config import ServerConfig
from tidings.server.wakeups import PushAnswer
from tidings.store import DeviceRef, MemoryStore, PostgresStore, PushSubscription
from tidings.wire import (
    PROTOCOL_VERSION,
    Deliver,
    ErrorCode,
    Frame,
    Hello,
    LinkCode,
    LinkCodeRequest,
    Register,
    Registered,
    Send,
    Sent,
    Target,
    Unlink,
    Welcome,
)

#: A poll interval no test waits for: what arrives, arrived through a hint.
NEVER = 3600.0


class LogWatch(logging.Handler):
    """Keeps the messages of the ``tidings`` loggers; :meth:`until` waits for a condition."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self.changed.set()

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    async def until(self, check: Callable[[], bool]) -> None:
        async with asyncio.timeout(TIMEOUT):
            while not check():
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def url() -> AsyncIterator[str]:
    name = await pgdb.create_database("tidings_cluster")
    try:
        yield pgdb.url_of(name)
    finally:
        await pgdb.drop_database(name)


@pytest.fixture
async def redisd(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path)
    await server.start()
    try:
        yield server
    finally:
        await server.kill()


@pytest.fixture
async def watch(caplog: pytest.LogCaptureFixture) -> AsyncIterator[LogWatch]:
    caplog.set_level(logging.INFO, "tidings")
    handler = LogWatch()
    logger = logging.getLogger("tidings.server")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@dataclass
class Nodes:
    a: Relay
    b: Relay

    def ws(self, relay: Relay) -> str:
        assert relay.address is not None
        return f"ws://{relay.address[0]}:{relay.address[1]}/v1"


@pytest.fixture
async def nodes(url: str, redisd: RedisServer) -> AsyncIterator[Nodes]:
    relays: list[Relay] = []
    try:
        for name in ("a", "b"):  # one after the other: the first one migrates the schema
            config = ServerConfig(
                store=url,
                redis_url=redisd.url,
                node_id=name,
                port=0,
                metrics_port=free_port(),
                log_level="warning",
            )
            relay = Relay(config, PostgresStore(url), generate_keypair(os.urandom)[0])
            assert relay.cluster is not None
            relay.cluster.poll_interval = NEVER
            await relay.start()
            relays.append(relay)
        yield Nodes(*relays)
    finally:
        for relay in relays:
            await relay.stop()


async def registered(url: str, account: str, code: bytes | None = None) -> NoiseWS:
    """A new device of ``account`` (a new account without ``code``), after its WELCOME."""
    peer = await NoiseWS.open(url)
    await peer.send(Register(PROTOCOL_VERSION, account, account, code))
    [answer] = await peer.next()
    assert isinstance(answer, Registered), answer
    await peer.send(Hello(PROTOCOL_VERSION, 0))
    await next_of(peer, Welcome)
    return peer


async def next_of(peer: NoiseWS, kind: type[Frame]) -> Frame:
    """The next frame of type ``kind`` (frames of other types are dropped)."""
    while True:
        [frame] = await peer.next()
        if isinstance(frame, kind):
            return frame


async def send(peer: NoiseWS, to: str, body: bytes, mid: bytes) -> None:
    await peer.send(Send(mid, to, (Target(to, 1, body),)))
    sent = await next_of(peer, Sent)
    assert isinstance(sent, Sent) and sent.message_id == mid


def count(relay: Relay, name: str) -> float:
    value = relay.metrics.registry.get_sample_value(name)
    return 0.0 if value is None else value


async def healthz(relay: Relay) -> tuple[int, dict[str, object]]:
    assert relay.metrics_address is not None
    status, _, body = await http_get(*relay.metrics_address, "/healthz")
    details = json.loads(body)
    assert isinstance(details, dict)
    return status, details


async def test_a_send_on_one_node_reaches_a_device_on_the_other_through_a_hint(
    nodes: Nodes,
) -> None:
    bob = await registered(nodes.ws(nodes.b), "bob")
    alice = await registered(nodes.ws(nodes.a), "alice")
    await send(alice, "bob", b"hello across", b"m" * 16)
    deliver = await next_of(bob, Deliver)  # the poll interval is an hour: only a hint could
    assert isinstance(deliver, Deliver) and deliver.payload == b"hello across"
    assert count(nodes.b, "tidings_hints_woken_total") == 1
    assert count(nodes.a, "tidings_hint_publishes_total") >= 1
    assert count(nodes.a, "tidings_node_info") == 0  # labelled: the plain name has no sample
    labels = {"node": "a"}
    assert nodes.a.metrics.registry.get_sample_value("tidings_node_info", labels) == 1


async def test_a_burst_of_sends_costs_at_most_one_publish_per_commit(nodes: Nodes) -> None:
    bob = await registered(nodes.ws(nodes.b), "bob")
    alice = await registered(nodes.ws(nodes.a), "alice")
    assert nodes.a.cluster is not None
    # Hints of items only: the rate-limit takes of the sends ride along or go every
    # TAKES_FLUSH_DELAY on their own (tests/server/test_cluster_shared.py).
    nodes.a.limits.on_take = None
    await nodes.a.cluster.settle()
    publishes = count(nodes.a, "tidings_hint_publishes_total")
    commits = nodes.a.store.stats.commits
    burst = 40
    mids = [i.to_bytes(16, "big") for i in range(1, burst + 1)]
    await alice.send(*(Send(mid, "bob", (Target("bob", 1, b"x"),)) for mid in mids))
    got = [await next_of(bob, Deliver) for _ in mids]
    assert [d.message_id for d in got if isinstance(d, Deliver)] == mids
    await nodes.a.cluster.settle()
    published = count(nodes.a, "tidings_hint_publishes_total") - publishes
    assert 1 <= published <= nodes.a.store.stats.commits - commits  # never one per send
    assert published < burst


async def test_with_redis_down_delivery_goes_on_by_polling_and_hints_resume(
    nodes: Nodes, redisd: RedisServer, watch: LogWatch
) -> None:
    bob = await registered(nodes.ws(nodes.b), "bob")
    alice = await registered(nodes.ws(nodes.a), "alice")
    for relay in (nodes.a, nodes.b):
        status, details = await healthz(relay)
        assert (status, details["redis"], details["node"]) == (200, "up", relay.node_id)
    assert nodes.b.cluster is not None
    nodes.b.cluster.poll_interval = 0.05
    await redisd.kill()
    await watch.until(lambda: watch.count("redis down") >= 1)
    await send(alice, "bob", b"while redis is down", b"d" * 16)
    deliver = await next_of(bob, Deliver)
    assert isinstance(deliver, Deliver) and deliver.payload == b"while redis is down"
    await watch.until(lambda: watch.count("redis down") == 2)  # both nodes noticed, once each
    status, details = await healthz(nodes.b)
    assert (status, details["redis"], details["store"]) == (200, "down (polling)", "ok")
    assert count(nodes.b, "tidings_redis_up") == 0

    await redisd.start()
    await watch.until(lambda: watch.count("redis up") == 2)  # each node, once
    assert watch.count("redis down") == 2  # the failed attempts in between logged nothing
    nodes.b.cluster.poll_interval = NEVER
    woken = count(nodes.b, "tidings_hints_woken_total")
    await send(alice, "bob", b"hints again", b"h" * 16)
    deliver = await next_of(bob, Deliver)
    assert isinstance(deliver, Deliver) and deliver.payload == b"hints again"
    assert count(nodes.b, "tidings_hints_woken_total") == woken + 1
    status, details = await healthz(nodes.b)
    assert (status, details["redis"]) == (200, "up")


async def test_an_unlink_on_one_node_closes_the_session_on_the_other(nodes: Nodes) -> None:
    first = await registered(nodes.ws(nodes.a), "alice")
    await first.send(LinkCodeRequest(1))
    code = await next_of(first, LinkCode)
    assert isinstance(code, LinkCode)
    second = await registered(nodes.ws(nodes.b), "alice", code.code)
    await first.send(Unlink(2, 2))
    closed, frames = await second.close_seen()
    assert closed == 1008 and error_codes(frames) == [int(ErrorCode.UNKNOWN_DEVICE)]


async def test_presence_says_where_a_device_is_connected(nodes: Nodes, watch: LogWatch) -> None:
    assert nodes.a.cluster is not None and nodes.b.cluster is not None
    bob = await registered(nodes.ws(nodes.b), "bob")
    await nodes.b.cluster.settle()
    ref = DeviceRef("bob", 1)
    assert await nodes.a.cluster.connected_elsewhere(ref)
    assert not await nodes.b.cluster.connected_elsewhere(ref)  # here, not elsewhere
    assert await woken_by(nodes.a, ref) == []  # node a does not push a device on node b
    await bob.ws.close()
    await watch.until(lambda: ref not in nodes.b.sessions)  # its "closed" line, then detach
    await nodes.b.cluster.settle()
    assert not await nodes.a.cluster.connected_elsewhere(ref)
    assert await woken_by(nodes.a, ref) == [ref]  # offline now: woken


async def woken_by(relay: Relay, ref: DeviceRef) -> list[DeviceRef]:
    """Which devices ``relay``'s push sender POSTs to when an item is queued for ``ref`` (a
    subscription made here for the test; the POST is recorded, not sent)."""
    push = relay.push
    posted: list[DeviceRef] = []

    async def post(sub: PushSubscription) -> PushAnswer:
        posted.append(sub.device)
        return PushAnswer(201)

    setattr(push, "post", post)  # noqa: B010  (an instance's method, for this test)
    now = relay.now()
    push.scheduler.subscribe(PushSubscription(ref, "https://push.example/x", b"k", b"a", now))
    push.queued(ref)
    for sub in push.scheduler.due(now + NEVER):
        await push._attempt(sub)
    push.scheduler.unsubscribe(ref)
    return posted


async def test_a_poll_reads_the_last_seqs_of_many_devices_in_one_statement(nodes: Nodes) -> None:
    bob = await registered(nodes.ws(nodes.b), "bob")
    alice = await registered(nodes.ws(nodes.a), "alice")
    await send(alice, "bob", b"one", b"1" * 16)
    await next_of(bob, Deliver)
    store = nodes.a.store
    assert isinstance(store, PostgresStore)
    seqs = await store.last_seqs([DeviceRef("bob", 1), DeviceRef("alice", 1), DeviceRef("zed", 1)])
    assert seqs == {DeviceRef("bob", 1): 1, DeviceRef("alice", 1): 0}  # no row for zed


def test_redis_needs_the_postgresql_store() -> None:
    with pytest.raises(ConfigError, match="needs the PostgreSQL store"):
        ServerConfig(redis_url="redis://127.0.0.1:6379/0")


def test_redis_on_a_store_other_than_postgresql_does_not_start() -> None:
    config = ServerConfig(store="postgresql://x@127.0.0.1/x", redis_url="redis://127.0.0.1/0")
    with pytest.raises(StartupError, match="needs the PostgreSQL store"):
        Relay(config, MemoryStore(), generate_keypair(os.urandom)[0])
