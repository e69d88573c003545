"""What a lab device process writes down: its events file and its connection log.

:class:`EventLog` is the events file the checker reads (``RUN/events/acct.N.jsonl``, the line
types of :mod:`tidings.lab.record`). :class:`LinkLog` is the device's connection log
(``RUN/links/acct.N.jsonl``, :func:`link_path`), read by the link rules
(:mod:`tidings.lab.checker_link`): one JSON line per connection event, each with ``"t"`` (the
lab clock) and ``"ev"``::

    {"ev": "start", "hints": bool, "settings": {...}}     each start of the process
    {"ev": "connected", "pattern": str}                   a session opened (WELCOME)
    {"ev": "connect_failed", "reason": str, "attempt": n, "retry_in": s}
    {"ev": "disconnected", "code": n, "reason": str, "fatal": bool}

Both files are appended across restarts, one ``write()`` per line (a kill -9 cuts at most the
last line; the next start begins on a new line).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..client.store import StoredMessage
from ..refs import DeviceRef

__all__ = ["LINKS_DIR", "EventLog", "LinkLog", "device_name", "link_path"]

LINKS_DIR = "links"
"""The run directory's folder of connection logs, ``links/acct.N.jsonl``."""


def link_path(run_dir: Path, label: str) -> Path:
    """The connection log of device ``label`` in ``run_dir``."""
    return run_dir / LINKS_DIR / f"{label}.jsonl"


def device_name(ref: DeviceRef) -> str:
    return f"{ref.account}.{ref.device_id}"


class LinkLog:
    """A device's connection log (see the module docstring); ``None`` path: writes nothing."""

    def __init__(self, path: Path | None, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            cut = path.exists() and not path.read_bytes().endswith(b"\n") and path.stat().st_size
            self._file = path.open("a")
            if cut:
                self._file.write("\n")

    def write(self, ev: str, **fields: Any) -> None:
        if self._file is not None:
            self._file.write(json.dumps({"t": self.clock(), "ev": ev, **fields}) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class EventLog:
    """The device's events file: JSON lines appended (and flushed) one by one."""

    def __init__(self, path: Path, clock: Callable[[], float]) -> None:
        self.path = path
        self.clock = clock
        self.composed: set[str] = set()  #: bodies with a composed line (earlier runs)
        self.received: set[str] = set()  #: mids (hex) with a received line (earlier runs)
        text = path.read_text() if path.exists() else ""
        for raw in text.splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue  # a line cut by a kill -9
            if line.get("ev") == "composed":
                self.composed.add(line["body"])
            elif line.get("ev") == "received":
                self.received.add(line["mid"])
        self._file = path.open("a")
        if text and not text.endswith("\n"):
            self._file.write("\n")  # the next line must not join a cut one

    def write(self, ev: str, **fields: Any) -> None:
        self._file.write(json.dumps({"t": self.clock(), "ev": ev, **fields}) + "\n")
        self._file.flush()

    def composed_line(self, m: StoredMessage) -> None:
        self.write(
            "composed",
            mid=m.message_id.hex(),
            to=m.recipient,
            conv=m.conversation,
            counter=m.counter,
            body=m.body.decode(errors="replace"),
        )

    def received_line(self, m: StoredMessage, late: bool) -> None:
        self.write(
            "received",
            mid=m.message_id.hex(),
            **{"from": device_name(m.sender)},
            conv=m.conversation,
            counter=m.counter,
            late=late,
        )

    def close(self) -> None:
        self._file.close()
