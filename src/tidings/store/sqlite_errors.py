"""Which SQLite errors mean "the store cannot write now", shared by the relay's store
(:mod:`tidings.store._groupcommit`) and the device's (:mod:`tidings.client.store`).

Such an error says nothing about the operation (it would succeed on a disk with room): it
becomes :class:`~tidings.errors.StoreUnavailable` with a state, ``"full"`` or ``"error: <what
SQLite said>"``, and not a generic :class:`~tidings.errors.StoreError`.
"""

from __future__ import annotations

import os
import sqlite3

__all__ = ["SQLITE_BUSY", "SQLITE_FULL", "UNAVAILABLE_CODES", "unavailable_state"]

SQLITE_BUSY = 5
SQLITE_IOERR = 10
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14

#: SQLite primary result codes (sqlite.org/rescode.html) that say the store cannot write now,
#: not that the operation is wrong: retrying the same operation later may succeed.
UNAVAILABLE_CODES = frozenset(
    {
        SQLITE_BUSY,  # another process held the lock past the busy timeout
        8,  # SQLITE_READONLY: e.g. the file system was remounted read-only
        SQLITE_IOERR,  # the disk failed a read, write or fsync
        11,  # SQLITE_CORRUPT: the file is damaged (an operator must act)
        SQLITE_FULL,  # the disk (or the file size limit, or max_page_count) is full
        SQLITE_CANTOPEN,  # the database, its WAL or its SHM cannot be opened
    }
)


def unavailable_state(
    exc: BaseException, codes: frozenset[int] = UNAVAILABLE_CODES, directory: str | None = None
) -> str | None:
    """``"full"`` or ``"error: …"`` if ``exc`` is a SQLite error whose primary code is in
    ``codes``, else ``None``.

    SQLite says "full" only when a write of the database or its WAL ran out of room; creating
    the shared-memory index or a file on a full disk is "disk I/O error" or "unable to open".
    Given the database's ``directory``, those count as full when its file system has no block
    left (SQLite does not pass the system's errno on).
    """
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(exc, sqlite3.Error) or code is None or code & 0xFF not in codes:
        return None
    primary = code & 0xFF
    if primary == SQLITE_FULL:
        return "full"
    if primary in (SQLITE_IOERR, SQLITE_CANTOPEN) and directory is not None and _no_room(directory):
        return "full"
    return f"error: {exc}"


def _no_room(directory: str) -> bool:
    try:
        return os.statvfs(directory).f_bavail == 0
    except OSError:
        return False
