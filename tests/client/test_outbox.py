"""The client's outbox against a real relay: refusals are reported and traced, delays run on the
monotonic clock, receipts go to the other account only.

Clients get a fake wall clock and a fake monotonic clock (``FakeClock``) and a fixed jitter
(``FixedRandom(0.0)``: a retry waits exactly the relay's ``retry_after``). Nothing sleeps: a
retry is due when the test moves the monotonic clock, and the next ``send`` pumps the outbox.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator

import pytest

import tidings.store._inbox_writes as inbox_writes_module
import tidings.store.memory as memory_module
from tests.harness import (
    ClientLab,
    FakeClock,
    FixedRandom,
    Peer,
    RelayLab,
    is_received,
    is_status,
)
from tidings.client import DeviceNamed, SendRefused, StatusChanged
from tidings.delivery import RETRY_CAP, ContentKind, Status
from tidings.store import DeviceRef
from tidings.store._rules import check_targets
from tidings.store.base import DeviceMismatch, Submission
from tidings.wire import ErrorCode

WALL = 1_800_000_000.0
HOUR = 3600.0
BOB1 = DeviceRef("bob", 1)
ALICE1, ALICE2 = DeviceRef("alice", 1), DeviceRef("alice", 2)


def refused(mid: bytes | None = None) -> Callable[[object], bool]:
    """Predicate: a SendRefused (of ``mid``, if given)."""
    return lambda e: isinstance(e, SendRefused) and (mid is None or e.message_id == mid)


async def alice_with_clocks(
    clients: ClientLab, wall: FakeClock, mono: FakeClock, home: object = None
) -> Peer:
    if home is None:
        return await clients.new("alice", clock=wall, monotonic=mono, rng=FixedRandom(0.0))
    return await clients.start(home, clock=wall, monotonic=mono, rng=FixedRandom(0.0))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- refusals


async def test_a_full_queue_is_reported_with_its_retry_time_and_traced(
    relays: RelayLab, clients: ClientLab
) -> None:
    """QUEUE_FULL used to leave the message at … with no event and nothing in its trace."""
    relay = await relays.start(max_queue=1)
    wall, mono = FakeClock(WALL), FakeClock(0.0)
    alice = await alice_with_clocks(clients, wall, mono)
    await clients.register("bob")  # bob stays offline: his queue fills

    first = await alice.client.send("bob", "fills bob's queue")
    await alice.until(is_status(first, Status.SENT))
    mid = await alice.client.send("bob", "waits")
    event = await alice.until(refused(mid))

    assert isinstance(event, SendRefused)
    assert (event.recipient, event.kind, event.code) == ("bob", ContentKind.MESSAGE, 10)
    assert event.code_name == "QUEUE_FULL" and "bob.1" in event.reason
    assert (event.at, event.retry_at, event.final) == (WALL, WALL + 5.0, False)
    assert relay.refusals == [ErrorCode.QUEUE_FULL]
    assert alice.client.status(mid) is Status.PENDING  # still in the outbox
    [entry] = [e for e in alice.client.store.pending() if e.message_id == mid]
    assert (entry.attempts, entry.next_attempt_at) == (1, WALL + 5.0)  # stored: wall clock
    trace = [(p.point, p.detail) for p in alice.client.trace(mid) if p.point != "tcp_acked"]
    assert trace == [
        ("composed", None),
        ("written", None),  # committed with the refusal, not lost until a ✓
        ("refused:QUEUE_FULL", f"{event.reason}; retry in 5.0 s"),
    ]


async def test_a_final_refusal_is_reported_before_the_failure(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start(max_payload=2400)  # a sealed short message fits, a 1 KB body does not
    alice = await clients.new("alice")
    await clients.register("bob")

    mid = await alice.client.send("bob", b"x" * 1000)
    await alice.until(is_status(mid, Status.FAILED))
    [event] = [e for e in alice.seen if isinstance(e, SendRefused)]
    assert (event.message_id, event.code_name, event.final) == (mid, "PAYLOAD_TOO_LARGE", True)
    assert event.retry_at is None
    assert alice.seen.index(event) < len(alice.seen) - 1  # the StatusChanged FAILED follows
    points = [p.point for p in alice.client.trace(mid) if p.point != "tcp_acked"]
    assert points == ["composed", "written", "refused"]


# --------------------------------------------------------------------------- clock steps


async def refused_once(
    relays: RelayLab, clients: ClientLab
) -> tuple[Peer, FakeClock, FakeClock, bytes]:
    """alice's second message is refused RATE_LIMITED (retry after 5 s) at monotonic 0."""
    await relays.start(rate_per_second=0.2, rate_burst=1)
    wall, mono = FakeClock(WALL), FakeClock(0.0)
    alice = await alice_with_clocks(clients, wall, mono)
    await clients.register("bob")
    first = await alice.client.send("bob", "1")
    await alice.until(is_status(first, Status.SENT))
    mid = await alice.client.send("bob", "2")
    event = await alice.until(refused(mid))
    assert isinstance(event, SendRefused) and event.code_name == "RATE_LIMITED"
    assert event.retry_at == WALL + 5.0
    return alice, wall, mono, mid


