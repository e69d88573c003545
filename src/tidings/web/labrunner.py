"""The web app's fault lab: start a scenario, follow it while it runs, give the verdict.

A run is ``python -m tidings lab run NAME --out DIR`` in its own process group (so the lab's
own clean-up — processes reaped, namespaces deleted, tmpfs unmounted — runs as it does from the
terminal, and a run that goes wrong cannot take the device down). While it runs,
:class:`LabService` follows its files (:class:`~tidings.lab.follow.RunFollower`) every
:data:`FOLLOW_INTERVAL` seconds into a :class:`~tidings.lab.live.LiveTally`, and keeps what a
page needs as a list of messages a page replays from its start (a page opened mid-run draws the
whole timeline): ``run``, ``phase`` (the lab's progress lines), ``tick`` (new timeline points
and the live counts), ``verdict`` (the checker's, read from the run directory after the process
ended). Runs go to ``HOME/lab-runs/<time>-<scenario>/``, as ``tidings lab run`` lays them out.

The lab's scenarios, checker and report (matplotlib) load at the first lab request, not with
the web app.

Limits: :data:`MAX_RUNS_AT_ONCE` run at a time; :data:`MAX_POINTS` timeline points are kept per
run (past them the counts still move; the page says the timeline was cut).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..lab.follow import RunFollower
from ..lab.live import LANES, LiveTally
from ..lab.record import RECORD_FILE

__all__ = [
    "FOLLOW_INTERVAL",
    "MAX_POINTS",
    "MAX_RUNS_AT_ONCE",
    "RUNS_DIR",
    "STOP_SECONDS",
    "LabError",
    "LabService",
]

#: Seconds between reads of a running run's files: the timeline moves four times a second.
FOLLOW_INTERVAL = 0.25
#: Runs at once: one. A run's relay and devices use the machine's cores, and two runs would
#: disturb each other's timing (and a kernel scenario's namespaces are the lab's own).
MAX_RUNS_AT_ONCE = 1
#: Timeline points kept per run: a full-length scenario makes ~20,000; past this the page's
#: timeline stops growing (the counts do not).
MAX_POINTS = 200_000
#: Seconds a stopped run (SIGINT: the lab unwinds and cleans up) gets before SIGKILL.
STOP_SECONDS = 30.0
#: The directory under the device's home that holds the runs started from the page.
RUNS_DIR = "lab-runs"
#: Violations listed in the verdict (the report has them all).
MAX_LISTED = 20
#: The report's name in a run directory (as :data:`tidings.lab.runner.REPORT_FILE`).
REPORT_FILE = "report.html"
#: Lines of the lab's output kept for a run that failed before it was checked.
LOG_TAIL = 12


class LabError(Exception):
    """A lab request that cannot be done (unknown scenario, one already running, …)."""


def scenario_list() -> list[dict[str, Any]]:
    """Every scenario, what it does, its variants' sizes, and whether it can run here."""
    from ..lab.runner import available
    from ..lab.scenarios import SCENARIOS

    out = []
    for name, s in SCENARIOS.items():
        reason = available(s)
        out.append(
            {
                "name": name,
                "description": s.description,
                "seed": s.seed,
                "kernel": s.kernel,
                "root": s.kernel or s.mounts,
                "available": reason is None,
                "reason": reason,
                "complaint": s.complaint,
                "invariant": s.invariant,
                "quick": {"messages": s.quick.messages, "users": len(s.quick.users)},
                "full": {"messages": s.full.messages, "users": len(s.full.users)},
            }
        )
    return out


@dataclass(eq=False)
class LabRun:
    """One run started from the page, and everything a page replays of it."""

    id: str
    scenario: str
    quick: bool
    seed: int
    out_dir: Path
    started: float = field(default_factory=time.time)
    state: str = "running"  #: running, stopping, finished
    messages: list[dict[str, Any]] = field(default_factory=list)
    points: int = 0
    cut: bool = False
    log: list[str] = field(default_factory=list)
    last_counts: dict[str, int] = field(default_factory=dict)
    proc: asyncio.subprocess.Process | None = None

    @property
    def run_dir(self) -> Path:
        return self.out_dir / self.scenario

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "scenario": self.scenario,
            "quick": self.quick,
            "seed": self.seed,
            "state": self.state,
            "started": self.started,
            "lanes": list(LANES),
        }


