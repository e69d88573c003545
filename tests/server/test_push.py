"""Push wake-ups end to end (issue 13): a real relay, real clients, and a real Web Push service on
loopback (:mod:`tests.server.push_receiver`). A device registers a subscription, goes offline;
a message for it makes the relay POST a content-free wake-up, which the test decrypts and
inspects; the push service failing (5xx, a timeout, 410) delays or stops wake-ups, never a
message: in every case the device gets every message when it connects.

Time on the relay is the lab's fake clock: a retry's backoff passes when the test advances it
and pokes the sender (``relay.push.poke()``), never by waiting.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.harness import TIMEOUT, ClientLab, ObservedRelay, Peer, RelayLab, is_received, is_status
from tests.server.push_receiver import PushService, Received
from tidings.client import PushDead
from tidings.client.events import ClientEvent
from tidings.delivery import Status
from tidings.errors import RefusedError
from tidings.push import vapid, webpush
from tidings.push.webpush import PushKeys
from tidings.server.limits import PUSH_REQUESTS_PER_HOUR
from tidings.server.wake_schedule import WakeTiming
from tidings.server.wakeups import NONCE_LEN, PUSH_TTL, TOPIC, URGENCY
from tidings.store import DeviceRef, SQLiteStore
from tidings.wire import ErrorCode, PushState

#: No jitter, so the test knows each retry's time: 5 s, 10 s, 20 s, …
TIMING = WakeTiming(retry_base=5.0, retry_cap=60.0, jitter=0.0)

#: The request headers a wake-up may carry: RFC 8030's, RFC 8291's, RFC 8292's, and HTTP's own.
ALLOWED_HEADERS = {
    "host",
    "ttl",
    "urgency",
    "topic",
    "content-encoding",
    "content-type",
    "content-length",
    "authorization",
    "accept",
    "accept-encoding",
    "user-agent",
}


@pytest.fixture
async def service() -> AsyncIterator[PushService]:
    push = PushService()
    await push.start()
    yield push
    await push.close()


async def start_relay(relays: RelayLab, **overrides: object) -> ObservedRelay:
    relays.relay_options = {"push_timing": TIMING, **relays.relay_options}
    return await relays.start(push_allow_private=True, **overrides)


async def subscribe(peer: Peer, service: PushService) -> PushKeys:
    """Make ``peer``'s subscription at ``service`` and register it with the relay."""
    keys = PushKeys.generate(os.urandom)
    status = await peer.client.push_register(service.endpoint(str(peer.me)), keys.public, keys.auth)
    assert status.state == PushState.ACTIVE
    return keys


async def offline(relay: ObservedRelay, peer: Peer) -> None:
    """Close ``peer``'s client and wait until the relay dropped its session."""
    detached = asyncio.Event()
    detach = relay.detach

    def watched(session: object) -> None:
        detach(session)  # type: ignore[arg-type]
        detached.set()

    setattr(relay, "detach", watched)  # noqa: B010  (an instance's method, for this test)
    await peer.client.close()
    async with asyncio.timeout(TIMEOUT):
        while peer.me in relay.sessions:
            detached.clear()
            await detached.wait()


async def pair(relays: RelayLab, clients: ClientLab) -> tuple[Peer, Peer]:
    """alice and bob, with a session between them (so bob's keys are on the relay)."""
    alice = await clients.new("alice")
    bob = await clients.new("bob")
    first = await alice.client.send("bob", "hello")
    await bob.until(is_received(first))
    return alice, bob


async def sent(alice: Peer, text: str) -> bytes:
    """alice sends ``text`` to bob and waits for its ✓ (stored by the relay)."""
    mid = await alice.client.send("bob", text)
    await alice.until(is_status(mid, Status.SENT))
    return mid


async def receives_all(clients: ClientLab, home: Path, ids: list[bytes]) -> Peer:
    """Start the device of ``home`` again; it gets every message of ``ids``."""
    peer = await clients.start(home)
    for mid in ids:
        await peer.until(is_received(mid))
    return peer


