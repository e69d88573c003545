"""The group-runtime races ``lab run group-chat`` found (issue 12, docs/lab.md), replayed in a
fixed order of events on real clients in-process (no relay: each item is handed to the
receiving device's inbox as the relay would deliver it, in the order the race needs).

A device that joins a member's stream midstream (a linked device, a member added later) and
gets that member's first messages before the change that tells it of the group asks the sender
for them again (GROUP_KEY_REQUEST); they come back after the sender's next messages. They must
be shown in their counters' order, not after the later ones (protocol §13: ordering per sender
device, as in 1:1 chats).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.harness import FakeClock
from tidings.client import Client, MessageReceived
from tidings.client.events import ClientEvent, DecryptionFailed
from tidings.client.group_transport import MultiEntry
from tidings.client.home import prepare_home
from tidings.client.inbox_groups import on_group
from tidings.client.store import ClientStore, CryptoWrites, Identity
from tidings.delivery import parse_content
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
from tidings.delivery.ordering import ORDER_HOLD_SECONDS
from tidings.refs import DeviceRef
from tidings.wire import Deliver

GroupContent = GroupChange | SenderKey | GroupMessage | GroupKeyRequest | GroupSync


class Dev:
    """A real client that never connects: items are handed to its inbox in the test's order."""

    def __init__(self, tmp: Path, account: str, device_id: int, clock: FakeClock) -> None:
        home = tmp / f"{account}.{device_id}"
        with ClientStore(prepare_home(home, create=True)) as store:
            store.save_identity(Identity(bytes(32), account, device_id, "", "ws://r"))
        self.client = Client(home, clock=clock, monotonic=clock.monotonic)
        self.me = self.client.me
        self.clock = clock
        self._stream = self.client.events()
        self._seen: list[ClientEvent] = []
        self.seq = 0

    @property
    def events(self) -> list[ClientEvent]:
        """Every event reported so far."""
        while self._stream.pending():
            self._seen.append(self._stream._queue.get_nowait())
        return list(self._seen)

    def knows(self, account: str, *devices: int) -> None:
        """This device knows ``account``'s devices (as the relay's device lists would say)."""
        self.client._outbox.recipients.devices[account] = devices

    def queued(self, ids: list[bytes]) -> list[tuple[str, Content]]:
        """The (recipient account, content) of queued outbox ids (a multi-send: its one
        GROUP_MESSAGE)."""
        out: list[tuple[str, Content]] = []
        for i in ids:
            item = self.client.store.outbox_item(i)
            assert item is not None
            if item.recipient.startswith("group:"):
                out.append((item.recipient, parse_content(MultiEntry.parse(item.content).content)))
            else:
                out.append((item.recipient, parse_content(item.content)))
        return out

    def deliver(self, sender: DeviceRef, content: Content, message_id: bytes) -> list[bytes]:
        """``content`` from ``sender`` reaches this device (a DELIVER of its queue)."""
        assert isinstance(content, GroupContent)
        self.seq += 1
        now = self.clock()
        frame = Deliver(
            self.seq, 0, sender.account, sender.device_id, message_id, now, now + 1e6, b""
        )
        return on_group(self.client._inbox, frame, sender, content, now, CryptoWrites(now))

    def send(self, group: bytes, body: str) -> list[tuple[str, Content]]:
        """Compose a group message here: what it queued (keys, then its one ciphertext)."""
        rt = self.client.groups_runtime
        mid = body.encode().ljust(16, b".")[:16]
        now = self.clock()
        before = {i.message_id for i in self.client.store.pending()}
        self.client.store.compose_group(
            mid,
            group_conversation(group),
            body.encode(),
            now,
            lambda m: rt.seal(group, mid, m, now),
        )
        ids = [i.message_id for i in self.client.store.pending()]
        return self.queued([i for i in ids if i not in before])

    def shown(self) -> list[tuple[bytes, bool]]:
        """The bodies shown (MessageReceived), in order, each with its ``late`` flag."""
        return [(e.message.body, e.late) for e in self.events if isinstance(e, MessageReceived)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000_000.0)


