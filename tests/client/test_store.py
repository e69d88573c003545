"""The client store: durability, a real kill -9, dedup, atomicity, statuses, migrations."""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

import tidings.client.store as store_package
import tidings.client.store.records as records_module
from tidings.client.store import (
    MAX_OUTBOX,
    SCHEMA_VERSION,
    ClientStore,
    ConversationSummary,
    DeviceStatus,
    Direction,
    Identity,
    MessageKey,
    OutboxFullError,
    OutboxItem,
    OutboxRequest,
    StoredMessage,
    TraceEntry,
    TracePoint,
)
from tidings.delivery import (
    ContentError,
    ContentKind,
    Message,
    Receipt,
    ReceiptKind,
    Reorderer,
    SenderDevice,
    Status,
    StreamKey,
    StreamState,
    Surfaced,
    parse_content,
)
from tidings.errors import IntegrityError, MigrationError, StoreError
from tidings.store.base import DeviceRef

SRC = Path(__file__).resolve().parents[2] / "src"
ME = Identity(bytes(range(32)), "alice", 1, "laptop", "ws://relay.example:8080")
BOB1, BOB2 = DeviceRef("bob", 1), DeviceRef("bob", 2)
CAROL = DeviceRef("carol", 1)
CONV = "alice:bob"
KEY = StreamKey(CONV, "bob", 1)


def mid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def receipt_for(n: int, to: str = "bob") -> OutboxRequest:
    """The delivered receipt this device queues for incoming message ``n``."""
    content = Receipt(ReceiptKind.DELIVERED, (mid(n),), 500.0).serialize()
    return OutboxRequest(mid(10_000 + n), to, content, ContentKind.RECEIPT, 500.0)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "client.db"


@pytest.fixture
def store(path: Path) -> Iterator[ClientStore]:
    with ClientStore(path) as s:
        s.save_identity(ME)
        yield s


def incoming(
    s: ClientStore,
    seq: int,
    n: int,
    counter: int,
    receipt: OutboxRequest | None = None,
    streams: Sequence[StreamState] = (),
    surfaced: Sequence[MessageKey] = (),
    notices: Mapping[SenderDevice, int] | None = None,
) -> bool:
    """Commit incoming message ``n`` (``counter``) from bob's device 1 as item ``seq``."""
    content = Message(CONV, counter, 100.0 + n, f"hello {n}".encode())
    return s.commit_incoming(
        seq,
        BOB1,
        mid(n),
        content,
        200.0 + n,
        receipt=receipt,
        streams=streams,
        surfaced=surfaced,
        notices=notices,
    )


# ------------------------------------------------------------ schema


def test_the_public_names_are_re_exported() -> None:
    assert set(store_package.__all__) == {
        *("MAX_OUTBOX", "SCHEMA_VERSION", "ClientStore", "ConversationSummary", "DeviceStatus"),
        *("Direction", "Identity", "MessageKey", "OutboxFullError", "OutboxItem"),
        *("OutboxRequest", "SentMark", "StoredMessage", "TraceEntry", "TracePoint"),
        *("CryptoWrites", "E2EIdentity", "PreKeyRow"),
        *("ConversationTimer", "ExpiredMessage", "DeviceMark", "SealedRecord"),
    }
    assert all(hasattr(store_package, name) for name in store_package.__all__)
    assert issubclass(OutboxFullError, StoreError)


