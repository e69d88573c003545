"""Owner-only directories and files, whatever the umask: the relay's data directory
(:mod:`tidings.server.datadir`) and a device's home (:mod:`tidings.client.home`).

Invariants:

- Every mode is set with ``chmod`` and never left to ``mkdir``/``open``: the mode passed to those
  is masked by the process's umask, and a directory or file made by an older version (or by
  hand) may have any mode.
- A database file is created here (0600) before SQLite opens it. SQLite gives the files it
  creates beside a database (``-wal``, ``-shm``, ``-journal``) the database file's own mode,
  whatever the umask (``robust_open`` in its ``os_unix.c`` changes them with ``fchmod``), so they
  are 0600 too from then on.
- Nothing here logs: each caller says in its own words what it changed (:class:`ModeChange`).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "SQLITE_COMPANIONS",
    "ModeChange",
    "create_file",
    "fsync_dir",
    "make_dir",
    "reason",
    "set_mode",
]

#: Owner only: what these directories hold is nobody else's business (keys, metadata, text).
DIR_MODE = 0o700
#: Owner only: private keys, sessions, message text, routing metadata.
FILE_MODE = 0o600
#: The files SQLite creates beside a database file (WAL, its shared-memory index, a rollback
#: journal).
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


@dataclass(frozen=True, slots=True)
class ModeChange:
    """``path`` had mode ``old`` and now has ``new``."""

    path: Path
    old: int
    new: int


def set_mode(path: Path, mode: int) -> ModeChange | None:
    """Give ``path`` exactly ``mode``; return the change, or ``None`` if it had it already.

    Raises:
        OSError: ``path`` cannot be read or changed (e.g. another user owns it).
    """
    current = stat.S_IMODE(path.stat().st_mode)
    if current == mode:
        return None
    os.chmod(path, mode)
    return ModeChange(path, current, mode)


def make_dir(path: Path) -> bool:
    """Create ``path`` (and its missing parents) if it does not exist; give it :data:`DIR_MODE`
    if it was created here. Returns whether it was (an existing one is left to
    :func:`set_mode`, so that its caller can tell what changed).

    Raises:
        OSError: it cannot be created (a parent is a file, not writable, …).
    """
    try:
        path.mkdir(mode=DIR_MODE, parents=True)
    except FileExistsError:
        return False
    os.chmod(path, DIR_MODE)
    return True


def create_file(path: Path) -> bool:
    """Create the empty file ``path`` with :data:`FILE_MODE` unless it exists; return whether it
    was created here (an existing one is left to :func:`set_mode`).

    Raises:
        OSError: it cannot be created.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return True


def fsync_dir(directory: Path) -> None:
    """Make a new name in ``directory`` durable (POSIX: fsync the directory itself)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def reason(exc: OSError) -> str:
    """The lower-case reason of an OS error ("permission denied"), for one-line messages."""
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]
