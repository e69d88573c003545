"""Following a lab run's files while it runs (``tail -f`` of the record and the events).

:class:`RunFollower` remembers how far it read each JSON-lines file of a run directory
(:mod:`tidings.lab.record`) and, on each :meth:`~RunFollower.poll`, returns the complete lines
added since, decoded. It reads the way :func:`tidings.lab.record_read.read_jsonl` does and
never raises for what a file holds: a line without its newline yet is left for the next poll; a
line cut by a SIGKILL (the restarted process begins with a newline) or one that does not decode
is counted in :attr:`~RunFollower.skipped` and dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .record import (
    EVENTS_DIR,
    RECORD_FILE,
    DeviceEvent,
    RecordError,
    RecordLine,
    decode_event,
    decode_record_line,
)

__all__ = ["MAX_READ", "RunFollower"]

#: Bytes read from one file per poll: a poll stays short even behind a burst (the rest comes
#: at the next one).
MAX_READ = 1 << 20


class _File:
    __slots__ = ("decode", "offset", "path", "rest", "source")

    def __init__(self, path: Path, source: str, decode: Callable[[Any], Any]) -> None:
        self.path = path
        self.source = source
        self.decode = decode
        self.offset = 0
        self.rest = b""


class RunFollower:
    """Reads what was added to ``run_dir``'s record and device events since the last poll."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.skipped = 0
        self._files: dict[Path, _File] = {}

    def poll(self) -> list[tuple[str, RecordLine | DeviceEvent]]:
        """The new complete lines: ``("record", line)`` or ``("acct.N", event)``, each file's
        in its order, the record's first."""
        self._discover()
        out: list[tuple[str, RecordLine | DeviceEvent]] = []
        for f in self._files.values():
            out += self._read(f)
        return out

    def _discover(self) -> None:
        record = self.run_dir / RECORD_FILE
        if record not in self._files and record.exists():
            self._files[record] = _File(record, "record", decode_record_line)
        events = self.run_dir / EVENTS_DIR
        if events.is_dir():
            for path in sorted(events.glob("*.jsonl")):
                if path not in self._files:
                    self._files[path] = _File(path, path.name[: -len(".jsonl")], decode_event)

    def _read(self, f: _File) -> list[tuple[str, Any]]:
        try:
            with f.path.open("rb") as fh:
                fh.seek(f.offset)
                data = fh.read(MAX_READ)
        except OSError:
            return []  # moved or not readable now: try again at the next poll
        f.offset += len(data)
        raw = (f.rest + data).split(b"\n")
        f.rest = raw.pop()
        out = []
        for text in raw:
            text = text.strip()
            if not text:
                continue
            try:
                out.append((f.source, f.decode(json.loads(text))))
            except (ValueError, RecordError):
                self.skipped += 1  # cut by a SIGKILL, or not a line of ours
        return out
