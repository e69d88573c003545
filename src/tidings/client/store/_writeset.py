"""A transaction's write set: the rows it rewrites many times but writes ONCE, before its COMMIT.

A catch-up stores thousands of messages in one transaction (a batch), and each of them moves
the same few rows: the inbox cursor, the session record of its sender device, the ordering
state of its stream. Writing those rows per message cost three statements and a ~2 KiB session
record per message; instead each transaction keeps their newest values here and writes them
once, just before its ``COMMIT`` (:meth:`WriteSet.apply`). So the write set is part of the
transaction: it lands with the COMMIT or, if the transaction fails, is dropped with it.

Inside a batch every write method is a savepoint with a write set of its own, merged into the
batch's when the savepoint is released and dropped when it is rolled back, so each method is
still all or nothing. Reads of these rows (:meth:`ClientStore.cursor`,
:meth:`~ClientStore.session_record`, the ordering state) see the open write sets first.
"""

from __future__ import annotations

import json
import sqlite3

from tidings.delivery import SenderDevice, StreamKey, StreamState
from tidings.refs import DeviceRef

__all__ = ["WriteSet"]


class WriteSet:
    """The newest value of each coalesced row a transaction (or savepoint) wrote.

    Attributes:
        cursor: the inbox cursor (``None``: unchanged).
        sessions: session records per peer device.
        streams: ordering states per stream.
        notices: unmatched expiry notices per sender device (0: delete the row).
    """

    __slots__ = ("cursor", "notices", "sessions", "streams")

    def __init__(self) -> None:
        self.cursor: int | None = None
        self.sessions: dict[DeviceRef, bytes] = {}
        self.streams: dict[StreamKey, StreamState] = {}
        self.notices: dict[SenderDevice, int] = {}

    def __bool__(self) -> bool:
        return bool(self.cursor is not None or self.sessions or self.streams or self.notices)

    def merge(self, newer: WriteSet) -> None:
        """Take the values of ``newer`` (a released savepoint's) over these."""
        if newer.cursor is not None:
            self.cursor = newer.cursor
        self.sessions.update(newer.sessions)
        self.streams.update(newer.streams)
        self.notices.update(newer.notices)

    def apply(self, db: sqlite3.Connection) -> None:
        """Write every row (inside the transaction, just before its COMMIT)."""
        if self.cursor is not None:
            db.execute("UPDATE cursor SET seq = ?", (self.cursor,))
        if self.sessions:
            db.executemany(
                "INSERT OR REPLACE INTO e2e_sessions VALUES (?, ?, ?)",
                [(d.account, d.device_id, r) for d, r in self.sessions.items()],
            )
        if self.streams:
            db.executemany(
                "INSERT OR REPLACE INTO streams VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        *(k.conversation, k.sender_account, k.sender_device, s.expected),
                        *(json.dumps(s.missing), s.horizon),
                    )
                    for k, s in self.streams.items()
                ],
            )
        for (account, device), count in self.notices.items():
            if count:
                db.execute(
                    "INSERT OR REPLACE INTO expired_notices VALUES (?, ?, ?)",
                    (account, device, count),
                )
            else:
                db.execute(
                    "DELETE FROM expired_notices WHERE sender_account = ? AND sender_device = ?",
                    (account, device),
                )
