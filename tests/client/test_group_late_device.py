"""A device linked after its account's group was made (issue 12), real clients and a real relay:
alice.1, bob.1 and carol.1 chat in a group; alice links alice.2, which gets the group from
alice.1 (GROUP_SYNC: the same membership by replay, alice.1's key), the other members' key and
their next messages after their multi-send is refused for it (no key request needed), and what
alice.2 sends reaches bob and carol and shows as the account's own on alice.1."""

from __future__ import annotations

from tests.client.test_group_multisend import Counting
from tests.client.test_groups import converged, group_text, members_are
from tests.harness import ClientLab, Peer, RelayLab, is_status
from tidings.cli.show import _text
from tidings.client import MessageReceived
from tidings.client.events import ClientEvent, DecryptionFailed
from tidings.delivery import Status
from tidings.delivery.content_groups import group_conversation
from tidings.wire import ErrorCode


async def said(peer: Peer, mid: bytes, body: bytes) -> MessageReceived:
    got = await peer.until(group_text(mid))
    assert isinstance(got, MessageReceived) and got.message.body == body
    return got


async def test_a_device_linked_late_joins_its_accounts_groups(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    alice1 = await clients.new("alice")
    bob = await clients.new("bob")
    carol = await clients.new("carol")
    group = await alice1.client.create_group("team", ["bob", "carol"])
    for peer in (bob, carol):
        await converged(peer, group, members_are("alice", "bob", "carol"))
    for sender in (alice1, bob, carol):  # every sender key is given before alice.2 exists
        mid = await sender.client.send_group(group, f"hello from {sender.me}")
        for peer in [p for p in (alice1, bob, carol) if p is not sender]:
            await peer.until(group_text(mid))

    alice2 = await clients.link(alice1)
    failed: list[ClientEvent] = []
    await converged(alice2, group, members_are("alice", "bob", "carol"))
    one, two = alice1.client.groups_runtime, alice2.client.groups_runtime
    assert two.logs[group].ops == one.logs[group].ops  # the same log: the same group
    assert alice2.client.groups() == alice1.client.groups()  # `tidings group list`

    # bob's and carol's next messages: refused for alice.2, key and message to it, retried
    for sender in (bob, carol):
        counting = Counting(sender)
        mid = await sender.client.send_group(group, f"next from {sender.me}")
        await said(alice2, mid, f"next from {sender.me}".encode())
        await alice1.until(group_text(mid))
        await sender.until(is_status(mid, Status.SENT, alice2.me))
        assert [code for _, code in counting.sends] == [ErrorCode.RECIPIENTS_REFUSED, 0]
        named = {(a.account, d.device_id) for a in counting.sends[1][0] for d in a.devices}
        assert ("alice", 2) in named
    failed += [e for e in alice2.seen if isinstance(e, DecryptionFailed)]
    assert failed == []  # no key request was needed

    # and once more, now that they know alice.2: one multi-send, read at once
    counting = Counting(bob)
    mid = await bob.client.send_group(group, "third")
    await said(alice2, mid, b"third")
    assert [code for _, code in counting.sends] == [0]

    # alice.2 sends: bob and carol read it; on alice.1 it is the account's own
    mid = await alice2.client.send_group(group, "from my phone")
    for peer in (bob, carol):
        got = await said(peer, mid, b"from my phone")
        assert got.message.sender == alice2.me
    own = await said(alice1, mid, b"from my phone")
    assert own.message.recipient == group_conversation(group)
    text = _text(own)
    assert text is not None and f"me ({alice2.me})" in text


async def test_a_device_linked_while_the_other_was_away_is_synced_on_its_next_send(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    alice1 = await clients.new("alice")
    bob = await clients.new("bob")
    group = await alice1.client.create_group("team", ["bob"])
    await converged(bob, group, members_are("alice", "bob"))
    first = await alice1.client.send_group(group, "before")
    await bob.until(group_text(first))
    code, _ = await alice1.client.link_code()
    await alice1.client.close()  # away: it never hears the DEVICES notice
    alice2 = await clients.start(await clients.register("alice", link_code=code))
    alice1 = await clients.start(alice1.home)

    mid = await alice1.client.send_group(group, "back")  # the relay names alice.2 missing
    await converged(alice2, group, members_are("alice", "bob"))
    await said(alice2, mid, b"back")
    await said(bob, mid, b"back")
    assert not [e for e in alice2.seen if isinstance(e, DecryptionFailed)]
