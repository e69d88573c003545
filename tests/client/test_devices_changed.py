"""A device linked to an account while another of its devices is connected: that device hears
of it at once (issue 13: "the user's other devices show a notice"), real clients and relay."""

from __future__ import annotations

from tests.harness import ClientLab, RelayLab
from tidings.api.forms import event_json
from tidings.cli.show import _text
from tidings.client import DevicesChanged
from tidings.client.events import ClientEvent


def is_devices_changed(e: ClientEvent) -> bool:
    return isinstance(e, DevicesChanged)


async def test_the_other_devices_are_told_of_a_new_one(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    bob1 = await clients.new("bob")
    alice = await clients.new("alice")
    bob2 = await clients.link(bob1)
    event = await bob1.until(is_devices_changed)
    assert isinstance(event, DevicesChanged)
    assert (event.account, event.added, event.removed) == ("bob", (2,), ())
    assert event_json(event)["added"] == ["bob.2"]
    assert _text(event) == "! bob.2 was linked to this account (tidings devices lists them)"
    await clients.link(bob2)
    for peer in (bob1, bob2):
        event = await peer.until(is_devices_changed)
        assert isinstance(event, DevicesChanged) and event.added == (3,)
    # a contact's devices are not this account's news: nothing of it among alice's events
    queued = [await alice.events.next() for _ in range(alice.events.pending())]
    assert not any(isinstance(e, DevicesChanged) for e in alice.seen + queued)
