"""The ✓ of a burst: ClientStore.mark_sent_many records them in one transaction, each exactly as
mark_sent did one by one (outbox entry gone, stored_at, SENT at each device by advance(), the
buffered trace points then "sent"), and SentLog reports them only as the store recorded them."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidings.client.events import ClientEvent, StatusChanged
from tidings.client.sentlog import SentLog
from tidings.client.store import ClientStore, Identity, SentMark, TraceEntry, TracePoint
from tidings.client.store._outbox import IN_CHUNK
from tidings.delivery import ContentKind, Status
from tidings.errors import IntegrityError
from tidings.store.base import DeviceRef

ME = Identity(bytes(range(32)), "alice", 1, "laptop", "ws://relay.example:8080")
BOB1, BOB2 = DeviceRef("bob", 1), DeviceRef("bob", 2)
ALICE2 = DeviceRef("alice", 2)
CONV = "alice:bob"


def mid(n: int) -> bytes:
    return n.to_bytes(16, "big")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClientStore]:
    with ClientStore(tmp_path / "client.db") as s:
        s.save_identity(ME)
        yield s


def commits(store: ClientStore) -> list[str]:
    seen: list[str] = []
    store._db.set_trace_callback(lambda sql: seen.append(sql) if sql == "COMMIT" else None)
    return seen


def test_a_burst_of_sent_is_one_transaction_and_each_is_recorded(store: ClientStore) -> None:
    for n in (1, 2, 3):
        store.compose(mid(n), "bob", CONV, f"m{n}".encode(), 100.0)
    written = (TracePoint.WRITTEN, 101.0, None)
    acked = (TracePoint.TCP_ACKED, 101.5, None)
    marks = [
        SentMark(mid(n), 1_000.0 + n, 102.0 + n, (BOB1, BOB2), (written, acked)) for n in (1, 2, 3)
    ]
    seen = commits(store)
    done, overall = store.mark_sent_many(marks)
    assert len(seen) == 1  # one transaction for the three
    assert done == {mid(1), mid(2), mid(3)}
    assert overall == {mid(n): Status.SENT for n in (1, 2, 3)}
    assert store.pending() == []
    for n in (1, 2, 3):
        message = store.message(mid(n))
        assert message is not None and message.stored_at == 1_000.0 + n
        assert store.message_status(mid(n)) is Status.SENT
        assert {d: s.status for d, s in store.statuses(mid(n)).items()} == {
            BOB1: Status.SENT,
            BOB2: Status.SENT,
        }
        assert store.trace(mid(n)) == [
            TraceEntry(TracePoint.COMPOSED, 100.0, None),
            TraceEntry(TracePoint.WRITTEN, 101.0, None),
            TraceEntry(TracePoint.TCP_ACKED, 101.5, None),
            TraceEntry(TracePoint.SENT, 102.0 + n, f"stored_at={1_000.0 + n}"),
        ]


def test_a_repeated_sent_changes_nothing(store: ClientStore) -> None:
    store.compose(mid(1), "bob", CONV, b"one", 100.0)
    assert store.mark_sent_many([SentMark(mid(1), 1_000.0, 101.0, (BOB1,))])[0] == {mid(1)}
    trace = store.trace(mid(1))
    again = [SentMark(mid(1), 2_000.0, 201.0, (BOB1, BOB2)), SentMark(mid(9), 1.0, 1.0)]
    assert store.mark_sent_many(again) == (set(), {})  # mid(9) was never queued
    assert store.trace(mid(1)) == trace
    assert set(store.statuses(mid(1))) == {BOB1}
    message = store.message(mid(1))
    assert message is not None and message.stored_at == 1_000.0


def test_statuses_only_move_forward_and_the_roll_up_counts_them(store: ClientStore) -> None:
    """A delivered receipt that overtook the ✓ (a resend after a lost SENT) is kept."""
    store.compose(mid(1), "bob", CONV, b"one", 100.0)
    store.compose(mid(2), "bob", CONV, b"two", 100.0)
    assert store.update_status(mid(1), BOB1, Status.DELIVERED, 100.5)
    assert store.update_status(mid(2), BOB1, Status.DELIVERED, 100.5)
    assert store.update_status(mid(2), BOB2, Status.DELIVERED, 100.5)
    done, overall = store.mark_sent_many(
        [SentMark(mid(1), 1.0, 101.0, (BOB1, BOB2)), SentMark(mid(2), 1.0, 101.0, (BOB1, BOB2))]
    )
    assert done == {mid(1), mid(2)}
    assert overall == {mid(1): Status.SENT, mid(2): Status.DELIVERED}
    assert overall[mid(1)] is store.message_status(mid(1))
    assert overall[mid(2)] is store.message_status(mid(2))
    assert store.statuses(mid(1))[BOB1].status is Status.DELIVERED  # not back to SENT
    assert store.statuses(mid(1))[BOB2].status is Status.SENT


def test_own_copies_count_for_no_roll_up_and_a_receipt_has_none(store: ClientStore) -> None:
    store.compose(mid(1), "bob", CONV, b"one", 100.0)
    store.enqueue(mid(2), "bob", b"receipt", ContentKind.RECEIPT, 100.0)
    done, overall = store.mark_sent_many(
        [SentMark(mid(1), 1.0, 101.0, (BOB1, ALICE2)), SentMark(mid(2), 1.0, 101.0, (BOB1,))]
    )
    assert done == {mid(1), mid(2)}
    assert overall == {mid(1): Status.SENT}  # a receipt is not a message: no status to show
    assert store.pending() == []


def test_a_bad_trace_point_records_nothing_of_the_burst(store: ClientStore) -> None:
    store.compose(mid(1), "bob", CONV, b"one", 100.0)
    store.compose(mid(2), "bob", CONV, b"two", 100.0)
    bad = SentMark(mid(2), 1.0, 101.0, (BOB1,), (("Not A Point", 100.5, None),))
    with pytest.raises(IntegrityError):
        store.mark_sent_many([SentMark(mid(1), 1.0, 101.0, (BOB1,)), bad])
    assert [i.message_id for i in store.pending()] == [mid(1), mid(2)]
    assert store.statuses(mid(1)) == {}


def test_more_marks_than_one_statement_takes(store: ClientStore) -> None:
    n = 2 * IN_CHUNK + 7
    for i in range(n):
        store.compose(mid(i), "bob", CONV, b"x", 100.0)
    marks = [SentMark(mid(i), 1.0, 101.0, (BOB1,)) for i in range(n)]
    random.Random(9).shuffle(marks)  # the relay's order, not the outbox's
    done, overall = store.mark_sent_many(marks)
    assert len(done) == n and set(overall.values()) == {Status.SENT}
    assert store.pending() == []


def test_the_sent_log_reports_what_the_store_recorded(store: ClientStore) -> None:
    events: list[ClientEvent] = []
    log = SentLog(store, events.append)
    store.compose(mid(1), "bob", CONV, b"one", 100.0)
    store.compose(mid(2), "alice", "alice:alice", b"note", 100.0)  # a note to self
    log.later(mid(1), TracePoint.WRITTEN, 100.5)
    log.on_tcp_acked([mid(1)], 100.7)  # in flight: buffered with its ✓
    log.sent(mid(1), 1_000.0, 101.0, (BOB1, BOB2))
    log.sent(mid(2), 1_000.0, 101.0, ())  # no other own device: for no device
    log.sent(mid(1), 1_000.0, 101.0, (BOB1, BOB2))  # a repeated ✓: reported once
    assert log.pending and events == []
    seen = commits(store)
    log.flush()
    assert len(seen) == 1 and not log.pending
    assert [(e.message_id, e.device, e.status, e.overall) for e in events] == [
        (mid(1), BOB1, Status.SENT, Status.SENT),
        (mid(1), BOB2, Status.SENT, Status.SENT),
        (mid(2), None, Status.SENT, Status.SENT),
    ]
    assert all(isinstance(e, StatusChanged) for e in events)
    assert [t.point for t in store.trace(mid(1))] == ["composed", "written", "tcp_acked", "sent"]
    log.on_tcp_acked([mid(1)], 101.5)  # after the ✓: recorded on its own
    assert store.trace(mid(1))[-1] == TraceEntry(TracePoint.TCP_ACKED, 101.5, None)
