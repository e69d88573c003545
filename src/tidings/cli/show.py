"""How ``listen`` and ``send`` print a client's events (text, or one JSON object per line)."""

from __future__ import annotations

import argparse

from ..api.forms import event_json
from ..client import (
    CatchingUp,
    ClientEvent,
    Connected,
    ConnectFailed,
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
    SendRefused,
    StatusChanged,
    TimerChanged,
)
from ..delivery import ContentKind, SkipReason, Status, glyph
from .common import _print, _ts
from .durations import format_duration
from .terminal_text import for_terminal


def _show_event(args: argparse.Namespace, event: ClientEvent) -> None:
    """Print ``event``: its JSON form (:func:`tidings.api.forms.event_json`) with ``--json``,
    else one line for people, its control characters made visible
    (:func:`~tidings.cli.terminal_text.for_terminal`)."""
    text = _text(event)
    if text is not None:
        _print(args, event_json(event), for_terminal(text))


def _text(event: ClientEvent) -> str | None:
    """The line for people (``None``: this event is not shown)."""
    if isinstance(event, MessageReceived):
        m = event.message
        body = m.body.decode(errors="replace")
        late = "  (late)" if event.late else ""
        who = f"me ({m.sender}) › to {m.recipient}:" if m.recipient is not None else f"{m.sender} ›"
        if m.conversation.startswith("group:"):  # which group: `tidings history @PREFIX`
            group = m.conversation.removeprefix("group:")[:12]
            who = (
                f"{m.sender} › @{group}:" if m.recipient is None else f"me ({m.sender}) › @{group}:"
            )
        return f"[{_ts(m.received_at or m.sent_at)}] {who} {body}{late}"
    if isinstance(event, HistoryImported):
        return (
            f"= history from {event.sender}: part {event.part}/{event.parts},"
            f" {event.added} new message{'s' if event.added != 1 else ''}"
        )
    if isinstance(event, DevicesChanged):
        parts = [f"{event.account}.{d} was linked to this account" for d in event.added]
        parts += [f"{event.account}.{d} was unlinked" for d in event.removed]
        return "! " + "; ".join(parts) + " (tidings devices lists them)"
    if isinstance(event, TimerChanged):
        return (
            f"= {event.by} set disappearing messages in {event.conversation} to "
            f"{format_duration(event.seconds)}"
        )
    if isinstance(event, MessagesExpired):
        n = len(event.message_ids)
        return f"= {n} disappearing message{'s' if n != 1 else ''} ran out and were deleted"
    if isinstance(event, ReadElsewhere):
        n = len(event.message_ids)
        return f"= read on {event.device}: {n} message{'s' if n != 1 else ''}"
    if isinstance(event, PushDead):
        return (
            "! push: the relay can no longer wake this device (its push endpoint is gone);"
            " register a new one (tidings push-listen does)"
        )
    if isinstance(event, StatusChanged):
        where = str(event.device) if event.device else "all"
        return (
            f"[{_ts(event.at)}] {glyph(event.status):2} {event.message_id.hex()[:12]}… "
            f"{event.status.name.lower()} at {where}"
        )
    if isinstance(event, SendRefused):
        return _refused_text(event)
    if isinstance(event, GapDetected | GapSkipped):
        kind = "gap" if isinstance(event, GapDetected) else "gap-skipped"
        why = f" ({_SKIPPED[event.reason]})" if isinstance(event, GapSkipped) else ""
        return (
            f"! {kind}: {event.sender} messages {event.missing.start}..{event.missing.stop - 1} "
            f"missing in {event.conversation}{why}"
        )
    if isinstance(event, GroupChanged):
        state = "" if event.member else " (you are not a member)"
        return (
            f"= group {event.name} ({event.group_id.hex()[:12]}…) changed by {event.by}: "
            f"{', '.join(event.members)}{state}"
        )
    if isinstance(event, Connected):
        return f"= connected ({event.pattern})"
    if isinstance(event, ConnectFailed):
        return f"! cannot reach the relay: {event.reason}; trying again in {event.retry_in:.1f} s"
    if isinstance(event, CatchingUp):
        return catch_up_text(event)
    if isinstance(event, Disconnected):
        return f"= disconnected: {event.reason or event.code}"
    if isinstance(event, IdentityChanged):
        what = "a new device" if event.new_device else "a new identity key"
        return (
            f"! {event.device} has {what}: the safety number with {event.device.account}"
            f" changed (tidings safety-number {event.device.account})"
        )
    return None


def catch_up_text(event: CatchingUp) -> str:
    """``= catching up 3,120 / 10,000 (2,480/s)``, and ``= caught up: …`` at its end."""
    if event.finished:
        return f"= caught up: fetched the {event.done:,} items that waited ({event.rate:,.0f}/s)"
    rate = f" ({event.rate:,.0f}/s)" if event.done else ""
    return f"= catching up {event.done:,} / {event.total:,}{rate}"


#: How ``listen`` explains a skipped gap.
_SKIPPED = {
    SkipReason.TIMEOUT: "not waiting any longer",
    SkipReason.OVERFLOW: "too many messages held behind it",
    SkipReason.EXPIRED: "they expired on the relay before this device fetched them",
}


def _refused_text(event: SendRefused) -> str:
    what = "" if event.kind is ContentKind.MESSAGE else f" ({event.kind.name.lower()})"
    then = "failed for good" if event.retry_at is None else f"retry at {_ts(event.retry_at)}"
    return (
        f"[{_ts(event.at)}] {glyph(Status.FAILED if event.final else Status.PENDING):2} "
        f"{event.message_id.hex()[:12]}… to {event.recipient}{what} refused by the relay: "
        f"{event.code_name} ({event.reason}); {then}"
    )
