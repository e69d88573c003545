"""MISSED notices: a device whose item expired unfetched learns which message will never come.

Each expired message item becomes one MISSED notice in the same inbox (``sender`` = the device
that sent it, same message id, empty payload), queued after everything queued there before, in
the expiry's transaction. Notices that expire go silently: no notice for a notice.
"""

from __future__ import annotations

from tests.store.helpers import NOW, make_account, message_id, send
from tidings.store import InboxItem, ItemKind, Store


async def test_an_expired_item_leaves_a_missed_notice_behind_the_later_items(
    store: Store,
) -> None:
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")
    for n, ttl in ((1, 10), (2, 50), (3, 50)):
        await store.submit(send(alice, "bob", [bob], mid=message_id(n), expires_at=NOW + ttl))
    result = await store.expire(NOW + 10, NOW + 99, 100)
    notice = InboxItem(4, ItemKind.MISSED, alice, message_id(1), b"", NOW + 10, NOW + 99)
    assert result.missed == ((bob, notice),)
    items = await store.fetch(bob, 0, 10)
    assert [(item.seq, item.kind, item.message_id) for item in items] == [
        (2, ItemKind.MESSAGE, message_id(2)),
        (3, ItemKind.MESSAGE, message_id(3)),
        (4, ItemKind.MISSED, message_id(1)),
    ]
    assert items[-1] == notice
    assert (await store.queue_depth(bob), await store.last_seq(bob)) == (3, 4)


async def test_each_copy_of_a_send_gets_its_own_notice(store: Store) -> None:
    alice = await make_account(store, "alice", 2)
    bob = await make_account(store, "bob", 2)
    targets = [*bob, alice[1]]
    await store.submit(send(alice[0], "bob", targets, expires_at=NOW + 10))
    result = await store.expire(NOW + 10, NOW + 99, 100)
    assert sorted(ref for ref, _ in result.missed) == sorted(targets)
    for ref, item in result.missed:
        assert (item.kind, item.sender, item.payload) == (ItemKind.MISSED, alice[0], b"")
        assert item in await store.fetch(ref, 0, 10)


async def test_a_missed_notice_that_expires_goes_silently(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")
    await store.submit(send(alice, "bob", [bob], expires_at=NOW + 10))
    await store.expire(NOW + 10, NOW + 50, 100)
    assert await store.queue_depth(bob) == 1
    result = await store.expire(NOW + 50, NOW + 99, 100)
    assert (result.expired, result.notices, result.missed) == ((), (), ())
    assert await store.total_queued() == 0
    assert await store.last_seq(bob) == 2


async def test_an_acked_item_leaves_no_notice(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")
    await store.submit(send(alice, "bob", [bob], expires_at=NOW + 10))
    await store.ack(bob, 1)
    result = await store.expire(NOW + 10, NOW + 99, 100)
    assert result.missed == () and await store.queue_depth(bob) == 0
