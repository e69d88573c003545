"""Integration tests of the relay: real loopback WebSockets, SQLite under ``tmp_path``, real
clients and raw Noise connections in the same event loop, a fake clock for retention and rates.

Tests wait on events (client events, frames, closed connections, the relay's refusals), never on
the clock.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import TypeGuard

import msgpack
import pytest
from picows import WSMsgType
from prometheus_client.parser import text_string_to_metric_families

import tidings.server.session as session_module
from tests.harness import (
    TIMEOUT,
    ClientLab,
    FakeClock,
    FixedRandom,
    ObservedRelay,
    RelayLab,
    free_port,
    http_get,
    is_received,
    is_status,
    open_deaf,
    open_probe,
    open_raw,
    send_plaintext,
    send_sealed,
    send_ws,
    statuses_of,
    wait_closed,
)
from tidings.client import register
from tidings.client.connect import DB_NAME
from tidings.client.events import (
    DecryptionFailed,
    GapDetected,
    GapSkipped,
    MessageReceived,
    StatusChanged,
)
from tidings.client.store import ClientStore, Identity
from tidings.delivery import Message, RetryRequest, Status, direct_conversation, parse_content
from tidings.delivery.ordering import SkipReason
from tidings.errors import ConnectionBroken, RefusedError
from tidings.noise import generate_keypair
from tidings.server.app import Relay
from tidings.store import DeviceRef, ItemKind
from tidings.wire import (
    PROTOCOL_VERSION,
    Ack,
    Deliver,
    ErrorCode,
    FrameType,
    Hello,
    Send,
    Sent,
    Target,
    Welcome,
)

ALICE1 = DeviceRef("alice", 1)
BOB1 = DeviceRef("bob", 1)
DAY = 86400.0


def identity_of(home: Path) -> Identity:
    with ClientStore(home / DB_NAME) as store:
        identity = store.get_identity()
    assert identity is not None
    return identity


def sample(relay: Relay, name: str, **labels: str) -> float | None:
    """The current value of one series of the relay's metrics."""
    return relay.metrics.registry.get_sample_value(name, labels)


def content(counter: int, body: bytes, a: str = "alice", b: str = "bob") -> bytes:
    """A message content as a client would send it in a conversation of ``a`` and ``b``."""
    return Message(direct_conversation(a, b), counter, time.time(), body).serialize()


def framed(body: bytes) -> bytes:
    """A frame body with its 4-byte length prefix, as it goes into the decrypted stream."""
    return len(body).to_bytes(4, "big") + body


def send_frame(mid: bytes, counter: int, body: bytes) -> Send:
    return Send(mid, "bob", (Target("bob", 1, content(counter, body)),))


# --------------------------------------------------------------------------- 3. dedup


async def test_a_retried_send_is_answered_duplicate_and_stored_once(
    relays: RelayLab, clients: ClientLab
) -> None:
    relay = await relays.start()
    alice = identity_of(await clients.register("alice"))
    bob = await clients.new("bob")

    conn, peer = await open_raw(relay.url, alice.noise_private_key, alice.server_key)
    send_sealed(conn, Hello(PROTOCOL_VERSION, 0))
    await peer.frame(Welcome)
    mid = os.urandom(16)
    frame = send_frame(mid, 1, b"only once")
    send_sealed(conn, frame)
    send_sealed(conn, frame)  # the retry: same message id
    first, second = await peer.frame(Sent), await peer.frame(Sent)

    assert (first.message_id, first.duplicate) == (mid, False)
    assert (second.message_id, second.duplicate) == (mid, True)
    assert second.stored_at == first.stored_at
    # The payload is not end-to-end encrypted, so bob cannot open it; he got it once and asks
    # alice's device (once) to send it again, through the relay, unencrypted: ids only.
    failed = await bob.until(lambda e: isinstance(e, DecryptionFailed) and e.message_id == mid)
    assert isinstance(failed, DecryptionFailed) and failed.retry_requested
    request = await peer.frame(Deliver)
    assert request.sender_account == "bob"
    assert parse_content(request.payload[1:]) == RetryRequest("alice", 1, (mid,))
    assert await relay.store.last_seq(BOB1) == 1  # one item was ever queued for bob
    assert sample(relay, "tidings_messages_duplicate_total") == 1
    conn.close()


