"""``Store.submit_multi`` on every backend: the shared ciphertext once, an item per device, the
per-account device-set rule, queue limits, idempotency, and the shared body's life (ack,
expiry, unlinked device)."""

from __future__ import annotations

import sqlite3

import asyncpg

from tidings.store import (
    DeviceMismatch,
    DeviceRef,
    ItemKind,
    MultiRefused,
    MultiSubmission,
    PostgresStore,
    QueueFull,
    SQLiteStore,
    Store,
    Stored,
)

from .helpers import NOW, RETENTION, make_account, message_id, send

SHARED = b"the-shared-ciphertext" * 10


def multi(
    sender: DeviceRef,
    accounts: dict[str, list[DeviceRef]],
    *,
    mid: bytes | None = None,
    shared: bytes = SHARED,
    now: float = NOW,
    expires_at: float = NOW + RETENTION,
    max_queue: int = 1000,
    max_stranger_queue: int | None = None,
) -> MultiSubmission:
    """A multi-send whose part for each device names it."""
    return MultiSubmission(
        sender=sender,
        message_id=message_id(1, "multi") if mid is None else mid,
        shared=shared,
        recipients=tuple(
            (account, tuple((ref, b"part:" + str(ref).encode()) for ref in refs))
            for account, refs in accounts.items()
        ),
        now=now,
        expires_at=expires_at,
        max_queue=max_queue,
        max_stranger_queue=max_stranger_queue,
    )


async def shared_rows(store: Store) -> int | None:
    """How many shared bodies the backend holds (``None``: memory, which keeps no table)."""
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as db:
            return int(db.execute("SELECT count(*) FROM shared_bodies").fetchone()[0])
    if isinstance(store, PostgresStore):
        pg = await asyncpg.connect(store.url)
        try:
            return int(await pg.fetchval("SELECT count(*) FROM shared_bodies"))
        finally:
            await pg.close()
    return None


async def three_devices(store: Store) -> tuple[DeviceRef, list[DeviceRef], list[DeviceRef]]:
    (alice,) = await make_account(store, "alice")
    bob = await make_account(store, "bob", 2)
    carol = await make_account(store, "carol", 1)
    return alice, bob, carol


async def test_the_shared_part_is_stored_once_and_delivered_after_each_part(store: Store) -> None:
    alice, bob, carol = await three_devices(store)
    result = await store.submit_multi(multi(alice, {"bob": bob, "carol": carol}))
    assert isinstance(result, Stored) and not result.duplicate
    assert [ref for ref, _ in result.items] == [*bob, *carol]
    assert await shared_rows(store) in (1, None)
    for ref in (*bob, *carol):
        (item,) = await store.fetch(ref, 0, 10)
        assert item.kind is ItemKind.MESSAGE and item.sender == alice
        assert item.payload == b"part:" + str(ref).encode()
        assert item.shared == SHARED
        assert item.body == item.payload + SHARED
        assert item.message_id == message_id(1, "multi")
        assert (item.enqueued_at, item.expires_at) == (NOW, NOW + RETENTION)


async def test_the_shared_part_goes_with_the_last_ack(store: Store) -> None:
    alice, bob, carol = await three_devices(store)
    await store.submit_multi(multi(alice, {"bob": bob, "carol": carol}))
    assert await store.ack(bob[0], 1) == 1
    assert await store.ack(carol[0], 1) == 1
    (item,) = await store.fetch(bob[1], 0, 10)  # the one left still has the whole body
    assert item.shared == SHARED
    assert await shared_rows(store) in (1, None)
    assert await store.ack(bob[1], 1) == 1
    assert await shared_rows(store) in (0, None)
    assert await store.total_queued() == 0


async def test_a_retry_stores_nothing_twice(store: Store) -> None:
    alice, bob, carol = await three_devices(store)
    first = await store.submit_multi(multi(alice, {"bob": bob, "carol": carol}))
    again = await store.submit_multi(multi(alice, {"bob": bob, "carol": carol}, shared=b"x"))
    assert isinstance(first, Stored) and isinstance(again, Stored)
    assert again.duplicate and again.items == () and again.stored_at == first.stored_at
    assert await store.total_queued() == 3
    assert await shared_rows(store) in (1, None)
    # The message id is taken by either kind of send.
    one = await store.submit(send(alice, "carol", carol, mid=message_id(1, "multi")))
    assert isinstance(one, Stored) and one.duplicate


