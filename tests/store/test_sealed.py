"""Sealed sender in the store (``Store.put_access_key``, ``access_key``, ``identity_key``)
against every backend, and SQLite migration 0011 from every earlier version."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.store.helpers import NOW, breaks, make_account
from tests.store.test_prekeys import IDENTITY, signed
from tidings.errors import Rule
from tidings.store import DeviceRef, SQLiteStore, Store
from tidings.store.migrate import load_migrations, migrate

KEY_A = bytes(range(16))
KEY_B = bytes(range(16, 32))


async def test_an_access_key_is_per_account_and_replaced_whole(store: Store) -> None:
    alice1, alice2 = await make_account(store, "alice", devices=2)
    (bob,) = await make_account(store, "bob")
    assert await store.access_key("alice") is None
    await store.put_access_key(alice1, KEY_A)
    assert await store.access_key("alice") == KEY_A
    await store.put_access_key(alice2, KEY_B)  # any device of the account: rotated (a block)
    assert await store.access_key("alice") == KEY_B
    assert await store.access_key("bob") is None
    await store.put_access_key(bob, KEY_A)
    assert (await store.access_key("alice"), await store.access_key("bob")) == (KEY_B, KEY_A)
    assert await store.access_key("nobody") is None


async def test_an_access_key_of_an_unknown_device_changes_nothing(store: Store) -> None:
    await make_account(store, "alice")
    with breaks(Rule.UNKNOWN_DEVICE):
        await store.put_access_key(DeviceRef("alice", 2), KEY_A)
    with breaks(Rule.UNKNOWN_DEVICE):
        await store.put_access_key(DeviceRef("nobody", 1), KEY_A)
    assert await store.access_key("alice") is None
    assert await store.access_key("nobody") is None


async def test_the_identity_key_is_the_uploaded_one(store: Store) -> None:
    alice1, alice2 = await make_account(store, "alice", devices=2)
    assert await store.identity_key(alice1) is None
    await store.put_prekeys(alice1, IDENTITY, signed(), [], [], NOW)
    assert await store.identity_key(alice1) == IDENTITY
    assert await store.identity_key(alice2) is None
    assert await store.identity_key(DeviceRef("nobody", 1)) is None


@pytest.mark.parametrize("version", range(1, len(load_migrations())))
async def test_migration_0011_from_every_earlier_version(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, load_migrations()[:version])
    conn.close()
    store = SQLiteStore(path)
    await store.open()  # migrates to the latest
    try:
        (alice,) = await make_account(store, "alice")
        await store.put_access_key(alice, KEY_A)
        assert await store.access_key("alice") == KEY_A
    finally:
        await store.close()


async def test_migration_0011_keeps_the_data_of_version_10(tmp_path: Path) -> None:
    path = tmp_path / "v10.db"
    old = SQLiteStore(path)
    await old.open()
    (alice,) = await make_account(old, "alice")
    await old.put_prekeys(alice, IDENTITY, signed(), [], [], NOW)
    await old.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER inbox_sealed_gone")  # back to version 10 (0013's, 0012's, ...
    conn.execute("DROP TABLE sealed_tags")
    conn.execute("DROP TABLE access_keys")  # ... 0011's, with its data)
    conn.execute("DROP INDEX inbox_expiring_out_of_order")
    conn.execute("ALTER TABLE inbox DROP COLUMN out_of_order")
    conn.execute("CREATE INDEX inbox_by_expiry ON inbox (expires_at, account, device_id, seq)")
    conn.execute("PRAGMA user_version = 10")
    conn.close()
    store = SQLiteStore(path)
    await store.open()
    try:
        assert [d.ref for d in await store.devices("alice")] == [alice]
        assert await store.identity_key(alice) == IDENTITY
        assert await store.access_key("alice") is None
        await store.put_access_key(alice, KEY_B)
        assert await store.access_key("alice") == KEY_B
    finally:
        await store.close()
