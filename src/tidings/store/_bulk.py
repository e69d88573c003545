"""Set-based execution of a run of consecutive submits and acks (on the store's thread).

The per-operation path (:mod:`tidings.store._sql_inbox`, one ``SAVEPOINT`` each) costs four to
six statements per submit. Here a *segment* — consecutive submits and acks of one batch, with no
other operation between them — is decided in Python from the
:class:`~tidings.store._heads.HeadCache` in enqueue order, and written with one ``executemany``
for all its inbox rows, one for all its idempotency records and one for the touched counters.

Why the answers are the same as op by op:

* A submit is decided before anything of it is written, from counters that already include every
  earlier operation of the segment (acks of a device are applied before a later submit to it
  is checked), so a refused send writes nothing, and an accepted one takes the same seqs.
* Duplicates inside the segment are found in Python. A duplicate of a record committed earlier
  is found by the ``INSERT … ON CONFLICT DO NOTHING`` of all the segment's records changing
  fewer rows than it was given: then :class:`Replan` is raised, and the group committer rolls
  the transaction back and runs the batch again op by op (rare: only retries do this).
* Any statement that fails raises likewise: nothing of the batch is kept, the committer
  empties the head cache (which the segment changed as it went) and falls back to the
  per-operation path, which answers each operation exactly.
* Acks are applied in order relative to the submits of their device: pending acks of a device are
  flushed (after its pending inbox rows) before a later submit to that device is decided.
  Consecutive acks of one device become one ``DELETE … RETURNING seq``, split per ack in order.
"""

from __future__ import annotations

import sqlite3
from bisect import bisect_right
from dataclasses import dataclass