# --------------------------------------------------------------------------- 5. expiry


async def test_unfetched_message_expires_and_sender_sees_it(
    relays: RelayLab, clients: ClientLab, clock: FakeClock
) -> None:
    relay = await relays.start(retention_seconds=30 * DAY)
    alice = await clients.new("alice")
    bob_home = await clients.register("bob")  # bob is offline

    mid = await alice.client.send("bob", "you will never see this")
    await alice.until(is_status(mid, Status.SENT, BOB1))
    assert await relay.expire_once() == 0  # not due yet
    assert await relay.store.queue_depth(BOB1) == 1

    clock.advance(31 * DAY)
    assert await relay.expire_once() == 1
    expired = await alice.until(is_status(mid, Status.EXPIRED, BOB1))
    assert isinstance(expired, StatusChanged) and expired.overall is Status.EXPIRED
    assert alice.client.status(mid) is Status.EXPIRED
    assert "expired:bob.1" in [p.point for p in alice.client.trace(mid)]
    [missed] = await relay.store.fetch(BOB1, 0, 10)  # what bob will learn: it never comes
    assert (missed.kind, missed.sender, missed.message_id) == (ItemKind.MISSED, ALICE1, mid)

    # bob connects later: the expired message is gone; the next one arrives behind a gap that
    # the notice closes at once
    bob = await clients.start(bob_home, monotonic=FakeClock(0.0))
    nxt = await alice.client.send("bob", "this one you get")
    first = await bob.until(lambda e: isinstance(e, GapDetected | MessageReceived))
    assert isinstance(first, GapDetected) and first.missing == range(1, 2)
    skipped = await bob.until(lambda e: isinstance(e, GapSkipped))
    assert isinstance(skipped, GapSkipped) and skipped.reason is SkipReason.EXPIRED
    await bob.until(is_received(nxt))
    assert bob.client.store.message(mid) is None
    assert bob.client.store.message(nxt) is not None


async def test_an_expired_message_releases_the_ones_behind_it_at_once(
    relays: RelayLab, clients: ClientLab, clock: FakeClock
) -> None:
    """Issue 8: alice sends 1, 2, 3 to bob (offline); 1 expires. Bob connects and gets 2 and 3
    at once, the gap of 1 released by the relay's missed notice; without the notice they would
    wait out the ordering hold (30 s) — bob's monotonic clock never moves here."""
    relay = await relays.start(retention_seconds=100)
    alice = await clients.new("alice")
    bob_home = await clients.register("bob")
    first = await alice.client.send("bob", "1")
    await alice.until(is_status(first, Status.SENT, BOB1))
    clock.advance(50)
    later = [await alice.client.send("bob", body) for body in ("2", "3")]
    for mid in later:
        await alice.until(is_status(mid, Status.SENT, BOB1))
    clock.advance(50)
    assert await relay.expire_once() == 1  # 1 only: 2 and 3 have 50 s left
    await alice.until(is_status(first, Status.EXPIRED, BOB1))

    bob = await clients.start(bob_home, monotonic=FakeClock(0.0))
    for mid in later:
        await bob.until(is_received(mid))
    skipped = [e for e in bob.seen if isinstance(e, GapSkipped)]
    assert [(e.missing, e.reason) for e in skipped] == [(range(1, 2), SkipReason.EXPIRED)]
    got = [e.message.counter for e in bob.seen if isinstance(e, MessageReceived)]
    assert got == [2, 3]
    assert bob.client.store.message(first) is None
    assert bob.client.store.cursor() == 4  # the notice is item 4, committed like any item


