"""The outbox side of the client store: compose and queue content, then record each answer.

Content waits here for its ✓ (G2); :meth:`Outbox.compose` also allocates the conversation
counter in the same transaction, so a crash neither reuses nor skips one (G4).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

from tidings.delivery import ContentKind, Message, Status
from tidings.errors import StoreError
from tidings.store.base import DeviceRef

from . import records
from ._sql import MSG_COLS, NEXT_SHOWN, Database, outbox_item_from_row
from .records import Direction, OutboxFullError, OutboxItem, OutboxRequest, TracePoint


class Outbox(Database):
    """The outbox methods of :class:`~tidings.client.store.ClientStore`."""

    def compose(
        self, message_id: bytes, recipient: str, conversation: str, body: bytes, now: float
    ) -> tuple[OutboxItem, Message]:
        """Queue a new message from this device. One transaction, durable on return (G2).

        Allocates this device's next counter in ``conversation``, builds the :class:`Message`
        content (``sent_at = now``), queues it for ``recipient``, records the message as sent
        (shown at once, status PENDING) and the trace point ``composed``.

        Raises:
            OutboxFullError: the outbox is full.
            ContentError: the body or conversation is invalid.
            IntegrityError: ``message_id`` is already used.
            StoreError: no identity is saved yet.
        """
        with self._tx() as db:
            me = self._me(db)
            self._check_room(db)
            row = db.execute(
                "INSERT INTO send_counters VALUES (?, 1) ON CONFLICT (conversation)"
                " DO UPDATE SET last = last + 1 RETURNING last",
                (conversation,),
            ).fetchone()
            message = Message(conversation, row[0], now, body)
            request = OutboxRequest(
                message_id, recipient, message.serialize(), ContentKind.MESSAGE, now
            )
            item = self._insert_outbox(db, request)
            db.execute(
                f"INSERT INTO messages ({MSG_COLS}) VALUES"
                f" (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, NULL, {NEXT_SHOWN}, NULL)",
                (
                    *(message_id, me.account, me.device_id, conversation, message.counter, body),
                    *(now, int(Direction.OUT), recipient),
                ),
            )
            self._trace(db, message_id, TracePoint.COMPOSED, now, None)
        return item, message

    def enqueue(
        self,
        message_id: bytes,
        recipient: str,
        content: bytes,
        kind: ContentKind,
        created_at: float,
    ) -> OutboxItem:
        """Queue content that is not a new message (e.g. a receipt). One transaction (G2).

        Raises:
            OutboxFullError: the outbox is full.
            IntegrityError: ``message_id`` is already queued.
        """
        with self._tx() as db:
            self._check_room(db)
            return self._insert_outbox(
                db, OutboxRequest(message_id, recipient, content, kind, created_at)
            )

    def pending(self) -> list[OutboxItem]:
        """Every outbox entry, in creation order."""
        rows = self._read("SELECT * FROM outbox ORDER BY position")
        return [outbox_item_from_row(r) for r in rows]

    def outbox_item(self, message_id: bytes) -> OutboxItem | None:
        """The queued entry with this id (e.g. one queued by :meth:`commit_incoming` or
        :meth:`mark_read`, to hand to the scheduler), or ``None`` if it is not queued."""
        rows = self._read("SELECT * FROM outbox WHERE message_id = ?", message_id)
        return outbox_item_from_row(rows[0]) if rows else None

    def outbox_size(self) -> int:
        """How many entries the outbox holds."""
        return int(self._read("SELECT COUNT(*) FROM outbox")[0][0])

    def next_counter(self, conversation: str) -> int:
        """The counter :meth:`compose` would use next in ``conversation`` (read only)."""
        rows = self._read("SELECT last FROM send_counters WHERE conversation = ?", conversation)
        return rows[0][0] + 1 if rows else 1

    def set_attempt(
        self,
        message_id: bytes,
        attempts: int,
        next_attempt_at: float,
        trace: Sequence[tuple[str, float, str | None]] = (),
    ) -> bool:
        """Record an entry's attempts and retry time (wall clock), and the ``trace`` points
        ``(point, at, detail)`` of the refusal that made it wait. One transaction. False (and
        nothing is recorded) if not queued.

        Raises:
            IntegrityError: a ``point`` is not a point name.
        """
        with self._tx() as db:
            cur = db.execute(
                "UPDATE outbox SET attempts = ?, next_attempt_at = ? WHERE message_id = ?",
                (attempts, next_attempt_at, message_id),
            )
            if not cur.rowcount:
                return False
            for point, at, detail in trace:
                self._trace(db, message_id, point, at, detail)
            return True

    def mark_sent(
        self, message_id: bytes, stored_at: float, at: float, devices: Iterable[DeviceRef] = ()
    ) -> bool:
        """✓: the server stored it. One transaction: remove the entry, record ``stored_at``
        (server clock), status SENT at ``devices``, trace ``sent`` at ``at`` (local clock).

        Returns:
            False (and nothing changes) if the entry is not in the outbox: a repeated ✓.
        """
        with self._tx() as db:
            if not db.execute("DELETE FROM outbox WHERE message_id = ?", (message_id,)).rowcount:
                return False
            db.execute("DELETE FROM e2e_sealed WHERE message_id = ?", (message_id,))
            db.execute(
                "UPDATE messages SET stored_at = ? WHERE message_id = ? AND direction = ?",
                (stored_at, message_id, Direction.OUT),
            )
            for device in devices:
                self._advance(db, message_id, device, Status.SENT, at)
            self._trace(db, message_id, TracePoint.SENT, at, f"stored_at={stored_at}")
            return True

    def mark_failed(self, message_id: bytes, code: int, reason: str, at: float) -> bool:
        """Refused for good. One transaction: remove the entry, record the failure (status
        FAILED), trace ``refused``. False (nothing changes) if the entry is not queued."""
        with self._tx() as db:
            if not db.execute("DELETE FROM outbox WHERE message_id = ?", (message_id,)).rowcount:
                return False
            db.execute("DELETE FROM e2e_sealed WHERE message_id = ?", (message_id,))
            db.execute(
                "UPDATE messages SET failed_code = ?, failed_reason = ?"
                " WHERE message_id = ? AND direction = ?",
                (code, reason, message_id, Direction.OUT),
            )
            self._trace(db, message_id, TracePoint.REFUSED, at, f"{code} {reason}")
            return True

    def _me(self, db: sqlite3.Connection) -> DeviceRef:
        row = db.execute("SELECT account, device_id FROM identity").fetchone()
        if row is None:
            raise StoreError("no identity saved yet")
        return DeviceRef(row[0], row[1])

    def _check_room(self, db: sqlite3.Connection) -> None:
        limit = records.MAX_OUTBOX  # read at call time: tests lower it
        if db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] >= limit:
            raise OutboxFullError(f"the outbox is full ({limit} entries waiting to be sent)")
