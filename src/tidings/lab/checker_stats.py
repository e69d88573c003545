"""The numbers of a run: counts per status, latencies per confirmation point, message traces.

Invariants:

* Latencies come from the sender's own ``trace`` table, relative to its ``composed`` point: both
  ends on the same (device) clock, so no clock offset enters them. Per message, the first
  ``written`` / ``tcp_acked`` / ``sent`` point counts; ``delivered`` and ``read`` count once per
  recipient device (first point per device).
* Message traces (for the timeline plot) are on the lab clock (the device's estimated offset
  added, see :mod:`.checker_view`).
* Everything is sorted: the same run gives the same numbers in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tidings.client.store.records import TracePoint
from tidings.delivery import Status

from .checker_view import RunView

__all__ = [
    "LATENCY_POINTS",
    "Counts",
    "MessageTrace",
    "counts",
    "latencies",
    "percentile",
    "traces",
]

#: The confirmation points whose latency is measured, in protocol order.
LATENCY_POINTS = ("written", "tcp_acked", "sent", "delivered", "read")

_FIRST_ONLY = frozenset({"written", "tcp_acked", "sent"})


@dataclass(frozen=True, slots=True)
class Counts:
    """How far the run's messages got. Per-device counts are (message, target device) pairs."""

    sent: int = 0  #: messages composed (OUT rows in the senders' stores)
    composed_lines: int = 0  #: ``composed`` lines in the events (a subset of ``sent``)
    acked: int = 0  #: ✓: the server stored it
    targets: int = 0  #: (message, device) pairs that must be reached
    delivered: int = 0  #: ✓✓ at the sender (delivered or read), per recipient device
    read: int = 0  #: read at the sender, per recipient device
    expired: int = 0  #: ✗ at the sender (final status), per device
    failed: int = 0  #: refused by the server
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0


@dataclass(frozen=True, slots=True)
class MessageTrace:
    """One sent message's confirmation points, on the lab clock, for the timeline plot."""

    mid: str
    sender: str
    recipient: str
    composed: float
    points: tuple[tuple[str, float], ...]  #: (point name without device, time), by time

    @property
    def last(self) -> float:
        """The time of its last point (``composed`` if none)."""
        return max((t for _, t in self.points), default=self.composed)


def counts(view: RunView, violations: Mapping[str, int]) -> Counts:
    """The run's counts; ``violations`` is the number of violations of each kind."""
    finals = list(view.final.values())
    rows = list(view.sent.values())
    return Counts(
        sent=len(rows),
        composed_lines=len(view.composed),
        acked=sum(r.stored_at is not None for r in rows),
        targets=sum(
            len(view.targets(r.sender, r.recipient))
            for r in rows
            if r.recipient is not None and r.failed_code is None
        ),
        delivered=sum(s in (Status.DELIVERED, Status.READ) for s in finals),
        read=finals.count(Status.READ),
        expired=finals.count(Status.EXPIRED),
        failed=sum(r.failed_code is not None for r in rows),
        lost=violations.get("lost", 0),
        duplicated=violations.get("duplicated", 0),
        reordered=violations.get("reordered", 0),
    )


def _by_message(view: RunView) -> dict[tuple[str, str], list[tuple[str, float]]]:
    """Every sent message's trace points, read in one pass per store."""
    out: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for sender, snap in sorted(view.stores.items()):
        for t in snap.trace:
            if (sender, t.mid) in view.sent:
                out.setdefault((sender, t.mid), []).append((t.point, t.at))
    return out


def latencies(view: RunView) -> dict[str, tuple[float, ...]]:
    """Seconds from ``composed`` to each point of :data:`LATENCY_POINTS`, sorted."""
    out: dict[str, list[float]] = {p: [] for p in LATENCY_POINTS}
    for points in _by_message(view).values():
        composed = min((at for p, at in points if p == TracePoint.COMPOSED), default=None)
        if composed is None:
            continue
        seen: set[str] = set()
        for point, at in sorted(points, key=lambda p: p[1]):
            base = point.partition(":")[0]
            if base not in out or point in seen:
                continue
            seen.add(point)
            out[base].append(at - composed)
    return {p: tuple(sorted(v)) for p, v in out.items()}


def traces(view: RunView) -> tuple[MessageTrace, ...]:
    """Every sent message's trace on the lab clock, by composed time."""
    out: list[MessageTrace] = []
    for (sender, mid), points in _by_message(view).items():
        composed = min((at for p, at in points if p == TracePoint.COMPOSED), default=None)
        row = view.sent[sender, mid]
        off = view.offsets.get(sender, 0.0)
        start = (composed if composed is not None else row.sent_at) + off
        rest = sorted(
            ((p.partition(":")[0], at + off) for p, at in points if p != TracePoint.COMPOSED),
            key=lambda p: (p[1], p[0]),
        )
        out.append(MessageTrace(mid, sender, row.recipient or "", start, tuple(rest)))
    return tuple(sorted(out, key=lambda m: (m.composed, m.mid)))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0–100) of sorted ``values`` by linear interpolation, or
    ``None`` if there are none."""
    if not values:
        return None
    pos = (len(values) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)
