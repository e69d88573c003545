"""Reading a fault-lab run back: JSON-lines files that a SIGKILL may have cut, and the record.

:func:`read_jsonl` reads one file and :func:`load_run` the whole run directory (the record and
every device's events) in the formats of :mod:`tidings.lab.record`.

Invariants: the reader never raises for what a file contains: a last line without its newline
that does not parse is skipped (``truncated``), and so is a *cut* line inside a file (it starts
with ``{`` but does not end with ``}``: a device process killed mid-line and restarted appends a
newline before its next line); any other bad line becomes an entry of ``errors``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from .record import (
    EVENTS_DIR,
    RECORD_FILE,
    DeviceEvent,
    DeviceStarted,
    Fault,
    RecordError,
    RecordLine,
    RunStarted,
    ServerStarted,
    Settled,
    decode_event,
    decode_record_line,
    events_path,
)

__all__ = ["ReadResult", "RunRecord", "load_run", "read_jsonl"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ReadResult(Generic[_T]):
    """What :func:`read_jsonl` found: the valid lines, the bad ones, and whether a line cut by
    a SIGKILL was skipped (not an error)."""

    lines: tuple[_T, ...]
    errors: tuple[str, ...]
    truncated: bool


def read_jsonl(path: Path, decode: Callable[[Any], _T]) -> ReadResult[_T]:
    """Read a JSON-lines file, never raising for its content (see the invariants).

    Raises:
        OSError: the file cannot be read.
    """
    data = path.read_bytes()
    raw = data.split(b"\n")
    partial = raw.pop()  # b"" when the file ends with a newline
    lines: list[_T] = []
    errors: list[str] = []
    cut = False
    for number, text in enumerate([*raw, partial], start=1):
        text = text.strip()
        if not text:
            continue
        try:
            lines.append(decode(json.loads(text)))
        except (ValueError, RecordError) as exc:  # JSONDecodeError, UnicodeDecodeError too
            if number > len(raw) or (text.startswith(b"{") and not text.endswith(b"}")):
                cut = True  # a write cut short by SIGKILL: not an error
            else:
                errors.append(f"{path}:{number}: {exc}")
    return ReadResult(tuple(lines), tuple(errors), cut)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run directory, read: the controller's record and every device's events."""

    run_dir: Path
    run: RunStarted | None
    devices: tuple[DeviceStarted, ...]
    faults: tuple[Fault, ...]
    settled: Settled | None
    server: ServerStarted | None
    events: Mapping[str, tuple[DeviceEvent, ...]]  #: by device label
    errors: tuple[str, ...]  #: bad lines, missing files, unknown devices
    truncated: tuple[str, ...]  #: files with a cut line (skipped: a SIGKILL mid-write)
    start: float  #: the earliest ``t`` in the record (lab clock)
    end: float  #: the latest ``t`` in the record or any event

    def path(self, named: str) -> Path:
        """A path named in the record: relative to the run directory, or absolute.

        One that is not there is looked for under the run directory by its trailing parts, so
        a run directory that was moved (absolute paths) or a record written by an older lab
        (paths relative to the controller's working directory, such as
        ``lab-runs/x/server-crash/homes/alice.1``) still finds its files. Where nothing
        matches, the path as named (relative to the run directory) is returned.
        """
        given = Path(named)
        direct = given if given.is_absolute() else self.run_dir / given
        if direct.exists():
            return direct
        parts = given.parts[1:] if given.is_absolute() else given.parts
        for start in range(1, len(parts)):
            candidate = self.run_dir.joinpath(*parts[start:])
            if candidate.exists():
                return candidate
        return direct

    def device(self, label: str) -> DeviceStarted | None:
        """The ``device`` line of ``label``."""
        return next((d for d in self.devices if d.label == label), None)


def load_run(run_dir: Path) -> RunRecord:
    """Read a run directory. Never raises for its content: problems are in ``errors``."""
    errors: list[str] = []
    truncated: list[str] = []
    record: ReadResult[RecordLine]
    try:
        record = read_jsonl(run_dir / RECORD_FILE, decode_record_line)
    except OSError as exc:
        record = ReadResult((), (f"cannot read the record: {exc}",), False)
    errors += record.errors
    if record.truncated:
        truncated.append(str(run_dir / RECORD_FILE))
    lines = record.lines
    devices = tuple(x for x in lines if isinstance(x, DeviceStarted))
    labels = [d.label for d in devices]
    found = sorted(p.name[: -len(".jsonl")] for p in (run_dir / EVENTS_DIR).glob("*.jsonl"))
    errors += [f"events of a device not in the record: {x}" for x in found if x not in labels]
    events: dict[str, tuple[DeviceEvent, ...]] = {}
    for label in dict.fromkeys([*labels, *found]):
        path = events_path(run_dir, label)
        if not path.exists():
            events[label] = ()
            continue
        try:
            result = read_jsonl(path, decode_event)
        except OSError as exc:
            errors.append(f"cannot read {path}: {exc}")
            continue
        events[label] = result.lines
        errors += result.errors
        if result.truncated:
            truncated.append(str(path))
    runs = [x for x in lines if isinstance(x, RunStarted)]
    if not runs:
        errors.append("the record has no run line")
    times = [x.t for x in lines] + [e.t for evs in events.values() for e in evs]
    return RunRecord(
        run_dir,
        runs[0] if runs else None,
        devices,
        tuple(x for x in lines if isinstance(x, Fault)),
        next((x for x in lines if isinstance(x, Settled)), None),
        next((x for x in lines if isinstance(x, ServerStarted)), None),
        events,
        tuple(errors),
        tuple(truncated),
        min(times, default=0.0),
        max(times, default=0.0),
    )