def check_content_free(
    got: Received, keys: PushKeys, relay: ObservedRelay, ids: list[bytes]
) -> None:
    """The wake-up decrypts to a bare nonce; nothing in it or its headers names anyone."""
    plaintext = webpush.decrypt(got.body, keys)
    assert len(plaintext) == NONCE_LEN
    headers = {k.lower(): v for k, v in got.headers.items()}
    assert set(headers) <= ALLOWED_HEADERS, set(headers) - ALLOWED_HEADERS
    assert headers["ttl"] == str(PUSH_TTL)
    assert headers["urgency"] == URGENCY
    assert headers["topic"] == TOPIC
    assert headers["content-encoding"] == "aes128gcm"
    endpoint = f"http://{headers['host']}{got.path}"
    claims = vapid.verify(headers["authorization"], endpoint, relay.now())
    assert headers["authorization"].endswith("k=" + vapid.b64url(relay.push.vapid_public))
    assert set(claims) == {"aud", "exp", "sub"}
    everything = got.body + plaintext + repr(headers).encode()
    for secret in (b"alice", b"bob", b"hello", *ids, *(i.hex().encode() for i in ids)):
        assert secret not in everything


def latency_count(relay: ObservedRelay) -> float:
    value = relay.metrics.registry.get_sample_value("tidings_push_wake_latency_seconds_count")
    return value or 0.0


# ---------------------------------------------------------------- delivered


