"""What every endpoint stored, read once and indexed for the checker (:mod:`.checker`).

Invariants:

* Client stores are opened read-only (``file:…?mode=ro``): the checker never changes a run.
* Only the ``messages``, ``statuses`` and ``trace`` tables are read; more may exist.
* A store that cannot be read is an error of the view (``errors``), never an exception.
* Times: record and event lines carry the lab clock; a store carries its device's clock. Each
  device's offset to the lab clock is estimated from pairs of the same moment seen by both
  (the ``composed`` line and trace point; the ``received`` line and ``received_at``), as the
  median difference, so timelines and plots can put everything on the lab clock.
"""

from __future__ import annotations

import sqlite3
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tidings.client.store.records import Direction, TracePoint
from tidings.delivery import Status

from .record import (
    STORE_FILE,
    Composed,
    ReadMarked,
    Received,
    SendFailed,
    SendRefused,
    StatusChanged,
    StorageFailedLine,
    device_label,
)
from .record_read import RunRecord

__all__ = ["Row", "RunView", "StatusRow", "StoreSnapshot", "TimelineEntry", "TraceRow", "build"]


@dataclass(frozen=True, slots=True)
class Row:
    """A ``messages`` row (ids as hex, devices as ``"acct.N"``)."""

    mid: str
    sender: str
    conversation: str
    counter: int
    body: bytes
    sent_at: float
    direction: Direction
    recipient: str | None
    received_at: float | None
    stored_at: float | None
    failed_code: int | None
    shown: int | None
    read_at: float | None = None  #: received ones: when the user read it (here or elsewhere)


@dataclass(frozen=True, slots=True)
class StatusRow:
    """A ``statuses`` row: the message's status at ``device``."""

    mid: str
    device: str
    status: Status
    at: float


@dataclass(frozen=True, slots=True)
class TraceRow:
    """A ``trace`` row."""

    mid: str
    point: str
    at: float
    detail: str | None


@dataclass(frozen=True, slots=True)
class StoreSnapshot:
    """One device's store, read; ``error`` set (and the rest empty) if it could not be read."""

    device: str
    messages: tuple[Row, ...] = ()
    statuses: tuple[StatusRow, ...] = ()
    trace: tuple[TraceRow, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True, order=True)
class TimelineEntry:
    """One thing that happened to a message, on the lab clock (store times shifted by the
    device's estimated offset; ``clock`` says which clock the time came from)."""

    t: float
    device: str
    what: str
    clock: str = "lab"  #: "lab" (record and event lines) or "device" (a store)

    def __str__(self) -> str:
        mark = "" if self.clock == "lab" else "~"
        return f"{mark}{self.t:14.3f}  {self.device:<14} {self.what}"


_MSG_SQL = (
    "SELECT message_id, sender_account, sender_device, conversation, counter, body, sent_at,"
    " direction, recipient, received_at, stored_at, failed_code, shown, read_at FROM messages"
    " ORDER BY id"
)


def read_store(device: str, home: Path) -> StoreSnapshot:
    """Read the store in ``home`` read-only. Never raises: problems go to ``error``."""
    path = home / STORE_FILE
    if not path.exists():
        return StoreSnapshot(device, error=f"no store at {path}")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            msgs = db.execute(_MSG_SQL).fetchall()
            stats = db.execute("SELECT message_id, account, device_id, status, at FROM statuses")
            stat_rows = stats.fetchall()
            trace = db.execute("SELECT message_id, point, at, detail FROM trace ORDER BY at, id")
            trace_rows = trace.fetchall()
        finally:
            db.close()
        return StoreSnapshot(
            device,
            tuple(
                Row(m.hex(), device_label(a, d), c, n, bytes(b), s, Direction(dr), *rest)
                for m, a, d, c, n, b, s, dr, *rest in msgs
            ),
            tuple(
                StatusRow(m.hex(), device_label(a, d), Status(s), at)
                for m, a, d, s, at in stat_rows
            ),
            tuple(TraceRow(m.hex(), p, at, det) for m, p, at, det in trace_rows),
        )
    except (sqlite3.Error, ValueError, TypeError, AttributeError) as exc:
        return StoreSnapshot(device, error=f"cannot read {path}: {exc}")


@dataclass
class RunView:
    """The record and every store, indexed by what the invariants ask."""

    record: RunRecord
    stores: dict[str, StoreSnapshot]  #: by device label, readable stores only
    errors: list[str]
    #: (sender device, mid) -> the sender's OUT row: the truth of what was sent
    sent: dict[tuple[str, str], Row] = field(default_factory=dict)
    #: (sender device, mid) -> its ``composed`` line
    composed: dict[tuple[str, str], Composed] = field(default_factory=dict)
    #: device -> (sender device, mid) -> rows stored at that device (more than one: duplicated)
    held: dict[str, dict[tuple[str, str], list[Row]]] = field(default_factory=dict)
    #: (sender device, conversation, counter) -> mid of the sender's OUT row
    by_counter: dict[tuple[str, str, int], str] = field(default_factory=dict)
    #: account -> its lab devices
    accounts: dict[str, list[str]] = field(default_factory=dict)
    #: (mid, device) the sender's side was told expired (status, trace or event)
    expired_seen: set[tuple[str, str]] = field(default_factory=set)
    #: (mid, device) -> the sender's final status for that device
    final: dict[tuple[str, str], Status] = field(default_factory=dict)
    #: device -> its clock's offset to the lab clock (add it to a store time)
    offsets: dict[str, float] = field(default_factory=dict)
    #: mid -> its timeline
    timelines: dict[str, list[TimelineEntry]] = field(default_factory=dict)

    @property
    def settled(self) -> bool:
        """Whether the record says the run settled (missing now means lost)."""
        return self.record.settled is not None

    def targets(self, sender: str, recipient: str) -> list[str]:
        """Devices a message from ``sender`` to the account ``recipient`` must reach: every
        device of the recipient and every other device of the sender's account."""
        own = sender.rpartition(".")[0]
        devices = [*self.accounts.get(recipient, []), *self.accounts.get(own, [])]
        return [d for d in dict.fromkeys(devices) if d != sender]

    def timeline(self, mid: str) -> tuple[TimelineEntry, ...]:
        """Everything about ``mid`` from every device, by time."""
        return tuple(sorted(self.timelines.get(mid, ())))


