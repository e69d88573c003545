"""The JSON forms of what a device knows: events, messages, conversations, traces.

One form per thing, used by every JSON output: the local API's results and event notifications
(:mod:`tidings.api.methods`) and the CLI's ``--json`` lines (:mod:`tidings.cli.show`). Ids are
lowercase hex, devices ``account.N``, statuses lowercase names, times Unix seconds (floats).
"""

from __future__ import annotations

from typing import Any

from ..client.events import (
    CatchingUp,
    ClientEvent,
    Connected,
    ConnectFailed,
    DecryptionFailed,
    DeviceCertification,
    DeviceNamed,
    DevicesChanged,
    Disconnected,
    GapDetected,
    GapSkipped,
    GroupChanged,
    HistoryImported,
    IdentityChanged,
    MessageReceived,
    MessagesExpired,
    PushDead,
    ReadElsewhere,
    SealedRefused,
    SendRefused,
    StatusChanged,
    StorageFailed,
    TimerChanged,
)
from ..client.own_devices import DeviceView
from ..client.store import (
    ConversationSummary,
    ConversationTimer,
    Direction,
    StoredMessage,
    TraceEntry,
)
from ..delivery import Status

__all__ = [
    "conversation_json",
    "device_view_json",
    "event_json",
    "message_json",
    "timer_json",
    "trace_json",
]

JSON = dict[str, Any]


def message_json(m: StoredMessage, status: Status | None = None) -> JSON:
    """A stored message (``status``: the roll-up of a sent one)."""
    out: JSON = {
        "message_id": m.message_id.hex(),
        "from": str(m.sender),
        "conversation": m.conversation,
        "counter": m.counter,
        "sent_at": m.sent_at,
        # a copy of what another of this account's devices sent is "out" too ("from" says
        # which device): it has a status, and it is never unread
        "direction": "out" if m.own else "in",
        "body": m.body.decode(errors="replace"),
        "received_at": m.received_at,
        "read_at": m.read_at,
    }
    if m.direction is Direction.IN:
        out["seen_at"] = m.seen_at  # (a copy from another own device is shown once too)
    if m.expires_in:
        out["expires_in"] = m.expires_in
        out["expires_at"] = m.expires_at  # null until it was displayed (received ones)
    if m.own:
        out["to"] = m.recipient
        out["status"] = (status or Status.PENDING).name.lower()
        if m.failed_code is not None:
            out["failed"] = {"code": m.failed_code, "reason": m.failed_reason}
    return out


def conversation_json(c: ConversationSummary) -> JSON:
    """A conversation as listed: its messages, unread ones and the time of the last."""
    return {
        "conversation": c.conversation,
        "messages": c.messages,
        "unread": c.unread,
        "last_at": c.last_at,
    }


def timer_json(conversation: str, timer: ConversationTimer | None) -> JSON:
    """A conversation's disappearing-messages timer (``seconds`` 0 and no setter: never set)."""
    return {
        "conversation": conversation,
        "seconds": timer.seconds if timer else 0,
        "set_by": str(timer.set_by) if timer else None,
        "set_at": timer.set_at if timer else None,
    }


def trace_json(message_id: bytes, status: Status | None, points: list[TraceEntry]) -> JSON:
    """A message's confirmation points, in time order."""
    return {
        "message_id": message_id.hex(),
        "status": (status or Status.PENDING).name.lower(),
        "points": [{"point": p.point, "at": p.at, "detail": p.detail} for p in points],
    }


