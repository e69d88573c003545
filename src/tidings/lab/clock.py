"""The lab clock: one file holding an offset in seconds, read by every process of a lab run.

The relay (``tidings server --clock-file F``) and every device process
(``python -m tidings.lab.device --clock-file F``) read time as the wall clock plus the offset in
``F`` (:func:`tidings.clockfile.file_clock`), so the controller moves time forward for the
whole run at once — e.g. 35 days, past the relay's retention — by rewriting one file.

Invariants:

- The file always holds one decimal number: it is written to a temporary file and renamed over
  the old one, so a reader never sees a half-written offset.
- Every write gives the file a modification time strictly later than the previous one:
  ``file_clock`` re-reads the file only when its mtime changes, and two jumps within one tick of
  the file system's clock would otherwise leave readers with the first offset.
- The offset only changes through :meth:`LabClock.jump` and :meth:`LabClock.set`; reading it
  never writes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from ..clockfile import file_clock

__all__ = ["LabClock", "file_clock"]


class LabClock:
    """The offset file of a lab run (created holding ``0`` if missing).

    Args:
        path: the clock file; give the same path to the relay and to every device.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reader: Callable[[], float] = file_clock(path)
        if not path.exists():
            self.set(0.0)

    @property
    def offset(self) -> float:
        """The offset now written in the file, in seconds (0 if it is unreadable)."""
        try:
            return float(self.path.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0.0

    def set(self, offset: float) -> None:
        """Write ``offset`` (seconds added to the wall clock) for every reader."""
        try:
            previous = self.path.stat().st_mtime_ns
        except OSError:
            previous = 0
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(f"{offset!r}\n")
        mtime = max(time.time_ns(), previous + 1_000_000)  # strictly later: see the invariants
        os.utime(tmp, ns=(mtime, mtime))
        os.replace(tmp, self.path)

    def jump(self, seconds: float) -> float:
        """Move the lab's time forward by ``seconds`` (backward if negative); return the new
        offset. Readers see it on their next read."""
        offset = self.offset + seconds
        self.set(offset)
        return offset

    def now(self) -> float:
        """The lab's time: the wall clock plus the offset, as the relay and devices read it."""
        return self._reader()
