"""A lab process: a child whose stdout is JSON lines, its faults, its waits and its reaping.

:class:`Proc` is the base of the lab's processes (:class:`~tidings.lab.procs.ServerProc` runs
``tidings server``, :class:`~tidings.lab.procs.DeviceProc` runs :mod:`tidings.lab.device`,
:class:`~tidings.lab.dns_server.ResolverProc` the lab's resolver), each a separate OS process
(optionally inside a network namespace through ``argv_prefix``, e.g. ``["ip", "netns", "exec",
"ns1"]``). The controller breaks them with :meth:`Proc.kill9`, :meth:`Proc.stop` /
:meth:`Proc.cont` (SIGSTOP/SIGCONT), :meth:`Proc.terminate` and :meth:`Proc.restart`.

Invariants:

- Nothing sleeps. A thread per process reads its stdout (JSON lines) as they come; every wait is
  a condition-variable wait on those lines with a deadline, and fails with :class:`LabProcError`
  (holding the process's last lines and stderr tail) when the deadline passes or the process
  exits first. Reading in a thread also means a child never blocks on a full stdout pipe while
  the controller is busy elsewhere.
- Every process belongs to a :class:`ProcRegistry` (the module's default one unless given):
  :meth:`ProcRegistry.reap_all` — called on leaving its ``with`` block, whatever was raised, and
  at interpreter exit for the default registry — SIGKILLs and waits for every process still
  alive, stopped ones included. Each child leads its own process group and signals go to the
  whole group, so a wrapper (``ip netns exec``) leaves nothing behind either.
- A child's environment holds no ``TIDINGS_*`` variable unless given explicitly: children are
  configured by flags (the relay refuses unknown ``TIDINGS_*`` variables).
- stdout and stderr of every start are kept in ``log_dir`` as ``NAME-K.stdout``/``NAME-K.stderr``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from ..errors import TidingsError

__all__ = [
    "DEFAULT_REGISTRY",
    "WAIT",
    "LabProcError",
    "Proc",
    "ProcRegistry",
    "child_env",
    "reap_all",
    "wait_until",
]

#: Default deadline of one wait (seconds): generous; a healthy process needs a fraction of it.
WAIT = 30.0

#: Notified whenever any process printed a line or closed its stdout.
_CHANGED = threading.Condition()


class LabProcError(TidingsError):
    """A lab process did not do what was awaited before its deadline (or exited first)."""


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without ``TIDINGS_*`` variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env.update(extra or {})
    return env


def wait_until(cond: Callable[[], bool], timeout: float, what: str, *procs: Proc) -> None:
    """Wait until ``cond()`` holds, re-checking whenever a process prints a line.

    Raises:
        LabProcError: after ``timeout`` seconds, or once every one of ``procs`` (if given) has
            closed its stdout without ``cond()`` holding.
    """
    deadline = time.monotonic() + timeout
    with _CHANGED:
        while not cond():
            remaining = deadline - time.monotonic()
            ended = bool(procs) and all(p.eof for p in procs)
            if remaining <= 0 or ended:
                why = "timed out" if remaining <= 0 else "the process ended"
                details = "\n".join(p.describe() for p in procs)
                raise LabProcError(f"{why} waiting for {what}\n{details}")
            _CHANGED.wait(remaining)


class ProcRegistry:
    """The processes of a lab run; use as a context manager to reap them on the way out."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []
        self._lock = threading.Lock()

    def add(self, proc: Proc) -> None:
        with self._lock:
            if proc not in self.procs:
                self.procs.append(proc)

    def reap_all(self) -> None:
        """SIGKILL every process still alive (stopped ones too) and wait for it."""
        with self._lock:
            procs = list(self.procs)
        for proc in procs:
            proc.reap()

    def __enter__(self) -> ProcRegistry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.reap_all()


#: The registry of processes started without one; reaped at interpreter exit.
DEFAULT_REGISTRY = ProcRegistry()
atexit.register(DEFAULT_REGISTRY.reap_all)


def reap_all() -> None:
    """Reap every process of the default registry (see :meth:`ProcRegistry.reap_all`)."""
    DEFAULT_REGISTRY.reap_all()


