"""History for a newly linked device (issue 13): the archive an existing device sends, and its
import on the new one (HISTORY content, :mod:`tidings.delivery.content_history`).

The export is the newest shown messages of every conversation, disappearing ones left out; the
import stores each entry once per ``(sender, message id)`` — a part delivered twice, or a message
the device already has, adds nothing — in one transaction with the cursor, so a kill -9 of
either side resumes without duplicates (the sender's parts wait in its outbox, the receiver's
unacked part comes again). Imported messages are placed before everything the device holds
(``shown`` below the lowest), count as seen (history is not news), and keep their read state.
"""

from __future__ import annotations

from tidings.delivery.content_history import HistoryEntry
from tidings.refs import DeviceRef

from ._crypto import CryptoWrites
from ._sql import MSG_COLS, message_from_row
from ._timers import Timers
from .records import Direction

__all__ = ["HistoryArchive"]

_INSERT = (
    f"INSERT INTO messages ({MSG_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL,"
    " ?, (SELECT COALESCE(MIN(shown), 1) - 1 FROM messages), ?, 0, NULL)"
    " ON CONFLICT (sender_account, sender_device, message_id) DO NOTHING"
)


class HistoryArchive(Timers):
    """The history methods of :class:`~tidings.client.store.ClientStore`."""

    def history_entries(self, limit: int) -> list[HistoryEntry]:
        """The newest ``limit`` shown messages of every conversation, newest first, without
        disappearing ones: what an archive for a new device holds."""
        rows = self._read(
            f"SELECT {MSG_COLS} FROM messages WHERE shown IS NOT NULL AND expires_in = 0"
            " ORDER BY shown DESC LIMIT ?",
            limit,
        )
        out = []
        for row in rows:
            m = message_from_row(row)
            recipient = m.recipient if m.direction is Direction.OUT or m.recipient else None
            out.append(
                HistoryEntry(
                    m.message_id,
                    m.sender.account,
                    m.sender.device_id,
                    m.conversation,
                    m.counter,
                    m.sent_at,
                    m.body,
                    recipient,
                    m.read_at is not None or m.direction is Direction.OUT,
                )
            )
        return out

    def commit_history(
        self,
        seq: int,
        entries: tuple[HistoryEntry, ...],
        now: float,
        crypto: CryptoWrites | None = None,
    ) -> int:
        """Import one part. ONE transaction with the cursor (``seq``) and the ``crypto``
        writes. Returns how many messages were new here (0 for a duplicate ``seq``). An
        imported message is dated when it was sent (``received_at`` = ``sent_at``): the history
        shows when it was said, not when this device imported it."""
        added = 0
        with self._tx(crypto) as db:
            if not self._move_cursor(db, seq):
                return 0
            for e in entries:  # newest first: each goes before the ones imported already
                sender = DeviceRef(e.sender_account, e.sender_device)
                cur = db.execute(
                    _INSERT,
                    (
                        *(e.message_id, sender.account, sender.device_id, e.conversation),
                        *(e.counter, e.body, e.sent_at, int(Direction.IN), e.recipient, e.sent_at),
                        *(now if e.read else None, now),
                    ),
                )
                added += cur.rowcount
        return added
