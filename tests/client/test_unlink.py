"""Unlinking a device and the per-account device limit (issue 13), with real clients and a real
relay: the unlinked device is cut off at once and for good, its account's other devices and its
contacts go on without it, and what is refused changes nothing."""

from __future__ import annotations

import pytest

from tests.harness import ClientLab, RelayLab, is_received, is_status
from tidings.client import Disconnected
from tidings.client.events import ClientEvent
from tidings.delivery import Status
from tidings.errors import ConfigError, FrameError, RefusedError
from tidings.refs import DeviceRef
from tidings.wire import ErrorCode


def is_fatal(e: ClientEvent) -> bool:
    return isinstance(e, Disconnected) and e.fatal


async def test_an_unlinked_device_is_cut_off_and_senders_drop_it(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    alice = await clients.new("alice")
    bob1 = await clients.new("bob")
    bob2 = await clients.link(bob1)
    first = await alice.client.send("bob", "before")
    await alice.until(is_status(first, Status.DELIVERED, DeviceRef("bob", 2)))

    assert await bob1.client.unlink(2) == (1,)
    event = await bob2.until(is_fatal)  # its live session is closed: it may not come back
    assert isinstance(event, Disconnected) and event.code == ErrorCode.UNKNOWN_DEVICE
    assert "unlinked" in event.reason

    after = await alice.client.send("bob", "after")  # still sent to bob.1 and bob.2: stale
    await bob1.until(is_received(after))
    await alice.until(is_status(after, Status.DELIVERED, DeviceRef("bob", 1)))
    statuses = alice.client.store.statuses(after)
    assert DeviceRef("bob", 2) not in statuses  # the relay named it stale; alice dropped it
    assert await alice.client.devices("bob") == (1,)

    # the unlinked device's key is refused from now on
    await bob2.client.close()
    again = clients.open(bob2.home)
    await again.start()
    with pytest.raises(ConfigError, match="refused"):
        await again.wait_connected(10.0)


async def test_refused_unlinks_change_nothing(relays: RelayLab, clients: ClientLab) -> None:
    await relays.start()
    bob1 = await clients.new("bob")
    with pytest.raises(RefusedError) as last:
        await bob1.client.unlink(1)  # the account's only device
    assert last.value.code == ErrorCode.LAST_DEVICE
    with pytest.raises(RefusedError) as unknown:
        await bob1.client.unlink(7)
    assert unknown.value.code == ErrorCode.UNKNOWN_DEVICE
    with pytest.raises(FrameError):
        await bob1.client.unlink(0)
    assert await bob1.client.devices("bob") == (1,)
    assert bob1.client.connected  # a refusal keeps the connection


async def test_the_device_limit_refuses_one_more(relays: RelayLab, clients: ClientLab) -> None:
    await relays.start(max_devices=2)
    bob1 = await clients.new("bob")
    await clients.link(bob1)
    code, _ = await bob1.client.link_code()
    with pytest.raises(RefusedError) as refused:
        await clients.register("bob", link_code=code)
    assert refused.value.code == ErrorCode.TOO_MANY_DEVICES
    assert await bob1.client.devices("bob") == (1, 2)
    await bob1.client.unlink(2)
    third = await clients.register("bob", link_code=code)  # the refused try left the code unused
    assert third.exists()
    assert await bob1.client.devices("bob") == (1, 3)