def test_a_new_file_is_migrated_to_the_current_version(path: Path) -> None:
    ClientStore(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    with ClientStore(path) as s:  # reopening migrates nothing
        assert s.cursor() == 0
        assert s.get_identity() is None


def test_durability_settings(store: ClientStore) -> None:
    db = store._db
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: fsync every commit


def test_a_newer_schema_is_refused_untouched(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(MigrationError, match="newer"):
        ClientStore(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    assert db.execute("SELECT name FROM sqlite_master").fetchall() == []
    db.close()


def test_a_failed_migration_changes_nothing(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE messages (x)")  # collides with migration 1
    db.commit()
    db.close()
    with pytest.raises(MigrationError):
        ClientStore(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    assert db.execute("SELECT name FROM sqlite_master").fetchall() == [("messages",)]
    db.close()


def test_a_closed_store_raises_store_error(path: Path) -> None:
    s = ClientStore(path)
    s.close()
    with pytest.raises(StoreError):
        s.cursor()
    with pytest.raises(StoreError):
        s.add_trace(mid(1), "written", 1.0)


# ------------------------------------------------------------ identity


def test_identity(path: Path) -> None:
    with ClientStore(path) as s:
        assert s.get_identity() is None
        with pytest.raises(StoreError):
            s.set_server_key(b"k" * 32)
        s.save_identity(ME)
        s.set_server_key(b"k" * 32)
        s.set_read_receipts(False)
        with pytest.raises(IntegrityError):
            s.set_server_key(b"short")
    with ClientStore(path) as s:
        identity = s.get_identity()
        assert identity == Identity(
            ME.noise_private_key, "alice", 1, "laptop", ME.server_url, b"k" * 32, False
        )
        s.set_server_key(None)
        assert s.get_identity() == dataclasses.replace(ME, read_receipts=False)


def test_a_bad_private_key_is_refused(path: Path) -> None:
    with ClientStore(path) as s, pytest.raises(IntegrityError):
        s.save_identity(Identity(b"short", "alice", 1, "laptop", "ws://x"))


# ------------------------------------------------------------ outbox and counters


def test_compose_allocates_counters_per_conversation(store: ClientStore) -> None:
    item, message = store.compose(mid(1), "bob", CONV, b"one", 100.0)
    assert message == Message(CONV, 1, 100.0, b"one")
    assert parse_content(item.content) == message
    assert (item.kind, item.recipient, item.attempts) == (ContentKind.MESSAGE, "bob", 0)
    assert store.compose(mid(2), "bob", CONV, b"two", 101.0)[1].counter == 2
    assert store.compose(mid(3), "carol", "alice:carol", b"hi", 102.0)[1].counter == 1
    assert store.next_counter(CONV) == 3
    assert store.next_counter("alice:nobody") == 1
    assert [p.message_id for p in store.pending()] == [mid(1), mid(2), mid(3)]
    assert store.trace(mid(1)) == [TraceEntry("composed", 100.0, None)]
    sent = store.message(mid(1))
    assert isinstance(sent, StoredMessage)
    assert (sent.direction, sent.sender, sent.recipient, sent.shown) == (
        Direction.OUT,
        DeviceRef("alice", 1),
        "bob",
        1,
    )
    assert store.message_status(mid(1)) is Status.PENDING


def test_a_failed_compose_uses_no_counter(store: ClientStore) -> None:
    store.compose(mid(1), "bob", CONV, b"one", 100.0)
    with pytest.raises(IntegrityError):
        store.compose(mid(1), "bob", CONV, b"reused id", 101.0)
    with pytest.raises(ContentError):
        store.compose(mid(2), "bob", CONV, b"x", -1.0)
    assert store.next_counter(CONV) == 2
    assert store.compose(mid(3), "bob", CONV, b"two", 102.0)[1].counter == 2


def test_compose_needs_an_identity(path: Path) -> None:
    with ClientStore(path) as s, pytest.raises(StoreError, match="identity"):
        s.compose(mid(1), "bob", CONV, b"x", 1.0)


def test_the_outbox_is_bounded(store: ClientStore, monkeypatch: pytest.MonkeyPatch) -> None:
    assert MAX_OUTBOX == 10_000
    monkeypatch.setattr(records_module, "MAX_OUTBOX", 2)  # where it is defined and read
    store.compose(mid(1), "bob", CONV, b"1", 1.0)
    store.enqueue(mid(2), "bob", b"c", ContentKind.RECEIPT, 2.0)
    with pytest.raises(OutboxFullError, match="full"):
        store.compose(mid(3), "bob", CONV, b"3", 3.0)
    with pytest.raises(OutboxFullError):
        store.enqueue(mid(4), "bob", b"c", ContentKind.RECEIPT, 4.0)
    assert store.next_counter(CONV) == 2
    # receiving never stops: the delivered receipt of an incoming message is exempt
    assert incoming(store, 1, 5, 1, receipt=receipt_for(5))
    assert store.outbox_size() == 3


def test_sent_and_failed(store: ClientStore) -> None:
    store.compose(mid(1), "bob", CONV, b"one", 100.0)
    store.compose(mid(2), "nobody", "alice:nobody", b"two", 100.0)
    assert store.set_attempt(mid(1), 2, 150.0)
    assert store.pending()[0].attempts == 2
    assert store.pending()[0].next_attempt_at == 150.0
    assert store.pending()[0].entry().next_attempt_at == 150.0
    assert store.mark_sent(mid(1), 1_000.5, 151.0, [BOB1, BOB2])
    assert not store.mark_sent(mid(1), 1_000.5, 152.0)  # a repeated ✓ changes nothing
    assert not store.set_attempt(mid(1), 3, 200.0)
    assert store.message_status(mid(1)) is Status.SENT
    assert {d: s.status for d, s in store.statuses(mid(1)).items()} == {
        BOB1: Status.SENT,
        BOB2: Status.SENT,
    }
    message = store.message(mid(1))
    assert message is not None
    assert message.stored_at == 1_000.5
    assert store.mark_failed(mid(2), 8, "no such account", 160.0)
    assert not store.mark_failed(mid(2), 8, "no such account", 161.0)
    assert store.message_status(mid(2)) is Status.FAILED
    assert store.trace(mid(2))[-1] == TraceEntry("refused", 160.0, "8 no such account")
    assert store.pending() == []


def test_outbox_item_finds_an_entry_queued_inside_another_transaction(store: ClientStore) -> None:
    composed, _ = store.compose(mid(1), "bob", CONV, b"one", 100.0)
    assert store.outbox_item(mid(1)) == composed
    assert incoming(store, 1, 2, 1, receipt=receipt_for(2))
    receipt = store.outbox_item(mid(10_002))
    assert isinstance(receipt, OutboxItem)
    assert receipt == store.pending()[-1]
    assert (receipt.kind, receipt.recipient, receipt.attempts) == (ContentKind.RECEIPT, "bob", 0)
    assert receipt.position > composed.position
    assert receipt.entry().order == receipt.position  # what the scheduler needs
    store.set_attempt(mid(10_002), 1, 42.0)
    assert store.outbox_item(mid(10_002)) == dataclasses.replace(
        receipt, attempts=1, next_attempt_at=42.0
    )
    store.mark_sent(mid(1), 2.0, 2.0)
    assert store.outbox_item(mid(1)) is None  # no longer queued
    assert store.outbox_item(mid(99)) is None  # never queued


# ------------------------------------------------------------ incoming


def test_commit_incoming_stores_everything_together(store: ClientStore) -> None:
    state = StreamState(StreamKey(CONV, "bob", 1), expected=2)
    assert incoming(
        store, 7, 1, 1, receipt=receipt_for(1), streams=[state], surfaced=[(BOB1, mid(1))]
    )
    assert store.cursor() == 7
    assert [p.message_id for p in store.pending()] == [mid(10_001)]
    assert store.reorder_states() == [state]
    [m] = store.messages(CONV)
    assert (m.sender, m.counter, m.body, m.direction) == (BOB1, 1, b"hello 1", Direction.IN)
    assert (m.sent_at, m.received_at, m.shown) == (101.0, 201.0, 1)
    assert store.has_message(BOB1, mid(1))
    assert not store.has_message(BOB2, mid(1))


def test_incoming_duplicates(store: ClientStore) -> None:
    assert incoming(store, 1, 1, 1, receipt=receipt_for(1))
    # the server redelivers the same item: nothing changes
    assert not incoming(store, 1, 1, 1, receipt=receipt_for(1))
    # the same message again at a new seq (a retried send): only the cursor moves
    assert not incoming(store, 2, 1, 1, receipt=receipt_for(1, to="x"))
    assert store.cursor() == 2
    assert len(store.pending()) == 1
    # the same message id from another device is another message (G3 key includes the sender)
    content = Message(CONV, 1, 1.0, b"other device")
    assert store.commit_incoming(3, BOB2, mid(1), content, 5.0)
    assert store.cursor() == 3


def test_a_failure_inside_commit_incoming_stores_nothing(store: ClientStore) -> None:
    store.enqueue(mid(10_001), "bob", b"x", ContentKind.RECEIPT, 1.0)  # the receipt id collides
    with pytest.raises(IntegrityError):
        incoming(store, 5, 1, 1, receipt=receipt_for(1), streams=[StreamState(KEY)])
    assert store.cursor() == 0
    assert not store.has_message(BOB1, mid(1))
    assert store.reorder_states() == []
    assert store.outbox_size() == 1


def test_a_crash_inside_commit_incoming_stores_nothing(
    store: ClientStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object) -> None:
        raise RuntimeError("simulated failure after the insert and the cursor")

    monkeypatch.setattr(ClientStore, "_show", boom)
    with pytest.raises(RuntimeError):
        incoming(store, 5, 1, 1, receipt=receipt_for(1), surfaced=[(BOB1, mid(1))])
    monkeypatch.undo()
    assert store.cursor() == 0
    assert not store.has_message(BOB1, mid(1))
    assert store.pending() == []
    assert incoming(store, 5, 1, 1)  # and the store still works


def test_advance_cursor(store: ClientStore) -> None:
    assert store.advance_cursor(3)
    assert not store.advance_cursor(3)
    assert not store.advance_cursor(2)
    assert store.cursor() == 3


def test_held_messages_are_shown_in_order_once_surfaced(store: ClientStore) -> None:
    key = KEY
    r: Reorderer[bytes] = Reorderer()
    events = r.receive(key, 2, mid(2), 10.0)  # held behind 1
    assert incoming(store, 1, 2, 2, streams=r.changed_states())
    assert store.messages(CONV) == []
    assert [m.message_id for m in store.unsurfaced()] == [mid(2)]
    events = r.receive(key, 1, mid(1), 11.0)
    shown = [(BOB1, e.item) for e in events if isinstance(e, Surfaced)]
    assert incoming(store, 2, 1, 1, streams=r.changed_states(), surfaced=shown)
    assert [m.counter for m in store.messages(CONV)] == [1, 2]
    assert store.unsurfaced() == []
    assert store.reorder_states() == [StreamState(key, expected=3)]


def test_ordering_state_survives_a_restart(path: Path) -> None:
    key = KEY
    with ClientStore(path) as s:
        r: Reorderer[bytes] = Reorderer()
        r.receive(key, 1, mid(1), 10.0)
        incoming(s, 1, 1, 1, streams=r.changed_states(), surfaced=[(BOB1, mid(1))])
        r.receive(key, 3, mid(3), 11.0)
        incoming(s, 2, 3, 3, streams=r.changed_states())
    with ClientStore(path) as s:
        r = Reorderer(states=s.reorder_states())
        for m in s.unsurfaced():  # feed the held ones again, with their first arrival time
            assert m.received_at is not None
            stream = StreamKey(m.conversation, m.sender.account, m.sender.device_id)
            r.receive(stream, m.counter, m.message_id, m.received_at)
        assert r.held(key) == [3]
        assert r.next_deadline() == 203.0 + 30.0
        events = r.handle_timer(233.0)
        shown = [(BOB1, e.item) for e in events if isinstance(e, Surfaced)]
        s.mark_surfaced(shown, r.changed_states())
        assert [m.counter for m in s.messages(CONV)] == [1, 3]
        assert s.reorder_states() == [StreamState(key, expected=4, missing=((2, 2),))]


def test_a_notice_of_an_unfetched_expiry_commits_its_ordering_changes(path: Path) -> None:
    """DELIVER kind 2: the cursor, the streams and notices it changed, and the held messages
    it released, in one transaction; the unmatched notices survive a restart."""
    with ClientStore(path) as s:
        r: Reorderer[bytes] = Reorderer()
        r.receive(KEY, 2, mid(2), 10.0)  # held behind 1
        incoming(s, 1, 2, 2, streams=r.changed_states(), notices=r.changed_notices())
        events = r.expired("bob", 1)  # 1 expired: 2 is released
        shown = [(BOB1, e.item) for e in events if isinstance(e, Surfaced)]
        assert s.commit_expired_unfetched(2, r.changed_states(), shown, r.changed_notices())
        assert not s.commit_expired_unfetched(2, [], [], {})  # the same item again
        assert s.cursor() == 2
        assert [m.counter for m in s.messages(CONV)] == [2]
        assert s.reorder_states() == [StreamState(KEY, expected=3, missing=((1, 1),))]
        assert s.expired_notices() == {}
        r.expired("bob", 1)  # nothing waits: kept for bob.1's next gap
        assert s.commit_expired_unfetched(3, r.changed_states(), [], r.changed_notices())
    with ClientStore(path) as s:
        assert s.expired_notices() == {("bob", 1): 1}
        r = Reorderer(states=s.reorder_states(), notices=s.expired_notices())
        events = r.receive(KEY, 4, mid(4), 20.0)  # 3 expired: 4 is shown at once
        shown = [(BOB1, e.item) for e in events if isinstance(e, Surfaced)]
        assert shown == [(BOB1, mid(4))]
        assert incoming(
            s, 4, 4, 4, streams=r.changed_states(), surfaced=shown, notices=r.changed_notices()
        )
        assert s.expired_notices() == {}


def test_a_retried_refusal_is_recorded_with_its_trace(store: ClientStore) -> None:
    store.compose(mid(1), "bob", CONV, b"one", 100.0)
    points = [("written", 100.1, None), ("refused:QUEUE_FULL", 100.2, "full; retry in 5.0 s")]
    assert store.set_attempt(mid(1), 1, 105.2, points)
    assert store.pending()[0].next_attempt_at == 105.2
    assert store.trace(mid(1))[1:] == [TraceEntry(*p) for p in points]
    with pytest.raises(IntegrityError):
        store.set_attempt(mid(1), 2, 110.0, [("refused:queue full", 106.0, None)])
    assert store.pending()[0].attempts == 1  # nothing of the failed call was kept
    assert not store.set_attempt(mid(9), 1, 1.0, points)
    assert store.trace(mid(9)) == []


# ------------------------------------------------------------ statuses, receipts, expiry, trace


def test_statuses_never_go_backwards(store: ClientStore) -> None:
    store.compose(mid(1), "bob", CONV, b"x", 1.0)
    assert store.update_status(mid(1), BOB1, Status.READ, 5.0)
    assert not store.update_status(mid(1), BOB1, Status.DELIVERED, 6.0)
    assert not store.update_status(mid(1), BOB1, Status.SENT, 7.0)
    assert not store.update_status(mid(1), BOB1, Status.EXPIRED, 8.0)
    assert not store.update_status(mid(1), BOB1, Status.READ, 9.0)
    assert store.statuses(mid(1))[BOB1] == DeviceStatus(Status.READ, 5.0)
    assert not store.update_status(mid(1), BOB2, Status.PENDING, 5.0)


def test_receipts_move_statuses_and_the_trace(store: ClientStore) -> None:
    store.compose(mid(1), "bob", CONV, b"x", 1.0)
    store.compose(mid(2), "bob", CONV, b"y", 2.0)
    store.mark_sent(mid(1), 3.0, 3.5, [BOB1, BOB2])
    delivered = Receipt(ReceiptKind.DELIVERED, (mid(1), mid(2), mid(99)), 4.0)
    assert store.commit_receipt(1, BOB1, delivered, 5.0) == [mid(1), mid(2)]
    assert store.commit_receipt(1, BOB1, delivered, 5.0) == []  # the same item again
    assert store.commit_receipt(2, BOB1, delivered, 5.5) == []  # a duplicate receipt
    assert store.message_status(mid(1)) is Status.SENT  # bob's device 2 has not got it yet
    assert store.commit_receipt(3, BOB2, delivered, 6.0) == [mid(1), mid(2)]
    assert store.message_status(mid(1)) is Status.DELIVERED
    read = Receipt(ReceiptKind.READ, (mid(1),), 7.0)
    assert store.commit_receipt(4, CAROL, read, 8.0) == []  # not a recipient of mid(1)
    assert store.commit_receipt(5, BOB1, read, 8.0) == [mid(1)]
    assert store.cursor() == 5
    assert [t.point for t in store.trace(mid(1))] == [
        "composed",
        "sent",
        "delivered:bob.1",
        "delivered:bob.2",
        "read:bob.1",
    ]
    assert store.trace(mid(1))[2] == TraceEntry("delivered:bob.1", 5.0, "device_time=4.0")


def test_expiry_notices(store: ClientStore) -> None:
    store.compose(mid(1), "bob", CONV, b"x", 1.0)
    store.mark_sent(mid(1), 2.0, 2.0, [BOB1, BOB2])
    delivered = Receipt(ReceiptKind.DELIVERED, (mid(1),), 3.0)
    store.commit_receipt(1, BOB1, delivered, 3.0)
    assert not store.commit_expired(2, mid(1), BOB1, 10.0)  # delivered can't expire
    assert store.commit_expired(3, mid(1), BOB2, 10.0)
    assert not store.commit_expired(3, mid(1), BOB2, 10.0)  # same item again
    assert not store.commit_expired(4, mid(99), BOB2, 10.0)  # unknown message
    assert store.cursor() == 4
    assert store.statuses(mid(1))[BOB2].status is Status.EXPIRED
    assert store.trace(mid(1))[-1] == TraceEntry("expired:bob.2", 10.0, None)
    assert store.message_status(mid(1)) is Status.DELIVERED  # bob's device 1 has it
    store.commit_expired(5, mid(1), BOB1, 11.0)
    assert store.message_status(mid(1)) is Status.DELIVERED


def test_every_device_expired(store: ClientStore) -> None:
    store.compose(mid(1), "bob", CONV, b"x", 1.0)
    store.mark_sent(mid(1), 2.0, 2.0, [BOB1])
    store.commit_expired(1, mid(1), BOB1, 10.0)
    assert store.message_status(mid(1)) is Status.EXPIRED
    assert store.message_status(mid(42)) is None


def test_trace(store: ClientStore) -> None:
    store.add_trace(mid(1), TracePoint.TCP_ACKED, 3.0, "rtt=0.012")
    store.add_trace(mid(1), TracePoint.WRITTEN, 2.0)
    store.add_trace(mid(1), TracePoint.DELIVERED.at(BOB2), 4.0)
    assert store.trace(mid(1)) == [
        TraceEntry("written", 2.0, None),
        TraceEntry("tcp_acked", 3.0, "rtt=0.012"),
        TraceEntry("delivered:bob.2", 4.0, None),
    ]
    store.add_trace(mid(1), "refused:QUEUE_FULL", 4.5, "full")  # a refusal, by its code name
    bad_points = ("", "Written", "delivered:", "delivered:bob", "x; DROP TABLE trace")
    for bad in (*bad_points, "refused:queue_full", "refused:QUEUE FULL", "refused:1"):
        with pytest.raises(IntegrityError):
            store.add_trace(mid(1), bad, 5.0)
    assert len(store.trace(mid(1))) == 4


def test_add_traces_records_several_points_at_once(store: ClientStore) -> None:
    store.add_traces(
        mid(1),
        [(TracePoint.TCP_ACKED, 3.0, "rtt=0.012"), ("written", 2.0, None)],
    )
    assert store.trace(mid(1)) == [
        TraceEntry("written", 2.0, None),
        TraceEntry("tcp_acked", 3.0, "rtt=0.012"),
    ]
    store.add_traces(mid(1), [])
    assert len(store.trace(mid(1))) == 2


def test_add_traces_is_one_transaction(store: ClientStore) -> None:
    good = (TracePoint.DELIVERED.at(BOB1), 4.0, None)
    with pytest.raises(IntegrityError, match="not a trace point"):
        store.add_traces(mid(1), [good, ("Bad", 5.0, None), ("read:bob.1", 6.0, None)])
    assert store.trace(mid(1)) == []  # the valid point before the bad one is not kept


# ------------------------------------------------------------ history


def test_messages_conversations_and_read(store: ClientStore) -> None:
    store.compose(mid(1), "bob", CONV, b"hi bob", 1.0)
    for n in (2, 3):
        incoming(store, n, n, n - 1, surfaced=[(BOB1, mid(n))])
    store.compose(mid(4), "carol", "alice:carol", b"hi carol", 300.0)
    assert [m.message_id for m in store.messages(CONV)] == [mid(1), mid(2), mid(3)]
    assert [m.message_id for m in store.messages(CONV, limit=2)] == [mid(2), mid(3)]
    summaries = store.conversations()
    assert all(isinstance(c, ConversationSummary) for c in summaries)
    assert [(c.conversation, c.messages, c.unread) for c in summaries] == [
        ("alice:carol", 1, 0),
        (CONV, 3, 2),
    ]
    assert summaries[1].last_at == 203.0
    read = OutboxRequest(mid(50), "bob", b"read receipt", ContentKind.RECEIPT, 400.0)
    keys = [(BOB1, mid(2)), (BOB1, mid(3)), (DeviceRef("alice", 1), mid(1))]
    assert store.mark_read(keys, 400.0, [read]) == [(BOB1, mid(2)), (BOB1, mid(3))]
    assert store.mark_read(keys, 401.0) == []
    assert store.conversations()[1].unread == 0
    assert [p.message_id for p in store.pending()][-1] == mid(50)


# ------------------------------------------------------------ durability


def test_everything_survives_close_and_reopen(path: Path) -> None:
    with ClientStore(path) as s:
        s.save_identity(ME)
        s.compose(mid(1), "bob", CONV, b"queued", 1.0)
        s.compose(mid(2), "bob", CONV, b"sent", 2.0)
        s.mark_sent(mid(2), 3.0, 3.0, [BOB1])
        incoming(s, 9, 3, 1, receipt=receipt_for(3), surfaced=[(BOB1, mid(3))])
        s.add_trace(mid(1), "written", 4.0)
    with ClientStore(path) as s:
        assert s.get_identity() == ME
        assert [p.message_id for p in s.pending()] == [mid(1), mid(10_003)]
        assert s.next_counter(CONV) == 3
        assert s.cursor() == 9
        assert s.message_status(mid(2)) is Status.SENT
        assert [m.message_id for m in s.messages(CONV)] == [mid(1), mid(2), mid(3)]
        assert [t.point for t in s.trace(mid(1))] == ["composed", "written"]


CHILD = """
import sys
from tidings.client.store import ClientStore

store = ClientStore(sys.argv[1])
n = 0
while True:
    n += 1
    store.compose(n.to_bytes(16, "big"), "bob", "alice:bob", b"message %d" % n, float(n))
    sys.stdout.write(f"{n}\\n")  # only after compose() returned: the commit is durable
    sys.stdout.flush()
"""


@pytest.mark.proc
def test_kill_9_loses_no_enqueued_message(path: Path) -> None:
    """G2 with a real process: every id printed after compose() returned is in the outbox."""
    with ClientStore(path) as s:
        s.save_identity(ME)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True, env=env
    ) as child:
        assert child.stdout is not None
        acked = [int(child.stdout.readline()) for _ in range(200)]  # waits on the pipe
        child.send_signal(signal.SIGKILL)
        *complete, _cut = child.stdout.read().split("\n")  # a cut-off line does not count
        acked += [int(line) for line in complete]
        assert child.wait() == -signal.SIGKILL
    assert acked == list(range(1, len(acked) + 1))
    with ClientStore(path) as s:
        pending = s.pending()
        queued = [int.from_bytes(p.message_id, "big") for p in pending]
        assert set(acked) <= set(queued)
        # counters: neither reused nor skipped, whatever instant the kill hit
        counters = [parse_content(p.content) for p in pending]
        assert [c.counter for c in counters if isinstance(c, Message)] == queued
        assert s.next_counter(CONV) == len(queued) + 1


def test_a_store_of_version_3_is_migrated_and_its_messages_count_as_seen(path: Path) -> None:
    from tidings.client.migrations import MIGRATIONS
    from tidings.client.store._sql import statements

    db = sqlite3.connect(path, isolation_level=None)
    for n, script in enumerate(MIGRATIONS[:3], 1):
        for stmt in statements(script):
            db.execute(stmt)
        db.execute(f"PRAGMA user_version = {n}")
    db.execute(
        "INSERT INTO messages (message_id, sender_account, sender_device, conversation, counter,"
        " body, sent_at, direction, received_at, shown) VALUES (?, 'bob', 1, 'alice:bob', 1,"
        " x'6869', 10.0, 0, 11.0, 1)",
        (b"\x01" * 16,),
    )
    db.close()
    with ClientStore(path) as s:
        (m,) = s.messages("alice:bob")
        assert m.body == b"hi" and m.seen_at == 11.0
        assert s.unseen() == []


def test_received_messages_are_unseen_until_marked(store: ClientStore) -> None:
    bob = DeviceRef("bob", 1)
    for counter in (1, 2):
        mid = bytes([counter]) * 16
        content = Message("alice:bob", counter, 10.0, b"m%d" % counter)
        assert store.commit_incoming(counter, bob, mid, content, 20.0, surfaced=[(bob, mid)])
    assert [m.counter for m in store.unseen()] == [1, 2]
    assert store.mark_seen([b"\x01" * 16], 30.0) == 1
    assert store.mark_seen([b"\x01" * 16], 31.0) == 0  # once
    assert [m.counter for m in store.unseen()] == [2]
    (first, _) = store.messages("alice:bob")
    assert first.seen_at == 30.0


def test_unseen_pages_follow_the_display_order_not_the_marks(store: ClientStore) -> None:
    """``after`` gives the next page even before the last one was marked seen (a daemon marks
    what ``listen`` printed when it gets to it)."""
    bob = DeviceRef("bob", 1)
    for counter in range(1, 6):
        mid = bytes([counter]) * 16
        content = Message("alice:bob", counter, 10.0, b"m%d" % counter)
        assert store.commit_incoming(counter, bob, mid, content, 20.0, surfaced=[(bob, mid)])
    first = store.unseen(2)
    assert [m.counter for m in first] == [1, 2]
    last = first[-1].shown
    assert last is not None
    assert [m.counter for m in store.unseen(2, last)] == [3, 4]
    store.mark_seen([bytes([3]) * 16], 30.0)
    assert [m.counter for m in store.unseen(10, last)] == [4, 5]
    assert [m.counter for m in store.unseen(10)] == [1, 2, 4, 5]
