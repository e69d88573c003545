"""Groups end to end with real clients and a real relay (issue 12): membership kept by the
members over their pairwise sessions, sender keys, one ciphertext per group message (through
the pairwise fallback of the group transport), asking for a missing key, and rotation so that a
removed member's stored keys cannot read what follows."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.harness import ClientLab, Peer, RelayLab, is_received, is_status
from tidings.client import MessageReceived
from tidings.client.events import ClientEvent, DecryptionFailed, GapDetected, GroupChanged
from tidings.client.group_transport import GroupSend, GroupTransport
from tidings.client.store import ClientStore, OutboxRequest
from tidings.delivery import ContentKind, Status
from tidings.delivery.content_groups import GroupChange, group_conversation
from tidings.delivery.groups import GroupError, GroupState, OpKind
from tidings.e2e.groupcipher import SenderKeyCipher
from tidings.errors import DecryptionError


async def converged(peer: Peer, group_id: bytes, check: Callable[[GroupState], bool]) -> None:
    """Wait until ``peer``'s view of the group passes ``check`` (on its GroupChanged events)."""

    def done(_: ClientEvent | None = None) -> bool:
        state = peer.client.groups_runtime.state(group_id)
        return state is not None and check(state)

    if not done():
        await peer.until(lambda e: isinstance(e, GroupChanged) and done(e))


def members_are(*accounts: str) -> Callable[[GroupState], bool]:
    return lambda s: s.members == frozenset(accounts)


def group_text(mid: bytes) -> Callable[[ClientEvent], bool]:
    return lambda e: (
        isinstance(e, MessageReceived)
        and e.message.message_id == mid
        and e.message.conversation.startswith("group:")
    )


class Capture:
    """A transport that records each shared ciphertext, then queues as the real one does."""

    def __init__(self, inner: GroupTransport) -> None:
        self.inner = inner
        self.sent: list[GroupSend] = []

    def queue(self, send: GroupSend, now: float) -> list[OutboxRequest]:
        self.sent.append(send)
        return self.inner.queue(send, now)


