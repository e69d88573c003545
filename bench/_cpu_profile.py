"""Run a bench script under cProfile counting CPU time (``time.process_time``), not wall time.

Usage: ``python bench/_cpu_profile.py OUT.prof SCRIPT [ARGS...]``. ``python -m cProfile`` times
with the wall clock, so an fsync or an idle wait for the relay looks as costly as work; the
benchmark's target is CPU per message, and this profile adds up to it.
"""

from __future__ import annotations

import cProfile
import runpy
import sys
import time


def main(argv: list[str]) -> int:
    out, script, *rest = argv
    sys.argv = [script, *rest]
    sys.path.insert(0, script.rsplit("/", 1)[0] if "/" in script else ".")
    profiler = cProfile.Profile(time.process_time)
    code = 0
    try:
        profiler.runcall(runpy.run_path, script, run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    finally:
        profiler.dump_stats(out)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