async def test_a_delivered_message_never_becomes_expired(
    relays: RelayLab, clients: ClientLab, clock: FakeClock
) -> None:
    relay = await relays.start(retention_seconds=3600)
    alice, bob = await clients.new("alice"), await clients.new("bob")
    seen = await alice.client.send("bob", "delivered in time")
    await alice.until(is_status(seen, Status.DELIVERED, BOB1))
    await bob.client.close()
    late = await alice.client.send("bob", "too late")
    await alice.until(is_status(late, Status.SENT, BOB1))

    clock.advance(3601)
    await relay.expire_once()
    await alice.until(is_status(late, Status.EXPIRED, BOB1))
    assert alice.client.status(seen) is Status.DELIVERED
    assert alice.client.store.statuses(seen)[BOB1].status is Status.DELIVERED
    assert (BOB1, Status.EXPIRED) not in statuses_of(alice.seen, seen)
    assert alice.client.status(late) is Status.EXPIRED


# --------------------------------------------------------------------------- 8. limits


async def test_payload_over_the_server_limit_fails_for_good(
    relays: RelayLab, clients: ClientLab
) -> None:
    relay = await relays.start(max_payload=256)
    alice = await clients.new("alice")
    await clients.register("bob")

    mid = await alice.client.send("bob", b"x" * 1000)
    failed = await alice.until(is_status(mid, Status.FAILED))
    assert isinstance(failed, StatusChanged) and failed.device is None
    assert alice.client.status(mid) is Status.FAILED
    assert alice.client.store.pending() == []
    assert relay.refusals == [ErrorCode.PAYLOAD_TOO_LARGE]
    assert await relay.store.total_queued() == 0
    assert await relay.store.last_seq(BOB1) == 0
    stored = alice.client.store.message(mid)
    assert stored is not None and stored.failed_code == ErrorCode.PAYLOAD_TOO_LARGE
    assert "refused" in [p.point for p in alice.client.trace(mid)]


async def test_a_send_to_an_unknown_account_fails_for_good(
    relays: RelayLab, clients: ClientLab
) -> None:
    """The client asks for the devices of an account it never wrote to (it needs their prekey
    bundles): none means no such account, and the message fails for good before any send."""
    relay = await relays.start()
    alice = await clients.new("alice")
    mid = await alice.client.send("nobody", "hello?")
    await alice.until(is_status(mid, Status.FAILED))
    stored = alice.client.store.message(mid)
    assert stored is not None and stored.failed_code == ErrorCode.NO_SUCH_ACCOUNT
    assert relay.refusals == []
    assert await relay.store.total_queued() == 0


async def test_rate_limited_sends_are_delayed_then_all_sent(
    relays: RelayLab, clients: ClientLab, clock: FakeClock
) -> None:
    relay = await relays.start(rate_per_second=10.0, rate_burst=2)
    # rng 0: a refused entry is retried after exactly the server's retry_after (0.1 s)
    alice = await clients.new("alice", rng=FixedRandom(0.0))
    await clients.register("bob")

    ids = [await alice.client.send("bob", f"m{i}") for i in range(5)]
    sent = await alice.until_all(lambda e: is_status_any(e, Status.SENT), 2)
    await relay.wait_refused(ErrorCode.RATE_LIMITED)
    assert [e.message_id for e in sent if isinstance(e, StatusChanged)] == ids[:2]
    assert [alice.client.status(m) for m in ids[2:]] == [Status.PENDING] * 3

    # The relay's clock is frozen: the bucket refills only when the test moves it (2 tokens max)
    done = 2
    while done < 5:
        clock.advance(1.0)
        more = await alice.until_all(lambda e: is_status_any(e, Status.SENT), min(2, 5 - done))
        done += len(more)
    assert [alice.client.status(m) for m in ids] == [Status.SENT] * 5
    sent_order = [e.message_id for e in alice.seen if is_status_any(e, Status.SENT)]
    assert sent_order == ids  # lane order kept through the refusals
    assert not [e for e in alice.seen if is_status_any(e, Status.FAILED)]
    assert await relay.store.last_seq(BOB1) == 5


def is_status_any(e: object, status: Status) -> TypeGuard[StatusChanged]:
    return isinstance(e, StatusChanged) and e.status is status