def build(record: RunRecord) -> RunView:
    """Read every store named by the record and index it all."""
    view = RunView(record, {}, [])
    for dev in record.devices:
        view.accounts.setdefault(dev.account, []).append(dev.label)
        snap = read_store(dev.label, record.path(dev.home))
        if snap.error is not None:
            view.errors.append(snap.error)
        else:
            view.stores[dev.label] = snap
    for label, snap in view.stores.items():
        _index_store(view, label, snap)
    for label, events in record.events.items():
        for e in events:
            if isinstance(e, Composed):
                view.composed.setdefault((label, e.mid), e)
            elif isinstance(e, StatusChanged) and e.status == "expired" and e.device:
                view.expired_seen.add((e.mid, e.device))
    view.offsets = {label: _offset(view, label) for label in view.stores}
    _build_timelines(view)
    return view


def _index_store(view: RunView, label: str, snap: StoreSnapshot) -> None:
    held = view.held.setdefault(label, defaultdict(list))
    for m in snap.messages:
        held[m.sender, m.mid].append(m)
        if m.direction is Direction.OUT and m.sender == label:
            view.sent[label, m.mid] = m
            view.by_counter[label, m.conversation, m.counter] = m.mid
    for s in snap.statuses:
        if s.status is Status.EXPIRED:
            view.expired_seen.add((s.mid, s.device))
        if (label, s.mid) in view.sent:
            view.final[s.mid, s.device] = s.status
    expired = TracePoint.EXPIRED.value + ":"
    view.expired_seen.update(
        (t.mid, t.point[len(expired) :]) for t in snap.trace if t.point.startswith(expired)
    )


def _offset(view: RunView, label: str) -> float:
    snap = view.stores[label]
    composed_at = {t.mid: t.at for t in snap.trace if t.point == TracePoint.COMPOSED}
    received_at = {(m.sender, m.mid): m.received_at for m in snap.messages}
    diffs: list[float] = []
    for e in view.record.events.get(label, ()):
        if isinstance(e, Composed) and e.mid in composed_at:
            diffs.append(e.t - composed_at[e.mid])
        elif isinstance(e, Received):
            at = received_at.get((e.sender, e.mid))
            if at is not None:
                diffs.append(e.t - at)
    return statistics.median(diffs) if diffs else 0.0


def _build_timelines(view: RunView) -> None:
    def add(mids: Iterable[str], entry: TimelineEntry) -> None:
        for mid in mids:
            view.timelines.setdefault(mid, []).append(entry)

    for label, snap in view.stores.items():
        off = view.offsets[label]
        for m in snap.messages:
            add([m.mid], TimelineEntry(
                (m.received_at if m.received_at is not None else m.sent_at) + off,
                label, _describe_row(m), "device",
            ))  # fmt: skip
        for s in snap.statuses:
            what = f"store: status {s.status.name} at {s.device}"
            add([s.mid], TimelineEntry(s.at + off, label, what, "device"))
        for t in snap.trace:
            what = f"trace: {t.point}" + (f" ({t.detail})" if t.detail else "")
            add([t.mid], TimelineEntry(t.at + off, label, what, "device"))
    for label, events in view.record.events.items():
        for e in events:
            if isinstance(e, SendFailed | StorageFailedLine):
                continue  # no message id: the device's own store refused (checker_disk)
            mids = e.mids if isinstance(e, ReadMarked) else (e.mid,)
            add(mids, TimelineEntry(e.t, label, _describe_event(e)))


def _describe_row(m: Row) -> str:
    where = "shown #" + str(m.shown) if m.shown is not None else "held (not shown)"
    if m.direction is Direction.OUT:
        sent = f"✓ stored_at={m.stored_at}" if m.stored_at is not None else "no ✓"
        failed = f", failed {m.failed_code}" if m.failed_code is not None else ""
        return f"store: OUT to {m.recipient} {m.conversation} #{m.counter}, {sent}{failed}, {where}"
    return f"store: IN from {m.sender} {m.conversation} #{m.counter}, {where}"


def _describe_event(e: Composed | StatusChanged | Received | ReadMarked | SendRefused) -> str:
    if isinstance(e, SendRefused):
        return f"event: refused {e.code}" + (" for good" if e.final else ", retried")
    if isinstance(e, Composed):
        return f"event: composed to {e.to} {e.conv} #{e.counter}"
    if isinstance(e, StatusChanged):
        return f"event: status {e.status} at {e.device} (overall {e.overall})"
    if isinstance(e, Received):
        return f"event: received from {e.sender} {e.conv} #{e.counter}" + (
            " late" if e.late else ""
        )
    return f"event: read ({len(e.mids)} messages)"
