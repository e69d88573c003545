"""The local API's group methods over the real socket, with real clients and a relay: what
the web app's group view relies on — bad input answered with a clear error that changes
nothing (an empty name, an account the relay does not know, a change by a non-admin), the
roll-up of a sent message following its status events, and ``groups`` with ``left``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.harness import ClientLab, Peer, RelayLab
from tidings.api.client import ApiClient
from tidings.api.methods import METHODS, NOT_FOUND, call
from tidings.api.rpc import INVALID_PARAMS, ApiError
from tidings.api.server import ApiServer
from tidings.client.events import ClientEvent, GroupChanged

WAIT = 10.0


class World:
    """alice's device behind an API server; bob and carol plain SDK clients."""

    def __init__(self, api: ApiClient, alice: Peer, bob: Peer, carol: Peer) -> None:
        self.api = api
        self.alice, self.bob, self.carol = alice, bob, carol


@pytest.fixture
async def world(relays: RelayLab, clients: ClientLab) -> AsyncIterator[World]:
    await relays.start()
    alice, bob, carol = [await clients.new(a) for a in ("alice", "bob", "carol")]
    server = ApiServer(alice.client, alice.home)
    await server.start()
    api = await ApiClient.open(alice.home)
    yield World(api, alice, bob, carol)
    await api.close()
    await server.close()


async def error_of(api: ApiClient, method: str, **params: Any) -> ApiError:
    with pytest.raises(ApiError) as raised:
        await api.call(method, **params)
    return raised.value


def member_of(group_id: str, *accounts: str) -> Any:
    def check(e: ClientEvent) -> bool:
        return (
            isinstance(e, GroupChanged)
            and e.group_id.hex() == group_id
            and set(e.members) == set(accounts)
        )

    return check


async def event_of(api: ApiClient, kind: str, **fields: Any) -> dict[str, Any]:
    """The next event of ``kind`` whose ``fields`` match (earlier ones are passed over)."""
    while True:
        event = await api.next_event(WAIT)
        if event["event"] == kind and all(event.get(k) == v for k, v in fields.items()):
            return event


async def test_bad_input_is_refused_clearly_and_changes_nothing(world: World) -> None:
    api = world.api
    empty = await error_of(api, "group_create", name="", members=["bob"])
    assert empty.code == INVALID_PARAMS and empty.message == "name must be a non-empty string"
    unknown = await error_of(api, "group_create", name="climbers", members=["bob", "zed"])
    assert unknown.code == NOT_FOUND and unknown.message == "no account 'zed' at the relay"
    assert unknown.data == {"account": "zed"}
    bad = await error_of(api, "group_create", name="climbers", members=["Bob!"])
    assert bad.code == INVALID_PARAMS
    assert await api.call("groups") == []  # nothing was created

    group = await api.call("group_create", name="climbers", members=["bob"])
    gid = group["group_id"]
    assert group["members"] == ["alice", "bob"] and group["admins"] == ["alice"]
    missing = await error_of(api, "group_add", group=gid, members=["carol", "zed"])
    assert missing.code == NOT_FOUND and "zed" in missing.message
    assert (await api.call("group_info", group=gid))["members"] == ["alice", "bob"]

    # bob is a member, not an admin: his device refuses his add, and nothing changes
    await world.bob.until(member_of(gid, "alice", "bob"))
    with pytest.raises(ApiError) as refused:
        await call(world.bob.client, METHODS["group_add"], {"group": gid, "members": ["carol"]})
    assert refused.value.code == INVALID_PARAMS and refused.value.message == "bob is not an admin"
    info = await call(world.bob.client, METHODS["group_info"], {"group": gid})
    assert info["members"] == ["alice", "bob"]
    renamed = await error_of(api, "group_rename", group=gid, name="")
    assert renamed.code == INVALID_PARAMS
    assert (await api.call("group_info", group="climbers"))["name"] == "climbers"


async def test_a_sent_message_rolls_up_as_its_status_events_come(world: World) -> None:
    api = world.api
    await api.call("subscribe")
    group = await api.call("group_create", name="team", members=["bob", "carol"])
    gid = group["group_id"]
    changed = await event_of(api, "group", group_id=gid)
    assert changed["members"] == ["alice", "bob", "carol"] and changed["by"] == "alice.1"
    for peer in (world.bob, world.carol):
        await peer.until(member_of(gid, "alice", "bob", "carol"))

    mid = (await api.call("send_group", group=gid, text="hello team"))["message_id"]
    for peer in (world.bob, world.carol):
        await event_of(api, "status", message_id=mid, device=f"{peer.me}", status="delivered")
    rollup = await api.call("group_status", message_id=mid)
    assert (rollup["delivered"], rollup["members"], rollup["read"]) == (2, 2, 0)
    await world.carol.client.mark_read([bytes.fromhex(mid)])
    await event_of(api, "status", message_id=mid, device="carol.1", status="read")
    assert (await api.call("group_status", message_id=mid))["read"] == 1
    history = await api.call("history", conversation=group["conversation"])
    assert [m["body"] for m in history] == ["hello team"]
    assert history[0]["group_status"]["read"] == 1

    # carol is removed: her device says so, and she keeps the group only with left=true
    after = await api.call("group_remove", group=gid, member="carol")
    assert after["members"] == ["alice", "bob"]
    await world.carol.until(member_of(gid, "alice", "bob"))
    carol = world.carol.client
    assert await call(carol, METHODS["groups"], {}) == []
    gone = await call(carol, METHODS["groups"], {"left": True})
    assert [g["group_id"] for g in gone] == [gid] and "carol" not in gone[0]["members"]
    bad = await error_of(api, "groups", left="yes")
    assert bad.code == INVALID_PARAMS
