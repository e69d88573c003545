"""The device-set rule: all recipient devices, and all or none of the sender's other devices.

Every test runs on both backends, one operation at a time (the per-operation path) and as one
group (the set-based path of :mod:`tidings.store._inbox_writes`, which must answer the same).
"""

from __future__ import annotations

import asyncio

from tests.store.helpers import key, link, make_account, message_id, send
from tidings.store import DeviceMismatch, DeviceRef, Store, Stored, Submission


async def answers(store: Store, subs: list[Submission]) -> list[object]:
    """The answers of ``subs`` submitted together (one group commit on SQLite)."""
    return list(await asyncio.gather(*(store.submit(sub) for sub in subs)))


async def test_a_send_without_own_copies_is_stored(store: Store) -> None:
    alice = await make_account(store, "alice", 3)
    bob = await make_account(store, "bob", 2)
    one = await store.submit(send(alice[0], "bob", bob, mid=message_id(1)))
    assert isinstance(one, Stored) and [ref for ref, _ in one.items] == bob
    (grouped,) = await answers(store, [send(alice[0], "bob", bob, mid=message_id(2))])
    assert isinstance(grouped, Stored) and len(grouped.items) == 2
    assert await store.queue_depth(alice[1]) == await store.queue_depth(alice[2]) == 0


async def test_a_send_with_all_own_copies_is_stored(store: Store) -> None:
    alice = await make_account(store, "alice", 3)
    (bob,) = await make_account(store, "bob")
    targets = [bob, alice[1], alice[2]]
    results: list[object] = [await store.submit(send(alice[0], "bob", targets, mid=message_id(1)))]
    results += await answers(store, [send(alice[0], "bob", targets, mid=message_id(2))])
    for result in results:
        assert isinstance(result, Stored) and len(result.items) == 3
    assert await store.queue_depth(alice[2]) == 2


async def test_some_own_copies_name_the_missing_own_devices(store: Store) -> None:
    alice = await make_account(store, "alice", 3)
    (bob,) = await make_account(store, "bob")
    partial = send(alice[0], "bob", [bob, alice[2]], mid=message_id(1))
    expected = DeviceMismatch(missing=(alice[1],), stale=())
    assert await store.submit(partial) == expected
    assert await answers(store, [partial]) == [expected]
    assert await store.total_queued() == 0


async def test_missing_recipient_devices_never_name_own_devices_sent_none(store: Store) -> None:
    alice = await make_account(store, "alice", 2)
    bob = await make_account(store, "bob", 2)
    expected = DeviceMismatch(missing=(bob[1],), stale=())
    sub = send(alice[0], "bob", [bob[0]], mid=message_id(1))
    assert await store.submit(sub) == expected
    assert await answers(store, [sub]) == [expected]


async def test_a_stale_own_device_asks_for_all_own_copies(store: Store) -> None:
    alice = await make_account(store, "alice", 2)
    (bob,) = await make_account(store, "bob")
    gone = DeviceRef("alice", 9)
    expected = DeviceMismatch(missing=(alice[1],), stale=(gone,))
    sub = send(alice[0], "bob", [bob, gone], mid=message_id(1))
    assert await store.submit(sub) == expected
    assert await answers(store, [sub]) == [expected]


async def test_a_note_to_self_needs_every_other_own_device(store: Store) -> None:
    alice = await make_account(store, "alice", 3)
    for targets, missing in (([], alice[1:]), ([alice[1]], [alice[2]])):
        sub = send(alice[0], "alice", targets, mid=message_id(len(targets)))
        expected = DeviceMismatch(missing=tuple(missing), stale=())
        assert await store.submit(sub) == expected
        assert await answers(store, [sub]) == [expected]
    ok = await store.submit(send(alice[0], "alice", alice[1:], mid=message_id(7)))
    assert isinstance(ok, Stored) and len(ok.items) == 2


async def test_a_newly_linked_own_device_is_needed_only_with_own_copies(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")
    alice2 = (await link(store, alice, key("alice.2"), code="a2")).ref
    alice3 = (await link(store, alice, key("alice.3"), code="a3")).ref
    bare = await store.submit(send(alice, "bob", [bob], mid=message_id(1)))
    assert isinstance(bare, Stored)
    stale_view = send(alice, "bob", [bob, alice2], mid=message_id(2))
    assert await store.submit(stale_view) == DeviceMismatch(missing=(alice3,), stale=())
