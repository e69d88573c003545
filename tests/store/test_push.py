"""The push part of the Store contract (subscriptions and their wake-up state), against every
backend, and migration 0007."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

from tests.store.helpers import NOW, breaks, make_account
from tidings.errors import Rule
from tidings.store import DeviceRef, PushSubscription, SQLiteStore, Store
from tidings.store.migrate import load_migrations, migrate

P256 = b"\x04" + bytes(range(64))
AUTH = bytes(range(16))


def subscription(device: DeviceRef, endpoint: str = "https://push.example/a") -> PushSubscription:
    return PushSubscription(device, endpoint, P256, AUTH, NOW)


async def test_none_until_registered(store: Store) -> None:
    await make_account(store, "alice")
    assert await store.push_subscriptions() == []


async def test_put_stores_and_replaces_one_per_device(store: Store) -> None:
    alice1, alice2 = await make_account(store, "alice", devices=2)
    (bob,) = await make_account(store, "bob")
    await store.put_push_subscription(subscription(bob))
    await store.put_push_subscription(subscription(alice2))
    await store.put_push_subscription(subscription(alice1))
    assert [s.device for s in await store.push_subscriptions()] == [alice1, alice2, bob]
    newer = replace(subscription(alice1, "https://push.example/b"), created_at=NOW + 5)
    await store.put_push_subscription(newer)
    subs = await store.push_subscriptions()
    assert len(subs) == 3
    assert subs[0] == newer


async def test_the_wake_state_round_trips(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    pending = replace(
        subscription(alice),
        dead=True,
        wake_since=NOW + 1.25,
        wake_attempts=3,
        wake_next=NOW + 9.5,
        wake_sent_at=NOW + 2.0,
    )
    await store.put_push_subscription(pending)
    assert await store.push_subscriptions() == [pending]
    cleared = replace(pending, dead=False, wake_since=None, wake_attempts=0, wake_next=None)
    await store.put_push_subscription(replace(cleared, wake_sent_at=None))
    assert await store.push_subscriptions() == [replace(cleared, wake_sent_at=None)]


async def test_an_unknown_device_is_refused_and_nothing_stored(store: Store) -> None:
    await make_account(store, "alice")
    with breaks(Rule.UNKNOWN_DEVICE):
        await store.put_push_subscription(subscription(DeviceRef("alice", 2)))
    with breaks(Rule.UNKNOWN_DEVICE):
        await store.put_push_subscription(subscription(DeviceRef("nobody", 1)))
    assert await store.push_subscriptions() == []


async def test_delete_says_whether_there_was_one(store: Store) -> None:
    alice, alice2 = await make_account(store, "alice", devices=2)
    await store.put_push_subscription(subscription(alice))
    await store.put_push_subscription(subscription(alice2))
    assert await store.delete_push_subscription(alice) is True
    assert await store.delete_push_subscription(alice) is False
    assert [s.device for s in await store.push_subscriptions()] == [alice2]


async def test_subscriptions_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    await store.open()
    (alice,) = await make_account(store, "alice")
    sub = replace(subscription(alice), wake_since=NOW, wake_next=NOW + 1)
    await store.put_push_subscription(sub)
    await store.close()
    again = SQLiteStore(path)
    await again.open()
    try:
        assert await again.push_subscriptions() == [sub]
    finally:
        await again.close()


async def test_migration_0007_adds_the_table_to_an_older_database(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, load_migrations()[:6])
    conn.close()
    store = SQLiteStore(path)
    await store.open()  # migrates 6 → the latest
    try:
        (alice,) = await make_account(store, "alice")
        await store.put_push_subscription(subscription(alice))
        assert [s.device for s in await store.push_subscriptions()] == [alice]
    finally:
        await store.close()