async def test_queue_full_is_retried_until_the_recipient_drains(
    relays: RelayLab, clients: ClientLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_module, "QUEUE_FULL_RETRY_AFTER", 0.05)
    relay = await relays.start(max_queue=2, stranger_queue_share=1.0)  # the whole queue
    alice = await clients.new("alice", rng=FixedRandom(0.0))
    bob_home = await clients.register("bob")  # offline

    ids = [await alice.client.send("bob", f"m{i}") for i in range(3)]
    await alice.until(is_status(ids[1], Status.SENT, BOB1))
    await relay.wait_refused(ErrorCode.QUEUE_FULL)
    assert alice.client.status(ids[2]) is Status.PENDING  # kept, not failed
    assert [i.message_id for i in alice.client.store.pending()] == ids[2:]
    assert await relay.store.queue_depth(BOB1) == 2

    bob = await clients.start(bob_home)
    received = await bob.until_all(is_received(), 3)
    assert [e.message.message_id for e in received if isinstance(e, MessageReceived)] == ids
    await alice.until(is_status(ids[2], Status.SENT, BOB1))
    assert not [e for e in alice.seen if is_status_any(e, Status.FAILED)]


# --------------------------------------------------------------------------- 9. bad input


class Seeded:
    """A relay with alice and bob registered and two items queued for (offline) bob."""

    def __init__(self, relay: ObservedRelay, alice: Identity, bob: Identity, bob_home: Path):
        self.relay, self.alice, self.bob, self.bob_home = relay, alice, bob, bob_home

    async def snapshot(self) -> tuple[object, ...]:
        store = self.relay.store
        return (
            await store.total_queued(),
            await store.devices("alice"),
            await store.devices("bob"),
            await store.queue_depth(BOB1),
            await store.last_seq(BOB1),
            await store.queue_depth(ALICE1),
            await store.last_seq(ALICE1),
        )


@pytest.fixture
async def seeded(relays: RelayLab, clients: ClientLab) -> Seeded:
    relay = await relays.start()
    alice_home, bob_home = await clients.register("alice"), await clients.register("bob")
    alice = await clients.start(alice_home)
    for i in range(2):
        mid = await alice.client.send("bob", f"queued {i}")
        await alice.until(is_status(mid, Status.SENT, BOB1))
    await alice.client.close()  # raw connections below may use alice's key
    return Seeded(relay, identity_of(alice_home), identity_of(bob_home), bob_home)


async def bob_still_gets_his_two(seeded: Seeded, clients: ClientLab) -> None:
    """Nothing was corrupted: bob's real client fetches the two queued messages."""
    bob = await clients.start(seeded.bob_home)
    received = await bob.until_all(is_received(), 2)
    assert [e.message.body for e in received if isinstance(e, MessageReceived)] == [
        b"queued 0",
        b"queued 1",
    ]


async def test_a_send_before_hello_is_unexpected_and_stores_nothing(
    seeded: Seeded, clients: ClientLab
) -> None:
    before = await seeded.snapshot()
    conn, peer = await open_raw(seeded.relay.url, seeded.alice.noise_private_key)
    send_sealed(conn, send_frame(os.urandom(16), 3, b"sneaky"))
    await wait_closed(conn)
    assert peer.closed is not None and peer.closed.by_peer
    assert peer.closed.code == ErrorCode.UNEXPECTED_FRAME
    assert await seeded.snapshot() == before
    await bob_still_gets_his_two(seeded, clients)


async def test_an_ack_before_hello_is_unexpected(seeded: Seeded) -> None:
    before = await seeded.snapshot()
    conn, peer = await open_raw(seeded.relay.url, seeded.bob.noise_private_key)
    send_sealed(conn, Ack(2))
    await wait_closed(conn)
    assert peer.closed is not None and peer.closed.code == ErrorCode.UNEXPECTED_FRAME
    assert await seeded.snapshot() == before