async def test_every_account_with_a_wrong_device_set_is_named_and_nothing_stored(
    store: Store,
) -> None:
    alice, bob, carol = await three_devices(store)
    stale = DeviceRef("carol", 7)
    sub = multi(alice, {"bob": bob[:1], "carol": [*carol, stale], "dave": [DeviceRef("dave", 1)]})
    result = await store.submit_multi(sub)
    assert result == MultiRefused(
        unknown=("dave",),
        mismatches=(
            ("bob", DeviceMismatch(missing=(bob[1],), stale=())),
            ("carol", DeviceMismatch(missing=(), stale=(stale,))),
        ),
    )
    assert await store.total_queued() == 0
    assert await shared_rows(store) in (0, None)
    fixed = await store.submit_multi(multi(alice, {"bob": bob, "carol": carol}))
    assert isinstance(fixed, Stored) and not fixed.duplicate  # the refusal recorded no id


async def test_the_own_account_needs_every_other_device_and_never_the_sender(store: Store) -> None:
    alice = await make_account(store, "alice", 3)
    bob = await make_account(store, "bob")
    wrong = await store.submit_multi(multi(alice[0], {"alice": alice, "bob": bob}))
    assert wrong == MultiRefused(
        mismatches=(("alice", DeviceMismatch(missing=(), stale=(alice[0],))),)
    )
    short = await store.submit_multi(multi(alice[0], {"alice": alice[1:2], "bob": bob}))
    assert short == MultiRefused(
        mismatches=(("alice", DeviceMismatch(missing=(alice[2],), stale=())),)
    )
    ok = await store.submit_multi(multi(alice[0], {"alice": alice[1:], "bob": bob}))
    assert isinstance(ok, Stored) and len(ok.items) == 3


async def test_a_full_queue_refuses_the_whole_send(store: Store) -> None:
    alice, bob, carol = await three_devices(store)
    for n in range(2):
        await store.submit(send(alice, "carol", carol, mid=message_id(n, "fill"), max_queue=2))
    result = await store.submit_multi(multi(alice, {"bob": bob, "carol": carol}, max_queue=2))
    assert result == MultiRefused(full=QueueFull(device=carol[0], limit=2))
    assert await store.queue_depth(bob[0]) == 0
    assert await shared_rows(store) in (0, None)


async def test_a_strangers_multisend_counts_against_the_stranger_share(store: Store) -> None:
    alice, bob, carol = await three_devices(store)
    await store.submit(send(bob[0], "alice", [alice], mid=message_id(9, "bob")))  # bob knows alice
    first = await store.submit_multi(
        multi(alice, {"bob": bob, "carol": carol}, max_stranger_queue=1)
    )
    assert isinstance(first, Stored)
    second = await store.submit_multi(
        multi(alice, {"bob": bob, "carol": carol}, mid=message_id(2, "m"), max_stranger_queue=1)
    )
    assert second == MultiRefused(full=QueueFull(device=carol[0], limit=1))
    # Carol is a contact of alice's now; carol's reply is no stranger's to alice.
    reply = await store.submit(send(carol[0], "alice", [alice], mid=message_id(3, "c")))
    assert isinstance(reply, Stored)


async def test_expiry_notices_the_sender_per_device_and_frees_the_shared_part(store: Store) -> None:
    alice, bob, carol = await three_devices(store)
    await store.submit_multi(multi(alice, {"bob": bob, "carol": carol}, expires_at=NOW + 10))
    await store.ack(bob[0], 1)
    result = await store.expire(NOW + 10, NOW + 100, 100)
    assert sorted(ref for ref, _ in result.expired) == [*bob[1:], *carol]
    assert sorted(item.sender for _, item in result.notices) == [*bob[1:], *carol]
    assert {ref for ref, _ in result.notices} == {alice}
    assert sorted(ref for ref, _ in result.missed) == [*bob[1:], *carol]
    assert await shared_rows(store) in (0, None)


async def test_an_unlinked_device_takes_its_item_and_the_others_keep_theirs(store: Store) -> None:
    alice, bob, carol = await three_devices(store)
    await store.submit_multi(multi(alice, {"bob": bob, "carol": carol}))
    await store.remove_device(bob[1])
    (item,) = await store.fetch(carol[0], 0, 10)
    assert item.body.endswith(SHARED)
    await store.ack(bob[0], 1)
    await store.ack(carol[0], 1)
    assert await shared_rows(store) in (0, None)