async def test_a_wall_clock_stepped_back_an_hour_does_not_stall_the_outbox(
    relays: RelayLab, clients: ClientLab
) -> None:
    """The retry used to wait an hour (its time was on the wall clock)."""
    alice, wall, mono, mid = await refused_once(relays, clients)
    wall.advance(-HOUR)
    mono.advance(5.0)
    relays.clock.advance(5.0)  # the relay's bucket has a token again
    await alice.client.send("bob", "3")  # pumps the outbox: the retry is due
    await alice.until(is_status(mid, Status.SENT))


async def test_a_wall_clock_stepped_forward_an_hour_does_not_hasten_a_retry(
    relays: RelayLab, clients: ClientLab
) -> None:
    alice, wall, mono, mid = await refused_once(relays, clients)
    wall.advance(HOUR)
    mono.advance(1.0)
    relays.clock.advance(5.0)
    await alice.client.send("bob", "3")  # pumps: neither 2 (due at 5) nor 3 (behind it) go
    scheduler = alice.client._outbox.scheduler
    assert scheduler.in_flight == 0
    assert [e.attempts for e in scheduler.entries()] == [1, 0]
    mono.advance(4.0)
    await alice.client.send("bob", "4")
    await alice.until(is_status(mid, Status.SENT))


async def test_a_retry_time_stored_before_a_restart_survives_a_step_back(
    relays: RelayLab, clients: ClientLab
) -> None:
    """After a restart with the wall clock an hour back, the stored retry time (wall clock)
    waits at most the longest backoff, not the hour."""
    alice, wall, _, mid = await refused_once(relays, clients)
    await alice.client.close()
    wall.advance(-HOUR)
    mono = FakeClock(500.0)  # a new process: another monotonic origin
    alice = await alice_with_clocks(clients, wall, mono, alice.home)
    [entry] = [e for e in alice.client._outbox.scheduler.entries() if e.message_id == mid]
    assert entry.next_attempt_at == 500.0 + RETRY_CAP
    mono.advance(RETRY_CAP)
    relays.clock.advance(RETRY_CAP)
    await alice.client.send("bob", "3")
    await alice.until(is_status(mid, Status.SENT))


# --------------------------------------------------------------------------- receipts


def own_copies_always(
    sub: Submission, current: Collection[DeviceRef], recipient_known: bool
) -> DeviceMismatch | None:
    """The relay rule before the all-or-none one: a send to another account must carry a copy
    for every other current own device. Emulated here to test clients against older relays."""
    result = check_targets(sub, current, recipient_known)
    own = sub.sender.account
    if result is not None or sub.recipient == own or any(r.account == own for r, _ in sub.payloads):
        return result
    missing = tuple(sorted(r for r in current if r.account == own and r != sub.sender))
    return DeviceMismatch(missing=missing, stale=()) if missing else None