async def test_hello_with_an_unregistered_key_is_unknown_device(seeded: Seeded) -> None:
    before = await seeded.snapshot()
    stranger, _ = generate_keypair(os.urandom)
    conn, peer = await open_raw(seeded.relay.url, stranger)
    send_sealed(conn, Hello(PROTOCOL_VERSION, 0))
    await wait_closed(conn)
    assert peer.closed is not None and peer.closed.by_peer
    assert peer.closed.code == ErrorCode.UNKNOWN_DEVICE
    assert await seeded.snapshot() == before


async def test_hello_with_an_unsupported_version_is_refused(seeded: Seeded) -> None:
    before = await seeded.snapshot()
    conn, peer = await open_raw(seeded.relay.url, seeded.bob.noise_private_key)
    send_sealed(conn, Hello(PROTOCOL_VERSION + 1, 0))
    await wait_closed(conn)
    assert peer.closed is not None and peer.closed.code == ErrorCode.UNSUPPORTED_VERSION
    assert await seeded.snapshot() == before


async def test_an_ack_above_what_was_delivered_is_invalid(
    seeded: Seeded, clients: ClientLab
) -> None:
    before = await seeded.snapshot()
    conn, peer = await open_raw(seeded.relay.url, seeded.bob.noise_private_key)
    send_sealed(conn, Hello(PROTOCOL_VERSION, 0))
    await peer.frame(Welcome)
    delivered = [await peer.frame(Deliver), await peer.frame(Deliver)]
    assert [d.seq for d in delivered] == [1, 2]
    send_sealed(conn, Ack(3))
    await wait_closed(conn)
    assert peer.closed is not None and peer.closed.by_peer
    assert peer.closed.code == ErrorCode.INVALID_ACK
    assert await seeded.snapshot() == before
    await bob_still_gets_his_two(seeded, clients)


async def test_items_delivered_counts_only_acked_items(seeded: Seeded) -> None:
    conn, peer = await open_raw(seeded.relay.url, seeded.bob.noise_private_key)
    send_sealed(conn, Hello(PROTOCOL_VERSION, 0))
    await peer.frame(Welcome)
    await peer.frame(Deliver)
    await peer.frame(Deliver)  # two items sent, none acked: none removed
    assert await seeded.relay.store.queue_depth(BOB1) == 2
    assert sample(seeded.relay, "tidings_items_delivered_total") == 0
    conn.close()


