"""A group's runtime for devices that join late and for key requests (issue 12), without a
relay: the GROUP_SYNC one own device sends a new one (replayed to the same group, idempotent),
and the bound on answering GROUP_KEY_REQUEST, on literal times."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from tidings.client.events import ClientEvent, GroupChanged
from tidings.client.group_sync import KEY_RESEND_INTERVAL, KeyResendLimit
from tidings.client.group_transport import MultiEntry, MultiTransport
from tidings.client.groups import MAX_UNKNOWN_GROUP_KEYS, GroupRuntime
from tidings.client.store import ClientStore, CryptoWrites, Identity
from tidings.client.store._groups import GroupWrites
from tidings.delivery import Message, parse_content
from tidings.delivery.content import Content
from tidings.delivery.content_groups import (
    GroupChange,
    GroupKeyRequest,
    GroupMessage,
    GroupSync,
    SenderKey,
    group_conversation,
)
from tidings.delivery.groups import OpKind
from tidings.refs import DeviceRef

ALICE1 = DeviceRef("alice", 1)
ALICE2 = DeviceRef("alice", 2)
BOB = DeviceRef("bob", 1)


class Device:
    """A device's store and group runtime; every account is known with the devices given."""

    def __init__(self, tmp: Path, me: DeviceRef, devices: dict[str, tuple[int, ...]]) -> None:
        self.me = me
        self.store = ClientStore(tmp / f"{me.account}.{me.device_id}.db")
        self.store.save_identity(Identity(bytes(32), me.account, me.device_id, "", "ws://r"))
        self.events: list[ClientEvent] = []
        rng = random.Random(f"{me}").randbytes
        self.rt = GroupRuntime(
            self.store,
            me,
            self.events.append,
            lambda a: devices.get(a, (1,)),
            MultiTransport(),
            rng,
        )
        self.seq = 0

    def queued(self, ids: list[bytes]) -> list[tuple[str, Content]]:
        """The (recipient, content) of queued outbox ids."""
        out: list[tuple[str, Content]] = []
        for i in ids:
            item = self.store.outbox_item(i)
            assert item is not None
            out.append((item.recipient, parse_content(item.content)))
        return out

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


@pytest.fixture
def devices(tmp_path: Path) -> tuple[Device, Device, Device]:
    known = {"alice": (1, 2), "bob": (1,)}
    return (
        Device(tmp_path, ALICE1, known),
        Device(tmp_path, ALICE2, known),
        Device(tmp_path, BOB, known),
    )


def test_a_new_own_device_gets_the_group_once_and_a_second_sync_changes_nothing(
    devices: tuple[Device, Device, Device],
) -> None:
    alice1, alice2, _ = devices
    group, _ = alice1.rt.create("team", ["bob"], 1.0)
    alice1.rt.change(group, OpKind.RENAME, name="team 2", now=2.0)
    ids = alice1.rt.sync_to(ALICE2, 3.0)
    [(recipient, sync)] = alice1.queued(ids)
    assert recipient == "alice" and isinstance(sync, GroupSync) and sync.device_id == 2
    assert alice1.rt.sync_to(ALICE2, 4.0) == []  # synced once (it has our key now)

    alice2.rt.on_sync(alice2.next_seq(), ALICE1, sync, 5.0, CryptoWrites(5.0))
    state1, state2 = alice1.rt.state(group), alice2.rt.state(group)
    assert state1 is not None and state2 is not None
    assert (state2.name, state2.members, state2.admins) == (
        state1.name,
        state1.members,
        state1.admins,
    )
    assert alice2.rt.logs[group].ops == alice1.rt.logs[group].ops
    assert [type(e) for e in alice2.events] == [GroupChanged]
    before = (
        alice2.store.group_ops(),
        alice2.store.sender_keys(),
        alice2.store.group_members(group),
    )

    alice2.rt.on_sync(alice2.next_seq(), ALICE1, sync, 6.0, CryptoWrites(6.0))  # again
    after = (
        alice2.store.group_ops(),
        alice2.store.sender_keys(),
        alice2.store.group_members(group),
    )
    assert after == before
    assert len(alice2.events) == 1  # no second GroupChanged
    assert alice2.store.cursor() == 2  # handled (acked), nothing else

    # alice.2 reads what alice.1 sends next, and the key it was given is alice.1's
    mid = b"\x11" * 16
    conv = group_conversation(group)
    alice1.store.compose_group(mid, conv, b"hi", 7.0, lambda m: alice1.rt.seal(group, mid, m, 7.0))
    item = alice1.store.outbox_item(mid)  # the multi-send entry: its one ciphertext
    assert item is not None
    gm = parse_content(MultiEntry.parse(item.content).content)
    assert isinstance(gm, GroupMessage)
    opened = alice2.rt.open_message(ALICE1, gm, 8.0, CryptoWrites(8.0))
    assert isinstance(opened, Message) and opened.body == b"hi"