@pytest.fixture
def older_relay_rule(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for module in (inbox_writes_module, memory_module):
        monkeypatch.setattr(module, "check_targets", own_copies_always)
    # The set-based path's shortcut accepts what the current rule accepts: leave every send
    # to the emulated rule.
    monkeypatch.setattr(inbox_writes_module, "_exact_targets", lambda *args: None)
    yield


async def two_alices_and_bob(clients: ClientLab) -> tuple[Peer, Peer, Peer]:
    alice1 = await clients.new("alice")
    alice2 = await clients.link(alice1)
    await alice1.client.devices("alice")  # alice.1 learns of alice.2 (see the last test)
    bob = await clients.new("bob")
    return alice1, alice2, bob


def is_delivered(mid: bytes, device: DeviceRef) -> Callable[[object], bool]:
    return lambda e: (
        isinstance(e, StatusChanged)
        and e.message_id == mid
        and e.device == device
        and e.status is Status.DELIVERED
    )


async def test_receipts_go_to_the_other_account_only(relays: RelayLab, clients: ClientLab) -> None:
    relay = await relays.start()
    alice1, alice2, bob = await two_alices_and_bob(clients)
    # the alices tell each other their names first (DEVICE_INFO: one item each way)
    await alice1.until(lambda e: isinstance(e, DeviceNamed))
    await alice2.until(lambda e: isinstance(e, DeviceNamed))
    base1, base2 = await relay.store.last_seq(ALICE1), await relay.store.last_seq(ALICE2)

    mid = await bob.client.send("alice", "hi both")
    await alice1.until(is_received(mid))
    await alice2.until(is_received(mid))
    await bob.until(is_delivered(mid, ALICE1))
    await bob.until(is_delivered(mid, ALICE2))
    await alice1.client.mark_read([mid])
    await bob.until(is_status(mid, Status.READ, ALICE1))

    assert relay.refusals == []
    # each alice device got bob's message, and not one copy of the other's receipts (alice.2
    # may also have alice.1's read-state receipt by now: that one is for it)
    assert await relay.store.last_seq(ALICE1) == base1 + 1
    assert base2 + 1 <= await relay.store.last_seq(ALICE2) <= base2 + 2

    # what the own devices see of each other's sends is unchanged: a copy of the message, and
    # its statuses from the recipient's receipts (which go to every device of the account)
    sent = await alice1.client.send("bob", "from my phone")
    await alice2.until(is_received(sent))
    await alice2.until(is_delivered(sent, BOB1))
    assert alice2.client.store.message_status(sent) is Status.DELIVERED


async def test_an_offline_own_device_no_longer_fills_with_receipts(
    relays: RelayLab, clients: ClientLab
) -> None:
    """An offline linked device's queue filled with copies of its account's receipts until
    every send of the account was refused QUEUE_FULL."""
    relay = await relays.start(max_queue=3, stranger_queue_share=1.0)  # the whole queue for bob
    alice1, alice2, bob = await two_alices_and_bob(clients)
    await alice2.client.close()  # offline from here on

    ids = [await bob.client.send("alice", f"m{i}") for i in (1, 2)]  # alice.2's queue: 2
    for mid in ids:
        await alice1.until(is_received(mid))
        await bob.until(is_delivered(mid, ALICE1))
    mine = await alice1.client.send("bob", "still going")  # its copy: alice.2's queue at 3
    await alice1.until(is_status(mine, Status.SENT))
    assert ErrorCode.QUEUE_FULL not in relay.refusals
    assert await relay.store.queue_depth(ALICE2) == 3


async def test_a_note_to_self_is_sent_and_delivered_at_the_other_own_devices(
    relays: RelayLab, clients: ClientLab
) -> None:
    """A message to one's own account is for the account's other devices: its ✓ is per own
    device, and each of them that commits it says so (a delivered receipt to its own account),
    so ``send alice … --wait delivered`` can end."""
    relay = await relays.start()
    alice1, alice2, _ = await two_alices_and_bob(clients)
    mid = await alice1.client.send("alice", "note to self")
    await alice1.until(is_status(mid, Status.SENT, ALICE2))
    await alice2.until(is_received(mid))
    await alice1.until(is_delivered(mid, ALICE2))
    assert alice1.client.store.message_status(mid) is Status.DELIVERED
    assert set(alice1.client.store.statuses(mid)) == {ALICE2}
    assert ErrorCode.DEVICE_MISMATCH not in relay.refusals


@pytest.mark.usefixtures("older_relay_rule")
async def test_an_older_relay_gets_own_copies_of_receipts_after_one_refusal(
    relays: RelayLab, clients: ClientLab
) -> None:
    """A relay that still wants own copies of every send refuses the first receipt with
    DEVICE_MISMATCH naming the own devices; the client sends own copies from then on."""
    relay = await relays.start()
    _, _, bob = await two_alices_and_bob(clients)

    for n in (1, 2):
        mid = await bob.client.send("alice", f"m{n}")
        await bob.until(is_delivered(mid, ALICE1))
        await bob.until(is_delivered(mid, ALICE2))
        # one refusal per alice device, for its first receipt only
        assert relay.refusals == [ErrorCode.DEVICE_MISMATCH] * 2
    assert await relay.store.last_seq(ALICE2) == 2 + 2  # bob's messages and alice.1's receipts


async def test_a_device_linked_during_a_session_gets_copies(
    relays: RelayLab, clients: ClientLab
) -> None:
    """A device whose own device list is from before a link would send a message with no own
    copies, which the all-or-none rule accepts (the older rule refused it DEVICE_MISMATCH and
    the client added the new device): the linked device would never get that message's copy.
    The relay tells the account's live sessions of the link (an unsolicited DEVICES), so the
    next message carries the copy."""
    await relays.start()
    alice1, bob = await clients.new("alice"), await clients.new("bob")
    alice2 = await clients.link(alice1)  # alice1 asked for nothing since its WELCOME
    assert alice1.client._outbox.recipients.known_devices("alice") == (1, 2)
    mid = await alice1.client.send("bob", "copy for my laptop")
    await bob.until(is_received(mid))
    await alice2.until(is_received(mid))