async def test_hello_with_a_cursor_beyond_last_seq_deletes_nothing(seeded: Seeded) -> None:
    before = await seeded.snapshot()
    conn, peer = await open_raw(seeded.relay.url, seeded.bob.noise_private_key)
    send_sealed(conn, Hello(PROTOCOL_VERSION, 1_000_000))
    closed = asyncio.ensure_future(conn.disconnected.wait())
    welcome = asyncio.ensure_future(peer.frame(Welcome))
    await asyncio.wait({closed, welcome}, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    closed.cancel()
    welcome.cancel()
    conn.close()
    assert await seeded.snapshot() == before


async def test_websocket_garbage_before_the_handshake_closes(seeded: Seeded) -> None:
    before = await seeded.snapshot()
    probe = await open_probe(seeded.relay.url)
    assert probe.transport is not None
    probe.transport.send(WSMsgType.BINARY, b"GET /not-noise HTTP/1.1\r\n" * 8)
    async with asyncio.timeout(TIMEOUT):
        await probe.disconnected.wait()
    assert await seeded.snapshot() == before


async def test_websocket_garbage_after_the_handshake_closes(
    seeded: Seeded, clients: ClientLab
) -> None:
    before = await seeded.snapshot()
    conn, peer = await open_raw(seeded.relay.url, seeded.bob.noise_private_key)
    send_sealed(conn, Hello(PROTOCOL_VERSION, 0))
    await peer.frame(Welcome)
    send_ws(conn, os.urandom(200))  # not an authentic Noise transport message
    await wait_closed(conn)
    assert peer.closed is not None and not peer.closed.by_peer  # no ERROR: just closed
    assert await seeded.snapshot() == before
    await bob_still_gets_his_two(seeded, clients)


async def test_a_replayed_noise_message_closes_and_changes_nothing(seeded: Seeded) -> None:
    conn, peer = await open_raw(seeded.relay.url, seeded.alice.noise_private_key)
    send_sealed(conn, Hello(PROTOCOL_VERSION, 0))
    await peer.frame(Welcome)
    mid = os.urandom(16)
    recorded = send_sealed(conn, send_frame(mid, 3, b"third"))
    sent = await peer.frame(Sent)
    assert sent.message_id == mid and not sent.duplicate
    after_send = await seeded.snapshot()

    for message in recorded:
        send_ws(conn, message)  # replay the captured ciphertext
    await wait_closed(conn)
    assert peer.closed is not None and not peer.closed.by_peer
    assert await seeded.snapshot() == after_send
    assert sample(seeded.relay, "tidings_messages_duplicate_total") == 0


@pytest.mark.parametrize("size", [70_000, 200_000])
async def test_an_oversized_websocket_message_closes(seeded: Seeded, size: int) -> None:
    before = await seeded.snapshot()
    conn, peer = await open_raw(seeded.relay.url, seeded.bob.noise_private_key)
    send_sealed(conn, Hello(PROTOCOL_VERSION, 0))
    await peer.frame(Welcome)
    send_ws(conn, b"\0" * size)  # over one Noise message (65,535 bytes) / over picows' limit
    await wait_closed(conn)
    assert await seeded.snapshot() == before


@pytest.mark.parametrize(
    "plaintext",
    [
        pytest.param(b"\xff\xff\xff\xff", id="length-prefix-over-MAX_FRAME"),
        pytest.param(
            framed(msgpack.packb([int(FrameType.HELLO), 1, 0, b"x" * 3000])),
            id="control-frame-over-its-limit",
        ),
    ],
)
async def test_an_oversized_frame_is_refused(seeded: Seeded, plaintext: bytes) -> None:
    before = await seeded.snapshot()
    conn, peer = await open_raw(seeded.relay.url, seeded.bob.noise_private_key)
    send_sealed(conn, Hello(PROTOCOL_VERSION, 0))
    await peer.frame(Welcome)
    send_plaintext(conn, plaintext)  # authentic Noise message, oversized frame inside
    await wait_closed(conn)
    assert peer.closed is not None and peer.closed.by_peer
    assert peer.closed.code == ErrorCode.FRAME_TOO_LARGE
    assert await seeded.snapshot() == before


# --------------------------------------------------------------------------- 10. registration


async def test_registering_an_existing_account_is_refused(
    relays: RelayLab, clients: ClientLab
) -> None:
    relay = await relays.start()
    await clients.register("alice")
    devices = await relay.store.devices("alice")
    with pytest.raises(RefusedError) as info:
        await clients.register("alice")
    assert info.value.code == ErrorCode.ACCOUNT_EXISTS
    assert await relay.store.devices("alice") == devices


async def test_a_bad_link_code_is_refused(relays: RelayLab, clients: ClientLab) -> None:
    relay = await relays.start()
    await clients.register("alice")
    with pytest.raises(RefusedError) as info:
        await clients.register("alice", link_code=os.urandom(16))
    assert info.value.code == ErrorCode.INVALID_LINK_CODE
    with pytest.raises(RefusedError) as info:
        await clients.register("nobody", link_code=os.urandom(16))
    assert info.value.code == ErrorCode.INVALID_LINK_CODE
    assert [d.ref for d in await relay.store.devices("alice")] == [ALICE1]
    assert await relay.store.devices("nobody") == []


async def test_a_link_code_works_once(relays: RelayLab, clients: ClientLab) -> None:
    relay = await relays.start()
    alice = await clients.new("alice")
    code, _ = await alice.client.link_code()
    await clients.register("alice", link_code=code)
    with pytest.raises(RefusedError) as info:
        await clients.register("alice", link_code=code)
    assert info.value.code == ErrorCode.INVALID_LINK_CODE
    assert [d.ref.device_id for d in await relay.store.devices("alice")] == [1, 2]


async def test_an_expired_link_code_is_refused(
    relays: RelayLab, clients: ClientLab, clock: FakeClock
) -> None:
    relay = await relays.start(link_code_ttl=600)
    alice = await clients.new("alice")
    code, expires_at = await alice.client.link_code()
    assert expires_at == clock.now + 600
    clock.advance(601)
    with pytest.raises(RefusedError) as info:
        await clients.register("alice", link_code=code)
    assert info.value.code == ErrorCode.INVALID_LINK_CODE
    assert len(await relay.store.devices("alice")) == 1


async def test_registration_on_an_unreachable_relay_saves_no_identity(tmp_path: Path) -> None:
    home = tmp_path / "nowhere"
    with pytest.raises(ConnectionBroken):
        await register(home, f"ws://127.0.0.1:{free_port()}/v1", "alice")
    with ClientStore(home / DB_NAME) as store:
        assert store.get_identity() is None


# --------------------------------------------------------------------------- 11. keepalive


async def test_a_silent_connection_is_closed_after_idle_timeout(relays: RelayLab) -> None:
    relay = await relays.start(idle_timeout=0.5, ping_interval=0.2)
    identity = await register(relays.tmp / "bob", relay.url, "bob")
    conn, peer = await open_deaf(relay.url, identity.noise_private_key)
    send_sealed(conn, Hello(PROTOCOL_VERSION, 0))
    await peer.frame(Welcome)
    loop = asyncio.get_running_loop()
    silent_since = loop.time()
    conn.deaf = True  # from now on bob neither speaks nor answers

    await wait_closed(conn)
    assert loop.time() - silent_since >= 0.5 - 0.05  # closed by the deadline, not earlier
    assert sample(relay, "tidings_errors_total", code="keepalive_timeout") == 1
    assert DeviceRef("bob", 1) not in relay.sessions


async def test_the_relay_pings_at_ping_interval(relays: RelayLab) -> None:
    relay = await relays.start(idle_timeout=0.5, ping_interval=0.2)
    identity = await register(relays.tmp / "bob", relay.url, "bob")
    conn, peer = await open_raw(relay.url, identity.noise_private_key)  # answers PING, never pings
    send_sealed(conn, Hello(PROTOCOL_VERSION, 0))
    await peer.frame(Welcome)
    # alive for three idle timeouts: the relay's PINGs (answered) keep the connection open
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.5):
            await conn.disconnected.wait()
    conn.close()


