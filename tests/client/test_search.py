"""Full-text search of the local history (ClientStore.search, an FTS5 index kept by triggers)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidings.client.migrations import MIGRATIONS
from tidings.client.store import ClientStore, Identity
from tidings.client.store._sql import statements
from tidings.client.store.store import MAX_QUERY, fts_query
from tidings.delivery import Message, Reorderer, StreamKey, Surfaced
from tidings.refs import DeviceRef

ME = Identity(bytes(range(32)), "alice", 1, "laptop", "ws://relay.example:8080")
BOB = DeviceRef("bob", 1)
CONV = "alice:bob"
KEY = StreamKey(CONV, "bob", 1)


def mid(n: int) -> bytes:
    return n.to_bytes(16, "big")


class Feed:
    """Bob's messages arriving at alice's store, in the order given (held until in order)."""

    def __init__(self, store: ClientStore) -> None:
        self.store, self.r, self.seq = store, Reorderer[bytes](), 0

    def arrive(self, counter: int, body: str) -> None:
        self.seq += 1
        events = self.r.receive(KEY, counter, mid(counter), 10.0 + counter)
        shown = [(BOB, e.item) for e in events if isinstance(e, Surfaced)]
        content = Message(CONV, counter, 100.0 + counter, body.encode())
        assert self.store.commit_incoming(
            self.seq,
            BOB,
            mid(counter),
            content,
            200.0,
            streams=self.r.changed_states(),
            surfaced=shown,
        )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClientStore]:
    with ClientStore(tmp_path / "client.db") as s:
        s.save_identity(ME)
        yield s


def found(store: ClientStore, text: str, **kw: object) -> list[bytes]:
    return [m.body for m in store.search(text, **kw)]  # type: ignore[arg-type]


def test_words_prefixes_case_and_accents(store: ClientStore) -> None:
    feed = Feed(store)
    for n, body in enumerate(
        ["Climbing on Saturday?", "the café by the station", "CLIMB gear list", "nothing"], 1
    ):
        feed.arrive(n, body)
    assert found(store, "climb") == [b"CLIMB gear list", b"Climbing on Saturday?"]  # newest first
    assert found(store, "cafe") == ["the café by the station".encode()]
    assert found(store, "saturday climbing") == [b"Climbing on Saturday?"]  # every word
    assert found(store, "climb", limit=1) == [b"CLIMB gear list"]
    assert found(store, "climb", conversation="alice:carol") == []
    assert found(store, "sta") == ["the café by the station".encode()]  # the last word: prefix
    assert found(store, "zebra") == []


def test_a_held_message_is_found_once_it_is_shown(store: ClientStore) -> None:
    feed = Feed(store)
    feed.arrive(2, "second word")  # held: #1 has not come
    assert found(store, "second") == []
    feed.arrive(1, "first word")
    assert found(store, "word") == [b"second word", b"first word"]


def test_any_text_is_a_query_of_words_never_syntax(store: ClientStore) -> None:
    Feed(store).arrive(1, 'he said "NEAR(a b)" OR NOT')
    for text in ('"', 'said "near', "OR NOT", "NEAR(a", "a*b", "col:said", "-said", "((("):
        store.search(text)  # no FTS5 syntax error, whatever is typed
    assert found(store, '"near(a') == [b'he said "NEAR(a b)" OR NOT']
    for bad in ("", "   ", "x" * (MAX_QUERY + 1)):
        with pytest.raises(ValueError):
            store.search(bad)
    assert fts_query('a "b"') == '"a" """b"""*'


def test_a_store_from_before_search_is_indexed_when_migrated(tmp_path: Path) -> None:
    path = tmp_path / "client.db"
    db = sqlite3.connect(path)
    for script in MIGRATIONS[:4]:
        for stmt in statements(script):
            db.execute(stmt)
    db.execute("PRAGMA user_version = 4")
    db.execute(
        "INSERT INTO messages (message_id, sender_account, sender_device, conversation, counter,"
        " body, sent_at, direction, shown) VALUES (?, 'bob', 1, ?, 1, ?, 1.0, 0, 1)",
        (mid(1), CONV, b"an old message about kayaks"),
    )
    db.commit()
    db.close()
    with ClientStore(path) as s:
        assert found(s, "kayak") == [b"an old message about kayaks"]
        s._db.execute("DELETE FROM messages")  # deleted (disappearing messages): unsearchable
        assert found(s, "kayak") == []
