"""Submits and acks on SQLite, set-based: the one path they take (on the store's thread).

The group committer hands this module a *segment*: the consecutive submits and acks of one batch
(a batch of one is a segment of one). It runs in three steps:

1. **Read**, once for the whole segment (:mod:`tidings.store._lookup`): the counters of every
   device of every account the segment names, the idempotency records of its sends that were
   committed before, and the contact pairs it asks about.
2. **Decide** every operation in enqueue order, in Python, by the rules of
   :mod:`tidings.store._rules`, from those values as the operations before it left them.
3. **Write**: one ``executemany`` for all inbox rows, one for all idempotency records, one for
   the counters, one for new contacts; acks of a device become one ``DELETE`` of its range.

Why the answers are those of running the operations one by one:

* A submit is decided before anything of it is written, from counters that include every
  earlier operation of the segment, so a refused send writes nothing and an accepted one takes
  the seqs it would have taken alone.
* Duplicates are answered first: a send committed before is in the records read in step 1, one
  of the same segment in the records it stored so far.
* An ack deletes what a lone ack would: the rows queued to its device earlier in the segment are
  written before the ``DELETE``, and a later submit to that device is decided only after the
  pending acks of the device were applied (so the room they make counts).

Nothing here is kept between segments (no cache to invalidate), and nothing is redone: if a
statement fails (disk full, I/O error) the exception propagates, the group committer rolls the
transaction back and the whole batch fails with it — nothing of it is kept.
"""

from __future__ import annotations

import sqlite3
from bisect import bisect_right
from dataclasses import dataclass

from tidings.store._expiry_order import ArrivalOrder
from tidings.store._lookup import Heads, Known, SentKey, lookup, record_key
from tidings.store._rules import check_targets, first_full, is_stranger
from tidings.store.base import (
    DeviceMismatch,
    DeviceRef,
    InboxItem,
    ItemKind,
    QueueFull,
    Stored,
    Submission,
)

_ACCOUNT_EXISTS = "SELECT 1 FROM accounts WHERE account = ?"
_RECORD_SENT = (
    "INSERT INTO sent (sender_account, sender_device, id_key, stored_at, expires_at)"
    " VALUES (?, ?, ?, ?, ?)"
)
_INSERT_ITEM = (
    "INSERT INTO inbox (account, device_id, seq, kind, sender_account, sender_device,"
    " message_id, payload, enqueued_at, expires_at, stranger, out_of_order)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
)
_SET_HEAD = (
    "UPDATE devices SET last_seq = ?, depth = ?, strangers = ? WHERE account = ? AND device_id = ?"
)
_ACK = "DELETE FROM inbox WHERE account = ? AND device_id = ? AND seq <= ?"
_ACK_SEQS = (
    "DELETE FROM inbox WHERE account = ? AND device_id = ? AND seq <= ? RETURNING seq, stranger"
)
_ADD_CONTACT = "INSERT INTO contacts (account, contact) VALUES (?, ?)"

_MESSAGE = ItemKind.MESSAGE


class _Unordered(ArrivalOrder):
    """Flags every row out of order (for a caller without the store's :class:`ArrivalOrder`)."""

    __slots__ = ()

    def flag(self, conn: sqlite3.Connection, expires_at: float) -> int:
        return 1


_UNORDERED = _Unordered()


@dataclass(frozen=True, slots=True)
class SubmitOp:
    """A submit, as the group committer queues it."""

    sub: Submission


@dataclass(frozen=True, slots=True)
class AckOp:
    """An ack, as the group committer queues it."""

    device: DeviceRef
    up_to_seq: int


InboxOp = SubmitOp | AckOp
Outcome = tuple[bool, object]  #: (succeeded, result or exception), as the group committer's


def run_segment(
    conn: sqlite3.Connection, ops: list[object], order: ArrivalOrder | None = None
) -> list[Outcome]:
    """Run ``ops`` (each an :data:`InboxOp`) in order; their outcomes, in the same order.

    ``order`` flags the new rows for expiry (:mod:`tidings.store._expiry_order`): the store's
    own, which lives as long as it; without it every row is flagged out of order (correct, but
    each then takes an index entry).

    Raises:
        sqlite3.Error: a statement failed; the caller must roll the transaction back.
    """
    segment = _Segment(conn, lookup(conn, ops), len(ops), order or _UNORDERED)
    for index, op in enumerate(ops):
        if isinstance(op, SubmitOp):
            segment.submit(index, op.sub)
        elif isinstance(op, AckOp):
            segment.ack(index, op.device, op.up_to_seq)
        else:  # pragma: no cover - a caller bug
            raise TypeError(f"not an inbox operation: {op!r}")
    segment.finish()
    return segment.outcomes


