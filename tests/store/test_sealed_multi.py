"""Sealed multi-sends in the store (``Store.submit_sealed_multi``) against every backend: the
shared body once, kind-3 items with no sender, one tag record per account and its state over
the accounts, every account's access key (all or nothing, one code), duplicates, device sets,
queues, and the body's and the records' life through acks, expiry and removed devices."""

from __future__ import annotations

import pytest

from tests.store.helpers import DAY, NOW, RETENTION, make_account
from tests.store.test_multisend import shared_rows
from tidings.errors import IntegrityError
from tidings.store import (
    NO_SENDER,
    DeviceMismatch,
    DeviceRef,
    ItemKind,
    QueueFull,
    SealedMultiRefused,
    SealedMultiSubmission,
    Store,
    Stored,
    TagState,
)

TAG = b"G" * 16
TAG2 = b"H" * 16
SHARED = b"E-and-the-group-ciphertext" * 8
KEYS = {"bob": bytes(range(16)), "carol": bytes(range(1, 17)), "dave": bytes(range(2, 18))}
WRONG = b"\xee" * 16


def sealed_multi(
    recipients: dict[str, list[DeviceRef]],
    *,
    tag: bytes = TAG,
    keys: dict[str, bytes] | None = None,
    now: float = NOW,
    expires_at: float = NOW + RETENTION,
    max_queue: int = 1000,
    share: int | None = None,
) -> SealedMultiSubmission:
    keys = KEYS if keys is None else keys
    return SealedMultiSubmission(
        tag=tag,
        shared=SHARED,
        recipients=tuple(
            (account, keys[account], tuple((ref, b"\x22part:" + str(ref).encode()) for ref in refs))
            for account, refs in recipients.items()
        ),
        now=now,
        expires_at=expires_at,
        max_queue=max_queue,
        max_stranger_queue=share,
    )


async def group(store: Store) -> dict[str, list[DeviceRef]]:
    """bob (two devices), carol and dave (one each), each with its access key."""
    accounts = {
        "bob": await make_account(store, "bob", 2),
        "carol": await make_account(store, "carol", 1),
        "dave": await make_account(store, "dave", 1),
    }
    for account, refs in accounts.items():
        await store.put_access_key(refs[0], KEYS[account])
    return accounts


async def test_one_shared_body_and_a_sealed_item_per_device(store: Store) -> None:
    members = await group(store)
    result = await store.submit_sealed_multi(sealed_multi(members))
    assert isinstance(result, Stored) and not result.duplicate and result.stored_at == NOW
    every = [ref for refs in members.values() for ref in refs]
    assert [ref for ref, _ in result.items] == every
    assert await shared_rows(store) in (1, None)
    for ref in every:
        (item,) = await store.fetch(ref, 0, 10)
        assert item.kind is ItemKind.SEALED and item.sender == NO_SENDER
        assert item.message_id == TAG
        assert item.payload == b"\x22part:" + str(ref).encode()
        assert item.shared == SHARED
        assert item.body == item.payload + SHARED
        assert dict(result.items)[ref] == item
    assert await store.tag_states([TAG, TAG2]) == [TagState.QUEUED, TagState.UNKNOWN]


async def test_the_tag_is_delivered_when_every_account_has_all_its_copies(store: Store) -> None:
    members = await group(store)
    await store.submit_sealed_multi(sealed_multi(members))
    every = [ref for refs in members.values() for ref in refs]
    for ref in every[:-1]:
        await store.ack(ref, await store.last_seq(ref))
        assert await store.tag_states([TAG]) == [TagState.QUEUED]  # dave's copy waits
    assert await shared_rows(store) in (1, None)
    await store.ack(every[-1], await store.last_seq(every[-1]))
    assert await store.tag_states([TAG]) == [TagState.DELIVERED]
    assert await shared_rows(store) in (0, None)


async def test_one_expired_copy_makes_the_tag_expired(store: Store) -> None:
    members = await group(store)
    await store.submit_sealed_multi(sealed_multi(members, expires_at=NOW + DAY))
    for ref in members["bob"] + members["carol"]:
        await store.ack(ref, await store.last_seq(ref))
    result = await store.expire(NOW + DAY, NOW + 2 * DAY, 100)
    assert [(ref, item.kind) for ref, item in result.expired] == [
        (members["dave"][0], ItemKind.SEALED)
    ]
    assert result.notices == () and result.missed == ()
    assert await store.tag_states([TAG]) == [TagState.EXPIRED]
    assert await shared_rows(store) in (0, None)