class Proc:
    """A child process whose stdout is JSON lines (each one in :attr:`lines`, in order).

    Args:
        name: a short name, used for log files and messages.
        log_dir: where the stdout/stderr copies go.
        argv_prefix: prepended to the command (e.g. ``["ip", "netns", "exec", "ns1"]``).
        env: extra environment variables of the child.
        registry: the registry that reaps it (default: the module's).
    """

    def __init__(
        self,
        name: str,
        log_dir: Path,
        *,
        argv_prefix: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        registry: ProcRegistry | None = None,
    ) -> None:
        self.name = name
        self.log_dir = log_dir
        self.argv_prefix = list(argv_prefix)
        self.env = dict(env or {})
        self.lines: list[dict[str, Any]] = []
        self.eof = True
        self.starts = 0
        self.popen: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self.stderr_path = log_dir / f"{name}.stderr"
        (registry or DEFAULT_REGISTRY).add(self)

    def argv(self) -> list[str]:
        """The command line, without the prefix (subclasses define it)."""
        raise NotImplementedError

    # ------------------------------------------------------------ life cycle

    def spawn(self) -> None:
        """Start the process (a new process group); its lines start over in :attr:`lines`."""
        if self.alive:
            raise LabProcError(f"{self.name} is already running (pid {self.pid})")
        self._close_stdin()  # the previous run's pipe
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        stem = self.log_dir / f"{self.name}-{self.starts}"  # not with_suffix: "bob.1-1"
        self.stderr_path = stem.with_name(f"{stem.name}.stderr")
        with _CHANGED:
            self.lines = []
            self.eof = False
        with self.stderr_path.open("wb") as err:
            self.popen = subprocess.Popen(
                [*self.argv_prefix, *self.argv()],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=child_env(self.env),
                start_new_session=True,
            )
        assert self.popen.stdout is not None
        copy = stem.with_name(f"{stem.name}.stdout").open("ab")
        self._reader = threading.Thread(
            target=self._read, args=(self.popen.stdout, copy), daemon=True, name=self.name
        )
        self._reader.start()

    def _read(self, out: IO[bytes], copy: IO[bytes]) -> None:
        with out, copy:
            for raw in out:
                copy.write(raw)
                copy.flush()
                try:
                    obj = json.loads(raw)
                except ValueError:
                    obj = {"raw": raw.decode(errors="replace").rstrip("\n")}
                with _CHANGED:
                    self.lines.append(obj if isinstance(obj, dict) else {"raw": obj})
                    _CHANGED.notify_all()
        with _CHANGED:
            self.eof = True
            _CHANGED.notify_all()

    @property
    def pid(self) -> int:
        assert self.popen is not None, "not started"
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the process's group (nothing if it already exited)."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)

    def kill9(self, timeout: float = WAIT) -> int:
        """``kill -9`` the process (at whatever it was doing); wait for it; return its code."""
        self.signal(signal.SIGKILL)
        return self.wait_exit(timeout)

    def stop(self) -> None:
        """Freeze the process (SIGSTOP): its connections go silent, nothing is closed."""
        self.signal(signal.SIGSTOP)

    def cont(self) -> None:
        """Resume a frozen process (SIGCONT)."""
        self.signal(signal.SIGCONT)

    def terminate(self, timeout: float = WAIT) -> int:
        """Graceful stop (SIGCONT, then SIGTERM); wait for the exit and return its code."""
        self.cont()
        self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def restart(self, timeout: float = WAIT) -> None:
        """``kill -9`` the process if it still runs, then start it again."""
        if self.alive:
            self.kill9(timeout)
        self.start(timeout)

    def start(self, timeout: float = WAIT) -> None:
        """Start the process and wait until it is ready (subclasses define "ready")."""
        self.spawn()

    def wait_exit(self, timeout: float = WAIT) -> int:
        """Wait until the process exited and its stdout was read to the end; its exit code."""
        assert self.popen is not None, "not started"
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise LabProcError(f"{self.name} did not exit\n{self.describe()}") from exc
        wait_until(lambda: self.eof, timeout, f"{self.name}'s stdout to close")
        self._close_stdin()
        return code

    def _close_stdin(self) -> None:
        if self.popen is not None and self.popen.stdin is not None:
            with contextlib.suppress(OSError):
                self.popen.stdin.close()

    def reap(self) -> None:
        """SIGKILL the process if it is alive (stopped or not) and wait for it."""
        if self.popen is None:
            return
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(WAIT)
        self._close_stdin()
        if self._reader is not None:
            self._reader.join(WAIT)

    # ------------------------------------------------------------ lines

    def write(self, obj: Mapping[str, Any]) -> None:
        """Write one JSON line on the process's stdin."""
        assert self.popen is not None and self.popen.stdin is not None, "not started"
        self.popen.stdin.write(json.dumps(obj).encode() + b"\n")
        self.popen.stdin.flush()

    def find(self, key: str, since: int = 0) -> dict[str, Any] | None:
        """The first line from index ``since`` that has ``key``, or None."""
        with _CHANGED:
            return next((line for line in self.lines[since:] if key in line), None)

    def last(self, key: str) -> dict[str, Any] | None:
        """The last line that has ``key``, or None."""
        with _CHANGED:
            return next((line for line in reversed(self.lines) if key in line), None)

    def wait_line(self, key: str, timeout: float = WAIT, since: int = 0) -> dict[str, Any]:
        """Wait for a line with ``key`` (from index ``since``) and return it."""
        wait_until(lambda: self.find(key, since) is not None, timeout, f"{key!r}", self)
        line = self.find(key, since)
        assert line is not None
        return line

    def describe(self) -> str:
        """The last lines and the stderr tail, for a failure message."""
        try:
            err = self.stderr_path.read_text(errors="replace")[-3000:]
        except OSError:
            err = ""
        code = self.popen.poll() if self.popen is not None else None
        pid = self.popen.pid if self.popen is not None else None
        return f"--- {self.name} pid={pid} rc={code} last={self.lines[-5:]}\n{err}"