@pytest.fixture
async def devs(tmp_path: Path, clock: FakeClock) -> AsyncIterator[dict[str, Dev]]:
    devs = {
        n: Dev(tmp_path, a, d, clock)
        for n, (a, d) in {
            "alice.1": ("alice", 1),
            "alice.2": ("alice", 2),
            "bob.1": ("bob", 1),
            "dave.1": ("dave", 1),
        }.items()
    }
    for d in devs.values():
        d.knows("alice", 1, 2)
        d.knows("bob", 1)
        d.knows("dave", 1)
    yield devs
    for d in devs.values():
        await d.client.close()


def _one(items: list[tuple[str, Content]], kind: type, to: str = "") -> Content:
    found = [c for a, c in items if isinstance(c, kind) and (not to or a == to)]
    assert len(found) == 1, items
    return found[0]


def _answer(sender: Dev, to: Dev, asks: list[GroupKeyRequest]) -> None:
    """``sender`` answers ``to``'s key requests; the answers reach ``to`` in order."""
    for ask in asks:
        sender.seq += 1
        now = sender.clock()
        ids = sender.client.groups_runtime.on_key_request(
            sender.seq, to.me, ask, now, CryptoWrites(now)
        )
        for i, (_, content) in enumerate(sender.queued(ids)):
            mid = content.message_id if isinstance(content, GroupMessage) else bytes([i]) * 16
            to.deliver(sender.me, content, mid)


def _asks(dev: Dev, ids: list[bytes]) -> list[GroupKeyRequest]:
    return [c for _, c in dev.queued(ids) if isinstance(c, GroupKeyRequest)]


def _gm(items: list[tuple[str, Content]]) -> GroupMessage:
    gm = _one(items, GroupMessage)
    assert isinstance(gm, GroupMessage)
    return gm


async def test_a_linked_device_shows_a_members_first_messages_recovered_late_in_their_order(
    devs: dict[str, Dev],
) -> None:
    """Race 1 at a linked device: alice.2 gets bob's key and first two messages before
    alice.1's create. It asks bob for them with the create (not before: an answer ahead of the
    create would be dropped again); bob's third arrives (the stream would begin at it,
    midstream), then the two come back: shown 1, 2, 3, none late."""
    alice1, alice2, bob = devs["alice.1"], devs["alice.2"], devs["bob.1"]
    group, ids = alice1.client.groups_runtime.create("lab", ["bob"], alice1.clock())
    created = alice1.queued(ids)
    bob.deliver(alice1.me, _one(created, GroupChange, "bob"), b"c-bob".ljust(16, b"."))

    first = bob.send(group, "one")
    second = bob.send(group, "two")
    alice2.deliver(bob.me, _one(first, SenderKey, "alice"), b"k1".ljust(16, b"."))  # kept
    for sent in (first, second):
        gm = _gm(sent)
        assert alice2.deliver(bob.me, gm, gm.message_id) == []  # not known yet: asked later
    assert [type(e) for e in alice2.events] == [DecryptionFailed, DecryptionFailed]

    # now the create (alice.1's change to its own account): the ask goes with it
    ids = alice2.deliver(alice1.me, _one(created, GroupChange, "alice"), b"c-a".ljust(16, b"."))
    asks = _asks(alice2, ids)
    assert [(a.device_id, len(a.message_ids)) for a in asks] == [(1, 2)]
    third = _gm(bob.send(group, "three"))
    alice2.deliver(bob.me, third, third.message_id)
    assert alice2.shown() == []  # held: the two asked for come first

    _answer(bob, alice2, asks)  # bob's key again and the two messages, re-encrypted
    assert alice2.shown() == [(b"one", False), (b"two", False), (b"three", False)]


