"""The frames of one turn of the event loop are ONE store transaction (a catch-up costs one
fsync per burst, not several per message), and nothing that depends on them leaves the client
before it commits: no event, no ACK, no outbox frame. Delivered receipts of a burst are
coalesced, one per sender account and 256 message ids."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from tests.client.test_inbox import ScriptedRelay, alice_sends, attach, drain, received
from tests.harness import ClientLab, FakeClock, RelayLab, is_received
from tidings.client import StatusChanged
from tidings.client.inbox import RECEIPT_IDS, Inbox
from tidings.client.store import Direction
from tidings.delivery import Status
from tidings.net.channel import FrameReceived
from tidings.wire import Ack, Deliver, Frame


def committed_messages(db: str | Path) -> int:
    """What another connection (a crash's survivor, ``tidings trace``) sees of the store."""
    with sqlite3.connect(db) as other:
        query = "SELECT COUNT(*) FROM messages WHERE direction = ?"
        return int(other.execute(query, (int(Direction.IN),)).fetchone()[0])


async def test_nothing_of_a_batch_is_reported_or_acked_before_it_commits(
    relays: RelayLab, clients: ClientLab
) -> None:
    bob_home, ids, items = await alice_sends(relays, clients, 5)
    relay = ScriptedRelay(items)
    bob = clients.open(bob_home, monotonic=FakeClock(0.0))
    events = bob.events()
    sent = attach(bob).frames  # the wire
    direction_in = committed_messages(bob.store.path)

    for mid in ids:  # one read from the network: five DELIVERs in one turn of the loop
        item = relay.items[mid]
        s = item.sender
        frame = Deliver(relay._next(), 0, s.account, s.device_id, mid, 1.0, 2.0, item.payload)
        bob._session.on_channel_event(None, FrameReceived(frame))  # type: ignore[arg-type]
    assert bob.store.in_batch
    assert drain(events) == [] and sent == []  # no event, no ACK yet
    assert committed_messages(bob.store.path) == direction_in  # not durable yet

    bob.settle()  # the end of the turn
    assert committed_messages(bob.store.path) == direction_in + 5
    assert received(drain(events)) == [(1, False), (2, False), (3, False), (4, False), (5, False)]
    assert sent == [Ack(5)]  # one cumulative ACK, after the commit
    receipts = [i for i in bob.store.pending() if i.recipient == "alice"]
    assert len(receipts) == 1  # one delivered receipt names all five


async def test_a_catch_up_sends_few_receipts_and_every_status_arrives(
    relays: RelayLab, clients: ClientLab
) -> None:
    # No send budget in the way: 600 messages from a new account would take minutes.
    await relays.start(new_account_age=0, rate_per_second=10_000, rate_burst=10_000)
    alice = await clients.new("alice")
    bob_home = await clients.register("bob")
    n = 600
    for i in range(n):
        await alice.client.send("bob", f"m{i}")
    await alice.until_all(lambda e: is_status_any(e, Status.SENT), n, 60)

    flushed: list[int] = []
    original = Inbox.flush_receipts

    def counting(self: Inbox) -> list[bytes]:
        queued = original(self)
        flushed.append(len(queued))
        return queued

    mp = pytest.MonkeyPatch()
    mp.setattr(Inbox, "flush_receipts", counting)
    try:
        bob = await clients.start(bob_home)
        await bob.until_all(is_received(), n, 60)
        await alice.until_all(lambda e: is_status_any(e, Status.DELIVERED), n, 60)
    finally:
        mp.undo()
    receipts = sum(flushed)
    assert n // RECEIPT_IDS <= receipts <= n // 10, flushed  # not one per message
    shown = bob.client.store.messages("alice:bob", limit=n + 1)
    assert [m.counter for m in shown] == list(range(1, n + 1))  # each once, in order


def is_status_any(e: object, status: Status) -> bool:
    return isinstance(e, StatusChanged) and e.status is status


async def test_sends_of_one_turn_share_one_transaction_and_are_durable_on_return(
    relays: RelayLab, clients: ClientLab
) -> None:
    from tidings.delivery import MAX_BODY, ContentError

    await relays.start()
    home = await clients.register("alice")
    alice = clients.open(home)  # not connected: the sends stay in the outbox
    commits: list[str] = []
    alice.store._db.set_trace_callback(
        lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None
    )
    before = len(alice.store.pending())
    sends = [alice.send("bob", f"burst {i}") for i in range(20)]
    too_big = alice.send("bob", b"x" * (MAX_BODY + 1))
    results = await asyncio.gather(*sends, too_big, return_exceptions=True)
    assert len(commits) == 1  # twenty messages, one transaction (one fsync)
    assert isinstance(results[-1], ContentError)  # refused alone: the others are queued
    ids = results[:-1]
    assert all(isinstance(mid, bytes) for mid in ids)
    with sqlite3.connect(alice.store.path) as other:  # durable: another connection sees them
        query = "SELECT COUNT(*) FROM messages WHERE direction = ?"
        assert other.execute(query, (int(Direction.OUT),)).fetchone()[0] == 20
    assert len(alice.store.pending()) == before + 20

    mid = await alice.send("bob", "alone")  # a send of its own turn commits on its own
    assert len(commits) == 2 and alice.store.message(mid) is not None


async def test_a_burst_is_sealed_in_its_transaction_and_written_after_it_commits(
    relays: RelayLab, clients: ClientLab
) -> None:
    """The sends of one turn, their encryption (ratchet steps, saved ciphertexts) and later the
    ✓ of a burst of SENT frames share transactions: nothing reaches the wire before the
    ciphertexts it carries are durable, and no ✓ is reported before it is recorded."""
    await relays.start()
    alice = await clients.new("alice")
    await clients.register("bob")
    first = await alice.client.send("bob", "first")  # fetches bob's bundle: a session
    await alice.until(lambda e: isinstance(e, StatusChanged) and e.message_id == first)

    statements: list[str] = []
    client = alice.client
    client._outbox._tcp.reset()  # no late TCP-ack trace point of "first" in between
    client._outbox._tcp.available = False
    client.store._db.set_trace_callback(statements.append)
    conn = client._session.current()
    assert conn is not None
    writes: list[tuple[int, int]] = []  # (statements so far, SEND frames) at each write
    original = conn.send_frames

    def send_frames(frames: list[Frame]) -> None:
        writes.append((len(statements), len(frames)))
        original(frames)

    conn.send_frames = send_frames  # type: ignore[method-assign]
    n = 20
    ids = await asyncio.gather(*(client.send("bob", f"burst {i}") for i in range(n)))
    # One transaction: the twenty composes, their ciphertexts, then COMMIT; then the write.
    assert [s for s in statements if s.startswith(("BEGIN", "COMMIT"))] == [
        "BEGIN IMMEDIATE",
        "COMMIT",
    ]
    commit_at = statements.index("COMMIT")
    assert any("INTO e2e_sealed" in s for s in statements[:commit_at])
    assert writes and writes[0] == (commit_at + 1, n)  # all twenty in one write, after it

    sent = await alice.until_all(lambda e: is_status_any(e, Status.SENT), n)
    assert sorted(e.message_id for e in sent if isinstance(e, StatusChanged)) == sorted(ids)
    # Each ✓ was committed before it was reported (another connection sees it), and the ✓
    # took far fewer transactions than messages (SENT frames come in bursts).
    with sqlite3.connect(client.store.path) as other:
        marks = "?," * (n - 1) + "?"
        query = (
            f"SELECT COUNT(*) FROM messages WHERE stored_at IS NOT NULL AND message_id IN ({marks})"
        )
        assert other.execute(query, ids).fetchone()[0] == n
    assert statements.count("COMMIT") < 1 + n
