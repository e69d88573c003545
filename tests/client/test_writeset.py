"""The client store's write set: the cursor, ordering state and expiry notices a batch rewrites
are written once before its COMMIT, read back through it meanwhile, and dropped with it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidings.client.store import ClientStore
from tidings.delivery import Message, StreamKey, StreamState
from tidings.store.base import DeviceRef

ALICE = DeviceRef("alice", 1)
KEY = StreamKey("alice:bob", "alice", 1)
NOW = 1_800_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClientStore]:
    with ClientStore(tmp_path / "bob.db") as s:
        yield s


def on_disk(store: ClientStore, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(store.path) as db:
        return db.execute(sql).fetchall()


def store_message(store: ClientStore, n: int, **kwargs: object) -> bool:
    message = Message("alice:bob", n, NOW, b"m")
    return store.commit_incoming(
        n,
        ALICE,
        n.to_bytes(16, "big"),
        message,
        NOW,
        streams=[StreamState(KEY, n + 1)],
        surfaced=[(ALICE, n.to_bytes(16, "big"))],
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_batch_writes_its_rows_once_and_reads_them_back_meanwhile(store: ClientStore) -> None:
    store.begin_batch()
    for n in range(1, 6):
        assert store_message(store, n, notices={("alice", 1): n % 2})
    assert store.cursor() == 5
    assert store.reorder_states() == [StreamState(KEY, 6)]
    assert store.expired_notices() == {("alice", 1): 1}
    assert on_disk(store, "SELECT seq FROM cursor") == [(0,)]
    assert on_disk(store, "SELECT COUNT(*) FROM streams") == [(0,)]
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    store.commit_batch()
    store._db.set_trace_callback(None)
    assert sum("cursor" in s for s in statements) == 1
    assert sum("INTO streams" in s for s in statements) == 1
    assert on_disk(store, "SELECT seq FROM cursor") == [(5,)]
    assert on_disk(store, "SELECT expected FROM streams") == [(6,)]
    assert on_disk(store, "SELECT count FROM expired_notices") == [(1,)]
    assert on_disk(store, "SELECT shown FROM messages ORDER BY shown") == [
        (n,) for n in range(1, 6)
    ]


def test_a_notice_count_of_zero_deletes_its_row(store: ClientStore) -> None:
    assert store_message(store, 1, notices={("alice", 1): 2})
    store.begin_batch()
    assert store_message(store, 2, notices={("alice", 1): 0})
    assert store.expired_notices() == {}
    store.commit_batch()
    assert on_disk(store, "SELECT COUNT(*) FROM expired_notices") == [(0,)]


def test_a_rolled_back_batch_leaves_the_rows_as_they_were(store: ClientStore) -> None:
    assert store_message(store, 1)
    store.begin_batch()
    assert store_message(store, 2)
    assert store.cursor() == 2
    store.rollback_batch()
    assert store.cursor() == 1
    assert store.reorder_states() == [StreamState(KEY, 2)]
    assert on_disk(store, "SELECT seq FROM cursor") == [(1,)]


def test_a_duplicate_seq_in_the_batch_changes_nothing(store: ClientStore) -> None:
    store.begin_batch()
    assert store_message(store, 1)
    assert not store_message(store, 1)  # the batch's cursor is already there
    assert not store.advance_cursor(1)
    assert store.advance_cursor(7)
    store.commit_batch()
    assert on_disk(store, "SELECT seq FROM cursor") == [(7,)]
    assert on_disk(store, "SELECT COUNT(*) FROM messages") == [(1,)]
