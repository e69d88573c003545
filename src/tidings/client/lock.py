"""One process per device home: an advisory lock on ``client.lock`` in the home (DESIGN §9).

A device's ratchet sessions, outbox and cursor live in its store and, while a client runs, in
that client's memory; two processes on one home (``tidings listen`` in one terminal, ``tidings
send`` in another) would each advance the ratchets from their own copy and overwrite each
other's state, and would take turns kicking each other's connection off the relay. So a
:class:`~tidings.client.Client` holds an exclusive ``flock(2)`` on ``client.lock`` for its whole
life, and a second one fails at once with :class:`~tidings.errors.DeviceBusy` naming the holder.

The lock is the kernel's: it goes when the holder's file descriptor closes — on
:meth:`DeviceLock.release`, on exit, and on ``kill -9`` too — so a crashed process never leaves
a stale lock behind. The file's content (the holder's pid and what it runs) is only for the
message; the file itself stays (mode 0600).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path

from ..errors import DeviceBusy, StoreUnavailable
from ..filemodes import FILE_MODE, reason

__all__ = ["LOCK_NAME", "DeviceLock", "process_name"]

#: The lock file's name in the device home.
LOCK_NAME = "client.lock"


class DeviceLock:
    """The held lock of one device home; :meth:`acquire` it, :meth:`release` it once."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, home: Path, owner: str) -> DeviceLock:
        """Lock ``home`` for this process, recording ``owner`` (e.g. ``"tidings listen"``).

        Raises:
            DeviceBusy: another process (or another client of this one) holds it.
            StoreUnavailable: the lock file cannot be created or locked (a read-only file
                system, no permission).
        """
        path = home / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except OSError as exc:
            why = reason(exc)
            raise StoreUnavailable(f"error: {why}", f"cannot lock {path}: {why}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.fchmod(fd, FILE_MODE)  # a file left by an older version may have another mode
        except BlockingIOError:
            pid, command = _holder(fd)
            os.close(fd)
            raise DeviceBusy(home, pid, command) from None
        except OSError as exc:
            os.close(fd)
            why = reason(exc)
            raise StoreUnavailable(f"error: {why}", f"cannot lock {path}: {why}") from exc
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": owner}).encode(), 0)
        except OSError:
            pass  # a full disk: the lock is held all the same; the holder's name is only for
            # the message another process gets ("in use by another process")
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, path)

    @property
    def held(self) -> bool:
        """Whether this process still holds it."""
        return self._fd is not None

    def release(self) -> None:
        """Let the next process in (closing the descriptor drops the lock). Idempotent."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _holder(fd: int) -> tuple[int | None, str]:
    """The pid and command the holder wrote (unknown if it has not written them yet)."""
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        pid = data.get("pid")
        return (pid if isinstance(pid, int) else None), str(data.get("command") or "")
    except (OSError, ValueError, AttributeError):
        return None, ""


def process_name() -> str:
    """This process as a person would name it (``tidings listen``, ``python script.py``): what
    the lock file says holds the home."""
    argv = sys.argv or ["python"]
    program = Path(argv[0]).name
    if program == "__main__.py":  # python -m tidings
        program = Path(argv[0]).parent.name
    return " ".join([program, *argv[1:2]])
