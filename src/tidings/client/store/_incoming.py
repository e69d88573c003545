"""The incoming side of the client store: the inbox cursor, received messages, receipts, ordering.

Each method that consumes an inbox item moves the cursor in the same transaction as what the
item stores, so an item is applied once however often the server redelivers it (G1, G3, G5).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tidings.delivery import (
    Message,
    Receipt,
    ReceiptKind,
    SenderDevice,
    Status,
    StreamKey,
    StreamState,
)
from tidings.refs import DeviceRef

from ._crypto import CryptoWrites
from ._sql import MSG_COLS, NEXT_SHOWN, Database, message_from_row
from .records import Direction, MessageKey, OutboxRequest, StoredMessage, TracePoint

#: Receipts kept for messages this device does not hold yet (``early_receipts``): a linked
#: device gets the receipts of every message its siblings sent before it existed, which never
#: arrive here, so the table is bounded — the oldest go first.
MAX_EARLY_RECEIPTS = 10_000

_INSERT = (
    f"INSERT INTO messages ({MSG_COLS})"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, {shown}, NULL, ?, NULL)"
    " ON CONFLICT (sender_account, sender_device, message_id) DO NOTHING"
)
#: A received message, held for ordering (``shown`` NULL) or shown at once.
_INSERT_HELD, _INSERT_SHOWN = _INSERT.format(shown="NULL"), _INSERT.format(shown=NEXT_SHOWN)


class Incoming(Database):
    """The incoming methods of :class:`~tidings.client.store.ClientStore`."""

    def cursor(self) -> int:
        """The highest inbox seq stored (0 at first): durably, or by the open transaction."""
        for ws in self._written():
            if ws.cursor is not None:
                return ws.cursor
        return int(self._read("SELECT seq FROM cursor")[0][0])

    def has_message(self, sender: DeviceRef, message_id: bytes) -> bool:
        """Whether the message from ``sender`` is stored (check before reordering it)."""
        return bool(
            self._read(
                "SELECT 1 FROM messages WHERE sender_account = ? AND sender_device = ?"
                " AND message_id = ?",
                sender.account,
                sender.device_id,
                message_id,
            )
        )

    def commit_incoming(
        self,
        seq: int,
        sender: DeviceRef,
        message_id: bytes,
        content: Message,
        received_at: float,
        *,
        receipt: OutboxRequest | None = None,
        streams: Iterable[StreamState] = (),
        surfaced: Sequence[MessageKey] = (),
        recipient: str | None = None,
        notices: Mapping[SenderDevice, int] | None = None,
        crypto: CryptoWrites | None = None,
    ) -> bool:
        """Store a received message. ONE transaction: the message (held: not shown), the cursor
        (``seq``), its delivered ``receipt`` (exempt from :data:`MAX_OUTBOX`), the ordering
        ``streams`` and ``notices`` and the ``surfaced`` messages, shown in that order (may
        include this one).

        Check :meth:`has_message` before feeding the reorderer, so a duplicate never reaches it.

        Args:
            recipient: for a copy of a message this account sent from another device, the
                account it was sent to (so its receipts count).
            crypto: the session changes its decryption made (committed with it, even for a
                duplicate: the session moved past it).

        Returns:
            False for a duplicate: ``seq`` is not above the cursor (nothing changes), or the
            message is already stored (only the cursor moves; the first copy's receipt stands).
        """
        with self._tx(crypto) as db:
            if not self._move_cursor(db, seq):
                return False
            # In order (the common case) it is the first one shown: stored shown at once.
            shown_now = bool(surfaced) and surfaced[0] == (sender, message_id)
            cur = db.execute(
                _INSERT_SHOWN if shown_now else _INSERT_HELD,
                (
                    *(message_id, sender.account, sender.device_id, content.conversation),
                    *(content.counter, content.body, content.sent_at, int(Direction.IN)),
                    *(recipient, received_at, content.expires_in),
                ),
            )
            if not cur.rowcount:
                return False
            if recipient is not None:  # a copy of this account's send: receipts may be here
                self._apply_early(db, message_id, recipient)
            if receipt is not None:
                self._insert_outbox(db, receipt)
            self._save_streams(db, streams, notices)
            self._show(db, surfaced[1:] if shown_now else surfaced)
            return True

    def commit_receipt(
        self,
        seq: int,
        sender: DeviceRef,
        receipt: Receipt,
        at: float,
        crypto: CryptoWrites | None = None,
    ) -> list[bytes]:
        """Apply a receipt from ``sender``. ONE transaction with the cursor (``seq``) and the
        ``crypto`` writes of its decryption.

        Counts only for messages sent to ``sender``'s account; each status that moves gets a
        trace point ``delivered:<device>`` or ``read:<device>`` at ``at`` (local clock).

        Returns:
            The message ids whose status moved (empty for a duplicate ``seq``).
        """
        status, point = (
            (Status.DELIVERED, TracePoint.DELIVERED)
            if receipt.kind is ReceiptKind.DELIVERED
            else (Status.READ, TracePoint.READ)
        )
        moved: list[bytes] = []
        with self._tx(crypto) as db:
            if not self._move_cursor(db, seq):
                return []
            early = []
            for mid in receipt.message_ids:
                known = db.execute(  # sent to its account, or to a group it is in
                    "SELECT 1 FROM messages WHERE message_id = ? AND (recipient = ? OR"
                    " (recipient LIKE 'group:%' AND EXISTS (SELECT 1 FROM group_members"
                    " WHERE 'group:' || lower(hex(group_id)) = recipient AND account = ?)))",
                    (mid, sender.account, sender.account),
                ).fetchone()
                if not known:
                    early.append(
                        (mid, sender.account, sender.device_id, int(status), at, receipt.at)
                    )
                elif self._advance(db, mid, sender, status, at):
                    self._trace(db, mid, point.at(sender), at, f"device_time={receipt.at}")
                    moved.append(mid)
            if early:
                self._keep_early(db, early)
        return moved

    def _keep_early(self, db: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        db.executemany(
            "INSERT INTO early_receipts (message_id, account, device_id, status, at, device_time)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            rows,
        )
        db.execute(
            "DELETE FROM early_receipts WHERE id <= (SELECT MAX(id) FROM early_receipts) - ?",
            (MAX_EARLY_RECEIPTS,),
        )

    def _apply_early(self, db: sqlite3.Connection, message_id: bytes, recipient: str) -> None:
        """The receipts that came before this copy of a message sent from this account."""
        rows = db.execute(
            "DELETE FROM early_receipts WHERE message_id = ? AND account = ?"
            " RETURNING device_id, status, at, device_time",
            (message_id, recipient),
        ).fetchall()
        for device_id, status, at, device_time in sorted(rows, key=lambda r: (r[1], r[2])):
            device = DeviceRef(recipient, device_id)
            if self._advance(db, message_id, device, Status(status), at):
                point = TracePoint.DELIVERED if status == Status.DELIVERED else TracePoint.READ
                self._trace(db, message_id, point.at(device), at, f"device_time={device_time}")

    def commit_read_elsewhere(
        self,
        seq: int,
        receipt: Receipt,
        at: float,
        crypto: CryptoWrites | None = None,
    ) -> list[bytes]:
        """Apply a READ receipt from another device of this account: the received messages
        it names are read here too (``read_at``; no receipt is sent for them from here). ONE
        transaction with the cursor (``seq``) and the ``crypto`` writes.

        Returns:
            The ids that were unread here (empty for a duplicate ``seq``).
        """
        newly: list[bytes] = []
        with self._tx(crypto) as db:
            if not self._move_cursor(db, seq):
                return []
            for mid in receipt.message_ids:
                cur = db.execute(
                    "UPDATE messages SET read_at = ? WHERE message_id = ? AND direction = ?"
                    " AND read_at IS NULL",
                    (at, mid, Direction.IN),
                )
                if cur.rowcount:
                    newly.append(mid)
        return newly

    def commit_expired(self, seq: int, message_id: bytes, device: DeviceRef, at: float) -> bool:
        """Apply the server's notice that ``message_id`` expired unfetched at ``device``.

        ONE transaction with the cursor (``seq``): status EXPIRED and trace ``expired:<device>``
        for a message this store knows. Returns whether the status moved.
        """
        with self._tx() as db:
            if not self._move_cursor(db, seq):
                return False
            known = db.execute(
                "SELECT 1 FROM messages WHERE message_id = ?", (message_id,)
            ).fetchone()
            if not known or not self._advance(db, message_id, device, Status.EXPIRED, at):
                return False
            self._trace(db, message_id, TracePoint.EXPIRED.at(device), at, None)
            return True

    def commit_expired_unfetched(
        self,
        seq: int,
        streams: Iterable[StreamState],
        surfaced: Sequence[MessageKey],
        notices: Mapping[SenderDevice, int],
    ) -> bool:
        """Apply the relay's notice that a message for this device expired before it was fetched
        (DELIVER kind 2). ONE transaction with the cursor (``seq``): the ordering ``streams`` and
        ``notices`` it changed and the held messages it ``surfaced``, shown in that order.
        False (nothing changes) if ``seq`` is not above the cursor."""
        with self._tx() as db:
            if not self._move_cursor(db, seq):
                return False
            self._save_streams(db, streams, notices)
            self._show(db, surfaced)
            return True

    def commit_control(
        self,
        seq: int,
        requests: Sequence[OutboxRequest],
        crypto: CryptoWrites | None = None,
    ) -> bool:
        """Move the cursor past an item and queue what it calls for (a retry request, resends;
        exempt from :data:`MAX_OUTBOX`, as receipts), with the ``crypto`` writes it caused (a
        rebuilt session). One transaction. False (nothing else changes) if ``seq`` is not
        above the cursor."""
        with self._tx(crypto) as db:
            if not self._move_cursor(db, seq):
                return False
            for r in requests:
                self._insert_outbox(db, r)
            return True

    def queue_receipts(self, receipts: Sequence[OutboxRequest]) -> None:
        """Queue receipts (exempt from :data:`MAX_OUTBOX`). One transaction: inside a batch,
        the one that stored the messages they are for, so a message and its receipt are
        committed together (G5)."""
        with self._tx() as db:
            for r in receipts:
                self._insert_outbox(db, r)

    def advance_cursor(self, seq: int, crypto: CryptoWrites | None = None) -> bool:
        """Move the cursor past an item that stores nothing (undecryptable, not valid content,
        a duplicate), with the ``crypto`` writes of its decryption if it had one. One
        transaction. False if ``seq`` is not above the cursor."""
        with self._tx(crypto) as db:
            return self._move_cursor(db, seq)

    def mark_surfaced(
        self,
        surfaced: Sequence[MessageKey],
        streams: Iterable[StreamState] = (),
        notices: Mapping[SenderDevice, int] | None = None,
    ) -> None:
        """Show held messages, in this order, and save the ordering state. One transaction."""
        with self._tx() as db:
            self._save_streams(db, streams, notices)
            self._show(db, surfaced)

    def unsurfaced(self) -> list[StoredMessage]:
        """Messages held for ordering, in the order they were received (to feed again)."""
        sql = f"SELECT {MSG_COLS} FROM messages WHERE shown IS NULL ORDER BY id"
        return [message_from_row(r) for r in self._read(sql)]

    def expired_notices(self) -> dict[SenderDevice, int]:
        """The saved unmatched expiry notices per sender device (with the open transaction's)."""
        notices = {(a, d): n for a, d, n in self._read("SELECT * FROM expired_notices")}
        for ws in reversed(list(self._written())):
            notices.update(ws.notices)
        return {k: n for k, n in notices.items() if n}

    def reorder_states(self) -> list[StreamState]:
        """The saved ordering state of every stream (with the open transaction's)."""
        rows = self._read("SELECT * FROM streams")
        states = {
            StreamKey(c, a, d): StreamState(
                StreamKey(c, a, d), e, tuple((x, y) for x, y in json.loads(m)), h
            )
            for c, a, d, e, m, h in rows
        }
        for ws in reversed(list(self._written())):
            states.update(ws.streams)
        return list(states.values())

    def mark_read(
        self, keys: Sequence[MessageKey], at: float, receipts: Iterable[OutboxRequest] = ()
    ) -> list[MessageKey]:
        """Record that received messages were displayed, and queue their read ``receipts``
        (built for those whose ``read_at`` is ``None``). One transaction.

        Returns:
            The keys that were not read before.
        """
        newly: list[MessageKey] = []
        with self._tx() as db:
            for sender, mid in keys:
                cur = db.execute(
                    "UPDATE messages SET read_at = ? WHERE sender_account = ?"
                    " AND sender_device = ? AND message_id = ? AND direction = ?"
                    " AND read_at IS NULL",
                    (at, sender.account, sender.device_id, mid, Direction.IN),
                )
                if cur.rowcount:
                    newly.append((sender, mid))
            for receipt in receipts:
                self._insert_outbox(db, receipt)
        return newly

    def unseen(self, limit: int = 1_000, after: int = 0) -> list[StoredMessage]:
        """Received messages shown in their conversation but not yet displayed by any UI
        (:meth:`mark_seen`), in display order: the oldest ``limit`` of those after ``after``
        (a :attr:`StoredMessage.shown`; the next page, whether or not the last was marked)."""
        rows = self._read(
            f"SELECT {MSG_COLS} FROM messages WHERE direction = ? AND seen_at IS NULL"
            " AND shown > ? ORDER BY shown LIMIT ?",
            Direction.IN,
            after,
            limit,
        )
        return [message_from_row(r) for r in rows]

    def mark_seen(self, message_ids: Sequence[bytes], at: float) -> int:
        """Record that a UI displayed these received messages. One transaction; returns how
        many were unseen."""
        n = 0
        with self._tx() as db:
            for mid in message_ids:
                n += db.execute(
                    "UPDATE messages SET seen_at = ? WHERE message_id = ? AND direction = ?"
                    " AND seen_at IS NULL",
                    (at, mid, Direction.IN),
                ).rowcount
        return n

    def _move_cursor(self, db: sqlite3.Connection, seq: int) -> bool:
        """Move the cursor to ``seq`` in the running transaction's write set (written before
        its COMMIT); False if ``seq`` is not above it."""
        if seq <= self.cursor():
            return False
        self._pending().cursor = seq
        return True

    def _save_streams(
        self,
        db: sqlite3.Connection,
        streams: Iterable[StreamState],
        notices: Mapping[SenderDevice, int] | None = None,
    ) -> None:
        ws = self._pending()
        if notices:
            ws.notices.update(notices)
        for s in streams:
            ws.streams[s.key] = s

    def _show(self, db: sqlite3.Connection, keys: Sequence[MessageKey]) -> None:
        for sender, mid in keys:
            db.execute(
                f"UPDATE messages SET shown = {NEXT_SHOWN} WHERE sender_account = ?"
                " AND sender_device = ? AND message_id = ? AND shown IS NULL",
                (sender.account, sender.device_id, mid),
            )