async def test_an_offline_device_is_woken_once_with_nothing_in_the_wake_up(
    relays: RelayLab,
    clients: ClientLab,
    service: PushService,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tidings")
    relay = await start_relay(relays)
    alice, bob = await pair(relays, clients)
    keys = await subscribe(bob, service)
    await offline(relay, bob)

    ids = [await sent(alice, "secret words")]
    got = await service.next()
    assert got.path == f"/push/{bob.me}"
    check_content_free(got, keys, relay, ids)
    await until_state(relay, bob.me, lambda s: s.wake_sent_at is not None)
    ids += [await sent(alice, f"more {i}") for i in range(3)]  # coalesced: no second wake-up
    state = relay.push.scheduler.get(bob.me)
    assert state is not None and state.wake_attempts == 0  # accepted, and none since
    assert state.wake_sent_at is not None
    assert relay.push.scheduler.next_deadline() == state.wake_sent_at + TIMING.rewake_after

    relays.clock.advance(2.5)  # the device wakes 2.5 s (of relay time) after the push
    await receives_all(clients, bob.home, ids)
    assert latency_count(relay) == 1
    assert relay.metrics.registry.get_sample_value("tidings_push_wake_latency_seconds_sum") == 2.5
    # and per device in the relay's log (a JSON log has them as fields)
    (woke,) = [r for r in caplog.records if getattr(r, "event", None) == "push.woke"]
    assert (woke.device, woke.latency) == (str(bob.me), 2.5)  # type: ignore[attr-defined]
    assert (
        relay.metrics.registry.get_sample_value("tidings_push_sent_total", {"result": "accepted"})
        == 1
    )
    (stored,) = await relay.store.push_subscriptions()
    assert stored.wake_since is None and stored.wake_attempts == 0  # cleared, durably


async def test_a_connected_device_is_not_woken(
    relays: RelayLab, clients: ClientLab, service: PushService
) -> None:
    await start_relay(relays)
    alice, bob = await pair(relays, clients)
    await subscribe(bob, service)
    mid = await sent(alice, "you are here")
    await bob.until(is_received(mid))
    assert service.received == []


# ---------------------------------------------------------------- failing push services


async def test_5xx_is_retried_with_backoff_and_retry_after(
    relays: RelayLab, clients: ClientLab, service: PushService
) -> None:
    relay = await start_relay(relays)
    alice, bob = await pair(relays, clients)
    keys = await subscribe(bob, service)
    await offline(relay, bob)
    service.script = [500, (503, "30")]
    clock = relays.clock
    ids = [await sent(alice, "are you there")]

    first = await service.next()
    await until_state(relay, bob.me, lambda s: s.wake_next == clock.now + 5.0)  # 5 s backoff
    clock.advance(4.0)
    relay.push.poke()
    assert relay.push.scheduler.due(clock.now) == []  # not before its time
    clock.advance(1.0)
    relay.push.poke()
    await service.next()  # the 503 asks for 30 s, more than the 10 s backoff
    await until_state(relay, bob.me, lambda s: s.wake_next == clock.now + 30.0)
    clock.advance(30.0)
    relay.push.poke()
    third = await service.next()
    check_content_free(third, keys, relay, ids)
    assert webpush.decrypt(first.body, keys) != webpush.decrypt(third.body, keys)  # fresh nonces
    await until_state(relay, bob.me, lambda s: s.wake_sent_at == clock.now)
    failed = relay.metrics.registry.get_sample_value(
        "tidings_push_sent_total", {"result": "failed"}
    )
    assert failed == 2
    await receives_all(clients, bob.home, ids)


async def test_a_push_service_that_does_not_answer_times_out_and_is_retried(
    relays: RelayLab, clients: ClientLab, service: PushService
) -> None:
    relays.relay_options = {"push_request_timeout": 0.2}
    relay = await start_relay(relays)
    alice, bob = await pair(relays, clients)
    await subscribe(bob, service)
    await offline(relay, bob)
    service.script = ["hang"]
    ids = [await sent(alice, "anyone?")]
    await service.next()
    await until_state(relay, bob.me, lambda s: s.wake_attempts == 1 and s.wake_sent_at is None)
    await until_state(relay, bob.me, lambda s: s.wake_next == relays.clock.now + 5.0)
    relays.clock.advance(5.0)
    relay.push.poke()
    await service.next()
    await until_state(relay, bob.me, lambda s: s.wake_sent_at is not None)
    await receives_all(clients, bob.home, ids)


async def test_410_marks_the_endpoint_dead_and_the_device_is_told_on_connect(
    relays: RelayLab, clients: ClientLab, service: PushService
) -> None:
    relay = await start_relay(relays)
    alice, bob = await pair(relays, clients)
    await subscribe(bob, service)
    await offline(relay, bob)
    service.script = [410]
    ids = [await sent(alice, "gone?")]
    await service.next()
    await until_state(relay, bob.me, lambda s: s.dead)
    (stored,) = await relay.store.push_subscriptions()
    assert stored.dead  # durably
    ids.append(await sent(alice, "still here"))
    relays.clock.advance(3600.0)
    assert relay.push.scheduler.next_deadline() is None  # a dead endpoint is not called again
    assert relay.push.scheduler.due(relays.clock.now) == []

    bob2 = await receives_all(clients, bob.home, ids)
    told = next((e for e in bob2.seen if is_push_dead(e)), None) or await bob2.until(is_push_dead)
    assert isinstance(told, PushDead) and told.endpoint == service.endpoint(str(bob.me))
    status = await bob2.client.push_status()
    assert status.state == PushState.DEAD
    await subscribe(bob2, service)  # registering again revives it
    assert (await bob2.client.push_status()).state == PushState.ACTIVE


def is_push_dead(e: ClientEvent) -> bool:
    return isinstance(e, PushDead)


# ---------------------------------------------------------------- durable


async def test_a_pending_wake_up_survives_a_relay_restart(
    relays: RelayLab, clients: ClientLab, service: PushService
) -> None:
    relay = await start_relay(relays)
    alice, bob = await pair(relays, clients)
    keys = await subscribe(bob, service)
    await offline(relay, bob)
    service.script = [503]
    ids = [await sent(alice, "before the restart")]
    await service.next()
    await until_state(relay, bob.me, lambda s: s.wake_attempts == 1 and s.wake_next is not None)
    await alice.client.close()
    await relay.stop()

    assert relay.address is not None
    again = await start_relay(relays, port=relay.address[1])  # the same database and port
    state = again.push.scheduler.get(bob.me)
    assert state is not None and state.wake_since is not None and state.wake_attempts == 1
    relays.clock.advance(5.0)
    again.push.poke()
    got = await service.next()
    check_content_free(got, keys, again, ids)
    await receives_all(clients, bob.home, ids)


async def test_a_queue_without_its_flag_is_woken_at_start(
    relays: RelayLab, clients: ClientLab, service: PushService
) -> None:
    # A crash after an item's commit and before its wake-up flag's: the queue says one is due.
    relay = await start_relay(relays)
    alice, bob = await pair(relays, clients)
    await subscribe(bob, service)
    await offline(relay, bob)
    service.script = ["hang"]
    ids = [await sent(alice, "the flag is lost")]
    await service.next()
    await alice.client.close()
    await relay.stop()
    service.release.set()
    store = SQLiteStore(relays.tmp / "relay.db")
    await store.open()
    (sub,) = await store.push_subscriptions()
    await store.put_push_subscription(
        replace(sub, wake_since=None, wake_attempts=0, wake_next=None, wake_sent_at=None)
    )
    await store.close()

    assert relay.address is not None
    await start_relay(relays, port=relay.address[1])
    await service.next()
    await receives_all(clients, bob.home, ids)


# ---------------------------------------------------------------- SSRF


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://127.0.0.1/push/x",
        "https://[::1]/push/x",
        "https://10.1.2.3/push/x",
        "https://192.168.1.1/push/x",
        "https://169.254.169.254/latest/meta-data",  # a cloud metadata service
        "https://[::ffff:127.0.0.1]/push/x",
        "http://93.184.216.34/push/x",  # public, but not https
        "https://user:secret@93.184.216.34/push/x",
        "ftp://93.184.216.34/push/x",
    ],
)
async def test_endpoints_on_private_addresses_are_refused(
    relays: RelayLab, clients: ClientLab, endpoint: str
) -> None:
    relay = await relays.start()  # push_allow_private off: the default
    bob = await clients.new("bob")
    keys = PushKeys.generate(os.urandom)
    with pytest.raises(RefusedError) as refused:
        await bob.client.push_register(endpoint, keys.public, keys.auth)
    assert refused.value.code == ErrorCode.PUSH_REFUSED
    assert await relay.store.push_subscriptions() == []
    assert (await bob.client.push_status()).state == PushState.NONE


