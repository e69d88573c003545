"""Run fault-lab scenarios: set up, inject, settle, check, report — and always clean up.

:func:`run_scenario` runs one scenario (:mod:`.scenarios`) in a run directory and returns the
checker's result; it writes ``RUN/report.html``. :func:`run_all` runs several (every one that
can run here by default) into ``OUT/<name>`` and writes one ``OUT/report.html``.

Invariants:

* Every process is reaped (a :class:`ProcRegistry` per run), every namespace deleted
  (:class:`NetLab` as a context manager) and every tmpfs unmounted (:class:`~.mounts.Mounts`,
  after the processes) on the way out, whatever was raised — Ctrl-C and SIGTERM too
  (:func:`interrupts_unwind`, in the main thread); what a SIGKILL of the lab left behind is
  swept at the next run's start.
* A progress line per phase goes to stderr (``[scenario  12.3s] phase  composed/planned``);
  on a terminal a progress bar (composed and received against the plan) is redrawn between
  them every :data:`BAR_INTERVAL` seconds. stdout is left to the caller.
* A scenario whose run raised (a deadline passed, a process died) still gets checked and
  reported if its record exists: the exception is re-raised after the report is written.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from .checker import CheckResult, check
from .mounts import mounts_available, sweep_mounts
from .netns import NetLab, interrupts_unwind, kernel_faults_available, sweep_orphans
from .procs import ProcRegistry
from .record import RECORD_FILE
from .report import scenario_report, write_html
from .scenarios import SCENARIOS, LabRun, Scenario, device_count, get
from .services import services_available, sweep_services

__all__ = ["available", "run_all", "run_scenario"]

REPORT_FILE = "report.html"

#: Seconds between redraws of the progress bar (on a terminal only; logs get phase lines).
BAR_INTERVAL = 0.5


def available(scenario: Scenario) -> str | None:
    """None if ``scenario`` can run here, else why not."""
    if scenario.mounts and (reason := mounts_available()) is not None:
        return reason
    if scenario.services and (reason := services_available()) is not None:
        return reason
    return kernel_faults_available() if scenario.kernel else None


@contextlib.contextmanager
def _unwinding() -> Iterator[None]:
    if threading.current_thread() is threading.main_thread():
        with interrupts_unwind():
            yield
    else:
        yield


def run_scenario(
    name: str,
    run_dir: Path,
    *,
    quick: bool,
    seed: int | None = None,
    stream: TextIO | None = None,
    report: bool = True,
) -> CheckResult:
    """Run scenario ``name`` in ``run_dir`` and check it; write ``run_dir/report.html``.

    ``run_dir`` may be relative (to the working directory): it is made absolute once, here.

    Raises:
        FileExistsError: ``run_dir`` already holds a run (it is left as it is).
        KeyError: no such scenario.
        tidings.lab.netns.LabSetupError: a kernel scenario where namespaces cannot be made.
        tidings.lab.procs.LabProcError: a process missed a deadline (after the report).
    """
    run_dir = run_dir.resolve()  # device processes, namespaces and the checker agree on it
    _refuse_used([run_dir])
    scenario = get(name)
    reason = available(scenario)
    if reason is not None:
        raise RuntimeError(f"{name} cannot run here: {reason}")
    out = stream if stream is not None else sys.stderr
    seed = scenario.seed if seed is None else seed
    started = time.monotonic()
    holder: list[LabRun] = []

    tty = out.isatty()

    def progress(text: str) -> None:
        counts = ""
        if holder and holder[0].devices:
            composed, received = holder[0].totals()
            counts = f"  composed {composed}/{holder[0].planned}, received {received}"
        clear = "\r\x1b[K" if tty else ""
        print(f"{clear}[{name:<16} {time.monotonic() - started:6.1f}s] {text}{counts}", file=out)
        out.flush()

    def bar() -> str | None:
        if not holder or not holder[0].devices:
            return None
        run = holder[0]
        composed, received = run.totals()
        want = run.planned + sum(run.expected.values())
        done = min(composed + received, want)
        width = 30
        filled = width * done // max(1, want)
        return (
            f"\r\x1b[K  [{'#' * filled}{'-' * (width - filled)}] {100 * done // max(1, want):3d}%"
            f"  composed {composed}/{run.planned}  received {received}/{sum(run.expected.values())}"
            f"  {time.monotonic() - started:5.1f}s"
        )

    failure: BaseException | None = None
    ticker = _Ticker(out, bar) if tty else None
    with _unwinding(), ticker or contextlib.nullcontext():
        if scenario.kernel:
            sweep_orphans()
        sweep_services()  # a run killed with SIGKILL left its PostgreSQL directory
        if mounts_available() is None:
            sweep_mounts()  # a run killed with SIGKILL left its tmpfs mounted
        netlab = NetLab(device_count(scenario, quick)) if scenario.kernel else None
        try:
            with ProcRegistry() as registry, netlab or contextlib.nullcontext():
                run = LabRun(
                    scenario,
                    run_dir,
                    quick=quick,
                    seed=seed,
                    registry=registry,
                    netlab=netlab,
                    progress=progress,
                )
                holder.append(run)
                run.setup()
                scenario.script(run)
                run.finish()
        except Exception as exc:  # report what happened, then re-raise
            failure = exc
            progress(f"FAILED: {type(exc).__name__}")
        finally:
            if holder:
                holder[0].mounts.close()  # its processes are reaped: nothing holds a file
                for cleanup in holder[0].cleanups:
                    cleanup()
                with contextlib.suppress(OSError):
                    holder[0].join_server_logs()
                holder[0].close_proxy()
    if failure is not None and not (holder and (run_dir / RECORD_FILE).exists()):
        raise failure  # nothing of this run to check
    progress("checking")
    result = check(run_dir)
    if report:
        write_html(run_dir / REPORT_FILE, [scenario_report(result)])
    verdict = "PASS" if result.ok and failure is None else "FAIL"
    progress(f"{verdict}: {len(result.violations)} violations")
    if failure is not None:
        raise failure
    return result


def _refuse_used(run_dirs: list[Path]) -> None:
    """Raise FileExistsError if one of ``run_dirs`` holds a run: never mix two runs' files."""
    used = [d for d in run_dirs if (d / RECORD_FILE).exists()]
    if used:
        raise FileExistsError(f"{used[0]} already holds a run: give another --out")