class LabService:
    """Starts runs under ``home/lab-runs``, follows them, and lets pages watch them."""

    def __init__(self, home: Path) -> None:
        self.root = home / RUNS_DIR
        self.runs: dict[str, LabRun] = {}
        self.current: LabRun | None = None
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # ---------------------------------------------------------------- requests

    def start(self, name: str, *, quick: bool = True, seed: int | None = None) -> LabRun:
        """Start scenario ``name``. Raises :class:`LabError` (and starts nothing) if it is
        unknown, cannot run here, or a run is going."""
        from ..lab.runner import available
        from ..lab.scenarios import SCENARIOS

        scenario = SCENARIOS.get(name)
        if scenario is None:
            raise LabError(f"no scenario {name!r}")
        reason = available(scenario)
        if reason is not None:
            raise LabError(f"{name} cannot run here: {reason}")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
            raise LabError("the seed is a whole number ≥ 0")
        going = [r for r in self.runs.values() if r.state != "finished"]
        if len(going) >= MAX_RUNS_AT_ONCE:
            raise LabError(f"{going[0].scenario} is running: stop it or wait for its verdict")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_id = f"{stamp}-{name}"
        n = 1
        while run_id in self.runs or (self.root / run_id).exists():
            n += 1
            run_id = f"{stamp}-{name}-{n}"
        seed = scenario.seed if seed is None else seed
        run = LabRun(run_id, name, quick, seed, self.root / run_id)
        run.out_dir.mkdir(parents=True, mode=0o700)
        self.runs[run_id] = run
        self.current = run
        self._post(run, {"type": "run", **run.summary()})
        task = asyncio.get_running_loop().create_task(self._drive(run), name=f"lab {run_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return run

    def stop(self) -> LabRun:
        """Interrupt the running run (as Ctrl-C does: the lab cleans up, then the verdict
        of what ran). Raises :class:`LabError` if none runs."""
        run = self.current
        if run is None or run.state != "running" or run.proc is None:
            raise LabError("no run is going")
        run.state = "stopping"
        self._post(run, {"type": "phase", "text": "stopping (the lab cleans up)"})
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.proc.pid, signal.SIGINT)
        return run

    async def close(self) -> None:
        """Stop a running run and wait for its clean-up (SIGKILL after
        :data:`STOP_SECONDS`)."""
        with contextlib.suppress(LabError):
            self.stop()
        for task in list(self._tasks):
            try:
                async with asyncio.timeout(STOP_SECONDS):
                    await asyncio.shield(task)
            except TimeoutError:
                run = self.current
                if run is not None and run.proc is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(run.proc.pid, signal.SIGKILL)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def report(self, run_id: str) -> Path | None:
        """The HTML report of a run started here, once written."""
        run = self.runs.get(run_id)
        if run is None:
            return None
        path = run.run_dir / REPORT_FILE
        return path if path.is_file() else None

    async def watch(self, heartbeat: float) -> AsyncIterator[dict[str, Any] | None]:
        """The messages of the current run from its start, then of each run started later;
        None when nothing happened for ``heartbeat`` seconds."""
        run: LabRun | None = None
        index = 0
        if self.current is None:
            yield {"type": "idle"}
        while True:
            changed = self._changed
            if self.current is not run:
                run, index = self.current, 0
            if run is not None and index < len(run.messages):
                batch, index = run.messages[index:], len(run.messages)
                for message in batch:
                    yield message
                continue
            try:
                async with asyncio.timeout(heartbeat):
                    await changed.wait()
            except TimeoutError:
                yield None

    # ---------------------------------------------------------------- the run

    def _post(self, run: LabRun, message: dict[str, Any]) -> None:
        run.messages.append(message)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _drive(self, run: LabRun) -> None:
        argv = [sys.executable, "-m", "tidings", "lab", "run", run.scenario]
        argv += ["--seed", str(run.seed), "--out", str(run.out_dir)]
        if run.quick:
            argv.append("--quick")
        log = (run.out_dir / "lab.log").open("ab")
        try:
            run.proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own group: SIGINT reaches the lab and only it
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            follower, tally = RunFollower(run.run_dir), LiveTally()
            reader = asyncio.ensure_future(self._read_output(run, run.proc, log))
            while not reader.done():
                self._follow(run, follower, tally)
                await asyncio.wait({reader}, timeout=FOLLOW_INTERVAL)
            await run.proc.wait()
            self._follow(run, follower, tally)
            verdict = await asyncio.to_thread(self._verdict, run, run.proc.returncode)
        except Exception as exc:  # could not start, or the checker broke: say so
            verdict = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            log.close()
        run.state = "finished"
        self._post(run, {"type": "verdict", **verdict, "state": run.state})

    async def _read_output(self, run: LabRun, proc: asyncio.subprocess.Process, log: Any) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            log.write(raw)
            text = raw.decode(errors="replace").rstrip()
            if not text:
                continue
            run.log = [*run.log[-(LOG_TAIL - 1) :], text]
            if text.startswith("["):  # a phase line: "[name   12.3s] phase  composed …"
                self._post(run, {"type": "phase", "text": text.split("]", 1)[-1].strip()})

    def _follow(self, run: LabRun, follower: RunFollower, tally: LiveTally) -> None:
        points: list[dict[str, Any]] = []
        for source, line in follower.poll():
            for point in tally.feed(source, line):
                if run.points < MAX_POINTS:
                    run.points += 1
                    points.append(point.json())
                else:
                    run.cut = True
        counts = tally.counts.json()
        if points or counts != run.last_counts:
            run.last_counts = counts
            tick: dict[str, Any] = {"type": "tick", "points": points, "counts": counts}
            if tally.settled is not None:
                tick["settled"] = tally.settled
            if run.cut:
                tick["cut"] = True
            self._post(run, tick)

    def _verdict(self, run: LabRun, returncode: int | None) -> dict[str, Any]:
        """The checker's verdict on the run directory (in a thread: it reads every store)."""
        from ..lab.checker import check

        if not (run.run_dir / RECORD_FILE).exists():
            return {
                "ok": False,
                "error": "the run stopped before it recorded anything",
                "log": run.log,
                "returncode": returncode,
            }
        result = check(run.run_dir)
        c = result.counts
        return {
            "ok": result.ok and returncode == 0,
            "returncode": returncode,
            "stopped": run.state == "stopping",
            "settled": result.settled,
            "violations": len(result.violations),
            "by_kind": result.by_kind(),
            "listed": [f"{v.kind}: {v.detail}" for v in result.violations[:MAX_LISTED]],
            "counts": {
                "composed": c.sent,
                "sent": c.acked,
                "targets": c.targets,
                "delivered": c.delivered,
                "read": c.read,
                "expired": c.expired,
                "refused": c.failed,
                "lost": c.lost,
                "duplicated": c.duplicated,
                "reordered": c.reordered,
            },
            "report": f"/lab/runs/{run.id}/report.html" if self.report(run.id) else None,
            "log": run.log if returncode not in (0, 1) else [],
        }
