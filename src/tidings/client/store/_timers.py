"""Disappearing messages in the client store: each conversation's timer, and the expiry sweep.

A conversation's timer is the latest setting of any member device, ordered by
``(set_at, setter account, setter device)``: every device applies the same rule to the same
settings and keeps the same timer, whatever order they arrived in. A message carries its own
``expires_in`` (the sender's timer when it composed it); the schema's triggers start its clock
(``expires_at``) when it is sent, or when it is first displayed or read on one of the account's
devices, and :meth:`Timers.expire_due` deletes what ran out — the row, its statuses and trace,
and, by the FTS trigger, its words in the search index.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from tidings.delivery import Timer
from tidings.refs import DeviceRef

from ._crypto import CryptoWrites
from ._incoming import Incoming
from .records import ConversationTimer, ExpiredMessage, OutboxRequest

#: Messages deleted per sweep transaction: bounds the time the store is held by one sweep when a
#: long conversation runs out at once (the next sweep, right after, takes the rest).
EXPIRE_BATCH = 500

#: How much later than the current setting a local one is dated when this device's clock is
#: behind the setter's: a setting the user just made must win on every device.
_AFTER = 0.001


class Timers(Incoming):
    """The disappearing-messages methods of :class:`~tidings.client.store.ClientStore`."""

    def conversation_timer(self, conversation: str) -> ConversationTimer | None:
        """The conversation's timer, or ``None`` if no member ever set one."""
        rows = self._read(
            "SELECT seconds, set_at, set_by_account, set_by_device FROM conversation_timers"
            " WHERE conversation = ?",
            conversation,
        )
        if not rows:
            return None
        seconds, set_at, account, device = rows[0]
        return ConversationTimer(conversation, seconds, set_at, DeviceRef(account, device))

    def timer_seconds(self, conversation: str) -> int:
        """The timer a message composed now in ``conversation`` carries (0: none)."""
        timer = self.conversation_timer(conversation)
        return timer.seconds if timer is not None else 0

    def set_timer(
        self,
        me: DeviceRef,
        conversation: str,
        seconds: int,
        now: float,
        request_id: bytes,
        recipient: str,
    ) -> tuple[Timer, OutboxRequest]:
        """Set the conversation's timer from this device and queue the setting for
        ``recipient`` (and, by the outbox's rule, this account's other devices). ONE
        transaction. Dated ``now``, or just after the current setting if that one is later
        (this device's clock is behind), so it wins everywhere.

        Raises:
            ContentError: ``seconds`` is out of range.
        """
        current = self.conversation_timer(conversation)
        set_at = now if current is None else max(now, current.set_at + _AFTER)
        timer = Timer(conversation, seconds, set_at)
        request = OutboxRequest(request_id, recipient, timer.serialize(), Timer.KIND, now)
        with self._tx() as db:
            self._write_timer(db, timer, me)
            self._insert_outbox(db, request)
        return timer, request

    def commit_timer(
        self, seq: int, sender: DeviceRef, timer: Timer, crypto: CryptoWrites | None = None
    ) -> bool:
        """Apply a member device's setting (a TIMER item). ONE transaction with the cursor
        (``seq``) and the ``crypto`` writes. Returns whether it became the conversation's timer
        (False: an older setting, or a duplicate ``seq``)."""
        with self._tx(crypto) as db:
            if not self._move_cursor(db, seq):
                return False
            current = self.conversation_timer(timer.conversation)
            if current is not None and _order(timer.set_at, sender) <= _order(
                current.set_at, current.set_by
            ):
                return False
            self._write_timer(db, timer, sender)
            return True

    def next_expiry(self) -> float | None:
        """When the next message runs out (wall clock), or ``None``."""
        row = self._read("SELECT MIN(expires_at) FROM messages WHERE expires_at IS NOT NULL")
        return None if row[0][0] is None else float(row[0][0])

    def expire_due(self, now: float, limit: int = EXPIRE_BATCH) -> list[ExpiredMessage]:
        """Delete up to ``limit`` messages whose time ran out by ``now``, with their statuses
        and trace points (their search-index rows go by trigger). ONE transaction."""
        with self._tx() as db:
            rows = db.execute(
                "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE expires_at <= ?"
                " ORDER BY expires_at LIMIT ?) RETURNING message_id, conversation",
                (now, limit),
            ).fetchall()
            gone = [ExpiredMessage(bytes(mid), conv) for mid, conv in rows]
            self._forget(db, [g.message_id for g in gone])
        return gone

    def _forget(self, db: sqlite3.Connection, message_ids: Sequence[bytes]) -> None:
        for mid in message_ids:
            still = db.execute("SELECT 1 FROM messages WHERE message_id = ?", (mid,)).fetchone()
            if still:  # the same id from another sender (ids are random: practically never)
                continue
            db.execute("DELETE FROM statuses WHERE message_id = ?", (mid,))
            db.execute("DELETE FROM trace WHERE message_id = ?", (mid,))

    def _write_timer(self, db: sqlite3.Connection, timer: Timer, by: DeviceRef) -> None:
        db.execute(
            "INSERT OR REPLACE INTO conversation_timers VALUES (?, ?, ?, ?, ?)",
            (timer.conversation, timer.seconds, timer.set_at, by.account, by.device_id),
        )


def _order(set_at: float, by: DeviceRef) -> tuple[float, str, int]:
    return (set_at, by.account, by.device_id)