class _Segment:
    def __init__(
        self, conn: sqlite3.Connection, known: Known, size: int, order: ArrivalOrder
    ) -> None:
        self.conn = conn
        self.order = order
        self.known = known
        self.outcomes: list[Outcome] = [(True, None)] * size
        self.records: list[tuple[str, int, bytes, float, float]] = []
        self.rows: list[tuple[object, ...]] = []
        #: counters to write back, by ``id`` of the list (hashing a DeviceRef is slow)
        self.dirty: dict[int, tuple[DeviceRef, list[int]]] = {}
        self.acks: dict[DeviceRef, list[tuple[int, int]]] = {}  #: (index, up_to), in order
        self.contacts: dict[tuple[str, str], None] = {}  #: new pairs of this segment, in order

    def is_contact(self, account: str, contact: str) -> bool:
        return (account, contact) in self.known.contacts

    def submit(self, index: int, sub: Submission) -> None:
        sender = sub.sender
        key: SentKey = (sender.account, sender.device_id, sub.message_id)
        stored_at = self.known.sent.get(key)
        if stored_at is not None:  # rule 1: a duplicate, of this segment or of an earlier one
            self.outcomes[index] = (True, Stored(items=(), stored_at=stored_at, duplicate=True))
            return
        if self.acks:
            for ref, _ in sub.payloads:
                if ref in self.acks:
                    self.flush_acks(ref)
        recipient = self.known.heads.get(sub.recipient)
        own = recipient if sender.account == sub.recipient else self.known.heads.get(sender.account)
        stranger = is_stranger(sub, self.is_contact)
        heads = _exact_targets(sub, recipient, own, stranger)
        if heads is None:  # not the exact device set, or a queue full: the rules decide
            try:
                refusal = self.refusal(sub, recipient, own, stranger)
            except Exception as exc:
                self.outcomes[index] = (False, exc)
                return
            if refusal is not None:
                self.outcomes[index] = (True, refusal)
                return
            heads = [(ref, payload, _head(recipient, own, ref)) for ref, payload in sub.payloads]
        self.store(index, sub, key, heads, stranger)

    def store(
        self,
        index: int,
        sub: Submission,
        key: SentKey,
        heads: list[tuple[DeviceRef, bytes, list[int]]],
        stranger: bool,
    ) -> None:
        now, expires_at, sender, message_id = sub.now, sub.expires_at, sub.sender, sub.message_id
        items = []
        rows, dirty = self.rows, self.dirty
        account = sub.recipient
        late = self.order.flag(self.conn, expires_at)  # rows go in the order they are made
        for ref, payload, head in heads:
            seq = head[0] = head[0] + 1
            head[1] += 1
            flag = 1 if stranger and ref.account == account else 0
            head[2] += flag
            dirty[id(head)] = (ref, head)
            rows.append(
                (
                    ref.account,
                    ref.device_id,
                    seq,
                    _MESSAGE,
                    *key,
                    payload,
                    now,
                    expires_at,
                    flag,
                    late,
                )
            )
            items.append(
                (ref, InboxItem(seq, _MESSAGE, sender, message_id, payload, now, expires_at))
            )
        pair = (sender.account, account)
        if pair[0] != pair[1] and pair not in self.known.contacts:
            self.known.contacts.add(pair)
            self.contacts[pair] = None
        self.known.sent[key] = now
        self.records.append((key[0], key[1], record_key(key[2]), now, expires_at))
        self.outcomes[index] = (True, Stored(items=tuple(items), stored_at=now))

    def refusal(
        self, sub: Submission, recipient: Heads | None, own: Heads | None, stranger: bool
    ) -> DeviceMismatch | QueueFull | None:
        """The rules of ``tidings.store._rules``, applied to this segment's counters."""
        known = recipient is not None or (
            self.conn.execute(_ACCOUNT_EXISTS, (sub.recipient,)).fetchone() is not None
        )
        if own is recipient:
            heads = recipient or {}
        else:
            heads = {**recipient, **(own or {})} if recipient else (own or {})
        return check_targets(sub, heads, known) or first_full(
            sub, lambda ref: heads[ref][1], (lambda ref: heads[ref][2]) if stranger else None
        )

    def ack(self, index: int, device: DeviceRef, up_to_seq: int) -> None:
        pending = self.acks.get(device)
        if pending is None:
            self.acks[device] = [(index, up_to_seq)]
        else:
            pending.append((index, up_to_seq))

    def flush_acks(self, device: DeviceRef) -> None:
        """Apply the pending acks of ``device``: one ``DELETE`` for all of them."""
        pending = self.acks.pop(device)
        if self.rows:
            self.flush_rows()  # earlier submits to the device come before these acks
        account, device_id = device.account, device.device_id
        heads = self.known.heads.get(account)
        head = None if heads is None else heads.get(device)
        if head is None:  # no such device: it has no items
            for index, _ in pending:
                self.outcomes[index] = (True, 0)
            return
        strangers = 0
        if len(pending) == 1 and not head[2]:
            index, up_to = pending[0]
            deleted: int = self.conn.execute(_ACK, (account, device_id, up_to)).rowcount
            self.outcomes[index] = (True, deleted)
        else:  # several acks, or items from strangers to count
            top = max(up_to for _, up_to in pending)
            found = self.conn.execute(_ACK_SEQS, (account, device_id, top)).fetchall()
            strangers = sum(row[1] for row in found)
            seqs = sorted(row[0] for row in found)
            deleted = len(seqs)
            done = 0  # how many of ``seqs`` the acks before took
            for index, up_to in pending:
                upto = max(done, bisect_right(seqs, up_to))
                self.outcomes[index] = (True, upto - done)
                done = upto
        if deleted:
            head[1] -= deleted
            head[2] -= strangers
            self.dirty[id(head)] = (device, head)

    def flush_rows(self) -> None:
        self.conn.executemany(_INSERT_ITEM, self.rows)
        self.rows.clear()

    def finish(self) -> None:
        if self.records:
            self.conn.executemany(_RECORD_SENT, self.records)
        if self.rows:
            self.flush_rows()  # before the acks left: a submit after an ack flushed that ack
        for device in list(self.acks):
            self.flush_acks(device)
        if self.dirty:
            self.conn.executemany(
                _SET_HEAD,
                [
                    (head[0], head[1], head[2], ref.account, ref.device_id)
                    for ref, head in self.dirty.values()
                ],
            )
        if self.contacts:
            self.conn.executemany(_ADD_CONTACT, list(self.contacts))


