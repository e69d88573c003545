"""Device names between an account's devices (DEVICE_INFO, issue 13), real clients and relay:
each device tells the others its name once per new device; the relay never sees it."""

from __future__ import annotations

import pytest

from tests.harness import ClientLab, RelayLab
from tidings.client import DeviceNamed
from tidings.delivery import ContentError, DeviceInfo, parse_content


async def test_each_device_learns_the_names_of_the_others(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    phone = await clients.start(await clients.register("bob", name="phone"))
    laptop = await clients.link(phone)
    tablet = await clients.link(phone)

    def names(peer: object) -> dict[int, str]:
        return peer.client.store.device_names()  # type: ignore[attr-defined,no-any-return]

    for peer, want in ((phone, {2, 3}), (laptop, {1, 3}), (tablet, {1, 2})):
        while set(names(peer)) != want:
            await peer.until(lambda e: isinstance(e, DeviceNamed))
    assert names(tablet) == {1: "phone", 2: "bob-device"}
    # the relay's database holds no name
    data = (relays.tmp / "relay.db").read_bytes()
    assert b"phone" not in data


def test_device_info_is_checked() -> None:
    assert parse_content(DeviceInfo("Bob's laptop").serialize()) == DeviceInfo("Bob's laptop")
    assert DeviceInfo("").serialize() == bytes.fromhex("930107a0")
    for bad in ("x" * 65, "tab\there", "\x1b[2J"):
        with pytest.raises(ContentError):
            DeviceInfo(bad)
