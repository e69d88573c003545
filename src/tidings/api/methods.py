"""What the local API can do: one function per method, over a running :class:`Client`.

Each method takes the request's named parameters, checks them (``INVALID_PARAMS`` names the
bad one), calls the SDK and returns the JSON result (:mod:`tidings.api.forms`). Errors of the
SDK become the API's own codes below, each with ``data`` a program can act on. docs/api.md
documents every method, parameter, result and error.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

from ..client import Client, msgids
from ..client.config import check_read_receipts
from ..client.events import code_name
from ..client.history import MAX_HISTORY_MESSAGES
from ..client.msgids import parse_prefix
from ..client.store.records import OutboxFullError
from ..delivery import MAX_TIMER, ContentError, direct_conversation
from ..delivery.groups import GroupError
from ..errors import (
    ConfigError,
    ConnectionBroken,
    FrameError,
    RefusedError,
    RelayUnreachable,
    StoreUnavailable,
)
from ..wire import PushState, PushStatus
from .forms import conversation_json, device_view_json, message_json, timer_json, trace_json
from .rpc import INVALID_PARAMS, ApiError

__all__ = [
    "AMBIGUOUS",
    "DEVICE_STOPPED",
    "METHODS",
    "NOT_FOUND",
    "OUTBOX_FULL",
    "REFUSED",
    "RELAY_UNREACHABLE",
    "STORE_UNAVAILABLE",
    "call",
]

# The API's own error codes (JSON-RPC reserves -32000..-32099 for the server's).
STORE_UNAVAILABLE = -32001  #: the device's store cannot be written (disk full, I/O error)
RELAY_UNREACHABLE = -32002  #: the method needs the relay and it cannot be reached
REFUSED = -32003  #: the relay refused the request (data: code, code_name, retry_after)
NOT_FOUND = -32004  #: no such message or group on this device; an account the relay lacks
AMBIGUOUS = -32005  #: a message id prefix matches several messages (data: candidates)
DEVICE_STOPPED = -32006  #: the device stopped for good (the relay refused it, or its key changed)
OUTBOX_FULL = -32007  #: the outbox holds its maximum; retry once messages went out

#: Most messages one ``history`` call returns.
MAX_HISTORY = 1_000

Params = dict[str, Any]
Method = Callable[[Client, Params], Awaitable[Any]]


async def call(client: Client, method: Method, params: Params) -> Any:
    """Run ``method``, turning the SDK's errors into :class:`ApiError`."""
    try:
        return await method(client, params)
    except ApiError:
        raise
    except StoreUnavailable as exc:
        raise ApiError(STORE_UNAVAILABLE, str(exc), {"state": exc.state}) from None
    except RelayUnreachable as exc:
        raise ApiError(
            RELAY_UNREACHABLE, str(exc), {"url": exc.url, "reason": exc.reason}
        ) from None
    except RefusedError as exc:
        data = {"code": exc.code, "code_name": code_name(exc.code), "retry_after": exc.retry_after}
        raise ApiError(REFUSED, f"refused by the relay: {exc.reason}", data) from None
    except OutboxFullError as exc:
        raise ApiError(OUTBOX_FULL, str(exc)) from None
    except (FrameError, ContentError) as exc:
        raise ApiError(INVALID_PARAMS, str(exc)) from None
    except GroupError as exc:  # a group change the replay refuses, or no such group
        raise ApiError(INVALID_PARAMS, exc.reason) from None
    except ConfigError as exc:  # the device stopped for good (fatal_message)
        raise ApiError(DEVICE_STOPPED, str(exc)) from None
    except ConnectionBroken as exc:
        raise ApiError(RELAY_UNREACHABLE, f"the connection was lost: {exc}") from None


# ---------------------------------------------------------------- parameters


