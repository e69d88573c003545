"""What several relay nodes share through Redis beyond hints (issue 14; docs/nodes.md): the
rate limits, which are the relay's and not each node's, and the push subscriptions, which a
node may have to use though a device registered it on another.

Two :class:`~tidings.server.app.Relay` nodes in this process on one PostgreSQL database and a
Redis of the test's own (the fixtures of ``test_cluster.py``). Nothing sleeps: each wait is on
an event the node under test sets when it applies what the other node said.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.harness import TIMEOUT, free_port
from tests.redisd import RedisServer
from tests.server.noise_ws import NoiseWS, error_codes
from tests.server.test_cluster import NEVER, Nodes, redisd, registered, url  # noqa: F401
from tidings.noise import generate_keypair
from tidings.server.app import Relay
from tidings.server.config import ServerConfig
from tidings.store import DeviceRef, PostgresStore
from tidings.wire import PROTOCOL_VERSION, ErrorCode, Register, Registered


async def start_nodes(database: str, redis_url: str, **options: Any) -> list[Relay]:
    relays: list[Relay] = []
    for name in ("a", "b"):  # one after the other: the first one migrates the schema
        config = ServerConfig(
            store=database,
            redis_url=redis_url,
            node_id=name,
            port=0,
            metrics_port=free_port(),
            log_level="warning",
            **options,
        )
        relay = Relay(config, PostgresStore(database), generate_keypair(os.urandom)[0])
        assert relay.cluster is not None
        relay.cluster.poll_interval = NEVER
        relays.append(relay)
        await relay.start()
    return relays


@pytest.fixture
async def limited(url: str, redisd: RedisServer) -> AsyncIterator[Nodes]:  # noqa: F811
    relays: list[Relay] = []
    try:
        relays = await start_nodes(
            url, redisd.url, address_registrations_per_hour=2, push_allow_private=True
        )
        yield Nodes(*relays)
    finally:
        for relay in relays:
            await relay.stop()


class Applied:
    """Wraps one of a node's cluster-host methods: counts its calls, and lets a test wait for
    the next one."""

    def __init__(self, relay: Relay, name: str) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self._event = asyncio.Event()
        inner: Callable[..., Any] = getattr(relay, name)

        def wrapper(*args: Any) -> Any:
            self.calls.append(args)
            self._event.set()
            return inner(*args)

        setattr(relay, name, wrapper)  # the cluster calls it through the instance

    async def next_call(self) -> None:
        async with asyncio.timeout(TIMEOUT):
            await self._event.wait()
        self._event.clear()


async def register_code(ws_url: str, account: str) -> int:
    """REGISTER ``account``: 0 if REGISTERED, else the code of the ERROR it was closed with."""
    peer = await NoiseWS.open(ws_url)
    await peer.send(Register(PROTOCOL_VERSION, account, account, None))
    frames = await peer.next_or_close()
    if frames is not None and isinstance(frames[0], Registered):
        await peer.ws.close()
        return 0
    codes = error_codes(frames or [])
    return codes[0] if codes else -1


async def test_a_rate_limit_spent_on_one_node_is_spent_on_the_other(limited: Nodes) -> None:
    applied = Applied(limited.b, "apply_takes")
    for account in ("ann", "ben"):  # the address's two registrations of the hour, on node a
        assert await register_code(limited.ws(limited.a), account) == 0
    assert limited.a.cluster is not None
    await limited.a.cluster.settle()
    while sum(len(takes) for (takes,) in applied.calls) < 1:
        await applied.next_call()
    (name, key, count) = applied.calls[0][0][0]
    assert (name, key) == ("registrations", "127.0.0.1") and count >= 1
    while sum(c for (takes,) in applied.calls for (_, _, c) in takes) < 2:
        await applied.next_call()
    # Node b never saw a registration from this address, but the relay's budget is spent.
    assert await register_code(limited.ws(limited.b), "cat") == ErrorCode.RATE_LIMITED
    assert await register_code(limited.ws(limited.a), "dan") == ErrorCode.RATE_LIMITED


async def test_a_node_ignores_malformed_takes_and_applies_the_rest(limited: Nodes) -> None:
    takes: Sequence[tuple[str, object, float]] = [
        ("no-such-budget", "x", 1.0),
        ("registrations", ["not", "text"], 1.0),
        ("one_time", ["bob", -1], 1.0),
        ("registrations", "198.51.100.7", 2.0),
    ]
    assert limited.b.apply_takes(takes) == 3
    now = limited.b.monotonic()
    assert limited.b.limits.register("198.51.100.7", now) > 0  # the valid take counted
    assert limited.b.limits.register("198.51.100.8", now) == 0.0


def _subscription_keys() -> tuple[bytes, bytes]:
    point = ec.generate_private_key(ec.SECP256R1()).public_key()
    raw = point.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return raw, os.urandom(16)


async def test_a_push_subscription_made_on_one_node_is_known_to_the_other(
    limited: Nodes,
) -> None:
    bob = await registered(limited.ws(limited.a), "bob")
    ref = DeviceRef("bob", 1)
    replaced = Applied(limited.b, "reload_push")
    assert limited.b.push.scheduler.get(ref) is None
    p256dh, auth = _subscription_keys()
    endpoint = "https://127.0.0.1:9/push/bob"
    await limited.a.push.register(ref, endpoint, p256dh, auth, limited.a.now())
    await replaced.next_call()
    async with asyncio.timeout(TIMEOUT):
        while (sub := limited.b.push.scheduler.get(ref)) is None:
            await limited.b.push.changed().wait()
    assert (sub.endpoint, sub.p256dh, sub.auth) == (endpoint, p256dh, auth)

    await limited.a.push.unregister(ref)
    await replaced.next_call()
    async with asyncio.timeout(TIMEOUT):
        while limited.b.push.scheduler.get(ref) is not None:
            await limited.b.push.changed().wait()
    await bob.ws.close()
