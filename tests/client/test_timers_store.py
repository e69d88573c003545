"""Disappearing messages in the client store: the timer rule, the expiry clock, the sweep."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidings.client.migrations import MIGRATIONS
from tidings.client.store import ClientStore, Direction, Identity
from tidings.client.store._sql import statements
from tidings.delivery import ContentError, Message, Timer, parse_content
from tidings.refs import DeviceRef

ME = Identity(bytes(range(32)), "alice", 1, "laptop", "ws://relay.example:8080")
ALICE = DeviceRef("alice", 1)
ALICE2 = DeviceRef("alice", 2)
BOB = DeviceRef("bob", 1)
CONV = "alice:bob"


def mid(n: int) -> bytes:
    return n.to_bytes(16, "big")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClientStore]:
    with ClientStore(tmp_path / "client.db") as s:
        s.save_identity(ME)
        yield s


class Seqs:
    def __init__(self) -> None:
        self.n = itertools.count(1)

    def __call__(self) -> int:
        return next(self.n)


def receive(store: ClientStore, seq: int, n: int, body: str, expires_in: int = 0) -> None:
    content = Message(CONV, n, 100.0 + n, body.encode(), expires_in)
    assert store.commit_incoming(seq, BOB, mid(n), content, 200.0, surfaced=[(BOB, mid(n))])


# ------------------------------------------------------------ the timer rule


def test_the_latest_setting_wins_whatever_the_arrival_order() -> None:
    settings = [
        (BOB, Timer(CONV, 60, 10.0)),
        (ALICE2, Timer(CONV, 3600, 12.0)),
        (BOB, Timer(CONV, 0, 11.0)),
        (DeviceRef("alice", 3), Timer(CONV, 30, 12.0)),  # same time: account, then device
    ]
    results = set()
    for order in itertools.permutations(settings):
        with ClientStore(":memory:") as s:
            s.save_identity(ME)
            for seq, (by, timer) in enumerate(order, 1):
                s.commit_timer(seq, by, timer)
            t = s.conversation_timer(CONV)
            assert t is not None
            results.add((t.seconds, t.set_at, t.set_by))
    assert results == {(30, 12.0, DeviceRef("alice", 3))}


def test_an_older_setting_changes_nothing_but_the_cursor(store: ClientStore) -> None:
    assert store.commit_timer(1, BOB, Timer(CONV, 60, 10.0))
    assert not store.commit_timer(2, BOB, Timer(CONV, 5, 9.0))
    assert store.cursor() == 2
    assert store.timer_seconds(CONV) == 60
    assert not store.commit_timer(2, BOB, Timer(CONV, 5, 99.0))  # a seq applied before
    assert store.timer_seconds(CONV) == 60


def test_a_local_setting_wins_even_when_this_clock_is_behind(store: ClientStore) -> None:
    store.commit_timer(1, BOB, Timer(CONV, 60, 1_000.0))  # bob's clock is ahead of ours
    timer, request = store.set_timer(ALICE, CONV, 300, 500.0, mid(99), "bob")
    assert request.message_id == mid(99)
    assert timer.set_at > 1_000.0 and timer.seconds == 300
    assert store.timer_seconds(CONV) == 300
    queued = store.outbox_item(mid(99))
    assert queued is not None and queued.recipient == "bob"
    assert parse_content(queued.content) == timer
    with pytest.raises(ContentError):
        store.set_timer(ALICE, CONV, -1, 600.0, mid(98), "bob")
    assert store.timer_seconds(CONV) == 300 and store.outbox_item(mid(98)) is None


def test_messages_composed_carry_the_conversation_timer(store: ClientStore) -> None:
    _, plain = store.compose(mid(1), "bob", CONV, b"before", 10.0)
    assert plain.expires_in == 0
    store.set_timer(ALICE, CONV, 60, 11.0, mid(2), "bob")
    item, message = store.compose(mid(3), "bob", CONV, b"after", 12.0)
    assert message.expires_in == 60
    assert parse_content(item.content) == message
    sent = store.message(mid(3))
    assert sent is not None and sent.expires_in == 60
    assert sent.expires_at == 72.0  # a sent message's clock starts when it is sent
    before = store.message(mid(1))
    assert before is not None and before.expires_at is None


# ------------------------------------------------------------ the expiry clock


def test_a_received_message_runs_out_from_when_it_was_first_displayed(store: ClientStore) -> None:
    seq = Seqs()
    receive(store, seq(), 1, "seen first", 60)
    receive(store, seq(), 2, "read first", 60)
    receive(store, seq(), 3, "stays", 0)
    unstarted = store.message(mid(1))
    assert unstarted is not None and unstarted.expires_at is None  # not displayed yet
    store.mark_seen([mid(1)], 300.0)
    store.mark_read([(BOB, mid(1))], 400.0)  # read later: the clock started when it was seen
    store.mark_read([(BOB, mid(2)), (BOB, mid(3))], 350.0)
    store.mark_seen([mid(2), mid(3)], 500.0)
    one, two, three = (store.message(mid(n)) for n in (1, 2, 3))
    assert one is not None and one.expires_at == 360.0
    assert two is not None and two.expires_at == 410.0
    assert three is not None and three.expires_at is None
    assert store.next_expiry() == 360.0


def test_the_sweep_deletes_the_message_its_search_words_statuses_and_trace(
    store: ClientStore,
) -> None:
    seq = Seqs()
    receive(store, seq(), 1, "secret rendezvous", 60)
    receive(store, seq(), 2, "secret but lasting", 0)
    store.set_timer(ALICE, CONV, 30, 100.0, mid(10), "bob")
    store.compose(mid(11), "bob", CONV, b"secret reply", 100.0)
    store.mark_sent(mid(11), 100.5, 100.5, [BOB])
    store.mark_seen([mid(1), mid(2)], 120.0)
    assert len(store.search("secret")) == 3
    assert store.trace(mid(11)) and store.statuses(mid(11))

    assert store.expire_due(129.0) == []  # nothing ran out yet
    gone = store.expire_due(130.0)
    assert [g.message_id for g in gone] == [mid(11)]  # sent at 100 with 30 s
    assert store.message(mid(11)) is None
    assert store.trace(mid(11)) == [] and store.statuses(mid(11)) == {}
    gone = store.expire_due(180.0)
    assert [(g.message_id, g.conversation) for g in gone] == [(mid(1), CONV)]
    assert store.message(mid(1)) is None
    assert [m.body for m in store.search("secret")] == [b"secret but lasting"]
    # the search index holds no row of the deleted ones (not only: they are not found)
    fts = sqlite3.connect(store.path).execute("SELECT count(*) FROM messages_fts").fetchone()
    assert fts == (1,)
    assert store.next_expiry() is None
    assert [c.messages for c in store.conversations()] == [1]


def test_the_sweep_takes_a_bounded_batch(store: ClientStore) -> None:
    seq = Seqs()
    for n in range(1, 8):
        receive(store, seq(), n, f"m{n}", 10)
    store.mark_seen([mid(n) for n in range(1, 8)], 100.0)
    assert len(store.expire_due(200.0, limit=5)) == 5
    assert len(store.expire_due(200.0, limit=5)) == 2


def test_a_received_message_keeps_its_own_timer(store: ClientStore) -> None:
    """The message's timer is the sender's when it composed it, not the receiver's now."""
    store.commit_timer(1, BOB, Timer(CONV, 5, 1.0))
    receive(store, 2, 1, "sent with an hour", 3600)
    m = store.message(mid(1))
    assert m is not None and m.expires_in == 3600 and m.direction is Direction.IN


# ------------------------------------------------------------ migration


def test_a_store_of_version_5_gains_timers_and_keeps_its_messages(tmp_path: Path) -> None:
    path = tmp_path / "v5.db"
    db = sqlite3.connect(path, isolation_level=None)
    for version, script in enumerate(MIGRATIONS[:5], 1):
        for stmt in statements(script):
            db.execute(stmt)
        db.execute(f"PRAGMA user_version = {version}")
    db.execute(
        "INSERT INTO messages (message_id, sender_account, sender_device, conversation, counter,"
        " body, sent_at, direction, shown, seen_at) VALUES (?, 'bob', 1, ?, 1, ?, 1.0, 0, 1, 2.0)",
        (mid(1), CONV, b"old words"),
    )
    db.close()
    with ClientStore(path) as s:
        old = s.message(mid(1))
        assert old is not None and old.expires_in == 0 and old.expires_at is None
        assert s.conversation_timer(CONV) is None
        assert [m.body for m in s.search("old")] == [b"old words"]
        assert s.next_expiry() is None