def _str(params: Params, name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise ApiError(INVALID_PARAMS, f"{name} must be a non-empty string")
    return value


def _int(params: Params, name: str, default: int, low: int, high: int) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(INVALID_PARAMS, f"{name} must be an integer from {low} to {high}")
    return value


def _only(params: Params, *names: str) -> None:
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ApiError(INVALID_PARAMS, f"unknown parameter {unknown[0]!r}")


def _message_id(client: Client, text: str) -> bytes:
    """The one stored message ``text`` names (a whole id or a unique prefix)."""
    try:
        prefix = parse_prefix(text)
    except ValueError as exc:
        raise ApiError(INVALID_PARAMS, str(exc)) from None
    try:
        return msgids.resolve(client.store, prefix)
    except msgids.NoSuchMessage:
        raise ApiError(NOT_FOUND, f"no message {prefix} on this device") from None
    except msgids.AmbiguousMessage as exc:
        candidates = [m.hex() for m in exc.candidates]
        raise ApiError(AMBIGUOUS, str(exc), {"candidates": candidates}) from None


def _message_ids(client: Client, params: Params) -> list[bytes]:
    """``params["message_ids"]``: 1 to :data:`MAX_HISTORY` ids or prefixes, resolved."""
    ids = params.get("message_ids")
    if not isinstance(ids, list) or not ids or len(ids) > MAX_HISTORY:
        raise ApiError(INVALID_PARAMS, f"message_ids must be a list of 1 to {MAX_HISTORY} ids")
    if not all(isinstance(i, str) for i in ids):
        raise ApiError(INVALID_PARAMS, "message_ids must hold strings (hex message ids)")
    return [_message_id(client, i) for i in ids]


# ---------------------------------------------------------------- methods


async def send(client: Client, params: Params) -> Any:
    """Queue a message: ``{"to", "text"}`` → ``{"message_id"}`` once it is durable."""
    _only(params, "to", "text")
    to = _str(params, "to")
    text = params.get("text")
    if not isinstance(text, str):
        raise ApiError(INVALID_PARAMS, "text must be a string")
    return {"message_id": (await client.send(to, text)).hex()}


async def conversations(client: Client, params: Params) -> Any:
    """The conversations, newest first, with unread counts."""
    _only(params)
    return [conversation_json(c) for c in client.store.conversations()]


async def history(client: Client, params: Params) -> Any:
    """The last ``limit`` shown messages with ``contact`` (or of ``conversation``); with
    ``before`` (a message id or prefix of that conversation), the ones shown before it."""
    _only(params, "contact", "conversation", "limit", "before")
    limit = _int(params, "limit", 50, 1, MAX_HISTORY)
    if ("contact" in params) == ("conversation" in params):
        raise ApiError(INVALID_PARAMS, "give contact or conversation (one of them)")
    if "contact" in params:
        contact = _str(params, "contact")
        try:
            conversation = direct_conversation(client.me.account, contact)
        except (FrameError, ContentError) as exc:
            raise ApiError(INVALID_PARAMS, str(exc)) from None
    else:
        conversation = _str(params, "conversation")
    before = None
    if "before" in params:
        anchor = client.store.message(_message_id(client, _str(params, "before")))
        if anchor is None or anchor.conversation != conversation or anchor.shown is None:
            raise ApiError(INVALID_PARAMS, "before: not a shown message of that conversation")
        before = anchor.shown
    out = []
    for m in client.store.messages(conversation, limit, before):
        j = message_json(m, client.status(m.message_id))
        rollup = client.group_status(m.message_id) if m.recipient == conversation else None
        if rollup is not None:  # a group message this device sent: "delivered to 4 of 5"
            j["group_status"] = rollup
        out.append(j)
    return out


async def search(client: Client, params: Params) -> Any:
    """The shown messages holding every word of ``text``, newest first; ``contact`` or
    ``conversation`` narrows it to one conversation."""
    _only(params, "text", "contact", "conversation", "limit")
    text = _str(params, "text")
    limit = _int(params, "limit", 50, 1, MAX_HISTORY)
    if "contact" in params and "conversation" in params:
        raise ApiError(INVALID_PARAMS, "give contact or conversation, not both")
    conversation = None
    if "contact" in params:
        try:
            conversation = direct_conversation(client.me.account, _str(params, "contact"))
        except (FrameError, ContentError) as exc:
            raise ApiError(INVALID_PARAMS, str(exc)) from None
    elif "conversation" in params:
        conversation = _str(params, "conversation")
    try:
        found = client.store.search(text, limit, conversation)
    except ValueError as exc:
        raise ApiError(INVALID_PARAMS, f"text: {exc}") from None
    return [message_json(m, client.status(m.message_id)) for m in found]


def _conversation_with(client: Client, params: Params) -> tuple[str, str]:
    contact = _str(params, "contact")
    try:
        return contact, direct_conversation(client.me.account, contact)
    except (FrameError, ContentError) as exc:
        raise ApiError(INVALID_PARAMS, str(exc)) from None


async def timer(client: Client, params: Params) -> Any:
    """The disappearing-messages timer of the conversation with ``contact``."""
    _only(params, "contact")
    _, conversation = _conversation_with(client, params)
    return timer_json(conversation, client.timer(conversation))


async def set_timer(client: Client, params: Params) -> Any:
    """Set the disappearing-messages timer with ``contact`` to ``seconds`` (0: off); the
    setting goes to the contact's devices and this account's others."""
    _only(params, "contact", "seconds")
    contact, conversation = _conversation_with(client, params)
    seconds = _int(params, "seconds", -1, 0, MAX_TIMER)
    return timer_json(conversation, await client.set_timer(contact, seconds))


async def block(client: Client, params: Params) -> Any:
    """Block ``contact``: its messages are dropped from now on and the profile key is rotated
    (the new one goes to every other contact and own device, never to it). ``{"contact",
    "changed", "blocked"}``; ``changed`` false: it was blocked already."""
    _only(params, "contact")
    contact, _ = _conversation_with(client, params)
    if contact == client.me.account:
        raise ApiError(INVALID_PARAMS, "contact: an account cannot block itself")
    changed = await client.block(contact)
    return {"contact": contact, "changed": changed, "blocked": client.blocked()}


async def unblock(client: Client, params: Params) -> Any:
    """Unblock ``contact``: ``{"contact", "changed", "blocked"}`` (``changed`` false: it was
    not blocked)."""
    _only(params, "contact")
    contact, _ = _conversation_with(client, params)
    changed = await client.unblock(contact)
    return {"contact": contact, "changed": changed, "blocked": client.blocked()}


async def mark_read(client: Client, params: Params) -> Any:
    """Mark received messages read (sends read receipts if enabled): ``{"message_ids"}``."""
    _only(params, "message_ids")
    return {"newly_read": await client.mark_read(_message_ids(client, params))}


async def unseen(client: Client, params: Params) -> Any:
    """Received messages no UI has displayed yet, oldest first (show these first)."""
    _only(params, "limit")
    limit = _int(params, "limit", MAX_HISTORY, 1, MAX_HISTORY)
    return [message_json(m) for m in client.unseen(limit)]


async def mark_seen(client: Client, params: Params) -> Any:
    """A UI displayed these received messages: ``{"message_ids"}``."""
    _only(params, "message_ids")
    return {"newly_seen": client.mark_seen(_message_ids(client, params))}


async def trace(client: Client, params: Params) -> Any:
    """A sent message's confirmation points: ``{"message_id"}`` (an id or unique prefix)."""
    _only(params, "message_id")
    mid = _message_id(client, _str(params, "message_id"))
    return trace_json(mid, client.status(mid), client.trace(mid))


async def status(client: Client, params: Params) -> Any:
    """This device and its connection, now."""
    _only(params)
    failed = client.storage_failed
    return {
        "account": client.me.account,
        "device": str(client.me),
        "relay": client.relay_url,
        "relays": list(client.identity.server_urls),
        "connected": client.connected,
        "outbox": client.outbox_size,
        "read_receipts": client.read_receipts,
        "stopped": client.fatal_message or (failed.message if failed else None),
    }


async def devices(client: Client, params: Params) -> Any:
    """The device ids of ``account`` (asks the relay): ``{"account"}``."""
    _only(params, "account")
    account = _str(params, "account")
    return {"account": account, "device_ids": list(await client.devices(account))}


async def device_details(client: Client, params: Params) -> Any:
    """The devices of ``account`` with last seen, connected now and their certificates
    checked (asks the relay): ``{"account", "devices": [...]}``."""
    _only(params, "account")
    account = _str(params, "account")
    views = await client.device_details(account)
    return {"account": account, "devices": [device_view_json(v) for v in views]}


async def unlink(client: Client, params: Params) -> Any:
    """Remove device ``device_id`` of this account for good: ``{"account", "device_ids"}``
    after it (REFUSED with code UNKNOWN_DEVICE or LAST_DEVICE changes nothing)."""
    _only(params, "device_id")
    device_id = _int(params, "device_id", 0, 1, (1 << 63) - 1)
    ids = await client.unlink(device_id)
    return {"account": client.me.account, "device_ids": list(ids)}


async def send_history(client: Client, params: Params) -> Any:
    """Send this device's recent history to device ``device_id`` of this account (a new one):
    ``{"archive_id", "parts", "messages"}``, once every part is queued (durable)."""
    _only(params, "device_id", "limit")
    device_id = _int(params, "device_id", 0, 1, (1 << 63) - 1)
    limit = _int(params, "limit", MAX_HISTORY_MESSAGES, 1, MAX_HISTORY_MESSAGES)
    if device_id == client.me.device_id:
        raise ApiError(INVALID_PARAMS, "device_id: another device of this account")
    last = await client.send_history(device_id, limit)
    return {"archive_id": last.archive_id.hex(), "parts": last.parts}


async def link_code(client: Client, params: Params) -> Any:
    """A one-use code from the relay that lets a new device join this account."""
    _only(params)
    code, expires_at = await client.link_code()
    return {"code": code.hex(), "expires_at": expires_at}


async def safety_number(client: Client, params: Params) -> Any:
    """The safety number with ``account`` (``null`` before any session with it); with
    ``verify`` (the number the user compared) mark it verified, with ``unverify`` drop the
    mark (``recorded``: whether it was; a ``verify`` that is not the number records nothing)."""
    _only(params, "account", "verify", "unverify")
    account = _str(params, "account")
    if "verify" in params and "unverify" in params:
        raise ApiError(INVALID_PARAMS, "give verify or unverify, not both")
    recorded: bool | None = None
    if "verify" in params or params.get("unverify") is not None:
        if "unverify" in params and params["unverify"] is not True:
            raise ApiError(INVALID_PARAMS, "unverify must be true")
        typed = None if "unverify" in params else _str(params, "verify")
        try:
            recorded = client.verify_safety_number(account, typed)
        except ConfigError as exc:
            raise ApiError(INVALID_PARAMS, str(exc)) from None
    number = client.safety_number(account)
    if number is None:
        return None
    result = {
        "number": number.number,
        "verified": number.verified,
        "local_devices": list(number.local_devices),
        "remote_devices": list(number.remote_devices),
    }
    if recorded is not None:
        result["recorded"] = recorded
    return result


async def settings(client: Client, params: Params) -> Any:
    """The device's effective settings, each with its source; set the ones given (today:
    ``read_receipts``, refused when the client config sets it otherwise)."""
    _only(params, "read_receipts")
    if "read_receipts" in params:
        value = params["read_receipts"]
        if not isinstance(value, bool):
            raise ApiError(INVALID_PARAMS, "read_receipts must be true or false")
        try:
            check_read_receipts(client.config, value)
        except ConfigError as exc:  # not DEVICE_STOPPED (call's mapping): the device runs on
            raise ApiError(INVALID_PARAMS, str(exc)) from None
        client.set_read_receipts(value)
    return {"read_receipts": client.read_receipts, "settings": client.settings()}


def _b64url(params: Params, name: str) -> bytes:
    text = _str(params, name)
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise ApiError(INVALID_PARAMS, f"{name} must be base64url") from None


def _push_json(frame: PushStatus) -> Any:
    return {
        "state": PushState(frame.state).name.lower(),
        "endpoint": frame.endpoint,
        "vapid_key": base64.urlsafe_b64encode(frame.vapid_key).rstrip(b"=").decode(),
    }


async def push_register(client: Client, params: Params) -> Any:
    """Register this device's Web Push subscription with the relay: ``{"endpoint", "p256dh",
    "auth"}`` (the keys base64url, as a browser's ``PushSubscription.toJSON()`` gives them)."""
    _only(params, "endpoint", "p256dh", "auth")
    endpoint = _str(params, "endpoint")
    p256dh, auth = _b64url(params, "p256dh"), _b64url(params, "auth")
    return _push_json(await client.push_register(endpoint, p256dh, auth))


async def push_unregister(client: Client, params: Params) -> Any:
    """Drop this device's push subscription at the relay."""
    _only(params)
    return _push_json(await client.push_unregister())


async def push_status(client: Client, params: Params) -> Any:
    """The relay's VAPID key and this device's push subscription (asks the relay)."""
    _only(params)
    return _push_json(await client.push_status())


async def wake(client: Client, params: Params) -> Any:
    """A push wake-up came: connect now (skip the reconnect backoff) and catch up."""
    _only(params)
    client.reconnect_now()
    return {"connected": client.connected}


#: The methods by name (``subscribe`` and ``unsubscribe`` are the server's own).
METHODS: dict[str, Method] = {
    "send": send,
    "conversations": conversations,
    "history": history,
    "search": search,
    "mark_read": mark_read,
    "unseen": unseen,
    "mark_seen": mark_seen,
    "trace": trace,
    "status": status,
    "devices": devices,
    "link_code": link_code,
    "unlink": unlink,
    "send_history": send_history,
    "safety_number": safety_number,
    "settings": settings,
    "timer": timer,
    "set_timer": set_timer,
    "block": block,
    "unblock": unblock,
    "push_register": push_register,
    "push_unregister": push_unregister,
    "push_status": push_status,
    "wake": wake,
    "device_details": device_details,
}


# The group methods live in their own module, which builds on this one's helpers: added here,
# at the end, after everything they use is defined (a circular import that resolves by order).
from .group_methods import GROUP_METHODS  # noqa: E402

METHODS.update(GROUP_METHODS)
