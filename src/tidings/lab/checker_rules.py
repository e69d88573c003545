"""The invariants the checker verifies (DESIGN §1), one function per violation kind.

Each rule reads a :class:`~.checker_view.RunView` and yields :class:`Violation` values; the
timelines are attached afterwards by :func:`tidings.lab.checker.check`.

=========================  ====  ===========================================================
kind                       G     a violation is
=========================  ====  ===========================================================
``lost``                   G1/2  after ``settled``: a target device lacks a sent message and
                                 the sender was not told ✗ expired for that device (a ✓ the
                                 sender showed for it is then a false ✓: noted in the detail)
``skipped``                G1/7  after ``settled``: a device lacks a message the relay stored
                                 for it (✓, not ✗ expired there) yet holds one the relay stored
                                 after it: its cursor moved past an unfetched item
``duplicated``             G3    a device stored one message twice, or surfaced it twice
``reordered``              G4    a stream (sender device, conversation) displayed at a device
                                 with counters not increasing; or, after ``settled``, a
                                 counter displayed over and never filled (nor expired/failed)
``expired_and_delivered``  G5    after ``settled``: the sender's final status for a device is
                                 ✗ expired while that device stored the message
``false_delivered``        G5    ✓✓ or read at the sender for a device that lacks the message
``phantom``                G5    a device holds a message no sender stored or composed
``lost_before_ack``        G2    a ``composed`` line whose message is not in the sender's store
``plaintext_leak``         G6    a message body found in the server's files or its log
``record_error``           —     a bad record line, an unreadable store or file
=========================  ====  ===========================================================

Targets of a message from device S of account A to account B: every lab device of B and every
other lab device of A (sent-message sync). A message the server refused (``failed_code``) has
no targets.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tidings.client.store.records import Direction
from tidings.delivery import Status

from .checker_view import RunView, TimelineEntry
from .record import Received

__all__ = ["KINDS", "MIN_MARKER_BYTES", "RULES", "Violation", "plaintext_leaks"]

KINDS = (
    "lost",
    "skipped",
    "duplicated",
    "reordered",
    "expired_and_delivered",
    "false_delivered",
    "phantom",
    "lost_before_ack",
    "plaintext_leak",
    "record_error",
)

#: Bodies shorter than this are not searched for in the server's files: a short body ("ok")
#: matches random bytes. Lab bodies carry unique markers far longer than this.
MIN_MARKER_BYTES = 8


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant: its kind, the message (hex id, "" if none), what is wrong, and
    everything every device recorded about the message, by time."""

    kind: str
    message_id_hex: str
    detail: str
    timeline: tuple[TimelineEntry, ...] = field(default=(), compare=False)
    device: str = ""  #: the device where it was observed, "" if none


def lost(view: RunView) -> Iterator[Violation]:
    """``lost``: judged only once the run settled."""
    if not view.settled:
        return
    for (sender, mid), row in sorted(view.sent.items()):
        if row.failed_code is not None or row.recipient is None:
            continue
        for device in view.targets(sender, row.recipient):
            if device not in view.stores or (sender, mid) in view.held.get(device, {}):
                continue
            if not view.expects(device, row):
                continue
            if (mid, device) in view.expired_seen:
                continue
            ack = "after ✓ (a false ✓)" if row.stored_at is not None else "never ✓ (in outbox)"
            status = view.final.get((mid, device))
            name = status.name if status is not None else "none"
            yield Violation(
                "lost",
                mid,
                f"{sender} → {row.recipient} {row.conversation} #{row.counter}: not at {device},"
                f" not reported expired; {ack}; sender's status for {device}: {name}",
                device=device,
            )


def skipped(view: RunView) -> Iterator[Violation]:
    """``skipped``: judged only once the run settled. The relay's ✓ time (``stored_at``, the
    relay's clock, the same for every device a message was queued for) orders each device's
    queue; a device holding a message queued after one it never got skipped that one — the
    cross-sender case the per-stream gap check of ``reordered`` cannot see."""
    if not view.settled:
        return
    for device in sorted(view.stores):
        held = view.held.get(device, {})
        times = sorted(
            (row.stored_at, mid)
            for (sender, mid), row in view.sent.items()
            if (sender, mid) in held and sender != device and row.stored_at is not None
        )
        for (sender, mid), row in sorted(view.sent.items()):
            if row.stored_at is None or row.failed_code is not None or row.recipient is None:
                continue
            if (sender, mid) in held or (mid, device) in view.expired_seen:
                continue
            if device not in view.targets(sender, row.recipient):
                continue
            if not view.expects(device, row):
                continue
            at = bisect_right(times, (row.stored_at, "\U0010ffff"))
            if at < len(times):
                later, later_mid = times[at]
                yield Violation(
                    "skipped",
                    mid,
                    f"{sender} → {row.recipient} {row.conversation} #{row.counter} (✓ at"
                    f" {row.stored_at:.3f}) never reached {device}, which holds {later_mid}"
                    f" (✓ at {later:.3f}): its cursor moved past an unfetched item",
                    device=device,
                )


def duplicated(view: RunView) -> Iterator[Violation]:
    """``duplicated``: two rows for one message at a device, or two ``received`` lines."""
    for device, held in sorted(view.held.items()):
        for (_, mid), rows in sorted(held.items()):
            if len(rows) > 1:
                yield Violation(
                    "duplicated", mid, f"stored {len(rows)} times at {device}", device=device
                )
    for device, events in sorted(view.record.events.items()):
        seen = Counter((e.sender, e.mid) for e in events if isinstance(e, Received))
        for (sender, mid), n in sorted(seen.items()):
            if n > 1:
                yield Violation(
                    "duplicated",
                    mid,
                    f"received {n} times from {sender} at {device}",
                    device=device,
                )


