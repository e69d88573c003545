"""A lab run watched while it runs: its lines in, live counts and timeline points out.

Sans-I/O: :class:`LiveTally` takes the record's and the devices' lines (as
:mod:`tidings.lab.follow` reads them off a running run's files) and answers what the web app's
lab page draws: one :class:`Point` per confirmation point or fault, on the run's own clock
(seconds since its ``run`` line), and :class:`LiveCounts`.

Times are seconds since the run began with clock jumps closed up (:data:`JUMP_GAP`). A fault
is recorded when its window closes (its start and end are known then); an instant (a kill -9)
at once.

The live counts are what the devices have *said so far*; the verdict is the checker's
(:func:`tidings.lab.checker.check`), which also reads every device's store after the run, so
``lost`` exists only there. ``duplicated`` and ``reordered`` here follow the checker's rules on
the devices' ``received`` lines: a second ``received`` of one message at one device; a message
displayed at a device after a later one of the same stream (sender device, conversation).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .record import (
    Composed,
    DeviceEvent,
    Fault,
    Received,
    RecordLine,
    RunStarted,
    SendFailed,
    SendRefused,
    Settled,
    StatusChanged,
    StorageFailedLine,
)

__all__ = ["JUMP_GAP", "LANES", "LiveCounts", "LiveTally", "Point"]

#: The timeline's lanes, top to bottom: where a message can be seen to have got to.
LANES = ("composed", "sent", "delivered", "read", "received", "expired", "refused")
#: Seconds of lab clock with nothing in them that count as a clock jump (``offline-for-days``
#: moves the lab clock 35 days at once): longer than any fault window. The timeline closes
#: such a gap up, so the run's seconds stay readable.
JUMP_GAP = 600.0


@dataclass(frozen=True, slots=True)
class Point:
    """One mark on the timeline: a confirmation point of message ``mid`` (``lane``, at
    ``device`` for per-device points), or a fault (``lane`` "fault") from ``t`` to ``end``."""

    lane: str
    t: float
    mid: str = ""
    device: str = ""
    end: float | None = None
    kind: str = ""  #: the fault's kind, or the refusal's code
    target: str = ""  #: what the fault hit

    def json(self) -> dict[str, Any]:
        """The point as the page receives it (empty fields left out)."""
        return {k: v for k, v in asdict(self).items() if v not in ("", None)}


@dataclass(slots=True)
class LiveCounts:
    """How far the run has got, by what its devices said so far (per-device figures count
    (message, device) pairs, as the checker's :class:`~tidings.lab.checker_stats.Counts`)."""

    composed: int = 0  #: messages sent by the workload (durable in an outbox)
    sent: int = 0  #: ✓: the relay stored them
    delivered: int = 0  #: ✓✓ pairs (delivered or read)
    read: int = 0  #: read pairs
    expired: int = 0  #: ✗ pairs: the relay's retention passed first
    refused: int = 0  #: sends the relay refused for good
    received: int = 0  #: messages surfaced at a recipient device
    duplicated: int = 0  #: a message surfaced twice at one device
    reordered: int = 0  #: a message surfaced after a later one of its stream
    faults: int = 0  #: faults injected so far
    send_failed: int = 0  #: ``send()`` could not queue (the device's disk was full)
    storage_failed: int = 0  #: devices whose store stopped writing

    def json(self) -> dict[str, int]:
        return asdict(self)


class LiveTally:
    """The live view of one run. Feed it every line once, in any order across files."""

    def __init__(self) -> None:
        self.counts = LiveCounts()
        self.scenario = ""
        self.seed: int | None = None
        self.quick: bool | None = None
        self.settled: float | None = None
        self._zero: float | None = None
        self._early: list[tuple[str, RecordLine | DeviceEvent]] = []
        self._reached: dict[str, set[tuple[str, str]]] = {"delivered": set(), "read": set()}
        self._final: set[tuple[str, str]] = set()
        self._sent: set[str] = set()
        self._seen: set[tuple[str, str, str]] = set()
        self._top: dict[tuple[str, str, str], int] = {}
        self._latest = 0.0  # the latest lab time seen (since the run line)
        self._jumps: list[tuple[float, float]] = []  # (lab time it jumped to, seconds skipped)

    @property
    def started(self) -> bool:
        """Whether the run's ``run`` line was seen (times are relative to it)."""
        return self._zero is not None

    def feed(self, source: str, line: RecordLine | DeviceEvent) -> list[Point]:
        """Take one line (``source``: "record", or the device's label "acct.N" for its
        events) and return the points it adds. Lines before the ``run`` line are held until
        it comes (a page may read the devices' files first)."""
        if isinstance(line, RunStarted):
            if self._zero is not None:
                return []
            self._zero = line.t
            self.scenario, self.seed, self.quick = line.scenario, line.seed, line.quick
            held, self._early = self._early, []
            return [p for src, early in held for p in self.feed(src, early)]
        if self._zero is None:
            self._early.append((source, line))
            return []
        return self._points(source, line, self._shown(line.t))

    def _shown(self, lab_time: float) -> float:
        """``lab_time`` on the timeline: since the run line, clock jumps closed up."""
        t = lab_time - (self._zero or 0.0)
        if t > self._latest + JUMP_GAP:
            self._jumps.append((t, t - self._latest))
        self._latest = max(self._latest, t)
        return t - sum(skipped for at, skipped in self._jumps if t >= at)

    def _points(self, source: str, line: RecordLine | DeviceEvent, t: float) -> list[Point]:
        c = self.counts
        if isinstance(line, Fault):
            c.faults += 1
            start = self._shown(line.start)
            end = None if line.instant or line.end is None else self._shown(line.end)
            return [Point("fault", start, end=end, kind=line.kind, target=line.target)]
        if isinstance(line, Settled):
            self.settled = t
            return []
        if isinstance(line, Composed):
            c.composed += 1
            return [Point("composed", t, line.mid, source)]
        if isinstance(line, StatusChanged):
            return self._status(source, line, t)
        if isinstance(line, Received):
            return self._received(source, line, t)
        if isinstance(line, SendRefused):
            if not line.final:
                return []
            c.refused += 1
            return [Point("refused", t, line.mid, source, kind=line.code)]
        if isinstance(line, SendFailed):
            c.send_failed += 1
        elif isinstance(line, StorageFailedLine):
            c.storage_failed += 1
        return []  # a ReadMarked is the reader's own note: the sender's read status is the point

    def _status(self, source: str, line: StatusChanged, t: float) -> list[Point]:
        c = self.counts
        device = line.device or ""
        if line.status == "sent":
            if line.mid in self._sent:
                return []
            self._sent.add(line.mid)
            c.sent += 1
            return [Point("sent", t, line.mid, source)]
        pair = (line.mid, device)
        if line.status in ("delivered", "read"):
            points = []
            # read implies delivered: a read that came first counts as both
            for lane in ("delivered", "read") if line.status == "read" else ("delivered",):
                if pair not in self._reached[lane]:
                    self._reached[lane].add(pair)
                    setattr(c, lane, getattr(c, lane) + 1)
                    points.append(Point(lane, t, line.mid, device))
            return points
        if pair in self._final:
            return []
        self._final.add(pair)
        if line.status == "expired":
            c.expired += 1
            return [Point("expired", t, line.mid, device)]
        c.refused += 1  # "failed": the relay refused it for that device
        return [Point("refused", t, line.mid, device, kind="failed")]

    def _received(self, source: str, line: Received, t: float) -> list[Point]:
        c = self.counts
        key = (source, line.sender, line.mid)
        if key in self._seen:
            c.duplicated += 1
            return [Point("received", t, line.mid, source, kind="duplicate")]
        self._seen.add(key)
        c.received += 1
        stream = (source, line.sender, line.conv)
        top = self._top.get(stream, 0)
        if line.counter <= top:
            c.reordered += 1
        self._top[stream] = max(top, line.counter)
        return [Point("received", t, line.mid, source)]
