"""Delivered ciphertext leaves the SQLite files: ``secure_delete`` and WAL checkpoints.

After an ack, the deleted rows are zeroed in the database file (``secure_delete``), and the WAL
(which still holds the pages as they were written) is checkpointed and truncated, at most once
per :data:`~tidings.store.sqlite.CHECKPOINT_INTERVAL`, after a batch that wrote.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import tidings.store.sqlite as sqlite_module
from tests.store.helpers import make_account, message_id, send
from tidings.store import MultiSubmission, SQLiteStore, Stored
from tidings.store.migrate import load_migrations, migrate

MARKER = b"tidings-scrub-marker:" + bytes(range(43))  # 64 recognisable bytes
assert len(MARKER) == 64


def raw(path: Path) -> bytes:
    """The bytes of the database file and of its WAL, as a disk scan would see them."""
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


async def test_an_acked_payload_is_gone_from_the_files(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    await store.open()
    try:
        (alice,) = await make_account(store, "alice")
        (bob,) = await make_account(store, "bob")
        stored = await store.submit(send(alice, "bob", [bob], mid=message_id(1), payload=MARKER))
        assert isinstance(stored, Stored)
        assert MARKER in raw(path)  # the test can see it while it is queued
        assert await store.ack(bob, 1) == 1
        await store.checkpoint()
        assert MARKER not in raw(path)
    finally:
        await store.close()
    assert MARKER not in raw(path)


async def test_an_acked_multi_send_leaves_neither_part_nor_shared_body_in_the_files(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    await store.open()
    try:
        (alice,) = await make_account(store, "alice")
        bob = await make_account(store, "bob", 2)
        part = b"part-marker:" + bytes(20)
        sub = MultiSubmission(
            alice, message_id(2), MARKER, (("bob", tuple((r, part) for r in bob)),), 1.0, 9e9, 10
        )
        assert isinstance(await store.submit_multi(sub), Stored)
        assert raw(path).count(MARKER) >= 1 and part in raw(path)
        assert await store.ack(bob[0], 1) == 1
        await store.checkpoint()
        assert MARKER in raw(path)  # bob's second device has not fetched it yet
        assert await store.ack(bob[1], 1) == 1
        await store.checkpoint()
        assert MARKER not in raw(path) and part not in raw(path)
    finally:
        await store.close()


async def test_checkpoints_run_at_most_once_per_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[float] = []
    clock = [100.0]
    real = sqlite_module.checkpoint

    def counted(conn: sqlite3.Connection) -> None:
        runs.append(clock[0])
        real(conn)

    monkeypatch.setattr(sqlite_module, "checkpoint", counted)
    store = SQLiteStore(tmp_path / "s.db")
    store._monotonic = lambda: clock[0]
    await store.open()
    try:
        (alice,) = await make_account(store, "alice")  # a write: the first checkpoint
        (bob,) = await make_account(store, "bob")  # within the interval: put off
        clock[0] += 0.5
        await store.submit(send(alice, "bob", [bob], mid=message_id(1)))
        assert runs == [100.0]
        clock[0] += 0.5  # the interval is over: the next write checkpoints
        await store.ack(bob, 1)
        await store.last_seq(bob)  # a read after it: the ack's checkpoint has run
        assert runs == [100.0, 101.0]
    finally:
        await store.close()


async def test_device_names_are_not_kept_and_old_ones_are_scrubbed(tmp_path: Path) -> None:
    """A relay of schema 3 stored REGISTER's device name; migration 4 drops the column and the
    store vacuums once, so no page of the file still holds one."""
    path = tmp_path / "v3.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, load_migrations()[:3])
    conn.execute("INSERT INTO accounts VALUES ('alice', 2, 0)")
    conn.execute(
        "INSERT INTO devices (account, device_id, noise_key, name, created_at)"
        " VALUES ('alice', 1, ?, ?, 0)",
        (bytes(32), MARKER.decode("latin-1")),
    )
    conn.close()
    assert MARKER in raw(path)
    store = SQLiteStore(path)
    await store.open()
    try:
        (device,) = await store.devices("alice")
        assert device.noise_key == bytes(32)
        await store.create_account("bob", bytes(range(32)), "NAME-OF-BOBS-PHONE", 0)
        await store.checkpoint()
    finally:
        await store.close()
    assert MARKER not in raw(path)
    assert b"NAME-OF-BOBS-PHONE" not in raw(path)