def reordered(view: RunView) -> Iterator[Violation]:
    """``reordered``: display order against counters, and (settled) gaps displayed over."""
    for device, snap in sorted(view.stores.items()):
        streams: dict[tuple[str, str], list[tuple[int, int, str]]] = {}
        for m in snap.messages:
            if m.shown is not None:
                streams.setdefault((m.sender, m.conversation), []).append(
                    (m.shown, m.counter, m.mid)
                )
        for (sender, conv), shown in sorted(streams.items()):
            shown.sort()
            top = 0
            for _, counter, mid in shown:
                if counter <= top:
                    yield Violation(
                        "reordered",
                        mid,
                        f"at {device}: {sender} {conv} #{counter} displayed after #{top}",
                        device=device,
                    )
                top = max(top, counter)
            # A group stream has honest gaps at a member that joined or left (what was not
            # sealed for it): the group rules judge its losses by membership (checker_groups).
            if view.settled and device not in view.left and not conv.startswith("group:"):
                yield from _gaps(view, device, sender, conv, {c for _, c, _ in shown})


def _gaps(
    view: RunView, device: str, sender: str, conv: str, shown: set[int]
) -> Iterator[Violation]:
    # a device linked mid-run starts each conversation at the first message it got
    first = min(shown) if device in view.joined else 1
    for counter in range(first, max(shown)):
        if counter in shown:
            continue
        mid = view.by_counter.get((sender, conv, counter), "")
        row = view.sent.get((sender, mid))
        if row is not None and (row.failed_code is not None or (mid, device) in view.expired_seen):
            continue  # refused for everyone, or reported expired there: an honest gap
        yield Violation(
            "reordered",
            mid,
            f"at {device}: {sender} {conv} #{counter} never displayed, #{max(shown)} displayed"
            " past it",
            device=device,
        )


def expired_and_delivered(view: RunView) -> Iterator[Violation]:
    """``expired_and_delivered``: the sender's final word is ✗ but the device has it."""
    if not view.settled:
        return
    for (mid, device), status in sorted(view.final.items()):
        if status is not Status.EXPIRED:
            continue
        senders = [s for (s, m) in view.held.get(device, {}) if m == mid]
        if senders:
            yield Violation(
                "expired_and_delivered",
                mid,
                f"{senders[0]} shows ✗ expired for {device}, which stored it",
                device=device,
            )


def false_delivered(view: RunView) -> Iterator[Violation]:
    """``false_delivered``: the sender shows ✓✓/read for a device without the message."""
    for (mid, device), status in sorted(view.final.items()):
        if status not in (Status.DELIVERED, Status.READ) or device not in view.stores:
            continue
        if not any(m == mid for (_, m) in view.held.get(device, {})):
            yield Violation(
                "false_delivered",
                mid,
                f"sender shows {status.name} for {device}, which does not have it",
                device=device,
            )


def phantom(view: RunView) -> Iterator[Violation]:
    """``phantom``: a stored IN message or a ``received`` line no sender composed."""
    known = set(view.sent) | set(view.composed)
    for device, snap in sorted(view.stores.items()):
        for m in snap.messages:
            if m.direction is Direction.IN and (m.sender, m.mid) not in known:
                yield Violation(
                    "phantom", m.mid, f"{device} stored it from {m.sender}", device=device
                )
    for device, events in sorted(view.record.events.items()):
        for e in events:
            if isinstance(e, Received) and (e.sender, e.mid) not in known:
                yield Violation(
                    "phantom", e.mid, f"{device} received it from {e.sender}", device=device
                )


def lost_before_ack(view: RunView) -> Iterator[Violation]:
    """``lost_before_ack``: ``send()`` returned but the sender's store lacks the message."""
    for (device, mid), e in sorted(view.composed.items()):
        if device in view.stores and (device, mid) not in view.sent:
            yield Violation(
                "lost_before_ack",
                mid,
                f"{device} composed it ({e.conv} #{e.counter}) but its store lacks it",
                device=device,
            )


def record_errors(view: RunView) -> Iterator[Violation]:
    """``record_error``: every problem reading the record and the stores."""
    for error in [*view.record.errors, *view.errors]:
        yield Violation("record_error", "", error)


RULES = (
    lost,
    skipped,
    duplicated,
    reordered,
    expired_and_delivered,
    false_delivered,
    phantom,
    lost_before_ack,
    record_errors,
)


def plaintext_leaks(view: RunView) -> Iterator[Violation]:
    """``plaintext_leak``: any message body (from the stores and the ``composed`` lines) as
    bytes in any file under the server's data directory (``-wal`` files included) or its log."""
    server = view.record.server
    if server is None:
        yield Violation("record_error", "", "no server line: cannot scan for plaintext")
        return
    bodies: dict[bytes, str] = {}
    for (_, mid), row in view.sent.items():
        bodies.setdefault(row.body, mid)
    for (_, mid), e in view.composed.items():
        bodies.setdefault(e.body.encode(), mid)
    markers = sorted((b, mid) for b, mid in bodies.items() if len(b) >= MIN_MARKER_BYTES)
    data_dir, log = view.record.path(server.data_dir), view.record.path(server.log)
    files = sorted(p for p in data_dir.rglob("*") if p.is_file()) if data_dir.is_dir() else []
    for path in [*files, log]:
        yield from _scan(path, markers)


def _scan(path: Path, markers: list[tuple[bytes, str]]) -> Iterator[Violation]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        yield Violation("record_error", "", f"cannot scan {path}: {exc}")
        return
    for body, mid in markers:
        at = data.find(body)
        if at >= 0:
            yield Violation("plaintext_leak", mid, f"body {body[:40]!r} in {path} at byte {at}")
