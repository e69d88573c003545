"""Small file systems the lab can fill up: a tmpfs mounted over a run's directory, and ballast.

``disk-full`` (:mod:`.scenarios_disk`) puts the relay's data directory and a device's home each
on a tmpfs of its own (:meth:`Mounts.mount_over`: the directory's files are copied onto it), then
fills it with a ballast file (:func:`fill`) so that the next write that needs a new block fails
with ENOSPC (SQLite's SQLITE_FULL), and frees it later (:func:`free`).

Invariants:

* The lab only mounts tmpfs file systems whose source name is ``tdlab<pid>_<seq>`` (as the
  namespaces of :mod:`.netns`), so :func:`sweep_mounts` can tell an orphan (its pid is dead)
  from a mount of a live run, and never touches a mount that is not the lab's.
* :meth:`Mounts.close` (and :func:`sweep_mounts` for a run killed with SIGKILL) copies what the
  tmpfs holds back into the directory it covered, then unmounts it: the run directory keeps the
  final stores for the checker, and nothing stays mounted. Close is idempotent; it runs on the
  way out of every run, after its processes were reaped (an exception or Ctrl-C too).
* Every command runs with a list argv, no shell, a timeout; a failure raises
  :class:`~tidings.lab.netns.LabSetupError`.
* :func:`fill` is bounded (at most :data:`MAX_BALLAST` bytes) and leaves the file system with no
  free block for an unprivileged writer.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import itertools
import os
import re
import shutil
import subprocess
import weakref
from pathlib import Path

from .netns import LabSetupError

__all__ = [
    "BALLAST",
    "MAX_BALLAST",
    "Mounts",
    "fill",
    "free",
    "lab_mounts",
    "mounts_available",
    "sweep_mounts",
]

#: The ballast file's name inside a filled directory.
BALLAST = "tdlab-ballast"
#: The most ballast :func:`fill` writes: far more than any lab tmpfs (a few MiB), so a wrong
#: path (a real disk) cannot be filled by mistake before the loop ends.
MAX_BALLAST = 256 * 1024 * 1024
#: Seconds one mount/umount may take; they take milliseconds.
COMMAND_TIMEOUT = 10.0

_PREFIX = "tdlab"
_SOURCE_RE = re.compile(rf"^{_PREFIX}(\d+)_\d+$")
_sequence = itertools.count(1)
_live: weakref.WeakSet[Mounts] = weakref.WeakSet()


def mounts_available() -> str | None:
    """``None`` if the lab can mount a tmpfs here, else a short reason."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    for tool in ("mount", "umount"):
        if shutil.which(tool) is None:
            return f"the `{tool}` command is not installed"
    return None


def _run(argv: list[str]) -> None:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabSetupError(argv, str(exc)) from exc
    if done.returncode != 0:
        raise LabSetupError(argv, done.stderr or f"exit status {done.returncode}")


def lab_mounts() -> list[tuple[str, Path]]:
    """Every mounted lab tmpfs: ``(source, mount point)``, from ``/proc/self/mounts``."""
    try:
        text = Path("/proc/self/mounts").read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "tmpfs" and _SOURCE_RE.match(parts[0]):
            # /proc/mounts escapes spaces and the like as octal (\040)
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[1])
            out.append((parts[0], Path(point)))
    return out


def _unmount(point: Path) -> None:
    """Copy the tmpfs's files out, unmount it, and put the files where it was mounted."""
    staged = point.with_name(f".{point.name}.tdlab-out")
    if staged.exists():
        shutil.rmtree(staged)
    shutil.copytree(point, staged, symlinks=True, ignore=shutil.ignore_patterns(BALLAST))
    try:
        _run(["umount", str(point)])
    except LabSetupError:
        _run(["umount", "-l", str(point)])  # still busy: detach it now, freed once unused
    shutil.rmtree(point)
    staged.rename(point)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_mounts() -> list[Path]:
    """Unmount the lab tmpfs mounts of runs that died (their pid is not alive), keeping their
    files (see the invariants). Returns the mount points swept."""
    swept = []
    for source, point in lab_mounts():
        match = _SOURCE_RE.match(source)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError, LabSetupError):
            _unmount(point)
            swept.append(point)
    return swept


class Mounts:
    """The tmpfs mounts of one run (see the module invariants); a context manager."""

    def __init__(self) -> None:
        self.points: list[Path] = []
        _live.add(self)

    def mount_over(self, path: Path, size: int) -> Path:
        """Mount a tmpfs of ``size`` bytes over the directory ``path`` (created if missing),
        holding a copy of what ``path`` held (modes kept). Returns ``path``.

        Raises:
            LabSetupError: the mount failed (the directory is left as it was).
        """
        path.mkdir(parents=True, exist_ok=True)
        saved = path.with_name(f".{path.name}.tdlab-in")
        if saved.exists():
            shutil.rmtree(saved)
        shutil.copytree(path, saved, symlinks=True)
        source = f"{_PREFIX}{os.getpid()}_{next(_sequence)}"
        mode = f"{path.stat().st_mode & 0o7777:o}"
        try:
            _run(["mount", "-t", "tmpfs", "-o", f"size={size},mode={mode}", source, str(path)])
        except LabSetupError:
            shutil.rmtree(saved)
            raise
        self.points.append(path)
        shutil.copytree(saved, path, symlinks=True, dirs_exist_ok=True)
        shutil.rmtree(saved)
        return path

    def close(self) -> None:
        """Unmount every tmpfs of this run, its files copied back (idempotent)."""
        while self.points:
            point = self.points.pop()
            with contextlib.suppress(OSError, LabSetupError):
                _unmount(point)

    def __enter__(self) -> Mounts:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@atexit.register
def _close_live() -> None:
    for mounts in list(_live):
        mounts.close()


def fill(directory: Path) -> int:
    """Fill the file system of ``directory`` with the ballast file; return its size in bytes."""
    path = directory / BALLAST
    chunk = b"\0" * 65536
    written = 0
    with path.open("wb", buffering=0) as f:
        while written < MAX_BALLAST:
            try:
                n = f.write(chunk if len(chunk) <= MAX_BALLAST - written else chunk[:4096])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 4096:
                    break
                chunk = chunk[:4096]  # the last few blocks, one at a time
                continue
            written += n or 0
    return written


def free(directory: Path) -> None:
    """Remove the ballast file of ``directory`` (the space returns at once)."""
    with contextlib.suppress(FileNotFoundError):
        (directory / BALLAST).unlink()
