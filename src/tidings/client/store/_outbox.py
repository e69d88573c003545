"""The outbox side of the client store: compose and queue content, then record each answer.

Content waits here for its ✓ (G2); :meth:`Outbox.compose` also allocates the conversation
counter in the same transaction, so a crash neither reuses nor skips one (G4).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from tidings.delivery import ContentKind, Message, Status, advance, rollup
from tidings.errors import IntegrityError, StoreError
from tidings.refs import DeviceRef

from . import records
from ._sql import _POINT as POINT
from ._sql import MSG_COLS, NEXT_SHOWN, Database, outbox_item_from_row
from .records import Direction, OutboxFullError, OutboxItem, OutboxRequest, SentMark, TracePoint


class Outbox(Database):
    """The outbox methods of :class:`~tidings.client.store.ClientStore`."""

    _me_cache: DeviceRef | None = None

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
            timer = db.execute(
                "SELECT seconds FROM conversation_timers WHERE conversation = ?", (conversation,)
            ).fetchone()
            message = Message(conversation, row[0], now, body, timer[0] if timer else 0)
            request = OutboxRequest(
                message_id, recipient, message.serialize(), ContentKind.MESSAGE, now
            )
            item = self._insert_outbox(db, request)
            db.execute(
                f"INSERT INTO messages ({MSG_COLS}) VALUES"
                f" (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, NULL, {NEXT_SHOWN}, NULL,"
                " ?, NULL)",
                (
                    *(message_id, me.account, me.device_id, conversation, message.counter, body),
                    *(now, int(Direction.OUT), recipient, message.expires_in),
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
        mark = SentMark(message_id, stored_at, at, tuple(devices))
        return message_id in self.mark_sent_many([mark])[0]

    def mark_sent_many(self, marks: Sequence[SentMark]) -> tuple[set[bytes], dict[bytes, Status]]:
        """Record the ✓ of several entries (a burst of SENT frames) in ONE transaction, each as
        :meth:`mark_sent` does, with its buffered trace points; a handful of statements for
        the whole burst rather than ~10 per entry.

        Returns:
            The ids newly marked (an entry no longer in the outbox — a repeated ✓ — changes
            nothing), and the roll-up status of each of them that is a sent message (as
            :meth:`message_status` would now return it).

        Raises:
            IntegrityError: a trace point is not a point name; nothing is recorded.
        """
        unique: dict[bytes, SentMark] = {}
        for m in marks:  # a ✓ repeated in the burst counts once (the first)
            unique.setdefault(m.message_id, m)
        marks = list(unique.values())
        with self._tx() as db:
            ids = _in_chunks(
                db,
                "DELETE FROM outbox WHERE message_id IN ({}) RETURNING message_id",
                [m.message_id for m in marks],
            )
            done = {bytes(r[0]) for r in ids}
            marks = [m for m in marks if m.message_id in done]
            if not marks:
                return set(), {}
            mids = [m.message_id for m in marks]
            _in_chunks(db, "DELETE FROM e2e_sealed WHERE message_id IN ({})", mids)
            sent = {
                bytes(mid): (recipient, failed)
                for mid, recipient, failed in _in_chunks(
                    db,
                    "SELECT message_id, recipient, failed_code FROM messages"
                    f" WHERE direction = {int(Direction.OUT)} AND message_id IN ({{}})",
                    mids,
                )
            }
            db.executemany(
                "UPDATE messages SET stored_at = ? WHERE message_id = ? AND direction = ?",
                [(m.stored_at, m.message_id, Direction.OUT) for m in marks if m.message_id in sent],
            )
            statuses = self._advance_many(db, marks)
            traces = [
                (m.message_id, point, t, detail)
                for m in marks
                for point, t, detail in (
                    *m.trace,
                    (TracePoint.SENT, m.at, f"stored_at={m.stored_at}"),
                )
            ]
            self._insert_traces(db, traces)
        at_devices: dict[bytes, dict[DeviceRef, Status]] = {mid: {} for mid in sent}
        for (mid, device), status in statuses.items():
            if mid in sent and device.account == sent[mid][0]:
                at_devices[mid][device] = status
        overall = {
            mid: Status.FAILED if failed is not None else rollup(at_devices[mid], sent=True)
            for mid, (_, failed) in sent.items()
        }
        return done, overall

    def _advance_many(
        self, db: sqlite3.Connection, marks: Sequence[SentMark]
    ) -> dict[tuple[bytes, DeviceRef], Status]:
        """Move every mark's devices to SENT (by :func:`advance`); return each message's
        statuses afterwards, at every device that has one."""
        current = {
            (bytes(mid), DeviceRef(account, device)): Status(st)
            for mid, account, device, st in _in_chunks(
                db,
                "SELECT message_id, account, device_id, status FROM statuses"
                " WHERE message_id IN ({})",
                [m.message_id for m in marks],
            )
        }
        rows = []
        for m in marks:
            for device in m.devices:
                key = (m.message_id, device)
                if advance(current.get(key), Status.SENT) is not None:
                    current[key] = Status.SENT
                    rows.append(
                        (m.message_id, device.account, device.device_id, int(Status.SENT), m.at)
                    )
        db.executemany("INSERT OR REPLACE INTO statuses VALUES (?, ?, ?, ?, ?)", rows)
        return current

    def _insert_traces(
        self, db: sqlite3.Connection, rows: Sequence[tuple[bytes, str, float, str | None]]
    ) -> None:
        for _, point, _, _ in rows:  # a TracePoint member is a point name by construction
            if type(point) is not TracePoint and not POINT.fullmatch(point):
                raise IntegrityError(f"not a trace point name: {point!r}")
        db.executemany(
            "INSERT INTO trace (message_id, point, at, detail) VALUES (?, ?, ?, ?)",
            [(mid, str(point), at, detail) for mid, point, at, detail in rows],
        )

    def replace_outbox(
        self, message_id: bytes, requests: Sequence[OutboxRequest], at: float, detail: str
    ) -> bool:
        """Replace a queued entry by ``requests`` (a group multi-send falling back to pairwise
        copies), tracing ``fallback`` with ``detail``. One transaction (exempt from
        :data:`MAX_OUTBOX`: it replaces what was already queued). False (nothing changes) if
        the entry is not queued."""
        with self._tx() as db:
            if not db.execute("DELETE FROM outbox WHERE message_id = ?", (message_id,)).rowcount:
                return False
            for r in requests:
                self._insert_outbox(db, r)
            self._trace(db, message_id, "fallback", at, detail)
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
        """This device (read once: :meth:`save_identity` forgets it)."""
        if self._me_cache is None:
            row = db.execute("SELECT account, device_id FROM identity").fetchone()
            if row is None:
                raise StoreError("no identity saved yet")
            self._me_cache = DeviceRef(row[0], row[1])
        return self._me_cache

    def _check_room(self, db: sqlite3.Connection) -> None:
        limit = records.MAX_OUTBOX  # read at call time: tests lower it
        if db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] >= limit:
            raise OutboxFullError(f"the outbox is full ({limit} entries waiting to be sent)")


#: Most ``?`` of one ``IN (...)`` list: under SQLite's smallest variable limit (999, before
#: 3.32), and large enough that a burst of ✓ costs a few statements.
IN_CHUNK = 500


def _in_chunks(db: sqlite3.Connection, sql: str, values: Sequence[Any]) -> list[Any]:
    """Run ``sql`` (its ``{}`` an ``IN`` list) over ``values`` in chunks; all its rows."""
    rows: list[Any] = []
    for i in range(0, len(values), IN_CHUNK):
        chunk = values[i : i + IN_CHUNK]
        rows += db.execute(sql.format(",".join("?" * len(chunk))), chunk).fetchall()
    return rows