# --------------------------------------------------------------------------- 12. metrics, health


async def test_metrics_and_health_endpoints(relays: RelayLab, clients: ClientLab) -> None:
    relay = await relays.start(metrics_port=free_port())
    assert relay.metrics_address is not None
    host, port = relay.metrics_address
    alice, bob = await clients.new("alice"), await clients.new("bob")
    mid = await alice.client.send("bob", "count me")
    await bob.until(is_received(mid))
    await alice.until(is_status(mid, Status.DELIVERED, BOB1))

    status, headers, body = await http_get(host, port, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    assert samples["tidings_connections", ()] == 2
    assert samples["tidings_messages_stored_total", ()] == 2  # the message and its ✓✓ receipt
    assert samples["tidings_frames_received_total", (("type", "send"),)] >= 2
    assert sum(v for (name, _), v in samples.items() if name == "tidings_handshakes_total") >= 4

    status, headers, body = await http_get(host, port, "/healthz")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "accepting": True,
        "connections": 2,
        "connections_limit": relay.listener.admission.caps.max_connections if relay.listener else 0,
        "listening": True,
        "store": "ok",
        "node": relay.node_id,  # no "redis": a node alone
    }
    assert samples["tidings_node_info", (("node", relay.node_id),)] == 1

    status, _, _ = await http_get(host, port, "/nope")
    assert status == 404


async def test_metrics_port_zero_disables_the_endpoint(relays: RelayLab) -> None:
    relay = await relays.start(metrics_port=0)
    assert relay.metrics_address is None


async def test_health_is_unhealthy_once_stopped(relays: RelayLab) -> None:
    relay: Relay = await relays.start()
    ok, details = relay.health()
    assert ok and details["listening"] is True
    await relay.stop()
    ok, details = relay.health()
    assert not ok