async def test_a_joiner_begins_a_members_stream_at_the_first_message_it_was_sent(
    devs: dict[str, Dev],
) -> None:
    """Race 1 at a member added later: dave gets bob's key and message (bob's counter 3, the
    first sealed for dave) before alice's log of the group; the recovered one and the next are
    shown in order, without waiting out the hold for counters 1-2 never sealed for dave."""
    alice1, bob, dave = devs["alice.1"], devs["bob.1"], devs["dave.1"]
    rt = alice1.client.groups_runtime
    group, ids = rt.create("lab", ["bob"], alice1.clock())
    bob.deliver(alice1.me, _one(alice1.queued(ids), GroupChange, "bob"), b"c1".ljust(16, b"."))
    bob.send(group, "one")
    bob.send(group, "two")

    added = alice1.queued(rt.change(group, OpKind.ADD, ["dave"], now=alice1.clock()))
    bob.deliver(alice1.me, _one(added, GroupChange, "bob"), b"c2".ljust(16, b"."))
    third = bob.send(group, "three")
    dave.deliver(bob.me, _one(third, SenderKey, "dave"), b"k3".ljust(16, b"."))
    gm3 = _gm(third)
    assert dave.deliver(bob.me, gm3, gm3.message_id) == []  # the group is not known yet

    asks = _asks(dave, dave.deliver(alice1.me, _one(added, GroupChange, "dave"), bytes(16)))
    assert len(asks) == 1
    gm4 = _gm(bob.send(group, "four"))
    dave.deliver(bob.me, gm4, gm4.message_id)
    assert dave.shown() == []

    _answer(bob, dave, asks)
    assert dave.shown() == [(b"three", False), (b"four", False)]


async def test_a_new_members_first_message_before_its_add_is_not_lost(
    devs: dict[str, Dev],
) -> None:
    """Race 2: dave, just added, sends; bob gets dave's key and first message before alice's
    change that adds dave (it comes on alice's path, delayed). It was dropped for good ("a
    group it is not in"); now bob keeps the key, asks dave with the change, and shows it."""
    alice1, bob, dave = devs["alice.1"], devs["bob.1"], devs["dave.1"]
    rt = alice1.client.groups_runtime
    group, ids = rt.create("lab", ["bob"], alice1.clock())
    bob.deliver(alice1.me, _one(alice1.queued(ids), GroupChange, "bob"), b"c1".ljust(16, b"."))
    added = alice1.queued(rt.change(group, OpKind.ADD, ["dave"], now=alice1.clock()))
    dave.deliver(alice1.me, _one(added, GroupChange, "dave"), b"log".ljust(16, b"."))

    hi = dave.send(group, "hi from dave")
    bob.deliver(dave.me, _one(hi, SenderKey, "bob"), b"kd".ljust(16, b"."))
    gm = _gm(hi)
    assert bob.deliver(dave.me, gm, gm.message_id) == []  # dave not a member here yet
    assert bob.shown() == []

    asks = _asks(bob, bob.deliver(alice1.me, _one(added, GroupChange, "bob"), bytes(16)))
    assert len(asks) == 1
    _answer(dave, bob, asks)
    assert bob.shown() == [(b"hi from dave", False)]


async def test_if_the_asked_message_never_comes_back_the_hold_shows_the_rest_in_order(
    devs: dict[str, Dev], clock: FakeClock
) -> None:
    """The fallback: an asked-for message that never comes back holds the stream for the
    ordering hold only; then what was held is shown in order."""
    alice1, alice2, bob = devs["alice.1"], devs["alice.2"], devs["bob.1"]
    group, ids = alice1.client.groups_runtime.create("lab", ["bob"], alice1.clock())
    created = alice1.queued(ids)
    bob.deliver(alice1.me, _one(created, GroupChange, "bob"), b"c-bob".ljust(16, b"."))
    first = bob.send(group, "one")
    alice2.deliver(bob.me, _one(first, SenderKey, "alice"), b"k1".ljust(16, b"."))
    gm1 = _gm(first)
    alice2.deliver(bob.me, gm1, gm1.message_id)
    alice2.deliver(alice1.me, _one(created, GroupChange, "alice"), b"c-a".ljust(16, b"."))
    for body in ("two", "three"):  # the answer to the ask is lost
        gm = _gm(bob.send(group, body))
        alice2.deliver(bob.me, gm, gm.message_id)
    assert alice2.shown() == []
    clock.advance(ORDER_HOLD_SECONDS)
    inbox = alice2.client._inbox
    inbox._commit_surfaced(inbox.reorderer.handle_timer(clock.monotonic()))
    assert alice2.shown() == [(b"two", False), (b"three", False)]


