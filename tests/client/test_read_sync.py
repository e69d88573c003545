"""Read-state sync between the devices of one account: a message read on bob.1 is read on
bob.2 too, and the unread counts agree (issue 13), with real clients and a real relay."""

from __future__ import annotations

from tests.harness import ClientLab, RelayLab, is_received, is_status
from tidings.client import ReadElsewhere
from tidings.client.events import ClientEvent
from tidings.delivery import Status


def is_read_elsewhere(e: ClientEvent) -> bool:
    return isinstance(e, ReadElsewhere)


def unread(peer: object) -> dict[str, int]:
    return {c.conversation: c.unread for c in peer.client.store.conversations()}  # type: ignore[attr-defined]


async def test_reading_on_one_device_clears_it_on_the_others(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    alice = await clients.new("alice")
    bob1 = await clients.new("bob")
    bob2 = await clients.link(bob1)
    bob3 = await clients.link(bob1)
    ids = [await alice.client.send("bob", f"message {i}") for i in range(3)]
    for device in (bob1, bob2, bob3):
        await device.until_all(is_received(), 3)
        assert unread(device) == {"alice:bob": 3}

    assert await bob1.client.mark_read(ids[:2]) == 2
    for other in (bob2, bob3):
        event = await other.until(is_read_elsewhere)
        assert isinstance(event, ReadElsewhere)
        assert set(event.message_ids) == set(ids[:2]) and event.device == bob1.me
        assert unread(other) == {"alice:bob": 1}
    assert unread(bob1) == {"alice:bob": 1}
    await alice.until(is_status(ids[1], Status.READ))  # and alice saw them read

    assert await bob3.client.mark_read(ids) == 1  # only the third was unread there
    for other in (bob1, bob2):
        event = await other.until(is_read_elsewhere)
        assert isinstance(event, ReadElsewhere) and event.message_ids == (ids[2],)
        assert unread(other) == {"alice:bob": 0}
    # a device that read them already learns nothing new: no event for what it had read
    assert await bob2.client.mark_read(ids) == 0


async def test_read_state_syncs_with_read_receipts_off(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    alice = await clients.new("alice")
    bob1 = await clients.new("bob")
    bob2 = await clients.link(bob1)
    mid = await alice.client.send("bob", "private")
    await bob1.until(is_received(mid))
    await bob2.until(is_received(mid))
    await alice.until(is_status(mid, Status.DELIVERED))
    bob1.client.set_read_receipts(False)
    assert await bob1.client.mark_read([mid]) == 1
    await bob2.until(is_read_elsewhere)  # bob's own devices still agree
    assert unread(bob2) == {"alice:bob": 0}
    assert alice.client.status(mid) is not Status.READ  # alice is told nothing