def test_a_sync_from_another_account_or_for_another_device_is_dropped(
    devices: tuple[Device, Device, Device],
) -> None:
    alice1, alice2, _ = devices
    group, _ = alice1.rt.create("team", ["bob"], 1.0)
    [(_, sync)] = alice1.queued(alice1.rt.sync_to(ALICE2, 2.0))
    assert isinstance(sync, GroupSync)
    alice2.rt.on_sync(alice2.next_seq(), BOB, sync, 3.0, CryptoWrites(3.0))  # not own
    other = GroupSync(3, sync.group_id, sync.ops, sync.distribution)
    alice2.rt.on_sync(alice2.next_seq(), ALICE1, other, 3.0, CryptoWrites(3.0))  # alice.3's
    assert alice2.rt.state(group) is None and alice2.events == []
    assert alice2.store.cursor() == 2


def test_key_requests_are_answered_at_most_once_per_window(
    devices: tuple[Device, Device, Device],
) -> None:
    alice1, _, bob = devices
    group, _ = alice1.rt.create("team", ["bob"], 1.0)
    # bob learns the group (as alice's change would tell it)
    change = GroupChange(group, tuple(alice1.rt.logs[group].ops))
    bob.rt.on_change(bob.next_seq(), ALICE1, change, 1.0, CryptoWrites(1.0))

    def sealer(mid: bytes, t: float) -> Callable[[Message], GroupWrites]:
        return lambda m: bob.rt.seal(group, mid, m, t)

    conv = group_conversation(group)
    mids = [bytes([i]) * 16 for i in (1, 2, 3)]
    for i, mid in enumerate(mids):
        t = 2.0 + i
        bob.store.compose_group(mid, conv, b"m", t, sealer(mid, t))

    def ask(ids: list[bytes], now: float) -> list[type]:
        request = GroupKeyRequest(group, 1, tuple(ids))
        queued = bob.rt.on_key_request(bob.next_seq(), ALICE2, request, now, CryptoWrites(now))
        return [type(c) for _, c in bob.queued(queued)]

    assert ask(mids[:2], 100.0) == [SenderKey, GroupMessage, GroupMessage]
    assert ask(mids[:2], 101.0) == []  # the same again: not answered (a loop costs nothing)
    assert ask(mids, 110.0) == [GroupMessage]  # a message not sent again yet: no key
    assert ask(mids, 100.0 + KEY_RESEND_INTERVAL) == [
        SenderKey,
        GroupMessage,
        GroupMessage,
        GroupMessage,
    ]
    assert bob.store.cursor() == 5  # every request handled


def test_keys_for_unknown_groups_are_kept_up_to_a_bound(
    devices: tuple[Device, Device, Device],
) -> None:
    _, alice2, bob = devices
    for i in range(MAX_UNKNOWN_GROUP_KEYS + 3):
        group = i.to_bytes(16, "big")
        material = bob.rt.cipher.key_for(group, ALICE2)
        assert material is not None
        key = SenderKey(group, material)
        alice2.rt.on_sender_key(alice2.next_seq(), BOB, key, CryptoWrites(1.0))
    records, _ = alice2.store.sender_keys()
    assert len(records) == MAX_UNKNOWN_GROUP_KEYS  # the rest dropped
    assert alice2.store.cursor() == MAX_UNKNOWN_GROUP_KEYS + 3


def test_the_limit_on_literal_times() -> None:
    limit = KeyResendLimit(interval=30.0, per_window=2, max_tracked=2)
    a, b, c = (DeviceRef("alice", d) for d in (1, 2, 3))
    g = b"\x01" * 16
    assert limit.admit(g, a, [b"x", b"y", b"z"], 0.0) == (True, (b"x", b"y"))  # 2 a window
    assert limit.admit(g, a, [b"z"], 29.9) == (False, ())
    assert limit.admit(g, a, [b"z"], 30.0) == (True, (b"z",))  # a new window
    assert limit.admit(g, a, [b"x"], 10.0) == (True, (b"x",))  # the clock went back: anew
    assert limit.admit(g, b, [], 40.0) == (True, ())
    assert limit.admit(g, c, [], 41.0) == (True, ())  # three tracked: a's (oldest) forgotten
    assert len(limit._windows) == 2
    assert limit.admit(g, b, [], 42.0) == (False, ())
