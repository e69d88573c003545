"""Device cards (certificates and last seen, ``Store.put_certificate``, ``mark_seen``,
``device_cards``) against every backend, and SQLite migration 0009 from every earlier version."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.store.helpers import NOW, breaks, make_account
from tidings.errors import Rule
from tidings.store import DeviceCard, DeviceRef, SQLiteStore, Store
from tidings.store.migrate import load_migrations, migrate

CERT = bytes(range(0x30, 0x40))


async def test_a_new_device_has_an_empty_card(store: Store) -> None:
    alice1, alice2 = await make_account(store, "alice", devices=2)
    assert await store.device_cards("alice") == [
        DeviceCard(alice1, None, None),
        DeviceCard(alice2, None, None),
    ]
    assert await store.device_cards("nobody") == []


async def test_a_certificate_is_stored_opaquely_and_replaced(store: Store) -> None:
    alice1, alice2 = await make_account(store, "alice", devices=2)
    (bob,) = await make_account(store, "bob")
    await store.put_certificate(alice2, CERT)
    await store.mark_seen(alice2, NOW)
    cards = await store.device_cards("alice")
    assert cards == [DeviceCard(alice1, None, None), DeviceCard(alice2, NOW, CERT)]
    await store.put_certificate(alice2, b"\x00" * 200)
    assert (await store.device_cards("alice"))[1].certificate == b"\x00" * 200
    assert await store.device_cards("bob") == [DeviceCard(bob, None, None)]


async def test_a_certificate_for_an_unknown_device_changes_nothing(store: Store) -> None:
    await make_account(store, "alice")
    with breaks(Rule.UNKNOWN_DEVICE):
        await store.put_certificate(DeviceRef("alice", 2), CERT)
    with breaks(Rule.UNKNOWN_DEVICE):
        await store.put_certificate(DeviceRef("nobody", 1), CERT)
    assert [c.certificate for c in await store.device_cards("alice")] == [None]


async def test_last_seen_keeps_the_latest_time(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    await store.mark_seen(alice, NOW + 7200)
    await store.mark_seen(alice, NOW)  # an earlier one (a slow close): ignored
    assert (await store.device_cards("alice"))[0].last_seen == NOW + 7200
    await store.mark_seen(alice, NOW + 10800)
    assert (await store.device_cards("alice"))[0].last_seen == NOW + 10800
    await store.mark_seen(DeviceRef("alice", 9), NOW)  # no such device: nothing
    assert len(await store.device_cards("alice")) == 1


async def test_the_card_goes_with_its_device(store: Store) -> None:
    alice1, alice2 = await make_account(store, "alice", devices=2)
    await store.put_certificate(alice2, CERT)
    await store.mark_seen(alice2, NOW)
    await store.remove_device(alice2)
    assert await store.device_cards("alice") == [DeviceCard(alice1, None, None)]


@pytest.mark.parametrize("version", range(1, len(load_migrations())))
async def test_migration_0009_from_every_earlier_version(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, load_migrations()[:version])
    conn.close()
    store = SQLiteStore(path)
    await store.open()  # migrates to the latest
    try:
        alice1, alice2 = await make_account(store, "alice", devices=2)
        await store.put_certificate(alice2, CERT)
        await store.mark_seen(alice1, NOW)
        assert await store.device_cards("alice") == [
            DeviceCard(alice1, NOW, None),
            DeviceCard(alice2, None, CERT),
        ]
    finally:
        await store.close()
