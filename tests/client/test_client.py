"""Integration tests of the client SDK against a real relay in the same event loop.

Relay and clients talk over real loopback WebSockets; the relay stores in SQLite under
``tmp_path``. Tests wait on client events (``Peer.until``), never on the clock.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.harness import (
    TIMEOUT,
    ClientLab,
    FakeClock,
    FixedRandom,
    Peer,
    RelayLab,
    TcpHolder,
    is_received,
    is_status,
    statuses_of,
)
from tidings.client import (
    Client,
    ClientConfig,
    Connected,
    Disconnected,
    GapDetected,
    GapSkipped,
    register,
)
from tidings.client.events import MessageReceived, StatusChanged
from tidings.client.store import Direction, TracePoint
from tidings.delivery import ORDER_HOLD_SECONDS, SkipReason, Status
from tidings.errors import ConnectionBroken
from tidings.store import DeviceRef
from tidings.wire import ErrorCode

BOB1 = DeviceRef("bob", 1)
BOB2 = DeviceRef("bob", 2)
#: What a reverse proxy answers while the relay behind it is down.
REFUSE_UPGRADE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)


def attempts(peer: Peer, mid: bytes) -> int:
    """How many times ``peer`` wrote message ``mid`` to the relay (its trace's ``written``)."""
    return [p.point for p in peer.client.trace(mid)].count(TracePoint.WRITTEN)


def body_of(event: object) -> bytes:
    assert isinstance(event, MessageReceived)
    return event.message.body


# --------------------------------------------------------------------------- 1. statuses, trace


async def test_send_goes_sent_delivered_read_with_trace(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    alice, bob = await clients.new("alice"), await clients.new("bob")

    mid = await alice.client.send("bob", "hello bob")
    assert alice.client.status(mid) is Status.PENDING  # durable in the outbox, not yet ✓

    got = await bob.until(is_received(mid))
    assert isinstance(got, MessageReceived)
    assert got.message.body == b"hello bob"
    assert got.message.sender == DeviceRef("alice", 1)
    assert got.message.direction is Direction.IN
    assert got.message.counter == 1
    assert not got.late

    await alice.until(is_status(mid, Status.DELIVERED, BOB1))
    assert alice.client.status(mid) is Status.DELIVERED
    await bob.client.mark_read([mid])
    await alice.until(is_status(mid, Status.READ, BOB1))
    assert alice.client.status(mid) is Status.READ

    assert statuses_of(alice.seen, mid) == [
        (BOB1, Status.SENT),
        (BOB1, Status.DELIVERED),
        (BOB1, Status.READ),
    ]
    overall = [e.overall for e in alice.seen if isinstance(e, StatusChanged)]
    assert overall == [Status.SENT, Status.DELIVERED, Status.READ]

    trace = alice.client.trace(mid)
    points = [p.point for p in trace if p.point != TracePoint.TCP_ACKED]
    assert points == ["composed", "written", "sent", "delivered:bob.1", "read:bob.1"]
    times = [p.at for p in trace]
    assert times == sorted(times)
    # bob's store holds it once, read
    stored = bob.client.store.message(mid)
    assert stored is not None and stored.read_at is not None


@pytest.mark.skipif(sys.platform != "linux", reason="TCP_INFO's tcpi_bytes_acked is Linux's")
async def test_the_relays_kernel_ack_is_a_trace_point_between_written_and_sent(
    relays: RelayLab, clients: ClientLab
) -> None:
    """The TCP-ack confirmation point (the relay's kernel acknowledged the SEND's bytes) is
    recorded, after the write and before ✓: the relay cannot answer bytes its kernel has not
    acknowledged, and the client checks TCP_INFO before handling each answer."""
    await relays.start()
    alice = await clients.new("alice")
    await clients.register("bob")
    for text in ("one", "two", "three"):
        mid = await alice.client.send("bob", text)
        await alice.until(is_status(mid, Status.SENT))
        points = [p.point for p in alice.client.trace(mid)]
        assert points[:4] == ["composed", "written", "tcp_acked", "sent"], points
        at = {p.point: p.at for p in alice.client.trace(mid)}
        assert at["written"] <= at["tcp_acked"] <= at["sent"]


# --------------------------------------------------------------------------- 2. order


async def test_fifty_messages_arrive_in_order_exactly_once(
    relays: RelayLab, clients: ClientLab
) -> None:
    relay = await relays.start()
    alice, bob = await clients.new("alice"), await clients.new("bob")

    ids = [await alice.client.send("bob", f"m{i}") for i in range(1, 51)]
    received = await bob.until_all(is_received(), 50, timeout=20)

    assert [body_of(e) for e in received] == [f"m{i}".encode() for i in range(1, 51)]
    assert [e.message.counter for e in received if isinstance(e, MessageReceived)] == list(
        range(1, 51)
    )
    assert [e.message.message_id for e in received if isinstance(e, MessageReceived)] == ids
    # Every ✓✓ reached alice: bob committed each one, and nothing more was displayed at bob.
    await alice.until_all(
        lambda e: isinstance(e, StatusChanged) and e.status is Status.DELIVERED, 50, timeout=20
    )
    assert all(alice.client.status(m) is Status.DELIVERED for m in ids)
    shown = bob.client.store.messages("alice:bob", limit=1000)
    assert len(shown) == 50
    assert not [e for e in bob.seen if isinstance(e, GapDetected | GapSkipped)]
    assert [e for e in bob.seen if isinstance(e, MessageReceived)] == received
    # the relay stored each once for bob
    assert await relay.store.last_seq(BOB1) == 50


# --------------------------------------------------------------------------- 4. devices


async def test_device_mismatch_is_recovered_for_a_linked_recipient_device(
    relays: RelayLab, clients: ClientLab
) -> None:
    """DESIGN §3: the relay refuses a send whose device set is stale (DEVICE_MISMATCH); the
    client fixes its view and retries with the same message id."""
    relay = await relays.start()
    alice, bob1 = await clients.new("alice"), await clients.new("bob")
    assert await alice.client.devices("bob") == (1,)  # alice caches bob as one device
    bob2 = await clients.link(bob1)
    assert bob2.me == BOB2

    mid = await alice.client.send("bob", "to both of you")

    got1 = await bob1.until(is_received(mid))
    got2 = await bob2.until(is_received(mid))
    assert isinstance(got1, MessageReceived) and isinstance(got2, MessageReceived)
    assert got1.message.message_id == got2.message.message_id == mid
    assert got1.message.body == got2.message.body == b"to both of you"
    await relay.wait_refused(ErrorCode.DEVICE_MISMATCH)
    await alice.until(is_status(mid, Status.SENT, BOB1))
    assert attempts(alice, mid) == 2  # one refusal, then the retry with both devices

    # The two receipts race each other: wait for both, in whichever order they come.
    delivered = await alice.until_all(
        lambda e: (
            isinstance(e, StatusChanged) and e.message_id == mid and e.status is Status.DELIVERED
        ),
        2,
    )
    assert {e.device for e in delivered if isinstance(e, StatusChanged)} == {BOB1, BOB2}
    assert alice.client.status(mid) is Status.DELIVERED
    sent_to = {d for d, s in statuses_of(alice.seen, mid) if s is Status.SENT}
    assert sent_to == {BOB1, BOB2}
    assert await alice.client.devices("bob") == (1, 2)


async def test_sent_message_is_synced_to_own_second_device(
    relays: RelayLab, clients: ClientLab
) -> None:
    relay = await relays.start()
    alice1, bob = await clients.new("alice"), await clients.new("bob")
    alice2 = await clients.link(alice1)
    assert alice2.me == DeviceRef("alice", 2)

    mid = await alice1.client.send("bob", "copy for my laptop")

    await bob.until(is_received(mid))
    copy = await alice2.until(is_received(mid))
    assert isinstance(copy, MessageReceived)
    assert copy.message.sender == DeviceRef("alice", 1)
    assert copy.message.recipient == "bob"
    assert copy.message.body == b"copy for my laptop"
    stored = alice2.client.store.message(mid)
    assert stored is not None and stored.recipient == "bob"
    # alice.1 learnt of alice.2 from the relay when it was linked (an unsolicited DEVICES)
    assert ErrorCode.DEVICE_MISMATCH not in relay.refusals
    # ✓ is reported for bob's device only: the own copy is not a recipient
    await alice1.until(is_status(mid, Status.DELIVERED, BOB1))
    assert {d for d, _ in statuses_of(alice1.seen, mid)} == {BOB1}


async def test_an_unknown_account_s_devices_are_learned_before_the_first_send(
    relays: RelayLab, clients: ClientLab
) -> None:
    """A first message to an account needs a session per device, so the client asks for the
    account's devices before it seals anything: no mismatch refusal, one attempt."""
    relay = await relays.start()
    alice, bob1 = await clients.new("alice"), await clients.new("bob")
    bob2 = await clients.link(bob1)  # alice never asked for bob's devices

    mid = await alice.client.send("bob", "hi")
    await bob1.until(is_received(mid))
    await bob2.until(is_received(mid))
    await alice.until(is_status(mid, Status.SENT))
    assert relay.refusals == []
    assert attempts(alice, mid) == 1


async def test_device_linked_mid_conversation_shows_new_messages(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    alice, bob1 = await clients.new("alice"), await clients.new("bob")
    before = await alice.client.send("bob", "before bob links a laptop")
    await bob1.until(is_received(before))
    await alice.client.devices("bob")
    bob2 = await clients.link(bob1)

    mid = await alice.client.send("bob", "after")
    await bob1.until(is_received(mid))
    first = await bob2.until(lambda e: isinstance(e, GapDetected | MessageReceived))
    assert isinstance(first, MessageReceived)  # today: GapDetected(range(1, 2)), held 30 s
    assert first.message.message_id == mid


# --------------------------------------------------------------------------- 6. server outage


async def test_messages_composed_during_an_outage_flow_after_restart(
    relays: RelayLab, clients: ClientLab
) -> None:
    first = await relays.start()
    assert first.address is not None
    port = first.address[1]
    alice, bob = await clients.new("alice"), await clients.new("bob")
    warmup = await alice.client.send("bob", "before")
    await bob.until(is_received(warmup))

    await first.stop()
    await alice.until(lambda e: isinstance(e, Disconnected))
    await bob.until(lambda e: isinstance(e, Disconnected))
    ids = [await alice.client.send("bob", f"during outage {i}") for i in range(3)]
    assert all(alice.client.status(m) is Status.PENDING for m in ids)
    assert [i.message_id for i in alice.client.store.pending()] == ids

    second = await relays.start(port=port)  # same database, key and port
    assert second.address is not None and second.address[1] == port
    alice.client.reconnect_now()
    bob.client.reconnect_now()

    received = await bob.until_all(is_received(), 3, timeout=15)
    assert [e.message.message_id for e in received if isinstance(e, MessageReceived)] == ids
    for mid in ids:
        await alice.until(is_status(mid, Status.DELIVERED, BOB1), timeout=15)
    assert alice.client.store.pending() == []
    # exactly once: bob's store holds the four messages once each, the relay stored each once
    assert len(bob.client.store.messages("alice:bob")) == 4
    assert await second.store.last_seq(BOB1) == 4
    assert [e for e in bob.seen if isinstance(e, MessageReceived)][1:] == received


# --------------------------------------------------------------------------- 7. client restart


async def test_composed_before_connecting_is_sent_by_a_restarted_client(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    alice_home = await clients.register("alice")
    bob = await clients.new("bob")

    offline = clients.open(alice_home)  # never started: composes into its outbox only
    ids = [await offline.send("bob", f"queued {i}") for i in range(2)]
    assert all(offline.status(m) is Status.PENDING for m in ids)
    assert [i.message_id for i in offline.store.pending()] == ids
    await offline.close()

    alice = await clients.start(alice_home)  # a new Client on the same home
    received = await bob.until_all(is_received(), 2)
    assert [e.message.message_id for e in received if isinstance(e, MessageReceived)] == ids
    assert [e.message.counter for e in received if isinstance(e, MessageReceived)] == [1, 2]
    for mid in ids:
        await alice.until(is_status(mid, Status.DELIVERED, BOB1))
    trace = [p.point for p in alice.client.trace(ids[0])]
    assert trace[0] == "composed" and "sent" in trace


async def test_a_note_to_self_does_not_poison_the_outbox(
    relays: RelayLab, clients: ClientLab
) -> None:
    relay = await relays.start()
    assert relay.address is not None
    port = relay.address[1]
    alice, bob = await clients.new("alice"), await clients.new("bob")

    await alice.client.send("alice", "note to self")  # a 1:1 conversation with oneself
    await relay.stop()
    await alice.until(lambda e: isinstance(e, Disconnected))
    await relays.start(port=port)
    alice.client.reconnect_now()
    bob.client.reconnect_now()
    mid = await alice.client.send("bob", "still working?")
    await bob.until(is_received(mid))


# --------------------------------------------------------------------------- reconnect, gaps


async def test_reconnect_now_during_a_failing_attempt_is_not_lost(
    relays: RelayLab, clients: ClientLab
) -> None:
    relay = await relays.start()
    home = await clients.register("alice")
    assert relay.address is not None
    port = relay.address[1]
    await relay.stop()

    holder = TcpHolder()  # accepts on the relay's port and holds the WebSocket upgrade
    await holder.start(port)
    slow = ClientConfig(reconnect_initial_seconds=30.0)  # backoff ceiling 30 s
    alice = await clients.start(home, connect=False, rng=FixedRandom(1.0), config=slow)
    try:
        writer = await holder.next()  # attempt 1 is in progress
        alice.client.reconnect_now()  # "the network is back": try again at once
        writer.write(REFUSE_UPGRADE)  # attempt 1 fails now (ConnectionBroken)
        writer.close()
        second = await holder.next(1.0)  # not after a 30 s backoff
        second.close()
    finally:
        await alice.client.close()
        await holder.close()


async def test_client_keeps_reconnecting_when_the_upgrade_is_cut(
    relays: RelayLab, clients: ClientLab
) -> None:
    relay = await relays.start()
    home = await clients.register("alice")
    assert relay.address is not None
    port = relay.address[1]
    await relay.stop()
    holder = TcpHolder()
    await holder.start(port)
    alice = await clients.start(home, connect=False, rng=FixedRandom(0.1))
    try:
        (await holder.next()).close()  # EOF in the middle of the WebSocket upgrade
        (await holder.next(2.0)).close()  # the client tries again
    finally:
        await alice.client.close()
        await holder.close()


async def test_register_reports_a_cut_upgrade_as_connection_broken(tmp_path: Path) -> None:
    holder = TcpHolder()
    port = await holder.start()
    try:
        attempt = asyncio.ensure_future(
            register(tmp_path / "alice", f"ws://127.0.0.1:{port}/v1", "alice")
        )
        (await holder.next()).close()
        with pytest.raises(ConnectionBroken):
            async with asyncio.timeout(TIMEOUT):
                await attempt
    finally:
        await holder.close()


async def test_gap_left_by_a_failed_message_is_skipped_after_the_hold_time(
    relays: RelayLab, clients: ClientLab
) -> None:
    """G4: a gap that can never fill (its message was refused for good) is reported, and the
    messages held behind it are shown once the hold time has passed on bob's monotonic clock."""
    # A sealed short message (a PQXDH prekey message: ~1.9 KB) fits, a 1 KB body does not.
    await relays.start(max_payload=2400)
    alice = await clients.new("alice")
    bob_clock, bob_wall = FakeClock(0.0), FakeClock()
    bob = await clients.start(await clients.register("bob"), clock=bob_wall, monotonic=bob_clock)

    failed = await alice.client.send("bob", b"x" * 1000)  # counter 1: refused for good
    await alice.until(is_status(failed, Status.FAILED))
    after = await alice.client.send("bob", "after")  # counter 2
    gap = await bob.until(lambda e: isinstance(e, GapDetected))
    assert isinstance(gap, GapDetected) and gap.missing == range(1, 2)

    bob_wall.advance(-3600.0)  # a step of bob's wall clock changes nothing
    bob_clock.advance(ORDER_HOLD_SECONDS + 1)  # the hold time is over on bob's monotonic clock
    later = await alice.client.send("bob", "later")  # counter 3: more input for bob
    skipped = await bob.until(lambda e: isinstance(e, GapSkipped))
    assert isinstance(skipped, GapSkipped) and skipped.missing == range(1, 2)
    assert skipped.reason is SkipReason.TIMEOUT
    await bob.until(is_received(after))
    await bob.until(is_received(later))
    assert bob.client.store.message(failed) is None


async def test_events_report_connection_state(relays: RelayLab, clients: ClientLab) -> None:
    await relays.start()
    home = await clients.register("alice")
    client = clients.open(home)
    stream = client.events()
    await client.start()
    event = await stream.next(TIMEOUT)
    assert isinstance(event, Connected)
    assert event.pattern  # the Noise pattern used: XX first, IK once the key is pinned
    assert isinstance(client, Client) and client.fatal is None
