"""Sealed sends in the store (``Store.submit_sealed``, ``Store.tag_states``) against every
backend: the access key, the device set, queues and the stranger share, duplicates, and the
tag records through acks, expiry, removed devices and their retention."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from tests.store.helpers import DAY, NOW, RETENTION, make_account, send
from tidings.errors import IntegrityError
from tidings.store import (
    NO_SENDER,
    TAG_RETENTION,
    AccessDenied,
    DeviceMismatch,
    DeviceRef,
    ItemKind,
    QueueFull,
    SealedSubmission,
    SQLiteStore,
    Store,
    Stored,
    TagState,
)
from tidings.store.migrate import load_migrations, migrate

KEY = bytes(range(16))
OTHER_KEY = bytes(range(1, 17))
TAG = b"T" * 16
TAG2 = b"U" * 16


def sealed(
    targets: list[DeviceRef],
    *,
    tag: bytes = TAG,
    recipient: str = "bob",
    access_key: bytes = KEY,
    now: float = NOW,
    expires_at: float = NOW + RETENTION,
    max_queue: int = 1000,
    share: int | None = None,
) -> SealedSubmission:
    return SealedSubmission(
        tag=tag,
        recipient=recipient,
        access_key=access_key,
        payloads=tuple((ref, b"sealed:" + str(ref).encode()) for ref in targets),
        now=now,
        expires_at=expires_at,
        max_queue=max_queue,
        max_stranger_queue=share,
    )


async def bob_with_key(store: Store, devices: int = 2) -> list[DeviceRef]:
    refs = await make_account(store, "bob", devices=devices)
    await store.put_access_key(refs[0], KEY)
    return refs


async def test_a_sealed_send_is_stored_without_a_sender(store: Store) -> None:
    bob = await bob_with_key(store)
    result = await store.submit_sealed(sealed(bob))
    assert isinstance(result, Stored) and not result.duplicate
    assert result.stored_at == NOW
    assert [ref for ref, _ in result.items] == bob
    for ref in bob:
        (item,) = await store.fetch(ref, 0, 10)
        assert item.kind is ItemKind.SEALED
        assert item.sender == NO_SENDER == DeviceRef("", 0)
        assert item.message_id == TAG
        assert item.payload == b"sealed:" + str(ref).encode()
        assert (item.enqueued_at, item.expires_at) == (NOW, NOW + RETENTION)
    assert dict(result.items)[bob[0]] == (await store.fetch(bob[0], 0, 10))[0]
    assert await store.tag_states([TAG, TAG2]) == [TagState.QUEUED, TagState.UNKNOWN]


async def test_acks_of_every_copy_make_the_tag_delivered(store: Store) -> None:
    bob1, bob2 = await bob_with_key(store)
    await store.submit_sealed(sealed([bob1, bob2]))
    assert await store.ack(bob1, await store.last_seq(bob1)) == 1
    assert await store.tag_states([TAG]) == [TagState.QUEUED]  # bob2's copy waits
    assert await store.ack(bob2, await store.last_seq(bob2)) == 1
    assert await store.tag_states([TAG]) == [TagState.DELIVERED]
    assert await store.ack(bob2, 100) == 0  # nothing more to take off
    assert await store.tag_states([TAG]) == [TagState.DELIVERED]


async def test_a_wrong_missing_or_unknown_key_is_one_refusal(store: Store) -> None:
    bob = await make_account(store, "bob", devices=2)
    assert await store.submit_sealed(sealed(bob)) == AccessDenied()  # no key registered
    await store.put_access_key(bob[0], KEY)
    assert await store.submit_sealed(sealed(bob, access_key=OTHER_KEY)) == AccessDenied()
    nobody = [DeviceRef("nobody", 1)]
    assert await store.submit_sealed(sealed(nobody, recipient="nobody")) == AccessDenied()
    for ref in bob:
        assert await store.queue_depth(ref) == 0
    assert await store.tag_states([TAG]) == [TagState.UNKNOWN]


async def test_a_rotated_key_refuses_the_old_one(store: Store) -> None:
    bob = await bob_with_key(store)
    await store.put_access_key(bob[1], OTHER_KEY)  # a block rotates it
    assert await store.submit_sealed(sealed(bob)) == AccessDenied()
    assert isinstance(await store.submit_sealed(sealed(bob, access_key=OTHER_KEY)), Stored)


async def test_the_same_tag_again_is_a_duplicate(store: Store) -> None:
    bob = await bob_with_key(store)
    await store.submit_sealed(sealed(bob))
    again = await store.submit_sealed(sealed(bob[:1], now=NOW + 5))  # whatever it names
    assert again == Stored(items=(), stored_at=NOW, duplicate=True)
    for ref in bob:
        assert await store.queue_depth(ref) == 1
    # ... but only with the key: a tag cannot be probed without it.
    assert await store.submit_sealed(sealed(bob, access_key=OTHER_KEY)) == AccessDenied()


async def test_the_device_set_must_be_every_device_of_the_recipient(store: Store) -> None:
    bob1, bob2 = await bob_with_key(store)
    (alice,) = await make_account(store, "alice")
    assert await store.submit_sealed(sealed([bob1])) == DeviceMismatch(missing=(bob2,), stale=())
    bob3 = DeviceRef("bob", 3)
    assert await store.submit_sealed(sealed([bob1, bob2, bob3])) == DeviceMismatch(
        missing=(), stale=(bob3,)
    )
    assert await store.submit_sealed(sealed([bob1, alice])) == DeviceMismatch(
        missing=(bob2,), stale=(alice,)
    )
    with pytest.raises(IntegrityError):
        await store.submit_sealed(sealed([bob1, bob1]))
    for ref in (bob1, bob2, alice):
        assert await store.queue_depth(ref) == 0
    assert await store.tag_states([TAG]) == [TagState.UNKNOWN]


async def test_a_full_queue_refuses_the_whole_send(store: Store) -> None:
    bob1, bob2 = await bob_with_key(store)
    (alice,) = await make_account(store, "alice")
    await store.submit(send(alice, "bob", [bob1, bob2]))
    await store.submit(send(alice, "bob", [bob1, bob2], mid=b"n" * 16))
    assert await store.submit_sealed(sealed([bob1, bob2], max_queue=2)) == QueueFull(bob1, 2)
    assert await store.queue_depth(bob1) == 2
    assert await store.tag_states([TAG]) == [TagState.UNKNOWN]


async def test_sealed_items_count_as_strangers(store: Store) -> None:
    (bob,) = await bob_with_key(store, devices=1)
    (alice,) = await make_account(store, "alice")
    first = await store.submit_sealed(sealed([bob], share=1))
    assert isinstance(first, Stored)
    assert await store.submit_sealed(sealed([bob], tag=TAG2, share=1)) == QueueFull(bob, 1)
    # A stranger's SEND meets the share the sealed item takes.
    stranger = replace(send(alice, "bob", [bob]), max_stranger_queue=1)
    assert await store.submit(stranger) == QueueFull(bob, 1)
    await store.ack(bob, await store.last_seq(bob))
    assert isinstance(await store.submit_sealed(sealed([bob], tag=TAG2, share=1)), Stored)


async def test_expiry_marks_the_tag_expired_and_tells_nobody(store: Store) -> None:
    bob1, bob2 = await bob_with_key(store)
    (alice,) = await make_account(store, "alice")
    await store.submit_sealed(sealed([bob1, bob2], expires_at=NOW + DAY))
    await store.ack(bob1, await store.last_seq(bob1))
    result = await store.expire(NOW + DAY, NOW + 2 * DAY, 100)
    assert [(ref, item.kind, item.message_id) for ref, item in result.expired] == [
        (bob2, ItemKind.SEALED, TAG)
    ]
    assert result.notices == () and result.missed == ()
    for ref in (bob1, bob2, alice):
        assert await store.queue_depth(ref) == 0
    assert await store.tag_states([TAG]) == [TagState.EXPIRED]
    # Kept TAG_RETENTION after the items' expiry, then forgotten.
    await store.expire(NOW + DAY + TAG_RETENTION - 1, NOW + 3 * DAY, 100)
    assert await store.tag_states([TAG]) == [TagState.EXPIRED]
    await store.expire(NOW + DAY + TAG_RETENTION, NOW + 3 * DAY, 100)
    assert await store.tag_states([TAG]) == [TagState.UNKNOWN]
    # Forgotten, the tag is a new send.
    again = await store.submit_sealed(sealed([bob1, bob2], now=NOW + DAY + TAG_RETENTION))
    assert isinstance(again, Stored) and not again.duplicate


async def test_a_delivered_tag_is_forgotten_after_its_retention(store: Store) -> None:
    (bob,) = await bob_with_key(store, devices=1)
    await store.submit_sealed(sealed([bob], expires_at=NOW + DAY))
    await store.ack(bob, await store.last_seq(bob))
    await store.expire(NOW + DAY, NOW + 2 * DAY, 100)
    assert await store.tag_states([TAG]) == [TagState.DELIVERED]
    await store.expire(NOW + DAY + TAG_RETENTION, NOW + 2 * DAY, 100)
    assert await store.tag_states([TAG]) == [TagState.UNKNOWN]


async def test_a_removed_devices_copy_is_no_longer_queued(store: Store) -> None:
    bob1, bob2 = await bob_with_key(store)
    await store.submit_sealed(sealed([bob1, bob2]))
    await store.ack(bob1, await store.last_seq(bob1))
    await store.remove_device(bob2)
    assert await store.tag_states([TAG]) == [TagState.DELIVERED]


async def test_one_tag_for_two_recipients_is_two_sends(store: Store) -> None:
    (bob,) = await bob_with_key(store, devices=1)
    (carol,) = await make_account(store, "carol")
    await store.put_access_key(carol, OTHER_KEY)
    await store.submit_sealed(sealed([bob]))
    second = await store.submit_sealed(sealed([carol], recipient="carol", access_key=OTHER_KEY))
    assert isinstance(second, Stored) and not second.duplicate
    await store.ack(bob, await store.last_seq(bob))
    assert await store.tag_states([TAG]) == [TagState.QUEUED]  # carol's copy waits
    await store.ack(carol, await store.last_seq(carol))
    assert await store.tag_states([TAG, TAG, TAG2]) == [
        TagState.DELIVERED,
        TagState.DELIVERED,
        TagState.UNKNOWN,
    ]


async def test_sealed_and_identified_items_share_one_queue_in_order(store: Store) -> None:
    (bob,) = await bob_with_key(store, devices=1)
    (alice,) = await make_account(store, "alice")
    await store.submit(send(alice, "bob", [bob]))
    await store.submit_sealed(sealed([bob]))
    await store.submit(send(alice, "bob", [bob], mid=b"m" * 16))
    kinds = [(item.seq, item.kind) for item in await store.fetch(bob, 0, 10)]
    assert kinds == [(1, ItemKind.MESSAGE), (2, ItemKind.SEALED), (3, ItemKind.MESSAGE)]
    await store.ack(bob, 2)
    assert await store.tag_states([TAG]) == [TagState.DELIVERED]
    assert await store.queue_depth(bob) == 1


@pytest.mark.parametrize("version", range(1, len(load_migrations())))
async def test_migration_0012_from_every_earlier_version(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, load_migrations()[:version])
    conn.close()
    store = SQLiteStore(path)
    await store.open()  # migrates to the latest
    try:
        (bob,) = await bob_with_key(store, devices=1)
        assert isinstance(await store.submit_sealed(sealed([bob])), Stored)
        await store.ack(bob, 1)
        assert await store.tag_states([TAG]) == [TagState.DELIVERED]
    finally:
        await store.close()


async def test_migration_0012_keeps_the_queue_of_version_11(tmp_path: Path) -> None:
    path = tmp_path / "v11.db"
    old = SQLiteStore(path)
    await old.open()
    (bob,) = await bob_with_key(old, devices=1)
    (alice,) = await make_account(old, "alice")
    await old.submit(send(alice, "bob", [bob]))
    await old.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER inbox_sealed_gone")  # back to version 11, with its data
    conn.execute("DROP TABLE sealed_tags")
    conn.execute("DROP INDEX inbox_expiring_out_of_order")  # (and before 0013)
    conn.execute("ALTER TABLE inbox DROP COLUMN out_of_order")
    conn.execute("CREATE INDEX inbox_by_expiry ON inbox (expires_at, account, device_id, seq)")
    conn.execute("PRAGMA user_version = 11")
    conn.close()
    store = SQLiteStore(path)
    await store.open()
    try:
        assert [item.kind for item in await store.fetch(bob, 0, 10)] == [ItemKind.MESSAGE]
        assert await store.access_key("bob") == KEY
        assert isinstance(await store.submit_sealed(sealed([bob])), Stored)
        assert await store.ack(bob, 2) == 2
        assert await store.tag_states([TAG]) == [TagState.DELIVERED]
    finally:
        await store.close()
