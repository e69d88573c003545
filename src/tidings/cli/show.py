"""How ``listen`` and ``send`` print a client's events (text, or one JSON object per line)."""

from __future__ import annotations

import argparse

from ..client import (
    ClientEvent,
    Connected,
    ConnectFailed,
    Disconnected,
    GapDetected,
    GapSkipped,
    IdentityChanged,
    MessageReceived,
    SendRefused,
    StatusChanged,
)
from ..delivery import ContentKind, SkipReason, Status, glyph
from .common import _print, _ts


def _show_event(args: argparse.Namespace, event: ClientEvent) -> None:
    if isinstance(event, MessageReceived):
        m = event.message
        body = m.body.decode(errors="replace")
        _print(
            args,
            {
                "event": "message",
                "message_id": m.message_id.hex(),
                "from": str(m.sender),
                "conversation": m.conversation,
                "counter": m.counter,
                "sent_at": m.sent_at,
                "body": body,
                "late": event.late,
            },
            f"[{_ts(m.received_at or m.sent_at)}] {m.sender} › {body}"
            + ("  (late)" if event.late else ""),
        )
    elif isinstance(event, StatusChanged):
        where = str(event.device) if event.device else "all"
        _print(
            args,
            {
                "event": "status",
                "message_id": event.message_id.hex(),
                "device": where,
                "status": event.status.name.lower(),
                "overall": event.overall.name.lower(),
                "at": event.at,
            },
            f"[{_ts(event.at)}] {glyph(event.status):2} {event.message_id.hex()[:12]}… "
            f"{event.status.name.lower()} at {where}",
        )
    elif isinstance(event, SendRefused):
        _show_refused(args, event)
    elif isinstance(event, (GapDetected, GapSkipped)):
        kind = "gap" if isinstance(event, GapDetected) else "gap-skipped"
        obj = {
            "event": kind,
            "conversation": event.conversation,
            "sender": str(event.sender),
            "missing": [event.missing.start, event.missing.stop - 1],
        }
        why = ""
        if isinstance(event, GapSkipped):
            obj["reason"] = str(event.reason)
            why = f" ({_SKIPPED[event.reason]})"
        _print(
            args,
            obj,
            f"! {kind}: {event.sender} messages {event.missing.start}..{event.missing.stop - 1} "
            f"missing in {event.conversation}{why}",
        )
    elif isinstance(event, Connected):
        _print(
            args, {"event": "connected", "pattern": event.pattern}, f"= connected ({event.pattern})"
        )
    elif isinstance(event, ConnectFailed):
        _print(
            args,
            {
                "event": "connect-failed",
                "reason": event.reason,
                "attempt": event.attempt,
                "retry_in": round(event.retry_in, 3),
            },
            f"! cannot reach the relay: {event.reason}; trying again in {event.retry_in:.1f} s",
        )
    elif isinstance(event, Disconnected):
        _print(
            args,
            {"event": "disconnected", "code": event.code, "reason": event.reason},
            f"= disconnected: {event.reason or event.code}",
        )
    elif isinstance(event, IdentityChanged):
        what = "a new device" if event.new_device else "a new identity key"
        _print(
            args,
            {"event": "identity-changed", "device": str(event.device), "new": event.new_device},
            f"! {event.device} has {what}: the safety number with {event.device.account}"
            f" changed (tidings safety-number {event.device.account})",
        )


#: How ``listen`` explains a skipped gap.
_SKIPPED = {
    SkipReason.TIMEOUT: "not waiting any longer",
    SkipReason.OVERFLOW: "too many messages held behind it",
    SkipReason.EXPIRED: "they expired on the relay before this device fetched them",
}


def _show_refused(args: argparse.Namespace, event: SendRefused) -> None:
    what = "" if event.kind is ContentKind.MESSAGE else f" ({event.kind.name.lower()})"
    then = "failed for good" if event.retry_at is None else f"retry at {_ts(event.retry_at)}"
    _print(
        args,
        {
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
        },
        f"[{_ts(event.at)}] {glyph(Status.FAILED if event.final else Status.PENDING):2} "
        f"{event.message_id.hex()[:12]}… to {event.recipient}{what} refused by the relay: "
        f"{event.code_name} ({event.reason}); {then}",
    )