async def test_a_public_https_endpoint_is_accepted_and_can_be_dropped(
    relays: RelayLab, clients: ClientLab
) -> None:
    relay = await relays.start()
    bob = await clients.new("bob")
    keys = PushKeys.generate(os.urandom)
    endpoint = "https://93.184.216.34/push/abc"  # an address literal: no DNS needed
    status = await bob.client.push_register(endpoint, keys.public, keys.auth)
    assert (status.state, status.endpoint) == (PushState.ACTIVE, endpoint)
    assert status.vapid_key == relay.push.vapid_public
    assert [s.device for s in await relay.store.push_subscriptions()] == [bob.me]
    dropped = await bob.client.push_unregister()
    assert dropped.state == PushState.NONE
    assert await relay.store.push_subscriptions() == []


# ---------------------------------------------------------------- helpers


async def until_state(relay: ObservedRelay, device: DeviceRef, check: object) -> None:
    """Wait (on the relay's wake-up state changes, never sleeping) until no POST for ``device``
    is out and its wake-up state passes ``check``: an answer is handled a few loop iterations
    after the push service sent it."""
    assert callable(check)
    scheduler = relay.push.scheduler
    async with asyncio.timeout(TIMEOUT):
        while True:
            change = relay.push.changed()
            sub = scheduler.get(device)
            if sub is not None and not scheduler.in_flight(device) and check(sub):
                return
            await change.wait()


async def test_a_key_that_is_not_a_p256_point_is_refused(
    relays: RelayLab, clients: ClientLab
) -> None:
    relay = await relays.start()
    bob = await clients.new("bob")
    with pytest.raises(RefusedError) as refused:
        await bob.client.push_register(
            "https://93.184.216.34/push/abc", b"\x04" + bytes(64), bytes(16)
        )
    assert refused.value.code == ErrorCode.PUSH_REFUSED
    assert await relay.store.push_subscriptions() == []


async def test_registrations_are_rate_limited_per_device(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    bob = await clients.new("bob")
    keys = PushKeys.generate(os.urandom)
    endpoint = "https://93.184.216.34/push/abc"
    for _ in range(PUSH_REQUESTS_PER_HOUR - 1):
        await bob.client.push_register(endpoint, keys.public, keys.auth)
    await bob.client.push_unregister()  # counts too
    with pytest.raises(RefusedError) as refused:
        await bob.client.push_register(endpoint, keys.public, keys.auth)
    assert refused.value.code == ErrorCode.RATE_LIMITED
    assert refused.value.retry_after == pytest.approx(3600 / PUSH_REQUESTS_PER_HOUR, abs=1)
    assert (await bob.client.push_status()).state == PushState.NONE  # a query is not limited
    relays.clock.advance(3600 / PUSH_REQUESTS_PER_HOUR)
    await bob.client.push_register(endpoint, keys.public, keys.auth)
