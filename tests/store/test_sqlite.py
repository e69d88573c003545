"""SQLiteStore specifics: migrations, durability across reopen and kill -9, batching, threads."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

import tidings
from tests.store.helpers import NOW, make_account, message_id, send
from tidings.errors import MigrationError, StoreError
from tidings.store import DeviceRef, ItemKind, SQLiteStore, Stored
from tidings.store.migrate import Migration, load_migrations, migrate, schema_version
from tidings.store.sqlite import PAGE_SIZE

LATEST = len(load_migrations())


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


async def open_store(path: Path, **kwargs: int) -> SQLiteStore:
    store = SQLiteStore(path, **kwargs)
    await store.open()
    return store


# -- migrations -------------------------------------------------------------------------------


def test_migration_files_are_numbered_without_gaps() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, LATEST + 1))
    assert migrations[0].name == "init"


async def test_open_migrates_an_empty_database_and_reopen_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = await open_store(path)
    await store.close()
    assert user_version(path) == LATEST
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {"accounts", "devices", "link_codes", "inbox", "sent"} <= tables
    store = await open_store(path)
    await store.close()
    assert user_version(path) == LATEST


async def test_a_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    store = SQLiteStore(path)
    with pytest.raises(MigrationError, match="newer"):
        await store.open()
    with pytest.raises(StoreError, match="not open"):
        await store.devices("alice")
    assert user_version(path) == LATEST + 1


def _schema(conn: sqlite3.Connection) -> set[tuple[str, str, str]]:
    rows = conn.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
    return {(kind, name, " ".join((sql or "").split())) for kind, name, sql in rows}


#: The record key (migration 0010) of the message id 00 01 … 0f: its last 6 bytes first.
ROTATED = bytes([10, 11, 12, 13, 14, 15, *range(10)])


def test_every_earlier_version_migrates_to_the_schema_of_an_empty_database(
    tmp_path: Path,
) -> None:
    """From each version 0 … LATEST-1, with an account and a queued item in it, ``migrate``
    reaches the schema a fresh database gets and keeps the data; a multi-send item (0008)
    then drops its shared body with its row."""
    steps = load_migrations()
    fresh = sqlite3.connect(tmp_path / "fresh.db", isolation_level=None)
    migrate(fresh)
    expected = _schema(fresh)
    fresh.close()
    for start in range(LATEST):
        conn = sqlite3.connect(tmp_path / f"from{start}.db", isolation_level=None)
        assert migrate(conn, steps[:start]) == start
        if start >= 1:
            conn.execute("INSERT INTO accounts VALUES ('old', 2, 1.0)")
            conn.execute(
                "INSERT INTO inbox (account, device_id, seq, kind, sender_account, sender_device,"
                " message_id, payload, enqueued_at, expires_at) VALUES"
                " ('old', 1, 1, 0, 'x', 1, ?, x'00', 1.0, 2.0)",
                (bytes(16),),
            )
            # An idempotency record: 0010 keys it by the id's last 6 bytes first.
            column, key = ("message_id", bytes(range(16))) if start < 10 else ("id_key", ROTATED)
            conn.execute(
                f"INSERT INTO sent (sender_account, sender_device, {column}, stored_at,"
                " expires_at) VALUES ('x', 1, ?, 1.0, 2.0)",
                (key,),
            )
        assert migrate(conn) == LATEST
        assert _schema(conn) == expected, f"from version {start}"
        if start >= 1:
            assert conn.execute("SELECT count(*) FROM accounts").fetchone() == (1,)
            rows = conn.execute("SELECT sender_account, id_key, stored_at FROM sent").fetchall()
            assert rows == [("x", ROTATED, 1.0)]
            assert conn.execute("SELECT shared_id FROM inbox").fetchall() == [(None,)]
        conn.execute("INSERT INTO shared_bodies (id, body, refs) VALUES (5, x'01', 1)")
        conn.execute(
            "INSERT INTO inbox (account, device_id, seq, kind, sender_account, sender_device,"
            " message_id, payload, enqueued_at, expires_at, shared_id) VALUES"
            " ('old', 1, 2, 0, 'x', 1, ?, x'00', 1.0, 2.0, 5)",
            (bytes(16),),
        )
        conn.execute("DELETE FROM inbox WHERE seq = 2")
        assert conn.execute("SELECT count(*) FROM shared_bodies").fetchone() == (0,)
        conn.close()


def test_a_failed_migration_is_rolled_back(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    good = Migration(1, "good", "CREATE TABLE a (x INTEGER)")  # no trailing ";": still fine
    bad = Migration(2, "bad", "CREATE TABLE b (x INTEGER); INSERT INTO nowhere VALUES (1);")
    with pytest.raises(MigrationError, match="0002_bad"):
        migrate(conn, [good, bad])
    assert schema_version(conn) == 1
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert tables == {"a"}
    assert migrate(conn, [good]) == 1
    conn.close()


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not a database, it is a text file " * 100)
    with pytest.raises(StoreError):
        await SQLiteStore(path).open()


async def test_open_twice_is_refused(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "s.db")
    with pytest.raises(StoreError, match="already open"):
        await store.open()
    await store.close()
    await store.close()  # idempotent


# -- durability -------------------------------------------------------------------------------


async def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = await open_store(path)
    alice = await make_account(store, "alice", 2)
    (bob,) = await make_account(store, "bob")
    sent = await store.submit(send(alice[0], "bob", [bob, alice[1]], mid=message_id(1)))
    await store.ack(alice[1], 1)
    await store.close()

    store = await open_store(path)
    assert [d.ref for d in await store.devices("alice")] == alice
    assert isinstance(sent, Stored)
    assert await store.fetch(bob, 0, 10) == [sent.items[0][1]]
    assert (await store.last_seq(alice[1]), await store.queue_depth(alice[1])) == (1, 0)
    retry = await store.submit(send(alice[0], "bob", [bob, alice[1]], mid=message_id(1)))
    assert retry == Stored(items=(), stored_at=NOW, duplicate=True)
    await store.close()


async def test_close_commits_what_is_queued(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = await open_store(path)
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")
    sends = [store.submit(send(alice, "bob", [bob], mid=message_id(n))) for n in range(50)]
    # gather starts its tasks in order: every submit is queued before close() runs.
    *results, _ = await asyncio.gather(*sends, store.close())
    assert all(isinstance(result, Stored) for result in results)
    store = await open_store(path)
    assert await store.queue_depth(bob) == 50
    await store.close()


_WRITER = """
import asyncio, sys
from tidings.store import DeviceRef, SQLiteStore, Stored, Submission

