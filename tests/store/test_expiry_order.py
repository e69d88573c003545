"""SQLite expiry in arrival order (migration 0013, ``tidings.store._expiry_order``): rows that
expire in arrival order take no index entry; the others are indexed and still expire first.
The sweep's answers on every store are tests/store/test_conformance.py's and
test_differential.py's; these look at the flags and the index on disk."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.store.helpers import NOW, make_account, message_id, send
from tidings.store import SQLiteStore
from tidings.store.migrate import load_migrations, migrate


def _flags(path: Path) -> list[tuple[int, float, int]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT seq, expires_at, out_of_order FROM inbox ORDER BY id")
        return [(seq, expires_at - NOW, flag) for seq, expires_at, flag in rows]


def _indexed(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        query = "SELECT count(*) FROM inbox INDEXED BY inbox_expiring_out_of_order"
        return int(conn.execute(query + " WHERE out_of_order = 1").fetchone()[0])


async def test_rows_in_expiry_order_take_no_index_entry_and_a_restart_keeps_the_mark(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    await store.open()
    (alice,) = await make_account(store, "alice")
    bob = await make_account(store, "bob", 2)
    for n, ttl in enumerate((10, 20, 20)):  # as at the relay: later sends expire later
        await store.submit(send(alice, "bob", bob, mid=message_id(n), expires_at=NOW + ttl))
    await store.close()
    store = SQLiteStore(path)
    await store.open()  # the mark is read back from the table: 20
    for n, ttl in ((3, 15), (4, 20), (5, 30)):
        await store.submit(send(alice, "bob", bob, mid=message_id(n), expires_at=NOW + ttl))
    try:
        assert [flag for _, _, flag in _flags(path)] == [0] * 6 + [1, 1] + [0] * 4
        assert _indexed(path) == 2
        result = await store.expire(NOW + 15, NOW + 99, 3)  # the oldest first, across both
        assert [(ref, item.seq, item.expires_at - NOW) for ref, item in result.expired] == [
            (bob[0], 1, 10),
            (bob[1], 1, 10),
            (bob[0], 4, 15),
        ]
        rest = await store.expire(NOW + 20, NOW + 99, 100)
        assert [(ref, item.seq) for ref, item in rest.expired] == [
            (bob[1], 4),  # NOW + 15, indexed
            *((bob[0], seq) for seq in (2, 3, 5)),  # NOW + 20: by device, then seq
            *((bob[1], seq) for seq in (2, 3, 5)),
        ]
        # the notices (expiring at NOW + 99) came after rows expiring at NOW + 30: in order
        assert _indexed(path) == 0
        assert {flag for _, ttl, flag in _flags(path) if ttl == 99} == {0}
    finally:
        await store.close()


def test_migration_0013_flags_the_rows_of_an_old_database(tmp_path: Path) -> None:
    """Existing rows: in order when they expire no earlier than every row before them."""
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    migrate(conn, load_migrations()[:11])
    for seq, ttl in enumerate((10, 30, 20, 30, 5, 40), start=1):
        conn.execute(
            "INSERT INTO inbox (account, device_id, seq, kind, sender_account, sender_device,"
            " message_id, payload, enqueued_at, expires_at) VALUES"
            " ('bob', 1, ?, 0, 'alice', 1, ?, x'00', ?, ?)",
            (seq, message_id(seq), NOW, NOW + ttl),
        )
    migrate(conn)
    rows = conn.execute("SELECT seq, out_of_order FROM inbox ORDER BY id").fetchall()
    assert rows == [(1, 0), (2, 0), (3, 1), (4, 0), (5, 1), (6, 0)]
    conn.close()
