"""Run ``tidings`` with tracemalloc driven by signals (for ``idle_bench.py --trace``).

SIGUSR1 starts tracing (``TRACE_FRAMES`` frames per traceback); SIGUSR2 takes a snapshot of what
was allocated since and is still alive, and writes it to ``$IDLE_TRACE_OUT``: the top
allocation sites by line and by traceback, with their sizes and counts (and the snapshot itself
next to it, ``.snapshot``, for ``tracemalloc.Snapshot.load``). Everything else is
``python -m tidings`` unchanged.

    python bench/idle_bench.py --connections 1000 --runs 1 --trace /tmp/trace.txt
"""

from __future__ import annotations

import os
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

#: Frames kept per traceback: enough to see which of our calls led to a C allocation.
TRACE_FRAMES = 30
#: Allocation sites written per grouping.
TOP = 40


def _start(_sig: int, _frame: FrameType | None) -> None:
    tracemalloc.start(TRACE_FRAMES)


def _dump(_sig: int, _frame: FrameType | None) -> None:
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    tracemalloc.stop()
    lines: list[str] = []
    total = sum(stat.size for stat in snapshot.statistics("filename"))
    lines.append(f"total traced: {total} bytes")
    lines.append("== by line")
    for stat in snapshot.statistics("lineno")[:TOP]:
        frame = stat.traceback[0]
        lines.append(f"{stat.size:>10} {stat.count:>7}  {frame.filename}:{frame.lineno}")
    lines.append("== by traceback")
    for stat in snapshot.statistics("traceback")[:TOP]:
        lines.append(f"{stat.size:>10} {stat.count:>7}")
        lines.extend("      " + line for line in stat.traceback.format(most_recent_first=True))
    out = Path(os.environ.get("IDLE_TRACE_OUT", "trace.txt"))
    out.write_text("\n".join(lines) + "\n")
    snapshot.dump(str(out.with_suffix(".snapshot")))  # for Snapshot.load and compare_to


def main() -> None:
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _dump)
    from tidings.cli.main import main as tidings_main

    sys.exit(tidings_main(sys.argv[1:]))


if __name__ == "__main__":
    main()