async def test_a_group_of_three_accounts_chats_and_converges(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    alice = await clients.new("alice")
    bob1 = await clients.new("bob")
    bob2 = await clients.link(bob1)
    carol = await clients.new("carol")
    everyone = [alice, bob1, bob2, carol]

    group = await alice.client.create_group("team", ["bob", "carol"])
    for peer in everyone:
        await converged(peer, group, members_are("alice", "bob", "carol"))
        info = peer.client.group_info(group)
        assert info is not None and info.name == "team" and info.admins == ("alice",)

    # one ciphertext per message; every member device reads it, in order
    capture = Capture(alice.client.groups_runtime.transport)
    alice.client.groups_runtime.transport = capture
    first = await alice.client.send_group(group, "hello team")
    second = await alice.client.send_group(group, "second")
    assert len(capture.sent) == 2 and len(set(capture.sent[0].devices)) == 3
    for peer in (bob1, bob2, carol):
        got = await peer.until_all(is_received(), 2)
        assert [e.message.message_id for e in got] == [first, second]  # type: ignore[union-attr]
        assert [e.message.body for e in got] == [b"hello team", b"second"]  # type: ignore[union-attr]
        assert got[0].message.conversation == group_conversation(group)  # type: ignore[union-attr]

    # a member's other device gets a copy of what it sent
    reply = await bob1.client.send_group(group, "hi alice")
    for peer in (alice, bob2, carol):
        await peer.until(group_text(reply))

    # concurrent changes: alice promotes carol, then carol renames while alice adds dave
    dave = await clients.new("dave")
    with pytest.raises(GroupError, match="carol is not an admin"):
        await carol.client.add_members(group, ["dave"])  # refused by replay: nothing sent
    await alice.client.promote_member(group, "carol")
    await converged(carol, group, lambda s: "carol" in s.admins)
    await carol.client.rename_group(group, "the team")
    await alice.client.add_members(group, ["dave"])
    for peer in [*everyone, dave]:
        await converged(
            peer,
            group,
            lambda s: s.members == {"alice", "bob", "carol", "dave"} and s.name == "the team",
        )
    digests = {p.client.groups_runtime.logs[group].digest() for p in [*everyone, dave]}
    assert len(digests) == 1  # the same changes everywhere, so the same group


async def test_a_removed_member_cannot_read_what_follows(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    alice = await clients.new("alice")
    bob = await clients.new("bob")
    carol = await clients.new("carol")
    group = await alice.client.create_group("team", ["bob", "carol"])
    for peer in (bob, carol):
        await converged(peer, group, members_are("alice", "bob", "carol"))
    before = await alice.client.send_group(group, "before")
    for peer in (bob, carol):
        await peer.until(group_text(before))

    await alice.client.remove_member(group, "carol")
    for peer in (bob, carol):
        await converged(peer, group, members_are("alice", "bob"))
    capture = Capture(alice.client.groups_runtime.transport)
    alice.client.groups_runtime.transport = capture
    after = await alice.client.send_group(group, "after carol")
    await bob.until(group_text(after))
    (sent,) = capture.sent
    assert carol.me not in sent.devices

    # carol's real stored keys (her store, read back from disk) cannot read it
    home = carol.home
    await carol.client.close()
    with ClientStore(home / "client.db") as store:
        cipher = SenderKeyCipher(carol.me, lambda n: bytes(n))
        cipher.load(*store.sender_keys())
        assert (group, alice.me) in cipher.records()  # she did hold alice's old key
        with pytest.raises(DecryptionError):
            cipher.decrypt(group, alice.me, sent.shared)
    with pytest.raises(GroupError):
        await bob.client.send_group(b"\x00" * 16, "no such group")


async def test_a_device_without_the_key_asks_and_gets_the_message(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    alice = await clients.new("alice")
    bob = await clients.new("bob")
    group = await alice.client.create_group("pair", ["bob"])
    await converged(bob, group, members_are("alice", "bob"))
    first = await alice.client.send_group(group, "one")
    await bob.until(group_text(first))
    # bob's device loses alice's key (as a device restored without it would)
    runtime = bob.client.groups_runtime
    records, given = bob.client.store.sender_keys()
    del records[(group, alice.me)]
    bob.client.store._db.execute("DELETE FROM group_sender_keys")
    runtime.cipher.load(records, given)
    second = await alice.client.send_group(group, "two")
    failed = await bob.until(lambda e: isinstance(e, DecryptionFailed))
    assert isinstance(failed, DecryptionFailed) and failed.message_id == second
    got = await bob.until(group_text(second))  # asked automatically; sent again under its id
    assert got.message.body == b"two"  # type: ignore[union-attr]


async def test_group_statuses_roll_up_per_device_and_member(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    alice = await clients.new("alice")
    bob1 = await clients.new("bob")
    bob2 = await clients.link(bob1)
    carol = await clients.new("carol")
    group = await alice.client.create_group("team", ["bob", "carol"])
    for peer in (bob1, bob2, carol):
        await converged(peer, group, members_are("alice", "bob", "carol"))
    mid = await alice.client.send_group(group, "status?")
    assert alice.client.group_status(mid) == {
        "devices": 3, "sent_devices": 0, "delivered_devices": 0, "read_devices": 0,
        "members": 2, "delivered": 0, "read": 0,
    }  # fmt: skip
    for peer in (bob1, bob2, carol):
        await peer.until(group_text(mid))
    for device in (bob1.me, bob2.me, carol.me):
        await alice.until(is_status(mid, Status.DELIVERED, device))
    await carol.client.mark_read([mid])
    await alice.until(is_status(mid, Status.READ, carol.me))
    rollup = alice.client.group_status(mid)
    assert rollup is not None
    assert (rollup["delivered_devices"], rollup["devices"]) == (3, 3)  # delivered to 3 of 3
    assert (rollup["delivered"], rollup["read"], rollup["members"]) == (2, 1, 2)  # read by 1
    assert rollup["sent_devices"] == 3
    assert alice.client.status(mid) is Status.DELIVERED  # the message's own roll-up
    assert bob1.client.group_status(mid) is None  # bob did not send it


class Corrupt(Capture):
    """Spoils the signature of the next shared ciphertext (as a damaged copy would be)."""

    def queue(self, send: GroupSend, now: float) -> list[OutboxRequest]:
        if not self.sent:
            bad = send.shared[:-1] + bytes([send.shared[-1] ^ 1])
            send = GroupSend(send.group_id, send.message_id, bad, send.devices)
        return super().queue(send, now)


async def test_group_order_per_sender_device_waits_for_a_gap(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    alice = await clients.new("alice")
    bob = await clients.new("bob")
    group = await alice.client.create_group("pair", ["bob"])
    await converged(bob, group, members_are("alice", "bob"))
    first = await alice.client.send_group(group, "one")
    await bob.until(group_text(first))
    runtime = alice.client.groups_runtime
    runtime.transport = Corrupt(runtime.transport)
    second = await alice.client.send_group(group, "two")  # bob cannot read this copy
    third = await alice.client.send_group(group, "three")
    gap = await bob.until(lambda e: isinstance(e, GapDetected))
    assert isinstance(gap, GapDetected) and gap.conversation == group_conversation(group)
    got = await bob.until_all(is_received(), 2)  # two is asked for, then shown before three
    assert [e.message.message_id for e in got] == [second, third]  # type: ignore[union-attr]
    assert any(isinstance(e, DecryptionFailed) and e.message_id == second for e in bob.seen)


async def test_changes_a_non_member_forges_change_nothing(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    alice = await clients.new("alice")
    bob = await clients.new("bob")
    mallory = await clients.new("mallory")
    group = await alice.client.create_group("team", ["bob"])
    await converged(bob, group, members_are("alice", "bob"))
    log = bob.client.groups_runtime.logs[group]
    forged = [  # as alice (the sender is not its author), and as herself (not a member)
        log.author("alice", OpKind.ADD, b"\x0f" * 16, ["mallory"]),
        log.author("mallory", OpKind.ADD, b"\x0e" * 16, ["mallory"]),
        log.author("mallory", OpKind.RENAME, b"\x0d" * 16, name="pwned"),
    ]
    ids = []
    for n, op in enumerate(forged):
        mid = bytes([n + 1]) * 16
        content = GroupChange(group, (op,)).serialize()
        mallory.client.store.enqueue(mid, "bob", content, ContentKind.GROUP_CHANGE, 1.0)
        ids.append(mid)
    mallory.client._outbox.add_queued(ids)
    after = await mallory.client.send("bob", "did it work?")
    await bob.until(is_received(after))  # the same lane: the forged changes came first
    state = bob.client.groups_runtime.state(group)
    assert state is not None and state.members == {"alice", "bob"} and state.name == "team"
    assert mallory.client.group_info(group) is None


async def test_a_leaver_gets_nothing_after_leaving_and_a_rename_reaches_everyone(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    alice = await clients.new("alice")
    bob = await clients.new("bob")
    carol = await clients.new("carol")
    group = await alice.client.create_group("team", ["bob", "carol"])
    for peer in (bob, carol):
        await converged(peer, group, members_are("alice", "bob", "carol"))
    await bob.client.rename_group(group, "crew")  # any member may
    for peer in (alice, carol):
        await converged(peer, group, lambda s: s.name == "crew")

    await carol.client.leave_group(group)
    for peer in (alice, bob):
        await converged(peer, group, members_are("alice", "bob"))
    assert [g.name for g in carol.client.groups()] == []
    info = carol.client.group_info(group)
    assert info is not None and "carol" not in info.members
    with pytest.raises(GroupError):
        await carol.client.send_group(group, "still here?")
    mid = await bob.client.send_group(group, "after carol left")
    await alice.until(group_text(mid))
    # carol's device was sent nothing of it (checked once she is known to be caught up)
    note = await bob.client.send("carol", "a direct note")
    await carol.until(is_received(note))
    assert not any(group_text(mid)(e) for e in carol.seen)
    assert carol.client.store.message(mid) is None
