"""The sealed sends of the outbox (docs/protocol.md §14.2): each entry's tag, chosen once and
stored before its first SEALED_SEND (a retry reuses it), why an entry fell back to a normal
SEND, and the tags of sent messages whose fate the client asks about (TAG_QUERY).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tidings.delivery import Status
from tidings.refs import DeviceRef

from ._sql import Database
from .records import TracePoint

__all__ = ["SealedRecord", "SealedTags"]

#: ``sealed_sends.state``: the entry is in the outbox.
SENDING = 0
#: ``sealed_sends.state``: ✓, the client asks about the tag until it is delivered or expired.
ASKING = 1


@dataclass(frozen=True, slots=True)
class SealedRecord:
    """An outbox entry's sealed send: its ``tag``, and ``unsealed`` — why it now goes as a
    normal SEND (``None``: it goes sealed)."""

    message_id: bytes
    recipient: str
    tag: bytes
    unsealed: str | None
    state: int


class SealedTags(Database):
    """The sealed-send methods of :class:`~tidings.client.store.ClientStore`."""

    def sealed_record(self, message_id: bytes) -> SealedRecord | None:
        """The entry's sealed send, if it has one."""
        rows = self._read(
            "SELECT message_id, recipient, tag, unsealed, state FROM sealed_sends"
            " WHERE message_id = ?",
            message_id,
        )
        if not rows:
            return None
        mid, recipient, tag, unsealed, state = rows[0]
        return SealedRecord(bytes(mid), recipient, bytes(tag), unsealed, int(state))

    def sealed_records(self) -> dict[bytes, SealedRecord]:
        """Every entry's sealed send, by message id (the client loads them at start)."""
        rows = self._read("SELECT message_id, recipient, tag, unsealed, state FROM sealed_sends")
        return {bytes(m): SealedRecord(bytes(m), r, bytes(t), u, int(s)) for m, r, t, u, s in rows}

    def put_sealed_tag(
        self, message_id: bytes, recipient: str, tag: bytes, at: float, detail: str
    ) -> SealedRecord:
        """Give the entry ``tag`` unless it has one already (then that one is kept), with the
        trace point ``sealed`` (``detail``) the first time. One transaction. Returns the
        entry's record."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO sealed_sends (message_id, recipient, tag, created_at)"
                " VALUES (?, ?, ?, ?)",
                (message_id, recipient, tag, at),
            )
            if cur.rowcount:
                self._trace(db, message_id, "sealed", at, detail)
        record = self.sealed_record(message_id)
        assert record is not None
        return record

    def mark_unsealed(self, message_id: bytes, reason: str, at: float) -> None:
        """The entry goes as a normal SEND from now on (``reason``), traced ``unsealed``. One
        transaction."""
        with self._tx() as db:
            db.execute(
                "UPDATE sealed_sends SET unsealed = ? WHERE message_id = ?", (reason, message_id)
            )
            self._trace(db, message_id, "unsealed", at, reason)

    def sealed_stored(self, message_id: bytes, keep: bool) -> None:
        """The relay stored the sealed send (✓): keep its tag to ask about (``keep``), or
        forget it (content that shows no status: receipts, resends, …)."""
        with self._tx() as db:
            if keep:
                db.execute(
                    "UPDATE sealed_sends SET state = ? WHERE message_id = ? AND unsealed IS NULL",
                    (ASKING, message_id),
                )
            else:
                db.execute("DELETE FROM sealed_sends WHERE message_id = ?", (message_id,))

    def forget_sealed(self, message_ids: Sequence[bytes]) -> None:
        """Forget these entries' sealed sends (delivered, forgotten by the relay, or failed)."""
        with self._tx() as db:
            db.executemany(
                "DELETE FROM sealed_sends WHERE message_id = ?", [(m,) for m in message_ids]
            )

    def tags_to_ask(self, limit: int) -> list[SealedRecord]:
        """At most ``limit`` sent sealed messages to ask about (the oldest first)."""
        rows = self._read(
            "SELECT message_id, recipient, tag, unsealed, state FROM sealed_sends"
            " WHERE state = ? ORDER BY created_at LIMIT ?",
            ASKING,
            limit,
        )
        return [SealedRecord(bytes(m), r, bytes(t), u, int(s)) for m, r, t, u, s in rows]

    def expire_sealed(self, message_id: bytes, recipient: str, at: float) -> list[DeviceRef]:
        """The relay said the sealed send ``message_id`` to ``recipient`` expired unfetched:
        every device of ``recipient`` not yet past SENT becomes EXPIRED (✗), traced
        ``expired:<device>`` as an EXPIRED notice does; the tag is forgotten. One transaction.
        Returns the devices whose status moved."""
        moved: list[DeviceRef] = []
        with self._tx() as db:
            rows = db.execute(
                "SELECT account, device_id FROM statuses WHERE message_id = ? AND account = ?",
                (message_id, recipient),
            ).fetchall()
            for account, device_id in rows:
                device = DeviceRef(account, device_id)
                if self._advance(db, message_id, device, Status.EXPIRED, at):
                    self._trace(db, message_id, TracePoint.EXPIRED.at(device), at, "tag")
                    moved.append(device)
            db.execute("DELETE FROM sealed_sends WHERE message_id = ?", (message_id,))
        return moved
