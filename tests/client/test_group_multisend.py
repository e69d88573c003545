"""Group messages as ONE multi-recipient send (issue 12), real clients and a real relay: one
MULTI_SEND per message whatever the member devices (one shared body in the relay's SQLite, an
inbox item per device), a stale device set fixed and retried, a sender restarted before the
answer delivers once, and the DELIVER payload's bytes pinned."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.client.test_groups import converged, group_text, members_are
from tests.harness import ClientLab, Peer, RelayLab, is_status
from tidings.client import MessageReceived
from tidings.client.group_transport import GROUP_PART, MultiEntry, copy_id
from tidings.client.outbox_multi import MultiLink, as_refused
from tidings.delivery import ContentError, Status
from tidings.delivery.content_groups import GroupMessage
from tidings.errors import ConnectionBroken
from tidings.net.channel import ChannelClosed
from tidings.wire import AccountRefusal, ErrorCode, MultiAccount, MultiSent


def count(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(sql).fetchone()[0])


SHARED_BODIES = "SELECT count(*) FROM shared_bodies"
SHARED_ITEMS = "SELECT count(*) FROM inbox WHERE shared_id IS NOT NULL"


class Counting:
    """Wraps a client's multi-send link: records each MULTI_SEND's recipients and answer."""

    def __init__(self, peer: Peer) -> None:
        self.multi = peer.client._outbox.multi
        self.inner = self.multi._link
        assert self.inner is not None
        self.sends: list[tuple[tuple[MultiAccount, ...], int]] = []
        self.multi._link = MultiLink(self.send, self.inner.last_close)

    async def send(
        self, message_id: bytes, shared: bytes, recipients: Sequence[MultiAccount]
    ) -> MultiSent:
        assert self.inner is not None
        answer = await self.inner.send(message_id, shared, recipients)
        self.sends.append((tuple(recipients), answer.code))
        return answer


async def test_a_group_message_to_four_devices_is_one_multi_send_stored_once(
    relays: RelayLab, clients: ClientLab, tmp_path: Path
) -> None:
    await relays.start()
    alice1 = await clients.new("alice")
    bob1 = await clients.new("bob")
    bob2 = await clients.link(bob1)
    carol = await clients.new("carol")
    dave = await clients.new("dave")
    receivers = (bob1, bob2, carol, dave)
    group = await alice1.client.create_group("team", ["bob", "carol", "dave"])
    for peer in receivers:
        await converged(peer, group, members_are("alice", "bob", "carol", "dave"))
    first = await alice1.client.send_group(group, "keys first")  # sender keys go pairwise
    for peer in receivers:
        await peer.until(group_text(first))
    counting = Counting(alice1)
    for peer in receivers:  # offline: the relay keeps what it stored for them
        await peer.client.close()

    mid = await alice1.client.send_group(group, "one send for all")
    await alice1.until(is_status(mid, Status.SENT))
    assert len(counting.sends) == 1
    recipients, code = counting.sends[0]
    assert code == 0
    named = sorted((a.account, d.device_id) for a in recipients for d in a.devices)
    assert named == [("bob", 1), ("bob", 2), ("carol", 1), ("dave", 1)]
    assert all(d.part == GROUP_PART for a in recipients for d in a.devices)
    db = tmp_path / "relay.db"
    assert count(db, SHARED_BODIES) == 1  # the ciphertext once
    assert count(db, SHARED_ITEMS) == 4  # an item per device
    assert alice1.client._outbox.store.statuses(copy_id(mid, "bob")) == {}  # no pairwise copy

    back = [await clients.start(p.home) for p in receivers]
    for peer in back:
        got = await peer.until(group_text(mid))
        assert isinstance(got, MessageReceived) and got.message.body == b"one send for all"
    for peer in back:
        await alice1.until(is_status(mid, Status.DELIVERED, peer.me))
    rollup = alice1.client.group_status(mid)
    assert rollup is not None
    assert (rollup["delivered_devices"], rollup["devices"], rollup["delivered"]) == (4, 4, 3)


async def test_a_member_linking_a_device_is_fixed_and_retried(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    alice = await clients.new("alice")
    bob1 = await clients.new("bob")
    carol = await clients.new("carol")
    group = await alice.client.create_group("team", ["bob", "carol"])
    for peer in (bob1, carol):
        await converged(peer, group, members_are("alice", "bob", "carol"))
    bob2 = await clients.link(bob1)  # alice does not know this device yet
    counting = Counting(alice)

    mid = await alice.client.send_group(group, "to every device")
    for peer in (bob1, carol):
        await peer.until(group_text(mid))
    await alice.until(is_status(mid, Status.SENT, bob2.me))
    codes = [code for _, code in counting.sends]
    # The multi-send waits for the ✓ of the sender keys before it (in flight too): the key's
    # pairwise SEND to bob was refused for his new device and fixed bob's device list, so the
    # one MULTI_SEND names every device at once.
    assert codes == [0]
    named = sorted((a.account, d.device_id) for a in counting.sends[0][0] for d in a.devices)
    assert named == [("bob", 1), ("bob", 2), ("carol", 1)]
    rollup = alice.client.group_status(mid)
    assert rollup is not None and rollup["sent_devices"] == 3


class Stalled(Counting):
    """The relay stores the send, but the sender never hears the answer (it dies first)."""

    def __init__(self, peer: Peer) -> None:
        super().__init__(peer)
        self.stored = asyncio.Event()

    async def send(
        self, message_id: bytes, shared: bytes, recipients: Sequence[MultiAccount]
    ) -> MultiSent:
        await super().send(message_id, shared, recipients)
        self.stored.set()
        await asyncio.Event().wait()  # cancelled when the client closes
        raise AssertionError("unreachable")


async def test_a_sender_restarted_before_the_answer_delivers_once(
    relays: RelayLab, clients: ClientLab, tmp_path: Path
) -> None:
    await relays.start()
    alice = await clients.new("alice")
    bob = await clients.new("bob")
    group = await alice.client.create_group("pair", ["bob"])
    await converged(bob, group, members_are("alice", "bob"))
    first = await alice.client.send_group(group, "keys first")
    await bob.until(group_text(first))
    await bob.client.close()
    stalled = Stalled(alice)

    mid = await alice.client.send_group(group, "exactly once")
    async with asyncio.timeout(10):
        await stalled.stored.wait()
    await alice.client.close()  # the entry is still in its outbox: no ✓ was heard
    db = tmp_path / "relay.db"
    assert count(db, SHARED_ITEMS) == 1

    alice = await clients.start(alice.home)
    again = Counting(alice)  # the restarted client resends under the same message id...
    await alice.until(is_status(mid, Status.SENT))
    assert [code for _, code in again.sends] in ([0], [])  # (it may have gone before the wrap)
    assert count(db, SHARED_ITEMS) == 1  # ...and the relay stored it once
    assert count(db, SHARED_BODIES) == 1
    bob = await clients.start(bob.home)
    await bob.until(group_text(mid))
    stored = bob.client.store.message(mid)
    assert stored is not None and stored.body == b"exactly once"


def test_the_group_payload_and_entry_bytes_are_pinned() -> None:
    gm = GroupMessage(bytes(range(16)), bytes(range(16, 32)), b"\x33" + b"\xab" * 4)
    payload = GROUP_PART + gm.serialize()
    assert payload.hex() == GOLDEN_PAYLOAD
    entry = MultiEntry(("bob", "carol"), gm.serialize())
    assert entry.serialize().hex() == GOLDEN_ENTRY
    assert MultiEntry.parse(entry.serialize()) == entry


#: GROUP_PART (47 01), then the GROUP_MESSAGE content: MessagePack [1, 10, group id, message
#: id, SenderKeyMessage] (docs/protocol.md §13).
GOLDEN_PAYLOAD = (
    "4701"
    "95010ac410000102030405060708090a0b0c0d0e0fc410101112131415161718191a1b1c1d1e1fc40533abababab"
)
#: The outbox entry: [1, ["bob", "carol"], content].
GOLDEN_ENTRY = (
    "930192a3626f62a56361726f6cc42e"
    "95010ac410000102030405060708090a0b0c0d0e0fc410101112131415161718191a1b1c1d1e1fc40533abababab"
)


class OldRelay(Counting):
    """A relay without MULTI_SEND: it closes the connection on the unknown frame type."""

    def __init__(self, peer: Peer) -> None:
        super().__init__(peer)
        self.session = peer.client._session
        self.tried = 0
        self.multi._link = MultiLink(self.send, self.closed)

    def closed(self) -> ChannelClosed:
        return ChannelClosed(int(ErrorCode.MALFORMED_FRAME), "unknown frame type 13", True)

    async def send(
        self, message_id: bytes, shared: bytes, recipients: Sequence[MultiAccount]
    ) -> MultiSent:
        self.tried += 1
        self.session.drop()
        raise ConnectionBroken("disconnected")


async def test_a_relay_without_multi_send_gets_pairwise_copies(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    alice = await clients.new("alice")
    bob = await clients.new("bob")
    carol = await clients.new("carol")
    group = await alice.client.create_group("team", ["bob", "carol"])
    for peer in (bob, carol):
        await converged(peer, group, members_are("alice", "bob", "carol"))
    old = OldRelay(alice)

    first = await alice.client.send_group(group, "one")
    second = await alice.client.send_group(group, "two")
    for peer in (bob, carol):
        for mid in (first, second):
            await peer.until(group_text(mid))
    assert old.tried == 1  # one try; from then on, copies at once
    for mid in (first, second):
        await alice.until(is_status(mid, Status.DELIVERED, carol.me))
        assert alice.client._outbox.store.statuses(copy_id(mid, "carol"))  # a pairwise copy
    trace = [t.point for t in alice.client.trace(first)]
    assert "fallback" in trace


def test_a_refused_multi_send_stands_for_the_refusal_the_outbox_knows() -> None:
    mid = bytes(16)

    def answer(code: int, *refusals: AccountRefusal, retry: float = 0.0) -> MultiSent:
        return MultiSent(0, mid, int(code), 0.0, False, "refused", retry, refusals)

    mismatch = AccountRefusal("bob", int(ErrorCode.DEVICE_MISMATCH), (2,), ())
    full = AccountRefusal("carol", int(ErrorCode.QUEUE_FULL))
    gone = AccountRefusal("dave", int(ErrorCode.NO_SUCH_ACCOUNT))
    refused = ErrorCode.RECIPIENTS_REFUSED
    assert as_refused(answer(refused, mismatch, full)).code == ErrorCode.DEVICE_MISMATCH
    assert as_refused(answer(refused, full, mismatch, gone)).code == ErrorCode.NO_SUCH_ACCOUNT
    queue = as_refused(answer(refused, full, retry=3.0))
    assert (queue.code, queue.retry_after) == (ErrorCode.QUEUE_FULL, 3.0)
    assert "carol" in queue.reason
    limited = as_refused(answer(ErrorCode.RATE_LIMITED, retry=5.0))
    assert (limited.code, limited.retry_after) == (ErrorCode.RATE_LIMITED, 5.0)


def test_a_stored_entry_that_is_not_one_is_refused() -> None:
    for data in (b"", b"\x93\x02\x90\xc4\x00", b"\x93\x01\x91\x01\xc4\x00", b"\xc1"):
        with pytest.raises(ContentError):
            MultiEntry.parse(data)


async def test_the_creators_other_device_learns_the_group_and_sends_to_it(
    relays: RelayLab, clients: ClientLab
) -> None:
    """A group's create reaches its creator's other devices too (the ``group-chat`` lab
    scenario found a second device that never learned of its own account's group)."""
    await relays.start()
    alice1 = await clients.new("alice")
    alice2 = await clients.link(alice1)
    bob = await clients.new("bob")
    group = await alice1.client.create_group("team", ["bob"])
    for peer in (alice2, bob):
        await converged(peer, group, members_are("alice", "bob"))
    mid = await alice2.client.send_group(group, "from the second device")
    for peer in (alice1, bob):
        await peer.until(group_text(mid))
