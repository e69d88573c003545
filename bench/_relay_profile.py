"""Profiling the server during the measured phase: py-spy, cProfile, perf; parsing their output.

The profilers are attached (py-spy, perf) or enabled (cProfile, by signal: see
``bench/_bench_cprofile_server.py``) by the orchestrator around the measured phase only.
"""

from __future__ import annotations

import asyncio
import contextlib
import pstats
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from _relay_procs import Processes

PROFILER_START_TIMEOUT = 10.0
PROFILER_STOP_TIMEOUT = 60.0


async def start_pyspy(
    procs: Processes, pid: int, out: Path, rate: int, native: bool, root: Path, log: list[str]
) -> asyncio.subprocess.Process | None:
    """Attach ``py-spy record`` to the server; None if it could not start."""
    exe = shutil.which("py-spy")
    if exe is None:
        log.append("py-spy not found: no profile")
        return None
    argv = [exe, "record", "--pid", str(pid), "--format", "raw", "--threads"]
    # --native unwinds C/Cython frames (uvloop, picows, sqlite3, cryptography) but must pause
    # the process for each sample; without it py-spy reads the stacks without stopping it.
    argv += ["--native"] if native else ["--nonblocking"]
    argv += ["--rate", str(rate), "--output", str(out)]
    proc = await procs.start("py-spy", argv, root / "py-spy.stderr")
    # py-spy says "Sampling process …" once it is attached; wait for it so the phase is covered.
    deadline = time.monotonic() + PROFILER_START_TIMEOUT
    err = root / "py-spy.stderr"
    while time.monotonic() < deadline:
        text = err.read_text(errors="replace") if err.exists() else ""
        assert proc.stdout is not None
        if "Sampling process" in text or proc.returncode is not None:
            break
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.05):
                line = await proc.stdout.readline()
            if b"Sampling process" in line:
                break
    if proc.returncode is not None:
        log.append(f"py-spy failed: {(root / 'py-spy.stderr').read_text()[-500:]}")
        return None
    return proc


async def start_perf(
    procs: Processes, pid: int, out: Path, root: Path, log: list[str]
) -> asyncio.subprocess.Process | None:
    """Attach ``perf record`` (CPU-clock sampling, every thread) to the server."""
    exe = shutil.which("perf")
    if exe is None:
        log.append("perf not found: no CPU breakdown")
        return None
    argv = [exe, "record", "-e", "cpu-clock", "-F", "997", "-p", str(pid), "-o", str(out)]
    proc = await procs.start("perf", argv, root / "perf.stderr")
    await asyncio.sleep(0.5)  # perf prints nothing when it is attached; give it a moment
    if proc.returncode is not None:
        log.append(f"perf failed: {(root / 'perf.stderr').read_text()[-500:]}")
        return None
    return proc


def perf_summary(data: Path, top: int) -> dict[str, Any] | None:
    """Share of the server's CPU samples per shared object and per symbol (``perf report``)."""
    exe = shutil.which("perf")
    if exe is None or not data.exists():
        return None
    out: dict[str, Any] = {"tool": "perf record -e cpu-clock"}
    sorts = (("by_object", "dso"), ("by_symbol", "dso,sym"), ("by_thread", "pid,dso"))
    for key, sort in sorts:
        try:
            text = subprocess.run(
                [exe, "report", "-i", str(data), "--stdio", "--no-children", "--sort", sort],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            ).stdout
        except subprocess.TimeoutExpired:
            continue
        rows = []
        for line in text.splitlines():
            m = re.match(r"\s*([\d.]+)%\s+(.*\S)", line)
            if m and not line.lstrip().startswith("#"):
                rows.append({"pct": float(m.group(1)), "what": re.sub(r"\s+", " ", m.group(2))})
        out[key] = rows[:top]
    return out


def parse_pyspy_raw(path: Path, top: int) -> dict[str, Any]:
    """Self and inclusive sample counts per function from py-spy's ``--format raw`` output."""
    self_counts: dict[str, int] = {}
    incl_counts: dict[str, int] = {}
    file_counts: dict[str, int] = {}
    thread_counts: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = "?"
        if frames and frames[0].startswith(("thread (", "process ")):
            thread = frames.pop(0)
        funcs = [_pyspy_function(f) for f in frames]
        if not funcs:
            continue
        total += count
        thread_counts[thread] = thread_counts.get(thread, 0) + count
        self_counts[funcs[-1]] = self_counts.get(funcs[-1], 0) + count
        where = funcs[-1].rpartition(" (")[2].rstrip(")") or funcs[-1]
        file_counts[where] = file_counts.get(where, 0) + count
        for f in set(funcs):
            incl_counts[f] = incl_counts.get(f, 0) + count

    def ranked(counts: dict[str, int]) -> list[dict[str, Any]]:
        best = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        return [
            {"function": f, "samples": n, "pct": round(100 * n / max(total, 1), 2)} for f, n in best
        ]

    return {
        "samples": total,
        "threads": thread_counts,
        "top_self": ranked(self_counts),
        "top_inclusive": ranked(incl_counts),
        "top_files_self": ranked(file_counts),
    }


def _pyspy_function(frame: str) -> str:
    """``name (path/file.py:123)`` → ``name (path/file.py)``: one entry per function."""
    m = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if m is None:
        return frame
    return f"{m.group(1)} ({_short_path(m.group(2))})"


def _short_path(path: str) -> str:
    for marker in ("site-packages/", "/src/", "lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "lib/python3.":
                path = path.split("/", 1)[-1]
            break
    return path


def parse_cprofile(path: Path, top: int) -> dict[str, Any]:
    """Top functions by self time (``tottime``) of a cProfile dump (main thread only)."""
    stats = pstats.Stats(str(path))
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, object]]
    raw = stats.stats  # type: ignore[attr-defined]
    # (function, calls, self seconds, inclusive seconds)
    rows = [
        (f"{func} ({_short_path(file)}:{line})", int(v[1]), float(v[2]), float(v[3]))
        for (file, line, func), v in raw.items()
    ]
    total = sum(r[2] for r in rows) or 1.0

    def ranked(inclusive: bool) -> list[dict[str, Any]]:
        best = sorted(rows, key=lambda r: -(r[3] if inclusive else r[2]))[:top]
        return [
            {
                "function": name,
                "seconds": round(incl if inclusive else own, 4),
                "calls": calls,
                "pct": round(100 * (incl if inclusive else own) / total, 2),
            }
            for name, calls, own, incl in best
        ]

    return {
        "total_seconds": round(total, 3),
        "top_self": ranked(False),
        "top_inclusive": ranked(True),
    }


def collect_profile(tool: str, prof_out: Path, out: Path, top: int) -> dict[str, Any] | None:
    """The profile's summary for the report, its file copied next to the JSON report ``out``;
    None when no profiler was asked for (``tool`` is "")."""
    if not tool:
        return None
    if not prof_out.exists():
        return {"tool": tool, "error": "no profile was written"}
    profile: dict[str, Any]
    if tool == "py-spy":
        profile = {"tool": "py-spy", **parse_pyspy_raw(prof_out, top)}
    else:
        profile = {"tool": "cProfile", **parse_cprofile(prof_out, top)}
    kind = "-pyspy.txt" if tool == "py-spy" else "-cprofile.prof"
    saved = out.with_name(out.stem + kind)
    saved.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(prof_out, saved)
    profile["file"] = str(saved)
    return profile
