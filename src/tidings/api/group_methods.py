"""The local API's group methods (issue 12): create, add, remove, leave, rename, list, info,
send, and a group message's roll-up. Part of :data:`tidings.api.methods.METHODS` (added at its
end). A group is named by its hex id, a unique prefix of it, or its exact name among the
groups this account is in (``group``). docs/api.md documents each.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..client import Client
from ..client.group_calls import GroupInfo
from ..delivery.groups import MAX_MEMBERS
from ..wire import check_account
from .methods import NOT_FOUND, Method, Params, _message_id, _only, _str
from .rpc import INVALID_PARAMS, ApiError

__all__ = ["GROUP_METHODS", "check_accounts", "group_json", "resolve_group"]


def group_json(g: GroupInfo) -> dict[str, Any]:
    """A group as the API shows it."""
    return {
        "group_id": g.group_id.hex(),
        "name": g.name,
        "members": list(g.members),
        "admins": list(g.admins),
        "conversation": g.conversation,
    }


def resolve_group(client: Client, text: str) -> bytes:
    """The group ``text`` names: a hex id or unique prefix, or an exact name (unique).

    Raises:
        ApiError: NOT_FOUND (no such group), INVALID_PARAMS (several match).
    """
    known = [*client.groups(), *(g for g in _left(client))]
    by_name = [g for g in client.groups() if g.name == text]
    by_id = [g for g in known if g.group_id.hex().startswith(text.lower())] if text else []
    found = by_name or by_id
    ids = {g.group_id for g in found}
    if not ids:
        raise ApiError(NOT_FOUND, f"no group {text!r} on this device")
    if len(ids) > 1:
        raise ApiError(INVALID_PARAMS, f"{text!r} names several groups: give more of its id")
    return ids.pop()


def _left(client: Client) -> list[GroupInfo]:
    out = []
    for group_id in client.groups_runtime.logs:
        info = client.group_info(group_id)
        if info is not None:
            out.append(info)
    return out


def _accounts(params: Params, name: str) -> list[str]:
    value = params.get(name)
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise ApiError(INVALID_PARAMS, f"{name} must be a list of account names")
    if len(value) > MAX_MEMBERS:
        raise ApiError(INVALID_PARAMS, f"{name}: at most {MAX_MEMBERS} accounts")
    return value


def _info(client: Client, group_id: bytes) -> dict[str, Any]:
    info = client.group_info(group_id)
    assert info is not None  # resolved or just made
    return group_json(info)


async def check_accounts(client: Client, accounts: Iterable[str]) -> None:
    """Each of ``accounts`` (but this one) exists at the relay — asked only while this device
    is connected (offline, a change is taken as given: a send to an account that does not
    exist is refused later, a ``refused`` event).

    Raises:
        ApiError: NOT_FOUND naming the first account the relay does not know (``data``:
            ``{"account"}``); the relay's own errors as :func:`~tidings.api.methods.call`
            maps them (RELAY_UNREACHABLE, REFUSED ``RATE_LIMITED``).
    """
    if not client.connected:
        return
    for account in sorted(set(accounts) - {client.me.account}):
        check_account(account)  # a malformed name is INVALID_PARAMS, before any lookup
        if not await client.devices(account):
            raise ApiError(NOT_FOUND, f"no account {account!r} at the relay", {"account": account})


async def group_create(client: Client, params: Params) -> Any:
    """A new group: ``{"name", "members"}`` → the group."""
    _only(params, "name", "members")
    name, members = _str(params, "name"), _accounts(params, "members")
    await check_accounts(client, members)
    group_id = await client.create_group(name, members)
    return _info(client, group_id)


async def group_add(client: Client, params: Params) -> Any:
    """Add members (admins only): ``{"group", "members"}`` → the group."""
    _only(params, "group", "members")
    group_id = resolve_group(client, _str(params, "group"))
    members = _accounts(params, "members")
    info = client.group_info(group_id)
    if info is not None and client.me.account in info.admins:  # else refused as it is
        await check_accounts(client, set(members) - set(info.members))
    await client.add_members(group_id, members)
    return _info(client, group_id)


async def group_remove(client: Client, params: Params) -> Any:
    """Remove a member (admins only): ``{"group", "member"}`` → the group."""
    _only(params, "group", "member")
    group_id = resolve_group(client, _str(params, "group"))
    await client.remove_member(group_id, _str(params, "member"))
    return _info(client, group_id)


async def group_promote(client: Client, params: Params) -> Any:
    """Make a member an admin (admins only): ``{"group", "member"}`` → the group."""
    _only(params, "group", "member")
    group_id = resolve_group(client, _str(params, "group"))
    await client.promote_member(group_id, _str(params, "member"))
    return _info(client, group_id)


async def group_leave(client: Client, params: Params) -> Any:
    """Leave a group: ``{"group"}`` → the group (without this account)."""
    _only(params, "group")
    group_id = resolve_group(client, _str(params, "group"))
    await client.leave_group(group_id)
    return _info(client, group_id)


async def group_rename(client: Client, params: Params) -> Any:
    """Rename a group: ``{"group", "name"}`` → the group."""
    _only(params, "group", "name")
    group_id = resolve_group(client, _str(params, "group"))
    await client.rename_group(group_id, _str(params, "name"))
    return _info(client, group_id)


async def groups(client: Client, params: Params) -> Any:
    """The groups this account is a member of, by name; with ``{"left": true}`` then also
    those it left or was removed from (their ``members`` lack it)."""
    _only(params, "left")
    left = params.get("left", False)
    if not isinstance(left, bool):
        raise ApiError(INVALID_PARAMS, "left must be true or false")
    joined = client.groups()
    out = [group_json(g) for g in joined]
    if left:
        gone = [g for g in _left(client) if client.me.account not in g.members]
        out += [group_json(g) for g in sorted(gone, key=lambda g: (g.name, g.group_id))]
    return out


async def group_info(client: Client, params: Params) -> Any:
    """One group: ``{"group"}``."""
    _only(params, "group")
    return _info(client, resolve_group(client, _str(params, "group")))


async def send_group(client: Client, params: Params) -> Any:
    """Send to a group: ``{"group", "text"}`` → ``{"message_id"}`` once it is durable."""
    _only(params, "group", "text")
    group_id = resolve_group(client, _str(params, "group"))
    text = params.get("text")
    if not isinstance(text, str):
        raise ApiError(INVALID_PARAMS, "text must be a string")
    return {"message_id": (await client.send_group(group_id, text)).hex()}


async def group_status(client: Client, params: Params) -> Any:
    """A sent group message's roll-up: ``{"message_id"}`` → counts per device and member."""
    _only(params, "message_id")
    rollup = client.group_status(_message_id(client, _str(params, "message_id")))
    if rollup is None:
        raise ApiError(NOT_FOUND, "not a group message this device sent")
    return rollup


GROUP_METHODS: dict[str, Method] = {
    "group_create": group_create,
    "group_add": group_add,
    "group_remove": group_remove,
    "group_promote": group_promote,
    "group_leave": group_leave,
    "group_rename": group_rename,
    "groups": groups,
    "group_info": group_info,
    "send_group": send_group,
    "group_status": group_status,
}