async def main(path):
    store = SQLiteStore(path)
    await store.open()
    alice, bob = DeviceRef("alice", 1), DeviceRef("bob", 1)

    async def worker(w):
        for i in range(10**9):
            mid = f"{w:04d}{i:012d}".encode()
            sub = Submission(alice, mid, "bob", ((bob, b"x" * 200),), 1.0, 1e12, 10**9)
            result = await store.submit(sub)
            assert isinstance(result, Stored) and not result.duplicate, result
            sys.stdout.write(mid.decode() + "\\n")
            sys.stdout.flush()

    await asyncio.gather(*(worker(w) for w in range(16)))

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.parametrize("acked_before_kill", [1, 3000])
async def test_kill_9_loses_no_acknowledged_message(tmp_path: Path, acked_before_kill: int) -> None:
    path = tmp_path / "s.db"
    store = await open_store(path)
    await make_account(store, "alice")
    await make_account(store, "bob")
    await store.close()

    src = str(Path(tidings.__file__).parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _WRITER, str(path), stdout=asyncio.subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    acked: list[str] = []
    try:
        async with asyncio.timeout(60):  # a guard against a hung writer, not a wait
            while len(acked) < acked_before_kill:
                line = await proc.stdout.readline()
                assert line.endswith(b"\n"), f"writer ended early: {await proc.wait()}"
                acked.append(line.decode().strip())
    finally:
        proc.send_signal(signal.SIGKILL)
    # Lines already in the pipe were acknowledged too; a torn last line was not.
    rest = (await proc.stdout.read()).decode()
    assert await proc.wait() == -signal.SIGKILL
    acked.extend(rest.split("\n")[:-1])

    store = await open_store(path)
    items = await store.fetch(DeviceRef("bob", 1), 0, 10**9)
    await store.close()
    kept = [item.message_id.decode() for item in items]
    assert all(item.kind is ItemKind.MESSAGE for item in items)
    assert len(kept) == len(set(kept))  # nothing stored twice
    assert set(acked) <= set(kept)  # nothing acknowledged lost
    assert [item.seq for item in items] == list(range(1, len(items) + 1))


# -- group commit -----------------------------------------------------------------------------


async def test_concurrent_submits_share_commits(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "s.db")
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")
    commits, ops = store.stats.commits, store.stats.committed_ops
    await asyncio.gather(
        *(store.submit(send(alice, "bob", [bob], mid=message_id(n))) for n in range(500))
    )
    assert store.stats.committed_ops - ops == 500
    assert store.stats.commits - commits < 500
    assert store.stats.commit_seconds_total > 0
    await store.close()


async def test_a_batch_holds_at_most_max_batch_operations(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "s.db", max_batch=8)
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")
    await asyncio.gather(
        *(store.submit(send(alice, "bob", [bob], mid=message_id(n))) for n in range(200))
    )
    assert max(store.stats.batch_sizes) <= 8
    assert await store.queue_depth(bob) == 200
    await store.close()


async def test_callers_on_other_event_loops(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "s.db")
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")

    async def burst(tag: str) -> None:
        for n in range(20):
            await store.submit(send(alice, "bob", [bob], mid=message_id(n, tag)))

    threads = [asyncio.to_thread(asyncio.run, burst(f"t{t}")) for t in range(4)]
    await asyncio.gather(burst("main"), *threads)
    assert await store.queue_depth(bob) == 100
    await store.close()


async def test_an_old_data_dir_opens(tmp_path: Path) -> None:
    """A database of schema 4 in 4 KiB pages with queued items, as earlier versions made it:
    opened, it is migrated (the inbox in arrival order, the probe row), rebuilt in PAGE_SIZE
    pages, and keeps every item, counter and idempotency record."""
    path = tmp_path / "s.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA page_size = 4096")
    conn.execute("PRAGMA journal_mode = WAL")
    migrate(conn, load_migrations()[:4])
    for account, key in (("alice", b"a"), ("bob", b"b")):
        conn.execute("INSERT INTO accounts VALUES (?, 2, ?)", (account, NOW))
        conn.execute(
            "INSERT INTO devices (account, device_id, noise_key, created_at, last_seq, depth)"
            " VALUES (?, 1, ?, ?, ?, ?)",
            (account, key * 32, NOW, 3 if account == "bob" else 0, 2 if account == "bob" else 0),
        )
    for seq in (2, 3):  # seq 1 was acked
        conn.execute(
            "INSERT INTO inbox VALUES ('bob', 1, ?, 0, 'alice', 1, ?, ?, ?, ?, 0)",
            (seq, message_id(seq), b"old%d" % seq, NOW, NOW + 100),
        )
        conn.execute(
            "INSERT INTO sent VALUES ('alice', 1, ?, ?, ?)", (message_id(seq), NOW, NOW + 100)
        )
    conn.close()

    store = await open_store(path)
    alice, bob = DeviceRef("alice", 1), DeviceRef("bob", 1)
    assert [(i.seq, i.payload) for i in await store.fetch(bob, 0, 10)] == [
        (2, b"old2"),
        (3, b"old3"),
    ]
    assert await store.submit(send(alice, "bob", [bob], mid=message_id(3))) == Stored(
        items=(), stored_at=NOW, duplicate=True
    )
    fresh = await store.submit(send(alice, "bob", [bob], mid=message_id(4)))
    assert isinstance(fresh, Stored) and [i.seq for _, i in fresh.items] == [4]
    assert await store.ack(bob, 3) == 2
    assert (await store.last_seq(bob), await store.queue_depth(bob)) == (4, 1)
    await store.probe()
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert user_version(path) == LATEST