class _Ticker:
    """Redraws a progress bar on a terminal every :data:`BAR_INTERVAL` seconds (a thread)."""

    def __init__(self, out: TextIO, draw: Callable[[], str | None]) -> None:
        self._out = out
        self._draw = draw
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lab-progress", daemon=True)

    def __enter__(self) -> _Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(1.0)
        self._out.write("\r\x1b[K")
        self._out.flush()

    def _loop(self) -> None:
        while not self._stop.wait(BAR_INTERVAL):
            try:
                line = self._draw()
            except Exception:  # a process line being parsed: skip this frame
                continue
            if line is not None:
                self._out.write(line)
                self._out.flush()


def run_all(
    out_dir: Path,
    *,
    quick: bool,
    seed: int | None = None,
    names: list[str] | None = None,
    stream: TextIO | None = None,
) -> list[tuple[str, CheckResult]]:
    """Run ``names`` (default: every scenario that can run here) into ``out_dir/<name>``;
    write ``out_dir/report.html`` with all of them. A scenario that raised is reported on
    stderr and left out of the results.

    Raises:
        FileExistsError: a scenario's directory already holds a run; nothing was run and
            nothing in ``out_dir`` was changed (its report neither).
    """
    err = stream if stream is not None else sys.stderr
    out_dir = out_dir.resolve()
    chosen = names or [n for n, s in SCENARIOS.items() if available(s) is None]
    _refuse_used([out_dir / name for name in chosen])
    results: list[tuple[str, CheckResult]] = []
    for name in chosen:
        try:
            result = run_scenario(name, out_dir / name, quick=quick, seed=seed, stream=stream)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            print(f"{name}: ERROR {type(exc).__name__}: {exc}", file=err)
            continue
        results.append((name, result))
    write_html(out_dir / REPORT_FILE, [scenario_report(r) for _, r in results])
    return results