def _head(recipient: Heads | None, own: Heads | None, ref: DeviceRef) -> list[int]:
    heads = recipient if recipient is not None and ref in recipient else own
    assert heads is not None
    return heads[ref]


def _exact_targets(
    sub: Submission, recipient: Heads | None, own: Heads | None, stranger: bool
) -> list[tuple[DeviceRef, bytes, list[int]]] | None:
    """The targets with their counters if the send is accepted as it stands, else ``None``.

    Accepted: every current device of the recipient named exactly once, and all or none of the
    sender's other devices, none at its queue limit nor, for a ``stranger``'s send, a recipient
    device at its stranger share — what :func:`check_targets` and :func:`first_full` accept.
    ``None`` says nothing: the caller applies those rules.
    """
    if recipient is None:
        return None
    sender, limit = sub.sender, sub.max_queue
    account = sub.recipient
    separate = own is not recipient and own is not None
    own_others = 0
    if separate:
        assert own is not None
        own_others = len(own) - (sender in own)
    found = []
    own_named = 0
    share = sub.max_stranger_queue if stranger else None
    for ref, payload in sub.payloads:
        if ref.account == account:
            heads: Heads | None = recipient
            if share is not None and ref in recipient and recipient[ref][2] >= share:
                return None
        else:
            heads = own
            own_named += 1
        head = None if heads is None else heads.get(ref)
        if head is None or ref == sender or head[1] >= limit:
            return None
        found.append((ref, payload, head))
    if own_named not in (0, own_others) or len(found) - own_named != len(recipient) - (
        not separate and sender in recipient
    ):
        return None
    if len(found) > 1 and len({ref for ref, _, _ in found}) != len(found):
        return None
    return found
