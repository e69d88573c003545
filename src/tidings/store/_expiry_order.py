"""Expiry in arrival order on SQLite: which inbox rows need an index to be found when due.

At the relay every item expires one retention period after it was queued, so the inbox, kept in
arrival order (migration 0005), is already in expiry order: an index on ``expires_at`` would be
a second copy of that order, written at every insert and every delete (about 8 % of the WAL's
frames at 50 pairs, bench/README "issue 10"). Migration 0013 replaced it by a flag:

* ``out_of_order = 0``: the row expires no earlier than every row with this flag queued before
  it. These rows, in rowid order, are in ``expires_at`` order, so expiry reads them from the
  start of the table and stops at the first that is not due.
* ``out_of_order = 1``: any other row (a shorter retention than the rows before it, a clock set
  back, a database of an earlier version). The partial index ``inbox_expiring_out_of_order``
  holds these, and only these: at the relay it is empty.

:class:`ArrivalOrder` decides the flag of each new row. It keeps ``high``, at least the latest
``expires_at`` of the rows flagged 0 (read from the table when unknown): a row is flagged 0 only
if it expires at ``high`` or later. ``high`` only ever rises in memory, so if a transaction that
raised it is rolled back it stays too high, which flags a later row 1 that could have been 0:
never wrong, only an entry in the small index. Each expiry sweep forgets it (read again next).
It is the store thread's: one per :class:`~tidings.store.sqlite.SQLiteStore`.
"""

from __future__ import annotations

import math
import sqlite3

#: The latest ``expires_at`` of the in-order rows: the last of them by rowid. It reads back
#: from the end of the table over the out-of-order rows after it (none at the relay).
_HIGH = "SELECT expires_at FROM inbox WHERE out_of_order = 0 ORDER BY id DESC LIMIT 1"


class ArrivalOrder:
    """Flags new inbox rows in order or out of order (see the module docstring)."""

    __slots__ = ("_high",)

    def __init__(self) -> None:
        self._high: float | None = None  #: ``None``: not read since the last :meth:`forget`

    def flag(self, conn: sqlite3.Connection, expires_at: float) -> int:
        """The ``out_of_order`` value of a row expiring at ``expires_at``, inserted next (after
        every row flagged before it). Rows must be inserted in the order they were flagged."""
        high = self._high
        if high is None:
            row = conn.execute(_HIGH).fetchone()
            high = -math.inf if row is None else float(row[0])
        if expires_at >= high:
            self._high = expires_at
            return 0
        self._high = high
        return 1

    def forget(self) -> None:
        """Read ``high`` from the table again before the next flag (after an expiry sweep, or
        anything else that may have lowered it)."""
        self._high = None