async def test_any_denied_account_refuses_all_and_names_every_one(store: Store) -> None:
    members = await group(store)
    members["nobody"] = [DeviceRef("nobody", 1)]
    keys = {**KEYS, "carol": WRONG, "nobody": KEYS["bob"]}
    result = await store.submit_sealed_multi(sealed_multi(members, keys=keys))
    assert result == SealedMultiRefused(denied=("carol", "nobody"))
    for refs in members.values():
        for ref in refs:
            assert await store.queue_depth(ref) == 0
    assert await shared_rows(store) in (0, None)
    assert await store.tag_states([TAG]) == [TagState.UNKNOWN]


async def test_an_account_without_a_key_is_denied_like_a_wrong_key(store: Store) -> None:
    members = await group(store)
    (erin,) = await make_account(store, "erin")
    keys = {**KEYS, "erin": bytes(16)}
    result = await store.submit_sealed_multi(sealed_multi({**members, "erin": [erin]}, keys=keys))
    assert result == SealedMultiRefused(denied=("erin",))


async def test_the_same_tag_again_is_a_duplicate_but_only_with_the_keys(store: Store) -> None:
    members = await group(store)
    await store.submit_sealed_multi(sealed_multi(members))
    again = await store.submit_sealed_multi(sealed_multi(members, now=NOW + 5))
    assert again == Stored(items=(), stored_at=NOW, duplicate=True)
    fewer = await store.submit_sealed_multi(sealed_multi({"dave": members["dave"]}, now=NOW + 6))
    assert fewer == Stored(items=(), stored_at=NOW, duplicate=True)
    keys = {**KEYS, "bob": WRONG}
    assert await store.submit_sealed_multi(sealed_multi(members, keys=keys)) == (
        SealedMultiRefused(denied=("bob",))
    )
    for refs in members.values():
        for ref in refs:
            assert await store.queue_depth(ref) == 1
    assert await shared_rows(store) in (1, None)


async def test_every_account_whose_device_set_is_off_is_named(store: Store) -> None:
    members = await group(store)
    bob1, bob2 = members["bob"]
    carol = members["carol"][0]
    sent = {"bob": [bob1], "carol": [carol, DeviceRef("carol", 9)], "dave": members["dave"]}
    result = await store.submit_sealed_multi(sealed_multi(sent))
    assert result == SealedMultiRefused(
        mismatches=(
            ("bob", DeviceMismatch(missing=(bob2,), stale=())),
            ("carol", DeviceMismatch(missing=(), stale=(DeviceRef("carol", 9),))),
        )
    )
    assert await store.queue_depth(bob1) == 0
    assert await store.tag_states([TAG]) == [TagState.UNKNOWN]


async def test_a_device_named_twice_is_a_caller_bug(store: Store) -> None:
    members = await group(store)
    sub = sealed_multi(members)
    bob = sub.recipients[0]
    twice = (bob[0], bob[1], bob[2] + bob[2][:1])
    with pytest.raises(IntegrityError):
        await store.submit_sealed_multi(
            SealedMultiSubmission(
                TAG, SHARED, (twice, *sub.recipients[1:]), NOW, NOW + RETENTION, 1000
            )
        )
    assert await store.tag_states([TAG]) == [TagState.UNKNOWN]


async def test_a_full_queue_or_stranger_share_refuses_the_whole_send(store: Store) -> None:
    members = await group(store)
    await store.submit_sealed_multi(sealed_multi(members))
    carol = members["carol"][0]
    full = await store.submit_sealed_multi(sealed_multi(members, tag=TAG2, max_queue=1))
    assert full == SealedMultiRefused(full=QueueFull(members["bob"][0], 1))
    share = await store.submit_sealed_multi(sealed_multi(members, tag=TAG2, share=1))
    assert share == SealedMultiRefused(full=QueueFull(members["bob"][0], 1))
    for ref in members["bob"]:
        await store.ack(ref, await store.last_seq(ref))
    share = await store.submit_sealed_multi(sealed_multi(members, tag=TAG2, share=1))
    assert share == SealedMultiRefused(full=QueueFull(carol, 1))
    assert await store.queue_depth(carol) == 1
    assert await store.tag_states([TAG2]) == [TagState.UNKNOWN]


async def test_a_removed_devices_copy_counts_as_delivered(store: Store) -> None:
    members = await group(store)
    await store.submit_sealed_multi(sealed_multi(members))
    for ref in [*members["carol"], *members["dave"], members["bob"][0]]:
        await store.ack(ref, await store.last_seq(ref))
    await store.remove_device(members["bob"][1])
    assert await store.tag_states([TAG]) == [TagState.DELIVERED]
    assert await shared_rows(store) in (0, None)
