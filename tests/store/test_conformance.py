"""The Store contract, checked against every backend (``tidings.store.base`` invariants)."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from tests.store.helpers import NOW, RETENTION, breaks, key, link, make_account, message_id, send
from tidings.errors import IntegrityError, Rule, StoreError
from tidings.store import (
    DeviceMismatch,
    DeviceRef,
    ItemKind,
    QueueFull,
    Store,
    Stored,
)

# The ``store`` fixture (every backend) is in conftest.py.


def stored(result: object) -> Stored:
    assert isinstance(result, Stored), result
    return result


def code(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


# -- accounts and devices ---------------------------------------------------------------------


async def test_create_account_makes_device_1(store: Store) -> None:
    device = await store.create_account("alice", key("a"), "phone", NOW)
    assert device.ref == DeviceRef("alice", 1)
    assert (device.noise_key, device.created_at) == (key("a"), NOW)  # the name is not kept
    assert await store.devices("alice") == [device]
    assert await store.device_by_key(key("a")) == device


async def test_unknown_account_and_key(store: Store) -> None:
    assert await store.devices("nobody") == []
    assert await store.device_by_key(key("nobody")) is None


async def test_create_account_twice_is_refused(store: Store) -> None:
    await store.create_account("alice", key("a"), "phone", NOW)
    with breaks(Rule.ACCOUNT_EXISTS):
        await store.create_account("alice", key("b"), "laptop", NOW)
    assert await store.device_by_key(key("b")) is None


async def test_device_key_is_unique_across_accounts(store: Store) -> None:
    await store.create_account("alice", key("a"), "phone", NOW)
    with breaks(Rule.KEY_ALREADY_REGISTERED):
        await store.create_account("bob", key("a"), "phone", NOW)
    assert await store.devices("bob") == []
    await store.create_account("bob", key("b"), "phone", NOW)  # the name was not taken


async def test_link_code_adds_the_next_device_once(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    await store.put_link_code(alice, code("c"), NOW + 60, NOW)
    device = await store.add_device("alice", key("a2"), "laptop", code("c"), NOW + 1)
    assert device.ref == DeviceRef("alice", 2)
    assert [d.ref.device_id for d in await store.devices("alice")] == [1, 2]
    with breaks(Rule.INVALID_LINK_CODE):
        await store.add_device("alice", key("a3"), "tablet", code("c"), NOW + 2)
    assert await store.device_by_key(key("a3")) is None


async def test_expired_link_code_is_refused(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    await store.put_link_code(alice, code("c"), NOW + 60, NOW)
    with breaks(Rule.INVALID_LINK_CODE):
        await store.add_device("alice", key("a2"), "laptop", code("c"), NOW + 60)
    assert len(await store.devices("alice")) == 1


async def test_link_code_of_another_account_is_refused(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    await make_account(store, "bob")
    await store.put_link_code(alice, code("c"), NOW + 60, NOW)
    with breaks(Rule.INVALID_LINK_CODE):
        await store.add_device("bob", key("b2"), "laptop", code("c"), NOW)
    with breaks(Rule.INVALID_LINK_CODE):
        await store.add_device("nobody", key("n1"), "laptop", code("c"), NOW)
    assert (await store.add_device("alice", key("a2"), "l", code("c"), NOW)).ref.device_id == 2


async def test_add_device_with_registered_key_keeps_the_code(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    await store.put_link_code(alice, code("c"), NOW + 60, NOW)
    with breaks(Rule.KEY_ALREADY_REGISTERED):
        await store.add_device("alice", key("alice.1"), "laptop", code("c"), NOW)
    device = await store.add_device("alice", key("a2"), "laptop", code("c"), NOW)
    assert device.ref.device_id == 2  # the refused attempt consumed neither code nor id


async def test_a_link_code_is_stored_once(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    await store.put_link_code(alice, code("c"), NOW + 60, NOW)
    with breaks(Rule.LINK_CODE_EXISTS):
        await store.put_link_code(alice, code("c"), NOW + 90, NOW)


async def test_link_code_needs_a_known_device(store: Store) -> None:
    await make_account(store, "alice")
    with breaks(Rule.UNKNOWN_DEVICE):
        await store.put_link_code(DeviceRef("alice", 9), code("c"), NOW + 60, NOW)


# -- submit -----------------------------------------------------------------------------------


async def test_submit_stores_one_item_per_target_in_order(store: Store) -> None:
    alice = await make_account(store, "alice", 2)
    bob = await make_account(store, "bob", 2)
    targets = [bob[1], alice[1], bob[0]]
    result = stored(await store.submit(send(alice[0], "bob", targets, mid=message_id(1))))
    assert not result.duplicate and result.stored_at == NOW
    assert [ref for ref, _ in result.items] == targets
    for ref, item in result.items:
        assert item.seq == 1 and item.kind is ItemKind.MESSAGE
        assert (item.sender, item.message_id) == (alice[0], message_id(1))
        assert item.payload == b"ciphertext" + str(ref).encode()
        assert (item.enqueued_at, item.expires_at) == (NOW, NOW + RETENTION)
        assert await store.fetch(ref, 0, 10) == [item]
    assert await store.total_queued() == 3


async def test_seq_strictly_increases_and_is_never_reused(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")
    seqs = []
    for n in range(3):
        result = stored(await store.submit(send(alice, "bob", [bob], mid=message_id(n))))
        seqs.append(result.items[0][1].seq)
    assert await store.ack(bob, 3) == 3
    result = stored(await store.submit(send(alice, "bob", [bob], mid=message_id(3))))
    seqs.append(result.items[0][1].seq)
    assert seqs == [1, 2, 3, 4]
    assert await store.last_seq(bob) == 4
    assert [item.seq for item in await store.fetch(bob, 0, 10)] == [4]


async def test_retry_is_a_duplicate_and_stores_nothing(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")
    await store.submit(send(alice, "bob", [bob], mid=message_id(1)))
    retry = send(alice, "bob", [bob], mid=message_id(1), payload=b"other", now=NOW + 5)
    assert await store.submit(retry) == Stored(items=(), stored_at=NOW, duplicate=True)
    # Checked before anything else: even a retry with a wrong device set is a duplicate.
    assert stored(await store.submit(send(alice, "bob", [], mid=message_id(1)))).duplicate
    assert await store.queue_depth(bob) == 1


async def test_the_idempotency_key_is_per_sender_device(store: Store) -> None:
    alice = await make_account(store, "alice", 2)
    (bob,) = await make_account(store, "bob")
    first = await store.submit(send(alice[0], "bob", [bob, alice[1]], mid=message_id(1)))
    other = await store.submit(send(alice[1], "bob", [bob, alice[0]], mid=message_id(1)))
    assert not stored(first).duplicate and not stored(other).duplicate
    assert await store.queue_depth(bob) == 2


async def test_missing_recipient_device_stores_nothing(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    bob = await make_account(store, "bob", 3)
    result = await store.submit(send(alice, "bob", [bob[1]], mid=message_id(1)))
    assert result == DeviceMismatch(missing=(bob[0], bob[2]), stale=())
    assert await store.total_queued() == 0
    assert await store.last_seq(bob[1]) == 0
    fixed = await store.submit(send(alice, "bob", bob, mid=message_id(1)))
    assert not stored(fixed).duplicate  # the refusal left no idempotency record


async def test_stale_device_stores_nothing(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")
    gone = DeviceRef("bob", 7)
    result = await store.submit(send(alice, "bob", [bob, gone], mid=message_id(1)))
    assert result == DeviceMismatch(missing=(), stale=(gone,))
    assert await store.total_queued() == 0


async def test_own_other_devices_are_targets(store: Store) -> None:
    alice = await make_account(store, "alice", 3)
    (bob,) = await make_account(store, "bob")
    result = await store.submit(send(alice[0], "bob", [bob, alice[2]]))
    assert result == DeviceMismatch(missing=(alice[1],), stale=())
    everyone = [bob, alice[0], alice[1], alice[2]]
    sender_named = await store.submit(send(alice[0], "bob", everyone, mid=message_id(2)))
    assert sender_named == DeviceMismatch(missing=(), stale=(alice[0],))
    assert await store.total_queued() == 0
    ok = stored(
        await store.submit(send(alice[0], "bob", [bob, alice[1], alice[2]], mid=message_id(3)))
    )
    assert len(ok.items) == 3


async def test_note_to_self_goes_to_other_own_devices(store: Store) -> None:
    alice = await make_account(store, "alice", 2)
    result = stored(await store.submit(send(alice[0], "alice", [alice[1]])))
    assert [ref for ref, _ in result.items] == [alice[1]]
    assert await store.submit(send(alice[0], "alice", [], mid=message_id(2))) == DeviceMismatch(
        missing=(alice[1],), stale=()
    )


async def test_note_to_self_from_a_single_device_stores_no_items(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    assert await store.submit(send(alice, "alice", [], mid=message_id(1))) == Stored(
        items=(), stored_at=NOW
    )
    assert stored(await store.submit(send(alice, "alice", [], mid=message_id(1)))).duplicate


async def test_unknown_recipient_account_is_a_mismatch(store: Store) -> None:
    alice = await make_account(store, "alice", 2)
    ghost = DeviceRef("ghost", 1)
    result = await store.submit(send(alice[0], "ghost", [ghost, alice[1]]))
    assert result == DeviceMismatch(missing=(), stale=(ghost,))
    assert await store.total_queued() == 0


async def test_empty_target_set_is_a_mismatch_when_devices_exist(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    bob = await make_account(store, "bob", 2)
    assert await store.submit(send(alice, "bob", [])) == DeviceMismatch(
        missing=tuple(bob), stale=()
    )


async def test_a_device_named_twice_is_refused(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")
    with breaks(Rule.DUPLICATE_TARGET):
        await store.submit(send(alice, "bob", [bob, bob], mid=message_id(1)))
    assert await store.total_queued() == 0
    assert not stored(await store.submit(send(alice, "bob", [bob], mid=message_id(1)))).duplicate


async def test_a_newly_linked_device_must_be_targeted(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")
    bob2 = (await link(store, bob, key("bob.2"), code="b2")).ref
    result = await store.submit(send(alice, "bob", [bob]))
    assert result == DeviceMismatch(missing=(bob2,), stale=())


async def test_a_full_queue_refuses_the_whole_send(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    bob = await make_account(store, "bob", 2)
    for n in range(2):
        await store.submit(send(alice, "bob", bob, mid=message_id(n)))
    await store.ack(bob[0], 2)
    sub = send(alice, "bob", bob, mid=message_id(9), max_queue=2)
    # bob.1 has room, bob.2 holds 2: the whole send is refused.
    assert await store.submit(sub) == QueueFull(device=bob[1], limit=2)
    assert (await store.queue_depth(bob[0]), await store.last_seq(bob[0])) == (0, 2)
    await store.ack(bob[1], 1)
    assert not stored(await store.submit(sub)).duplicate  # the refusal recorded nothing
    assert [item.seq for item in await store.fetch(bob[0], 0, 9)] == [3]


# -- fetch and ack ----------------------------------------------------------------------------


async def queue_five(store: Store) -> DeviceRef:
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")
    for n in range(5):
        await store.submit(send(alice, "bob", [bob], mid=message_id(n)))
    return bob


async def test_fetch_pages_by_seq(store: Store) -> None:
    bob = await queue_five(store)
    assert [item.seq for item in await store.fetch(bob, 0, 2)] == [1, 2]
    assert [item.seq for item in await store.fetch(bob, 2, 2)] == [3, 4]
    assert [item.seq for item in await store.fetch(bob, 4, 2)] == [5]
    assert await store.fetch(bob, 5, 2) == []
    assert await store.fetch(bob, 0, 0) == []
    assert [item.message_id for item in await store.fetch(bob, 0, 9)] == [
        message_id(n) for n in range(5)
    ]


async def test_unknown_device_has_an_empty_inbox(store: Store) -> None:
    ghost = DeviceRef("ghost", 1)
    assert await store.fetch(ghost, 0, 10) == []
    assert await store.ack(ghost, 10) == 0
    assert (await store.last_seq(ghost), await store.queue_depth(ghost)) == (0, 0)


async def test_ack_is_cumulative_and_idempotent(store: Store) -> None:
    bob = await queue_five(store)
    assert await store.ack(bob, 2) == 2
    assert await store.ack(bob, 2) == 0
    assert await store.ack(bob, 1) == 0
    assert [item.seq for item in await store.fetch(bob, 0, 10)] == [3, 4, 5]
    assert await store.queue_depth(bob) == 3
    assert await store.ack(bob, 99) == 3
    assert (await store.queue_depth(bob), await store.total_queued()) == (0, 0)
    assert await store.last_seq(bob) == 5


async def test_ack_touches_only_its_device(store: Store) -> None:
    alice = await make_account(store, "alice", 2)
    (bob,) = await make_account(store, "bob")
    await store.submit(send(alice[0], "bob", [bob, alice[1]]))
    assert await store.ack(bob, 1) == 1
    assert [item.seq for item in await store.fetch(alice[1], 0, 10)] == [1]


# -- expiry -----------------------------------------------------------------------------------


async def test_expiry_notifies_every_device_of_the_sender(store: Store) -> None:
    alice = await make_account(store, "alice", 3)
    (bob,) = await make_account(store, "bob")
    sub = send(alice[0], "bob", [bob, alice[1], alice[2]], mid=message_id(1), expires_at=NOW + 10)
    await store.submit(sub)
    await store.ack(alice[1], 1)
    await store.ack(alice[2], 1)
    result = await store.expire(NOW + 10, NOW + 99, 100)
    assert [(ref, item.seq) for ref, item in result.expired] == [(bob, 1)]
    assert [ref for ref, _ in result.notices] == alice  # the sender device included
    for ref, notice in result.notices:
        assert notice.kind is ItemKind.EXPIRED and notice.sender == bob
        assert (notice.message_id, notice.payload) == (message_id(1), b"")
        assert (notice.enqueued_at, notice.expires_at) == (NOW + 10, NOW + 99)
        assert notice.seq == (1 if ref == alice[0] else 2)  # seq continues after the acked 1
        assert await store.fetch(ref, 0, 10) == [notice]
    # bob learns that the message will never come (tests/store/test_missed.py)
    assert [(ref, item.kind, item.seq) for ref, item in result.missed] == [
        (bob, ItemKind.MISSED, 2)
    ]
    assert await store.fetch(bob, 0, 10) == [result.missed[0][1]]
    assert await store.total_queued() == 4


async def test_expiry_keeps_what_has_not_expired(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")
    await store.submit(send(alice, "bob", [bob], mid=message_id(1), expires_at=NOW + 20))
    result = await store.expire(NOW + 19, NOW + 99, 100)
    assert result.expired == () and result.notices == ()
    assert await store.queue_depth(bob) == 1


async def test_expiry_takes_the_oldest_first_up_to_the_limit(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    bob = await make_account(store, "bob", 2)
    for n, at in enumerate([30, 10, 20]):
        await store.submit(send(alice, "bob", bob, mid=message_id(n), expires_at=NOW + at))
    first = await store.expire(NOW + 100, NOW + 999, 3)
    assert [(item.expires_at, ref) for ref, item in first.expired] == [
        (NOW + 10, bob[0]),
        (NOW + 10, bob[1]),
        (NOW + 20, bob[0]),
    ]
    assert [item.message_id for _, item in first.notices] == [message_id(1)] * 2 + [message_id(2)]
    second = await store.expire(NOW + 100, NOW + 999, 100)
    assert len(second.expired) == 3
    assert [item.kind for item in await store.fetch(bob[1], 0, 9)] == [ItemKind.MISSED] * 3


async def test_expired_notices_go_silently(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")
    await store.submit(send(alice, "bob", [bob], expires_at=NOW + 10))
    await store.expire(NOW + 10, NOW + 50, 100)
    assert await store.queue_depth(alice) == 1
    result = await store.expire(NOW + 50, NOW + 99, 100)
    assert result.expired == () and result.notices == ()
    assert await store.total_queued() == 0
    assert await store.last_seq(alice) == 1


async def test_expiry_purges_idempotency_records(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")
    sub = send(alice, "bob", [bob], mid=message_id(1), expires_at=NOW + 10)
    await store.submit(sub)
    await store.ack(bob, 1)
    await store.expire(NOW + 9, NOW + 99, 100)
    assert stored(await store.submit(sub)).duplicate
    await store.expire(NOW + 10, NOW + 99, 100)
    assert not stored(await store.submit(sub)).duplicate


# -- concurrency and lifecycle ----------------------------------------------------------------


async def test_concurrent_submits_are_all_committed(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")
    ops_before = store.stats.committed_ops
    results = await asyncio.gather(
        *(store.submit(send(alice, "bob", [bob], mid=message_id(n))) for n in range(500))
    )
    seqs = sorted(stored(result).items[0][1].seq for result in results)
    assert seqs == list(range(1, 501))
    items = await store.fetch(bob, 0, 1000)
    assert {item.message_id for item in items} == {message_id(n) for n in range(500)}
    assert store.stats.committed_ops - ops_before >= 500
    assert store.stats.commits <= store.stats.committed_ops


async def test_a_failing_operation_does_not_disturb_its_neighbours(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")
    creates = [store.create_account("carol", key(f"c{n}"), "x", NOW) for n in range(10)]
    sends = [store.submit(send(alice, "bob", [bob], mid=message_id(n))) for n in range(10)]
    results = await asyncio.gather(*creates, *sends, return_exceptions=True)
    assert sum(isinstance(result, IntegrityError) for result in results[:10]) == 9
    assert all(isinstance(result, Stored) for result in results[10:])
    assert len(await store.devices("carol")) == 1
    assert await store.queue_depth(bob) == 10


async def test_a_closed_store_refuses_operations(store: Store) -> None:
    await store.close()
    with pytest.raises(StoreError):
        await store.devices("alice")
    await store.open()  # the fixture closes it again
    assert await store.devices("alice") == []


async def test_stats_count_commits(store: Store) -> None:
    await make_account(store, "alice", 2)
    assert store.stats.commits >= 1
    assert store.stats.committed_ops >= store.stats.commits
    assert store.stats.last_batch_size >= 1
    assert 1 <= len(store.stats.batch_sizes) <= 1000