async def test_a_message_behind_the_chain_position_held_is_asked_for_again_not_dropped(
    devs: dict[str, Dev],
) -> None:
    """Race 2 (the lost first message, seed 121): bob seals its first message for alice.1 (its
    key at position 0 to alice), then learns of alice.2 and seals its second with its key again
    to alice, at position 1. Under resets the second key reaches alice.1 first: it holds bob's
    chain from 1, and the first key cannot rewind it. The first message (position 0) then looked
    like a replay and was dropped silently, for good; now alice.1 asks bob for it again and
    shows both in order."""
    alice1, bob = devs["alice.1"], devs["bob.1"]
    group, ids = alice1.client.groups_runtime.create("lab", ["bob"], alice1.clock())
    bob.deliver(alice1.me, _one(alice1.queued(ids), GroupChange, "bob"), b"c1".ljust(16, b"."))
    bob.knows("alice", 1)
    first = bob.send(group, "one")
    bob.knows("alice", 1, 2)  # the relay named alice.2: it lacks bob's key
    second = bob.send(group, "two")
    key0, key1 = _one(first, SenderKey, "alice"), _one(second, SenderKey, "alice")
    gm1, gm2 = _gm(first), _gm(second)

    alice1.deliver(bob.me, key1, b"k1".ljust(16, b"."))  # the later key first
    alice1.deliver(bob.me, key0, b"k0".ljust(16, b"."))  # cannot rewind the chain
    [again] = _asks(alice1, alice1.deliver(bob.me, gm1, gm1.message_id))  # used position: asks
    assert again.message_ids == (gm1.message_id,)
    alice1.deliver(bob.me, gm2, gm2.message_id)
    assert alice1.shown() == []  # two waits for one
    _answer(bob, alice1, [again])
    assert alice1.shown() == [(b"one", False), (b"two", False)]


async def test_a_message_asked_for_before_its_sender_left_is_taken_after(
    devs: dict[str, Dev],
) -> None:
    """The lost first messages of seed 302: bob asked dave for a message it could not read
    (the relay then died); dave left before the answer came. The answer reached bob after it
    applied the leave: dropped as from a non-member, lost. It was sealed for bob while dave was
    a member, and bob asked for it then: now the answer is taken (and dave, gone, still
    answers a member's request for what it sent). A message dave seals after it left is not."""
    alice1, bob, dave = devs["alice.1"], devs["bob.1"], devs["dave.1"]
    group, ids = alice1.client.groups_runtime.create("lab", ["bob", "dave"], alice1.clock())
    created = alice1.queued(ids)
    for d, account in ((bob, "bob"), (dave, "dave")):
        d.deliver(alice1.me, _one(created, GroupChange, account), b"c".ljust(16, b"."))
    gm = _gm(dave.send(group, "before I go"))  # dave's key to bob is lost
    asks = _asks(bob, bob.deliver(dave.me, gm, gm.message_id))  # no chain: asks at once
    assert len(asks) == 1

    left = dave.queued(dave.client.groups_runtime.change(group, OpKind.LEAVE, now=dave.clock()))
    bob.deliver(dave.me, _one(left, GroupChange, "bob"), b"leave".ljust(16, b"."))
    state = bob.client.groups_runtime.state(group)
    assert state is not None and "dave" not in state.members
    _answer(dave, bob, asks)  # after the leave, at bob and at dave
    assert bob.shown() == [(b"before I go", False)]

    # what dave sends now is not taken, however often it comes
    rt = dave.client.groups_runtime
    late = GroupMessage(group, b"late".ljust(16, b"."), rt.cipher.encrypt(group, b"x"))
    for _ in range(2):
        assert bob.deliver(dave.me, late, late.message_id) == []
    assert bob.shown() == [(b"before I go", False)]


