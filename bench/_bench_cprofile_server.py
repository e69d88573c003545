"""``tidings server`` under cProfile, measuring CPU time of the measured phase only.

Used by ``bench/relay_bench.py --profiler cprofile`` (the fallback when py-spy is not installed).
Usage: ``python bench/_bench_cprofile_server.py OUT.prof server --data-dir … [tidings args]``.

``python -m cProfile -o OUT -m tidings server …`` works too (SIGTERM stops the server gracefully
and the profile is written), but it times with the wall clock from the first import: its top
entry is the event loop's ``run()``, which mostly waits in epoll. Here the profiler's timer is
``time.thread_time`` (CPU time of the event-loop thread), it is enabled by SIGUSR1 and disabled
and written by SIGUSR2, which the bench sends around the measured phase. cProfile only sees the
thread that enabled it: the store thread's work (SQLite) is not in this profile; the bench's
per-thread CPU figures cover it.
"""

from __future__ import annotations

import cProfile
import signal
import sys
import time
from types import FrameType

from tidings.cli.main import main


def run() -> int:
    out = sys.argv[1]
    profiler = cProfile.Profile(time.thread_time)

    def start(signum: int, frame: FrameType | None) -> None:
        profiler.enable()

    def stop(signum: int, frame: FrameType | None) -> None:
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    return main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(run())
