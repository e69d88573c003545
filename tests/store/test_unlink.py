"""Unlinking and the device limit, against every backend (``Store.remove_device``,
``Store.add_device(max_devices=)``)."""

from __future__ import annotations

import hashlib

from tests.store.helpers import NOW, breaks, key, link, make_account, message_id, send
from tests.store.test_prekeys import upload
from tests.store.test_push import subscription
from tidings.errors import Rule
from tidings.store import DeviceMismatch, DeviceRef, Store, Stored


def code(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


async def test_an_unlinked_device_is_gone_with_its_queue_keys_and_subscription(
    store: Store,
) -> None:
    alice1, alice2 = await make_account(store, "alice", devices=2)
    (bob,) = await make_account(store, "bob")
    result = await store.submit(send(bob, "alice", [alice1, alice2]))
    assert isinstance(result, Stored)
    await upload(store, alice2, [], [])
    await store.put_push_subscription(subscription(alice2))
    await store.put_link_code(alice2, code("left behind"), NOW + 60, NOW)

    await store.remove_device(alice2)
    assert [d.ref for d in await store.devices("alice")] == [alice1]
    assert await store.device_by_key(key("alice.2")) is None  # it can no longer authenticate
    assert await store.queue_depth(alice2) == 0 and await store.fetch(alice2, 0, 10) == []
    assert await store.queue_depth(alice1) == 1  # the others keep theirs
    assert await store.prekey_counts(alice2) is None
    assert await store.take_prekey_bundle(alice2, NOW) is None
    assert await store.push_subscriptions() == []
    with breaks(Rule.INVALID_LINK_CODE):  # a code it issued died with it
        await store.add_device("alice", key("x"), "x", code("left behind"), NOW)
    # a send naming it now is stale; its id is never reused
    mismatch = await store.submit(send(bob, "alice", [alice1, alice2], mid=message_id(2)))
    assert mismatch == DeviceMismatch(missing=(), stale=(alice2,))
    third = await link(store, alice1, key("alice.3"), code="next")
    assert third.ref == DeviceRef("alice", 3)


async def test_unlink_refuses_an_unknown_and_the_last_device(store: Store) -> None:
    (alice,) = await make_account(store, "alice")
    with breaks(Rule.UNKNOWN_DEVICE):
        await store.remove_device(DeviceRef("alice", 2))
    with breaks(Rule.UNKNOWN_DEVICE):
        await store.remove_device(DeviceRef("nobody", 1))
    with breaks(Rule.LAST_DEVICE):
        await store.remove_device(alice)
    assert [d.ref for d in await store.devices("alice")] == [alice]
    assert await store.device_by_key(key("alice.1")) is not None


async def test_the_device_limit_keeps_the_code_unused(store: Store) -> None:
    alice1, _ = await make_account(store, "alice", devices=2)
    await store.put_link_code(alice1, code("c"), NOW + 60, NOW)
    with breaks(Rule.TOO_MANY_DEVICES):
        await store.add_device("alice", key("a3"), "tablet", code("c"), NOW, max_devices=2)
    assert len(await store.devices("alice")) == 2
    added = await store.add_device("alice", key("a3"), "tablet", code("c"), NOW, max_devices=3)
    assert added.ref.device_id == 3  # the refused attempt consumed neither the code nor an id
    await store.remove_device(DeviceRef("alice", 2))
    await store.put_link_code(alice1, code("d"), NOW + 60, NOW)
    again = await store.add_device("alice", key("a4"), "phone", code("d"), NOW, max_devices=3)
    assert again.ref.device_id == 4  # room again after the unlink