async def test_a_leaver_takes_no_answer_that_comes_after_its_leave(devs: dict[str, Dev]) -> None:
    """The other side of the last: dave asked bob for a message, then left; bob, who has not
    heard of the leave yet, answers. Dave, no member any more, shows nothing of it."""
    alice1, bob, dave = devs["alice.1"], devs["bob.1"], devs["dave.1"]
    group, ids = alice1.client.groups_runtime.create("lab", ["bob", "dave"], alice1.clock())
    created = alice1.queued(ids)
    for d, account in ((bob, "bob"), (dave, "dave")):
        d.deliver(alice1.me, _one(created, GroupChange, account), b"c".ljust(16, b"."))
    gm = _gm(bob.send(group, "for dave, late"))  # bob's key to dave is lost
    asks = _asks(dave, dave.deliver(bob.me, gm, gm.message_id))
    assert len(asks) == 1
    dave.client.groups_runtime.change(group, OpKind.LEAVE, now=dave.clock())
    _answer(bob, dave, asks)
    assert dave.shown() == []


async def test_an_own_device_not_known_at_the_first_seal_gets_that_message_in_order(
    devs: dict[str, Dev],
) -> None:
    """Seed 910: alice.1 sealed its first message right after the create, before it knew its
    own alice.2 (a device-set answer names it a moment later): the multi-send named no own
    device, and alice.2 never got it. Now the GROUP_SYNC that gives alice.2 the key comes with
    alice.1's recent messages of the group that have no status there, before the next."""
    alice1, alice2 = devs["alice.1"], devs["alice.2"]
    alice1.knows("alice", 1)  # its own account: itself only, so far
    group, ids = alice1.client.groups_runtime.create("lab", ["bob"], alice1.clock())
    create = _one(alice1.queued(ids), GroupChange, "alice")
    first = alice1.send(group, "first")
    assert not [c for a, c in first if a == "alice"]  # nothing for an own device
    alice1.knows("alice", 1, 2)  # the relay's device-set answer named alice.2
    second = alice1.send(group, "second")
    own = [c for a, c in second if a == "alice"]
    assert [type(c) for c in own] == [GroupSync, GroupMessage]  # the key, then the first again

    alice2.deliver(alice1.me, create, b"c".ljust(16, b"."))
    for i, content in enumerate(own):
        mid = content.message_id if isinstance(content, GroupMessage) else bytes([i]) * 16
        alice2.deliver(alice1.me, content, mid)
    gm2 = _gm([(a, c) for a, c in second if a.startswith("group:")])  # the multi-send's
    alice2.deliver(alice1.me, gm2, gm2.message_id)
    assert alice2.shown() == [(b"first", False), (b"second", False)]
    # bob got both once; a copy at bob would be a duplicate anyway
    assert not [c for a, c in second if a == "bob" and isinstance(c, GroupMessage)]


async def test_a_linked_device_holds_a_new_members_stream_from_its_first_message(
    devs: dict[str, Dev],
) -> None:
    """Seeds 1007 and 1201: dave, added while alice.2 held the group, sent a burst; its resends
    after the relay's restart came after its next message. alice.2, a linked device, began
    dave's stream midstream at that next one and showed the burst late. It is owed dave's
    messages from the first (dave joined while it was a member): the stream begins at 1."""
    alice1, alice2, dave = devs["alice.1"], devs["alice.2"], devs["dave.1"]
    rt = alice1.client.groups_runtime
    group, ids = rt.create("lab", ["bob"], alice1.clock())
    alice2.deliver(alice1.me, _one(alice1.queued(ids), GroupChange, "alice"), bytes(16))
    added = alice1.queued(rt.change(group, OpKind.ADD, ["dave"], now=alice1.clock()))
    alice2.deliver(alice1.me, _one(added, GroupChange, "alice"), b"add".ljust(16, b"."))
    dave.deliver(alice1.me, _one(added, GroupChange, "dave"), b"log".ljust(16, b"."))
    first = dave.send(group, "first")
    second = dave.send(group, "second")
    alice2.deliver(dave.me, _one(first, SenderKey, "alice"), b"k".ljust(16, b"."))
    gm1, gm2 = _gm(first), _gm(second)
    alice2.deliver(dave.me, gm2, gm2.message_id)  # the second overtook the first
    assert alice2.shown() == []
    alice2.deliver(dave.me, gm1, gm1.message_id)
    assert alice2.shown() == [(b"first", False), (b"second", False)]
