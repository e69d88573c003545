"""The prekey part of the Store contract, against every backend, and migration 0002."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from tests.store.helpers import NOW, breaks, make_account
from tidings.errors import Rule
from tidings.store import (
    DeviceRef,
    PreKey,
    PreKeyCounts,
    SQLiteStore,
    Store,
)
from tidings.store.migrate import load_migrations, migrate, schema_version

IDENTITY = b"\x05" + bytes(32)
SIG = bytes(range(64))


# The ``store`` fixture (every backend) is in conftest.py.


def signed(key_id: int = 1) -> PreKey:
    return PreKey(key_id, bytes([key_id % 256]) * 32, SIG)


def ec(*ids: int) -> list[PreKey]:
    return [PreKey(i, i.to_bytes(32, "big")) for i in ids]


def kem(*ids: int, last_resort: int | None = None) -> list[PreKey]:
    keys = [PreKey(i, i.to_bytes(1568, "big"), SIG) for i in ids]
    if last_resort is not None:
        keys.append(PreKey(last_resort, last_resort.to_bytes(1568, "big"), SIG, True))
    return keys


async def upload(
    store: Store, device: DeviceRef, one_time: list[PreKey], kems: list[PreKey], spk: int = 1
) -> PreKeyCounts:
    return await store.put_prekeys(device, IDENTITY, signed(spk), one_time, kems, NOW)


async def test_counts_before_and_after_an_upload(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    assert await store.prekey_counts(alice) is None
    assert await store.take_prekey_bundle(alice, NOW) is None
    counts = await upload(store, alice, ec(1, 2, 3), kem(10, 11, last_resort=99))
    assert counts == PreKeyCounts(one_time=3, kem=2)
    assert await store.prekey_counts(alice) == counts
    # A second upload adds; an id already stored is replaced, not counted twice.
    assert await upload(store, alice, ec(3, 4), kem(12)) == PreKeyCounts(4, 3)


async def test_each_one_time_prekey_is_taken_once_lowest_id_first(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    await upload(store, alice, ec(3, 1, 2), kem(11, 10, last_resort=99))
    first = await store.take_prekey_bundle(alice, NOW)
    assert first is not None
    assert first.identity_key == IDENTITY and first.signed_prekey == signed()
    assert first.one_time == ec(1)[0] and first.kem == kem(10)[0]
    assert first.left == PreKeyCounts(2, 1)
    second = await store.take_prekey_bundle(alice, NOW)
    assert second is not None and second.one_time == ec(2)[0] and second.kem == kem(11)[0]
    # One-time KEM prekeys gone: the last-resort key, again and again, never deleted.
    for expected_ec in (ec(3)[0], None, None):
        bundle = await store.take_prekey_bundle(alice, NOW)
        assert bundle is not None
        assert bundle.one_time == expected_ec
        assert bundle.kem == kem(last_resort=99)[0]
        assert bundle.kem.last_resort
    assert await store.prekey_counts(alice) == PreKeyCounts(0, 0)


async def test_without_one_time_the_last_resort_bundle_takes_nothing(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    await upload(store, alice, ec(1, 2), kem(10))
    # No last-resort key: a bundle without one-time keys cannot be made.
    assert await store.take_prekey_bundle(alice, NOW, one_time=False) is None
    await upload(store, alice, [], kem(last_resort=99))
    bundle = await store.take_prekey_bundle(alice, NOW, one_time=False)
    assert bundle is not None
    assert (bundle.signed_prekey, bundle.one_time, bundle.kem) == (
        signed(),
        None,
        kem(last_resort=99)[0],
    )
    assert bundle.left == PreKeyCounts(2, 1) == await store.prekey_counts(alice)
    taken = await store.take_prekey_bundle(alice, NOW)  # the pool was kept for this one
    assert taken is not None and (taken.one_time, taken.kem) == (ec(1)[0], kem(10)[0])
    assert await store.take_prekey_bundle(DeviceRef("nobody", 1), NOW, one_time=False) is None


async def test_concurrent_takes_never_share_a_key(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    await upload(store, alice, ec(*range(1, 21)), kem(*range(1, 21)))
    bundles = await asyncio.gather(*(store.take_prekey_bundle(alice, NOW) for _ in range(25)))
    taken = [b for b in bundles if b is not None]
    assert len(taken) == 20  # no last-resort key: the rest get nothing
    assert sorted(b.one_time.key_id for b in taken if b.one_time) == list(range(1, 21))
    assert sorted(b.kem.key_id for b in taken) == list(range(1, 21))


async def test_without_a_kem_prekey_nothing_is_taken(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    await upload(store, alice, ec(1, 2), [])
    assert await store.take_prekey_bundle(alice, NOW) is None
    assert await store.prekey_counts(alice) == PreKeyCounts(2, 0)


async def test_signed_and_last_resort_prekeys_are_replaced(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    await upload(store, alice, [], kem(last_resort=98), spk=1)
    await upload(store, alice, [], kem(last_resort=99), spk=2)
    bundle = await store.take_prekey_bundle(alice, NOW)
    assert bundle is not None
    assert (bundle.signed_prekey, bundle.kem) == (signed(2), kem(last_resort=99)[0])


async def test_a_changed_identity_key_is_refused_and_stores_nothing(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    await upload(store, alice, ec(1), kem(1))
    with breaks(Rule.IDENTITY_KEY_CHANGED):
        await store.put_prekeys(alice, b"\x05" + bytes([1]) * 32, signed(2), ec(2), kem(2), NOW)
    assert await store.prekey_counts(alice) == PreKeyCounts(1, 1)
    bundle = await store.take_prekey_bundle(alice, NOW)
    assert bundle is not None and bundle.signed_prekey == signed(1)


async def test_an_unknown_device_cannot_upload(store: Store) -> None:
    with breaks(Rule.UNKNOWN_DEVICE):
        await upload(store, DeviceRef("nobody", 1), ec(1), kem(1))
    assert await store.prekey_counts(DeviceRef("nobody", 1)) is None


async def test_devices_keep_their_own_prekeys(store: Store) -> None:
    alice1, alice2 = await make_account(store, "alice", devices=2)
    await upload(store, alice1, ec(1), kem(1))
    assert await store.take_prekey_bundle(alice2, NOW) is None
    assert await store.prekey_counts(alice1) == PreKeyCounts(1, 1)


# -- migration 0002 ---------------------------------------------------------------------------


async def test_migration_from_version_1_keeps_the_data(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, load_migrations()[:1]) == 1
    conn.execute("INSERT INTO accounts VALUES ('alice', 2, ?)", (NOW,))
    conn.execute(
        "INSERT INTO devices (account, device_id, noise_key, name, created_at)"
        " VALUES ('alice', 1, ?, 'phone', ?)",
        (bytes(32), NOW),
    )
    conn.close()
    store = SQLiteStore(path)
    await store.open()  # migrates 1 → the latest
    try:
        (device,) = await store.devices("alice")
        assert device.ref == DeviceRef("alice", 1)
        assert await upload(store, device.ref, ec(1), kem(1)) == PreKeyCounts(1, 1)
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    assert schema_version(conn) == len(load_migrations())
    conn.close()
