"""The stranger share: senders a device's account never wrote to fill at most a share of it.

Every test runs on both backends; the grouped ones also through the set-based path of SQLite
(:mod:`tidings.store._inbox_writes`), which must answer the same as op by op.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from tests.store.helpers import NOW, make_account, message_id, send
from tidings.store import DeviceRef, QueueFull, SQLiteStore, Store, Stored, Submission

QUEUE, SHARE = 4, 2


def mail(sender: DeviceRef, recipient: str, targets: list[DeviceRef], n: int) -> Submission:
    """A send under a queue of ``QUEUE`` items, ``SHARE`` of them for strangers."""
    sub = send(sender, recipient, targets, mid=message_id(n, str(sender)), max_queue=QUEUE)
    return replace(sub, max_stranger_queue=SHARE)


async def accounts(store: Store) -> tuple[DeviceRef, DeviceRef, DeviceRef]:
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")
    (carol,) = await make_account(store, "carol")
    return alice, bob, carol


async def test_strangers_fill_only_their_share_contacts_the_rest(store: Store) -> None:
    alice, bob, carol = await accounts(store)
    assert isinstance(await store.submit(mail(bob, "carol", [carol], 1)), Stored)  # a contact
    for n in range(SHARE):
        assert isinstance(await store.submit(mail(alice, "bob", [bob], n)), Stored)
    assert await store.submit(mail(alice, "bob", [bob], 9)) == QueueFull(bob, SHARE)
    assert await store.queue_depth(bob) == SHARE
    for n in range(QUEUE - SHARE):
        assert isinstance(await store.submit(mail(carol, "bob", [bob], n)), Stored)
    assert await store.submit(mail(carol, "bob", [bob], 9)) == QueueFull(bob, QUEUE)


async def test_strangers_share_it_together(store: Store) -> None:
    alice, bob, carol = await accounts(store)
    assert isinstance(await store.submit(mail(alice, "bob", [bob], 1)), Stored)
    assert isinstance(await store.submit(mail(carol, "bob", [bob], 1)), Stored)
    assert await store.submit(mail(carol, "bob", [bob], 2)) == QueueFull(bob, SHARE)


async def test_a_reply_makes_a_stranger_a_contact(store: Store) -> None:
    alice, bob, _ = await accounts(store)
    for n in range(SHARE):
        await store.submit(mail(alice, "bob", [bob], n))
    await store.submit(mail(bob, "alice", [alice], 1))  # any send: a receipt is one too
    assert isinstance(await store.submit(mail(alice, "bob", [bob], 9)), Stored)


async def test_an_ack_or_an_expiry_gives_the_share_back(store: Store) -> None:
    alice, bob, _ = await accounts(store)
    for n in range(SHARE):
        await store.submit(mail(alice, "bob", [bob], n))
    await store.ack(bob, 1)
    assert isinstance(await store.submit(mail(alice, "bob", [bob], 7)), Stored)
    assert await store.submit(mail(alice, "bob", [bob], 8)) == QueueFull(bob, SHARE)
    result = await store.expire(NOW + 30 * 86_400, NOW + 60 * 86_400, 100)
    assert len(result.missed) == SHARE  # the notices do not count against the share
    for n in (8, 9):
        assert isinstance(await store.submit(mail(alice, "bob", [bob], n)), Stored)


async def test_own_copies_and_notes_to_self_are_no_stranger_s(store: Store) -> None:
    alice = await make_account(store, "alice", 2)
    (bob,) = await make_account(store, "bob")
    # alice.2 takes a copy of each: its queue fills to the whole limit, not to the share
    subs = [mail(alice[0], "bob", [bob, alice[1]], n) for n in range(SHARE)]
    subs += [mail(alice[0], "alice", [alice[1]], n) for n in range(SHARE, QUEUE)]
    for sub in subs:
        assert isinstance(await store.submit(sub), Stored)
    assert await store.queue_depth(alice[1]) == QUEUE


async def test_a_group_of_sends_is_answered_as_one_by_one(store: Store) -> None:
    alice, bob, carol = await accounts(store)
    subs = [
        mail(alice, "bob", [bob], 1),
        mail(carol, "bob", [bob], 1),
        mail(alice, "bob", [bob], 2),  # over the share
        mail(bob, "alice", [alice], 1),  # alice becomes a contact of bob
        mail(alice, "bob", [bob], 3),
        mail(alice, "bob", [bob], 4),  # the queue's last place
        mail(alice, "bob", [bob], 5),  # over the whole queue
    ]
    results = await asyncio.gather(*(store.submit(sub) for sub in subs))
    kinds = [type(result).__name__ for result in results]
    assert kinds == ["Stored", "Stored", "QueueFull", "Stored", "Stored", "Stored", "QueueFull"]
    assert results[2] == QueueFull(bob, SHARE) and results[6] == QueueFull(bob, QUEUE)
    await store.ack(bob, 99)
    assert await store.queue_depth(bob) == 0


async def test_contacts_are_durable(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    alice, bob, _ = await accounts(store)
    await store.submit(mail(bob, "alice", [alice], 1))
    await store.close()
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    try:
        for n in range(SHARE + 1):
            assert isinstance(await store.submit(mail(alice, "bob", [bob], n)), Stored)
    finally:
        await store.close()
