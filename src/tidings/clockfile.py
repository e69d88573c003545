"""A wall clock that a file can move: what ``--clock-file`` (``TIDINGS_CLOCK_FILE``) gives the
relay and the lab's device processes, so the fault lab can jump time forward for all of them at
once (:class:`tidings.lab.clock.LabClock` writes the file). Below the relay, the device and the
lab alike, so none of them imports another for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["file_clock"]


def file_clock(path: Path, base: float = 0.0) -> Callable[[], float]:
    """Wall clock plus the offset written in ``path`` (re-read when the file changes)."""
    cache: dict[str, float] = {"mtime": -1.0, "offset": 0.0}

    def now() -> float:
        try:
            mtime = path.stat().st_mtime
        except OSError:
            mtime = -2.0
        if mtime != cache["mtime"]:
            cache["mtime"] = mtime
            try:
                cache["offset"] = float(path.read_text().strip() or 0)
            except (OSError, ValueError):
                cache["offset"] = 0.0
        return time.time() + base + cache["offset"]

    return now
