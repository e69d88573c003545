"""Running the lab's ``ip``/``nft`` commands, and sweeping what dead runs left behind.

Every lab namespace (and its ``/etc/netns/<ns>`` directory, where ``ip netns exec`` finds the
``resolv.conf`` it bind-mounts over ``/etc/resolv.conf``) is named ``tdl<pid>_<seq>…`` after
the process that created it, so :func:`sweep_orphans` can tell an orphan (its pid is dead: the
lab was killed with SIGKILL) from a live run's, and concurrent runs never collide.

Invariants:
    * Every command runs through :func:`subprocess.run` with a list argv, no shell, a timeout;
      a failure raises :class:`LabSetupError` carrying the command and its stderr.
    * Only names with the lab's prefix are ever deleted; the root namespace is never changed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType

from tidings.errors import TidingsError

__all__ = [
    "COMMAND_TIMEOUT",
    "NETNS_ETC",
    "PREFIX",
    "LabSetupError",
    "argv_in",
    "delete_namespace",
    "interrupts_unwind",
    "kernel_faults_available",
    "list_namespaces",
    "remove_etc",
    "run",
    "sweep_orphans",
]

COMMAND_TIMEOUT = 10.0
"""Seconds one ``ip``/``nft`` command may take; they normally take milliseconds."""

PREFIX = "tdl"
"""The first letters of every lab namespace name (``tdl<pid>_<seq>s``, ``…c<n>``)."""

NETNS_ETC = Path("/etc/netns")
"""Where ``ip netns exec NS`` finds files it bind-mounts over ``/etc`` (``NS/resolv.conf``)."""

_NAME_RE = re.compile(rf"^{PREFIX}(\d+)_\d+[sc]\d*$")


class LabSetupError(TidingsError):
    """An ``ip`` or ``nft`` command of the lab failed.

    Attributes:
        argv: the command that failed.
        stderr: what it wrote to stderr (or why it did not finish).
    """

    def __init__(self, argv: Sequence[str], stderr: str) -> None:
        super().__init__(f"lab command failed: {' '.join(argv)}: {stderr.strip()}")
        self.argv = list(argv)
        self.stderr = stderr


def kernel_faults_available() -> str | None:
    """Tell whether :class:`~tidings.lab.netns.NetLab` can run here.

    Returns:
        ``None`` if it can, else a short human reason (not root, ``ip`` or ``nft`` missing).
    """
    if os.geteuid() != 0:
        return "kernel faults need root (network namespaces and nftables)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if shutil.which("nft") is None:
        return "the `nft` command (nftables) is not installed"
    return None


def argv_in(ns: str, argv: Sequence[str]) -> list[str]:
    """Return the argv that runs ``argv`` inside the network namespace ``ns``."""
    return ["ip", "netns", "exec", ns, *argv]


def run(argv: Sequence[str], stdin: str | None = None) -> str:
    """Run one command; return its stdout or raise :class:`LabSetupError`."""
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabSetupError(argv, f"timed out after {COMMAND_TIMEOUT} s") from exc
    except OSError as exc:
        raise LabSetupError(argv, str(exc)) from exc
    if done.returncode != 0:
        raise LabSetupError(argv, done.stderr or f"exit status {done.returncode}")
    return done.stdout


def list_namespaces() -> list[str]:
    """Names of every named network namespace (``ip netns list`` prints ``name (id: N)``)."""
    return [line.split()[0] for line in run(["ip", "netns", "list"]).splitlines() if line.strip()]


def delete_namespace(ns: str) -> None:
    """Kill what still runs inside ``ns`` (it would keep the namespace alive), then delete it
    and its ``/etc/netns/<ns>`` directory, if any."""
    with contextlib.suppress(LabSetupError):
        for pid in run(["ip", "netns", "pids", ns]).split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
    run(["ip", "netns", "delete", ns])
    remove_etc(ns)


def remove_etc(ns: str) -> None:
    """Remove ``/etc/netns/<ns>`` (a lab name only), and ``/etc/netns`` if that left it empty."""
    if _NAME_RE.match(ns) is None:
        raise ValueError(f"not a lab namespace: {ns!r}")
    shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)
    with contextlib.suppress(OSError):
        NETNS_ETC.rmdir()  # only if empty: other programs' directories stay


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs. A zombie (killed, not yet reaped by its parent) is dead: a lab
    killed with SIGKILL is one until its shell reaps it, and its namespaces are orphans."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc here: signal 0 is all there is to know
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _orphan(name: str) -> bool:
    match = _NAME_RE.match(name)
    return match is not None and not _pid_alive(int(match.group(1)))


def sweep_orphans() -> list[str]:
    """Delete the lab namespaces and ``/etc/netns`` directories left by runs that died.

    A name is an orphan's when it has the lab's prefix and the pid encoded in it is no longer
    alive (e.g. the lab was killed with SIGKILL). Those of live processes (this one included)
    are left alone. Deleting a namespace kills what still ran in it.

    Returns:
        The names of the namespaces deleted.
    """
    swept = []
    for ns in list_namespaces():
        if _orphan(ns):
            delete_namespace(ns)
            swept.append(ns)
    with contextlib.suppress(OSError):
        for entry in list(NETNS_ETC.iterdir()):
            if _orphan(entry.name):
                remove_etc(entry.name)
    return swept


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def interrupts_unwind() -> Iterator[None]:
    """Make SIGINT and SIGTERM raise :class:`KeyboardInterrupt` inside the block.

    Use it around ``with NetLab() as lab:`` in the main thread so that Ctrl-C or a ``kill``
    unwinds the ``with`` and :meth:`NetLab.close` leaves no namespace behind. The previous
    handlers are restored on exit. Call it from the main thread (a rule of :mod:`signal`).
    """
    previous = {
        sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
