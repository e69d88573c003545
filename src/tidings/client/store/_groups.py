"""The group side of the client store (issue 12): op logs, their replayed state, sender keys.

:meth:`Groups.commit_group` is the one write: the changes a device learned or made, the state
their replay gives, the sender-key records that moved and the content it queues, in ONE
transaction (with the cursor and the pairwise session state when it handles a received item).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tidings.delivery import Message
from tidings.delivery.groups import GroupOp, GroupState
from tidings.e2e.senderkey import SenderKeyRecord
from tidings.refs import DeviceRef

from ._crypto import CryptoWrites
from ._incoming import Incoming
from ._sql import MSG_COLS, NEXT_SHOWN
from .records import Direction, OutboxRequest, TracePoint

__all__ = ["GroupWrites", "Groups"]


@dataclass(slots=True)
class GroupWrites:
    """What one group step changed, to commit together (see :meth:`Groups.commit_group`).

    Attributes:
        ops: changes to add to their group's log (known ones are ignored).
        states: the replayed state of each group whose log changed.
        records: sender-key records that moved, by (group, sender device).
        given: per group, the devices that have this device's current key (replaces the set).
        requests: content to queue (exempt from the outbox bound, as receipts).
    """

    ops: list[GroupOp] = field(default_factory=list)
    states: list[GroupState] = field(default_factory=list)
    records: dict[tuple[bytes, DeviceRef], SenderKeyRecord] = field(default_factory=dict)
    given: dict[bytes, frozenset[DeviceRef]] = field(default_factory=dict)
    requests: list[OutboxRequest] = field(default_factory=list)


class Groups(Incoming):
    """The group methods of :class:`~tidings.client.store.ClientStore`."""

    if TYPE_CHECKING:  # the outbox mixin's, in ClientStore

        def _me(self, db: sqlite3.Connection) -> DeviceRef: ...

        def _check_room(self, db: sqlite3.Connection) -> None: ...

    def group_ops(self) -> dict[bytes, list[GroupOp]]:
        """Every stored change, by group."""
        out: dict[bytes, list[GroupOp]] = {}
        for group_id, data in self._read("SELECT group_id, op FROM group_ops"):
            out.setdefault(bytes(group_id), []).append(GroupOp.parse(bytes(data)))
        return out

    def sender_keys(
        self,
    ) -> tuple[dict[tuple[bytes, DeviceRef], SenderKeyRecord], dict[bytes, set[DeviceRef]]]:
        """Every sender-key record, and per group the devices given this device's key."""
        records = {
            (bytes(g), DeviceRef(a, d)): SenderKeyRecord.parse(bytes(r))
            for g, a, d, r in self._read("SELECT * FROM group_sender_keys")
        }
        given: dict[bytes, set[DeviceRef]] = {}
        for g, a, d in self._read("SELECT * FROM group_key_given"):
            given.setdefault(bytes(g), set()).add(DeviceRef(a, d))
        return records, given

    def group_members(self, group_id: bytes) -> list[tuple[str, bool]]:
        """The stored members of a group (account, admin), sorted."""
        rows = self._read(
            "SELECT account, admin FROM group_members WHERE group_id = ? ORDER BY account",
            group_id,
        )
        return [(a, bool(admin)) for a, admin in rows]

    def commit_group(
        self,
        writes: GroupWrites,
        now: float,
        seq: int | None = None,
        crypto: CryptoWrites | None = None,
    ) -> bool:
        """Commit a group step in ONE transaction; with ``seq``, the received item it handled
        (False, nothing else changed, if ``seq`` is not above the cursor)."""
        with self._tx(crypto) as db:
            if seq is not None and not self._move_cursor(db, seq):
                return False
            db.executemany(
                "INSERT OR IGNORE INTO group_ops VALUES (?, ?, ?)",
                [(op.group_id, op.op_id, op.serialize()) for op in writes.ops],
            )
            for state in writes.states:
                self._save_state(db, state, now)
            self._save_keys(db, writes.records, writes.given)
            for r in writes.requests:
                self._insert_outbox(db, r)
            return True

    def _save_state(self, db: sqlite3.Connection, state: GroupState, now: float) -> None:
        g = state.group_id
        db.execute("INSERT OR REPLACE INTO groups VALUES (?, ?, ?)", (g, state.name, now))
        db.execute("DELETE FROM group_members WHERE group_id = ?", (g,))
        db.executemany(
            "INSERT INTO group_members VALUES (?, ?, ?)",
            [(g, a, int(a in state.admins)) for a in sorted(state.members)],
        )

    def _save_keys(
        self,
        db: sqlite3.Connection,
        records: Mapping[tuple[bytes, DeviceRef], SenderKeyRecord],
        given: Mapping[bytes, Iterable[DeviceRef]],
    ) -> None:
        db.executemany(
            "INSERT OR REPLACE INTO group_sender_keys VALUES (?, ?, ?, ?)",
            [(g, d.account, d.device_id, r.serialize()) for (g, d), r in records.items()],
        )
        for g, devices in given.items():
            db.execute("DELETE FROM group_key_given WHERE group_id = ?", (g,))
            db.executemany(
                "INSERT INTO group_key_given VALUES (?, ?, ?)",
                [(g, d.account, d.device_id) for d in devices],
            )

    def group_requests(self, requests: Sequence[OutboxRequest]) -> None:
        """Queue group content outside a group step (exempt from the outbox bound)."""
        self.queue_receipts(requests)

    def compose_group(
        self,
        message_id: bytes,
        conversation: str,
        body: bytes,
        now: float,
        seal: Callable[[Message], GroupWrites],
    ) -> Message:
        """Queue a new group message from this device, as :meth:`compose` does a 1:1 one (its
        counter allocated in the same transaction: G2, G4): ``seal`` encrypts the message and
        says what it queues and which sender-key records moved; the sent row's recipient is
        the group conversation. One transaction, durable on return.

        Raises:
            OutboxFullError: the outbox is full (nothing changed).
            ContentError: the body is invalid.
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
            writes = seal(message)
            db.execute(
                f"INSERT INTO messages ({MSG_COLS}) VALUES"
                f" (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, NULL, {NEXT_SHOWN}, NULL,"
                " 0, NULL)",
                (
                    *(message_id, me.account, me.device_id, conversation, message.counter, body),
                    *(now, int(Direction.OUT), conversation),
                ),
            )
            self._trace(db, message_id, TracePoint.COMPOSED, now, None)
            self._save_keys(db, writes.records, writes.given)
            for r in writes.requests:
                self._insert_outbox(db, r)
        return message

    def find_groups(self, text: str) -> list[bytes]:
        """The groups ``text`` names: their exact name, else a prefix of their hex id."""
        rows = self._read("SELECT group_id FROM groups WHERE name = ?", text)
        if not rows:
            rows = self._read(
                "SELECT group_id FROM groups WHERE lower(hex(group_id)) LIKE ? || '%'",
                text.lower(),
            )
        return [bytes(r[0]) for r in rows]