def event_json(event: ClientEvent) -> JSON:
    """A client event; ``"event"`` names its kind."""
    if isinstance(event, MessageReceived):
        m = event.message
        received: JSON = {
            "event": "message",
            "message_id": m.message_id.hex(),
            "from": str(m.sender),
            "conversation": m.conversation,
            "counter": m.counter,
            "sent_at": m.sent_at,
            "body": m.body.decode(errors="replace"),
            "late": event.late,
            "direction": "out" if m.own else "in",
        }
        if m.recipient is not None:  # what another device of this account sent
            received["to"] = m.recipient
        if m.expires_in:
            received["expires_in"] = m.expires_in  # its clock starts when a UI shows it
        return received
    if isinstance(event, DeviceNamed):
        return {"event": "device-named", "device": str(event.device), "name": event.name}
    if isinstance(event, HistoryImported):
        return {
            "event": "history",
            "archive_id": event.archive_id.hex(),
            "part": event.part,
            "parts": event.parts,
            "added": event.added,
            "from": str(event.sender),
            "at": event.at,
        }
    if isinstance(event, DevicesChanged):
        return {
            "event": "devices-changed",
            "account": event.account,
            "added": [f"{event.account}.{d}" for d in event.added],
            "removed": [f"{event.account}.{d}" for d in event.removed],
            "at": event.at,
        }
    if isinstance(event, TimerChanged):
        return {
            "event": "timer",
            "conversation": event.conversation,
            "seconds": event.seconds,
            "by": str(event.by),
            "at": event.at,
        }
    if isinstance(event, MessagesExpired):
        return {
            "event": "expired",
            "message_ids": [m.hex() for m in event.message_ids],
            "conversations": list(event.conversations),
            "at": event.at,
        }
    if isinstance(event, ReadElsewhere):
        return {
            "event": "read-elsewhere",
            "message_ids": [m.hex() for m in event.message_ids],
            "device": str(event.device),
            "at": event.at,
        }
    if isinstance(event, PushDead):
        return {"event": "push-dead", "endpoint": event.endpoint}
    if isinstance(event, DeviceCertification):
        return {
            "event": "device-certification",
            "device": str(event.device),
            "status": event.status,
            "issuer": event.issuer,
            "reason": event.reason,
        }
    if isinstance(event, StatusChanged):
        return {
            "event": "status",
            "message_id": event.message_id.hex(),
            "device": str(event.device) if event.device else "all",
            "status": event.status.name.lower(),
            "overall": event.overall.name.lower(),
            "at": event.at,
        }
    if isinstance(event, SendRefused):
        return {
            "event": "refused",
            "message_id": event.message_id.hex(),
            "recipient": event.recipient,
            "kind": event.kind.name.lower(),
            "code": event.code,
            "code_name": event.code_name,
            "reason": event.reason,
            "at": event.at,
            "retry_at": event.retry_at,
            "final": event.final,
        }
    if isinstance(event, GapDetected | GapSkipped):
        out: JSON = {
            "event": "gap" if isinstance(event, GapDetected) else "gap-skipped",
            "conversation": event.conversation,
            "sender": str(event.sender),
            "missing": [event.missing.start, event.missing.stop - 1],
        }
        if isinstance(event, GapSkipped):
            out["reason"] = str(event.reason)
        return out
    if isinstance(event, Connected):
        return {"event": "connected", "pattern": event.pattern}
    if isinstance(event, ConnectFailed):
        return {
            "event": "connect-failed",
            "reason": event.reason,
            "attempt": event.attempt,
            "retry_in": round(event.retry_in, 3),
        }
    if isinstance(event, CatchingUp):
        return {
            "event": "catching-up",
            "done": event.done,
            "total": event.total,
            "rate": round(event.rate, 1),
            "finished": event.finished,
        }
    if isinstance(event, Disconnected):
        return {
            "event": "disconnected",
            "code": event.code,
            "reason": event.reason,
            "fatal": event.fatal,
        }
    if isinstance(event, IdentityChanged):
        return {"event": "identity-changed", "device": str(event.device), "new": event.new_device}
    if isinstance(event, StorageFailed):
        return {"event": "storage-failed", "state": event.state, "message": event.message}
    if isinstance(event, DecryptionFailed):
        return {
            "event": "decryption-failed",
            "sender": str(event.sender),
            "message_id": event.message_id.hex(),
            "retry_requested": event.retry_requested,
        }
    if isinstance(event, SealedRefused):
        return {
            "event": "sealed-refused",
            "tag": event.tag.hex(),
            "reason": event.reason,
            "at": event.at,
        }
    if isinstance(event, GroupChanged):
        return {
            "event": "group",
            "group_id": event.group_id.hex(),
            "name": event.name,
            "members": list(event.members),
            "admins": list(event.admins),
            "by": str(event.by),
            "member": event.member,
        }
    raise TypeError(f"not a client event: {event!r}")


def device_view_json(view: DeviceView) -> JSON:
    """One device of ``device_details``: the relay's last seen and connected-now, and what
    this device concluded of its certificate."""
    mark = view.mark
    return {
        "device": str(view.device),
        "last_seen": view.last_seen,
        "online": view.online,
        "certificate": mark.status,
        "certified_by": mark.issuer,
        "reason": mark.reason,
    }