from tidings.store._heads import HeadCache, Heads
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
_SENT_AT = (
    "SELECT stored_at FROM sent WHERE sender_account = ? AND sender_device = ? AND message_id = ?"
)
_RECORD_SENT = (
    "INSERT INTO sent (sender_account, sender_device, message_id, stored_at, expires_at)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
_INSERT_ITEM = (
    "INSERT INTO inbox (account, device_id, seq, kind, sender_account, sender_device,"
    " message_id, payload, enqueued_at, expires_at, stranger) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)
_SET_HEAD = (
    "UPDATE devices SET last_seq = ?, depth = ?, strangers = ? WHERE account = ? AND device_id = ?"
)
_ACK = "DELETE FROM inbox WHERE account = ? AND device_id = ? AND seq <= ?"
_ACK_SEQS = (
    "DELETE FROM inbox WHERE account = ? AND device_id = ? AND seq <= ? RETURNING seq, stranger"
)
_SHRINK = (
    "UPDATE devices SET depth = depth - ?, strangers = strangers - ?"
    " WHERE account = ? AND device_id = ?"
)
_ADD_CONTACT = "INSERT INTO contacts (account, contact) VALUES (?, ?) ON CONFLICT DO NOTHING"

_MESSAGE = ItemKind.MESSAGE


@dataclass(frozen=True, slots=True)
class SubmitOp:
    """A submit to run set-based."""

    sub: Submission


@dataclass(frozen=True, slots=True)
class AckOp:
    """An ack to run set-based."""

    device: DeviceRef
    up_to_seq: int


BulkOp = SubmitOp | AckOp
Outcome = tuple[bool, object]  #: (succeeded, result or exception), as the group committer's


class Replan(Exception):
    """The segment met something it cannot answer set-based: redo it op by op."""


def run_segment(conn: sqlite3.Connection, cache: HeadCache, ops: list[object]) -> list[Outcome]:
    """Run ``ops`` (each a :data:`BulkOp`) in order; their outcomes, in the same order.

    On any exception the caller must roll back everything the segment wrote (the group
    committer rolls back the transaction), empty ``cache`` and run the operations one by one.
    """
    segment = _Segment(conn, cache, len(ops))
    for index, op in enumerate(ops):
        if isinstance(op, SubmitOp):
            segment.submit(index, op.sub)
        elif isinstance(op, AckOp):
            segment.ack(index, op.device, op.up_to_seq)
        else:  # pragma: no cover - a caller bug
            raise TypeError(f"not a bulk operation: {op!r}")
    segment.finish()
    return segment.outcomes


class _Segment:
    def __init__(self, conn: sqlite3.Connection, cache: HeadCache, size: int) -> None:
        self.conn = conn
        self.cache = cache
        self.outcomes: list[Outcome] = [(True, None)] * size
        #: accounts read in this segment: never read twice, so an eviction from the cache
        #: cannot bring back a value older than what the segment already changed.
        self.accounts: dict[str, Heads | None] = {}
        self.sent: dict[tuple[str, int, bytes], float] = {}  #: records of this segment
        self.records: list[tuple[str, int, bytes, float, float]] = []
        self.rows: list[tuple[object, ...]] = []
        #: counters to write back, by ``id`` of the cache's list (hashing a DeviceRef is slow)
        self.dirty: dict[int, tuple[DeviceRef, list[int]]] = {}
        self.acks: dict[DeviceRef, list[tuple[int, int]]] = {}  #: (index, up_to), in order
        self.contacts: dict[tuple[str, str], None] = {}  #: new pairs of this segment, in order

    def is_contact(self, account: str, contact: str) -> bool:
        return (account, contact) in self.contacts or self.cache.is_contact(
            self.conn, account, contact
        )

    def heads(self, account: str) -> Heads | None:
        try:
            return self.accounts[account]
        except KeyError:
            heads = self.accounts[account] = self.cache.get(self.conn, account)
            return heads

    def submit(self, index: int, sub: Submission) -> None:
        sender = sub.sender
        key = (sender.account, sender.device_id, sub.message_id)
        pending = self.sent.get(key)
        if pending is not None:
            self.outcomes[index] = (True, Stored(items=(), stored_at=pending, duplicate=True))
            return
        if self.acks:
            for ref, _ in sub.payloads:
                if ref in self.acks:
                    self.flush_acks(ref)
        recipient = self.heads(sub.recipient)
        own = recipient if sender.account == sub.recipient else self.heads(sender.account)
        stranger = is_stranger(sub, self.is_contact)
        heads = _exact_targets(sub, recipient, own, stranger)
        if heads is None:  # not the exact device set, or a queue full: the rules decide
            try:
                refusal = self.refusal(sub, recipient, own, stranger)
            except Exception as exc:
                self.outcomes[index] = self.unless_duplicate(key, (False, exc))
                return
            if refusal is not None:
                self.outcomes[index] = self.unless_duplicate(key, (True, refusal))
                return
            heads = [(ref, payload, _head(recipient, own, ref)) for ref, payload in sub.payloads]
        now, expires_at, message_id = sub.now, sub.expires_at, sub.message_id
        items = []
        rows, dirty = self.rows, self.dirty
        account = sub.recipient
        for ref, payload, head in heads:
            seq = head[0] = head[0] + 1
            head[1] += 1
            flag = 1 if stranger and ref.account == account else 0
            head[2] += flag
            dirty[id(head)] = (ref, head)
            rows.append(
                (ref.account, ref.device_id, seq, _MESSAGE, *key, payload, now, expires_at, flag)
            )
            items.append(
                (ref, InboxItem(seq, _MESSAGE, sender, message_id, payload, now, expires_at))
            )
        if sender.account != account and not self.cache.knows_contact(sender.account, account):
            self.contacts[sender.account, account] = None
        self.sent[key] = now
        self.records.append((*key, now, expires_at))
        self.outcomes[index] = (True, Stored(items=tuple(items), stored_at=now))

    def refusal(
        self, sub: Submission, recipient: Heads | None, own: Heads | None, stranger: bool
    ) -> DeviceMismatch | QueueFull | None:
        """The rules of ``tidings.store._rules``, as the per-operation path applies them."""
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

    def unless_duplicate(self, key: tuple[str, int, bytes], outcome: Outcome) -> Outcome:
        """A refusal, unless the send was stored before: duplicates are answered first."""
        row = self.conn.execute(_SENT_AT, key).fetchone()
        return (
            outcome if row is None else (True, Stored(items=(), stored_at=row[0], duplicate=True))
        )

    def ack(self, index: int, device: DeviceRef, up_to_seq: int) -> None:
        pending = self.acks.get(device)
        if pending is None:
            self.acks[device] = [(index, up_to_seq)]
        else:
            pending.append((index, up_to_seq))

    def flush_acks(self, device: DeviceRef) -> None:
        pending = self.acks.pop(device)
        if self.rows:
            self.flush_rows()  # earlier submits to the device come before these acks
        account, device_id = device.account, device.device_id
        heads = self.heads(account)
        head = None if heads is None else heads.get(device)
        strangers = 0
        if len(pending) == 1 and head is not None and not head[2]:
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
        if not deleted:
            return
        if head is None:  # pragma: no cover - items of a device that does not exist
            self.conn.execute(_SHRINK, (deleted, strangers, account, device_id))
            return
        head[1] -= deleted
        head[2] -= strangers
        self.dirty[id(head)] = (device, head)

    def flush_rows(self) -> None:
        self.conn.executemany(_INSERT_ITEM, self.rows)
        self.rows.clear()

    def finish(self) -> None:
        if self.records:
            changed = self.conn.executemany(_RECORD_SENT, self.records).rowcount
            if changed != len(self.records):
                raise Replan("a send of the segment was stored by an earlier transaction")
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
            for pair in self.contacts:
                self.cache.add_contact(*pair)


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
