"""Submits and acks on PostgreSQL, set-based: the one path they take (in the store's task).

The group committer hands this module a *segment*: the consecutive submits and acks of one
batch. It runs in three steps, with a fixed number of statements whatever the segment's size:

1. **Lock and read.** The counter rows ``[last_seq, depth, strangers]`` of every device of every
   account the segment names, ``SELECT … FOR UPDATE`` in key order; then, in statements of
   their own (READ COMMITTED: each sees what was committed while the lock was awaited), the
   idempotency records of its sends, the contact pairs it asks about, and the acks: one
   ``DELETE … RETURNING`` of every acked range of committed rows.
2. **Decide** every operation in enqueue order, in Python, by the rules of
   :mod:`tidings.store._rules`, from those values as the operations before it left them.
3. **Write**: one ``INSERT … SELECT FROM unnest(…)`` for all inbox rows, one for all
   idempotency records, one ``UPDATE … FROM unnest(…)`` for the counters, one for contacts.

Why the answers are those of running the operations one by one, on one node or several:

* A device's seqs are taken under its counter row's lock, held to the commit: another node's
  writes to the device wait for it, then read the counter this one left (gapless, never reused).
* Every node locks counter rows in the same order (account, device id), before any inbox row,
  so segments do not deadlock each other; what does (a batch of several segments, an expiry)
  is detected by PostgreSQL and the batch runs again (:mod:`tidings.store._pg_commit`).
* A retry of a send on two nodes at once: both lock the sender's own counter rows first, so
  the second reads the record of the first after it committed, and answers a duplicate.
* A submit is decided before anything of it is written, so a refusal writes nothing. An ack
  counts the committed rows its range took (in enqueue order against the other acks of the
  device) and the rows queued earlier in the segment, which are then never written.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from tidings.errors import IntegrityError
from tidings.store._inbox_writes import AckOp, SubmitOp
from tidings.store._lookup import SentKey
from tidings.store._rules import check_targets, first_full, is_stranger
from tidings.store.base import DeviceRef, InboxItem, ItemKind, Stored, Submission

Outcome = tuple[bool, object]  #: (succeeded, result or exception), as the group committer's

#: ``[last_seq, depth, strangers]`` of each device of one account, by device.
Heads = dict[DeviceRef, list[int]]

HEADS = (
    "SELECT account, device_id, last_seq, depth, strangers FROM devices"
    " WHERE account = ANY($1::text[]) ORDER BY account, device_id FOR UPDATE"
)
SET_HEADS = (
    "UPDATE devices AS d SET last_seq = k.l, depth = k.n, strangers = k.s"
    " FROM unnest($1::text[], $2::int[], $3::bigint[], $4::int[], $5::int[]) AS k(a, i, l, n, s)"
    " WHERE d.account = k.a AND d.device_id = k.i"
)
INSERT_ITEMS = (
    "INSERT INTO inbox (account, device_id, seq, kind, sender_account, sender_device,"
    " message_id, payload, enqueued_at, expires_at, stranger)"
    " SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::smallint[], $5::text[],"
    " $6::int[], $7::bytea[], $8::bytea[], $9::float8[], $10::float8[], $11::bool[])"
)
_SENT = (
    "SELECT s.sender_account, s.sender_device, s.message_id, s.stored_at FROM sent AS s"
    " JOIN unnest($1::text[], $2::int[], $3::bytea[]) AS k(a, d, m)"
    " ON s.sender_account = k.a AND s.sender_device = k.d AND s.message_id = k.m"
)
_CONTACTS = (
    "SELECT t.account, t.contact FROM contacts AS t JOIN unnest($1::text[], $2::text[])"
    " AS k(a, c) ON t.account = k.a AND t.contact = k.c"
)
_ACCOUNTS = "SELECT account FROM accounts WHERE account = ANY($1::text[])"
_ACK = (
    "DELETE FROM inbox AS i USING unnest($1::text[], $2::int[], $3::bigint[]) AS k(a, d, up)"
    " WHERE i.account = k.a AND i.device_id = k.d AND i.seq <= k.up"
    " RETURNING i.account, i.device_id, i.seq, i.stranger"
)
_ACK_ONE = (
    "DELETE FROM inbox WHERE account = $1 AND device_id = $2 AND seq <= $3 RETURNING seq, stranger"
)
_RECORD_SENT = (
    "INSERT INTO sent (sender_account, sender_device, message_id, stored_at, expires_at)"
    " SELECT * FROM unnest($1::text[], $2::int[], $3::bytea[], $4::float8[], $5::float8[])"
)
_ADD_CONTACTS = (
    "INSERT INTO contacts (account, contact) SELECT * FROM unnest($1::text[], $2::text[])"
    " ON CONFLICT DO NOTHING"
)

_MESSAGE = ItemKind.MESSAGE


async def lock_heads(conn: asyncpg.Connection, accounts: list[str]) -> dict[str, Heads]:
    """Lock and read the counter rows of every device of ``accounts``, in key order."""
    heads: dict[str, Heads] = {}
    for row in await conn.fetch(HEADS, sorted(accounts)):
        ref = DeviceRef(row[0], row[1])
        heads.setdefault(ref.account, {})[ref] = [row[2], row[3], row[4]]
    return heads


def columns(rows: Sequence[tuple[object, ...]], width: int) -> list[list[object]]:
    """``rows`` as ``width`` column arrays, the arguments of an ``unnest`` statement."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


async def run_segment(conn: asyncpg.Connection, ops: list[object]) -> list[Outcome]:
    """Run ``ops`` (each a :class:`SubmitOp` or :class:`AckOp`) in order; their outcomes.

    Raises:
        asyncpg.PostgresError: a statement failed; the caller rolls the transaction back.
    """
    segment = await _Segment.read(conn, ops)
    for index, op in enumerate(ops):
        if isinstance(op, SubmitOp):
            segment.submit(index, op.sub)
        elif isinstance(op, AckOp):
            segment.ack(index, op.device, op.up_to_seq)
        else:  # pragma: no cover - a caller bug
            raise TypeError(f"not an inbox operation: {op!r}")
    await segment.write(conn)
    return segment.outcomes


@dataclass(slots=True)
class _Row:
    values: tuple[object, ...]  #: the ``inbox`` columns, in INSERT_ITEMS order
    seq: int
    stranger: bool
    alive: bool = True  #: ``False``: acked later in the segment, never written


@dataclass(slots=True)
class _Segment:
    heads: dict[str, Heads]
    sent: dict[SentKey, float]
    contacts: set[tuple[str, str]]
    accounts: set[str]  #: the named accounts that exist
    #: committed rows the segment's acks deleted, ``(seq, stranger)`` by seq, per device
    gone: dict[DeviceRef, list[tuple[int, bool]]]
    outcomes: list[Outcome]
    taken: dict[DeviceRef, int] = field(default_factory=dict)  #: how many of ``gone`` acks took
    rows: dict[DeviceRef, list[_Row]] = field(default_factory=dict)  #: queued in the segment
    records: list[tuple[object, ...]] = field(default_factory=list)
    new_contacts: dict[tuple[str, str], None] = field(default_factory=dict)
    dirty: dict[DeviceRef, list[int]] = field(default_factory=dict)

    @classmethod
    async def read(cls, conn: asyncpg.Connection, ops: list[object]) -> _Segment:
        accounts: dict[str, None] = {}
        keys: dict[SentKey, None] = {}
        pairs: dict[tuple[str, str], None] = {}
        acked: dict[DeviceRef, int] = {}
        for op in ops:
            if isinstance(op, AckOp):
                accounts[op.device.account] = None
                acked[op.device] = max(op.up_to_seq, acked.get(op.device, op.up_to_seq))
                continue
            assert isinstance(op, SubmitOp)
            sub = op.sub
            accounts[sub.recipient] = accounts[sub.sender.account] = None
            keys[sub.sender.account, sub.sender.device_id, sub.message_id] = None
            if sub.sender.account != sub.recipient:
                pairs[sub.sender.account, sub.recipient] = None  # to be written unless known
                pairs[sub.recipient, sub.sender.account] = None  # is the sender a stranger?
        heads = await lock_heads(conn, list(accounts))
        sent = {}
        if keys:
            found = await conn.fetch(_SENT, *columns(list(keys), 3))
            sent = {(row[0], row[1], bytes(row[2])): row[3] for row in found}
        contacts = set()
        if pairs:
            found = await conn.fetch(_CONTACTS, *columns(list(pairs), 2))
            contacts = {(row[0], row[1]) for row in found}
        known = set(heads)
        if missing := [account for account in accounts if account not in heads]:
            known.update(row[0] for row in await conn.fetch(_ACCOUNTS, missing))
        gone: dict[DeviceRef, list[tuple[int, bool]]] = {}
        if len(acked) == 1:  # one device: its partition is known when the plan is made
            ((ref, up_to),) = acked.items()
            found = await conn.fetch(_ACK_ONE, ref.account, ref.device_id, up_to)
            gone[ref] = sorted((row[0], row[1]) for row in found)
        elif acked:
            ranges = [(ref.account, ref.device_id, up_to) for ref, up_to in acked.items()]
            for row in await conn.fetch(_ACK, *columns(ranges, 3)):
                gone.setdefault(DeviceRef(row[0], row[1]), []).append((row[2], row[3]))
            for found_rows in gone.values():
                found_rows.sort()
        return cls(heads, sent, contacts, known, gone, [(True, None)] * len(ops))

    def head(self, ref: DeviceRef) -> list[int] | None:
        heads = self.heads.get(ref.account)
        return None if heads is None else heads.get(ref)

    def submit(self, index: int, sub: Submission) -> None:
        sender = sub.sender
        key: SentKey = (sender.account, sender.device_id, sub.message_id)
        stored_at = self.sent.get(key)
        if stored_at is not None:  # rule 1: a duplicate, of this segment or an earlier commit
            self.outcomes[index] = (True, Stored(items=(), stored_at=stored_at, duplicate=True))
            return
        current: Heads = {**self.heads.get(sub.recipient, {}), **self.heads.get(sender.account, {})}
        stranger = is_stranger(sub, lambda account, contact: (account, contact) in self.contacts)
        try:
            refusal = check_targets(sub, current, sub.recipient in self.accounts) or first_full(
                sub,
                lambda ref: current[ref][1],
                (lambda ref: current[ref][2]) if stranger else None,
            )
        except IntegrityError as exc:
            self.outcomes[index] = (False, exc)
            return
        if refusal is not None:
            self.outcomes[index] = (True, refusal)
            return
        items = []
        for ref, payload in sub.payloads:
            head = current[ref]
            seq = head[0] = head[0] + 1
            flag = stranger and ref.account == sub.recipient
            head[1] += 1
            head[2] += flag
            self.dirty[ref] = head
            values = (ref.account, ref.device_id, seq, int(_MESSAGE), *key, payload)
            self.rows.setdefault(ref, []).append(
                _Row((*values, sub.now, sub.expires_at, flag), seq, flag)
            )
            item = InboxItem(
                seq, _MESSAGE, sender, sub.message_id, payload, sub.now, sub.expires_at
            )
            items.append((ref, item))
        pair = (sender.account, sub.recipient)
        if pair[0] != pair[1] and pair not in self.contacts:
            self.contacts.add(pair)
            self.new_contacts[pair] = None
        self.sent[key] = sub.now
        self.records.append((*key, sub.now, sub.expires_at))
        self.outcomes[index] = (True, Stored(items=tuple(items), stored_at=sub.now))

    def ack(self, index: int, device: DeviceRef, up_to_seq: int) -> None:
        head = self.head(device)
        if head is None:  # no such device: it has no items
            self.outcomes[index] = (True, 0)
            return
        committed = self.gone.get(device, [])
        before = self.taken.get(device, 0)
        upto = max(before, bisect_right(committed, (up_to_seq, True)))
        self.taken[device] = upto
        deleted = upto - before
        strangers = sum(flag for _, flag in committed[before:upto])
        for row in self.rows.get(device, ()):
            if row.alive and row.seq <= up_to_seq:
                row.alive = False
                deleted += 1
                strangers += row.stranger
        if deleted:
            head[1] -= deleted
            head[2] -= strangers
            self.dirty[device] = head
        self.outcomes[index] = (True, deleted)

    async def write(self, conn: asyncpg.Connection) -> None:
        rows = [row.values for queued in self.rows.values() for row in queued if row.alive]
        if rows:
            await conn.execute(INSERT_ITEMS, *columns(rows, 11))
        if self.records:
            await conn.execute(_RECORD_SENT, *columns(self.records, 5))
        if self.dirty:
            heads = [(ref.account, ref.device_id, *head) for ref, head in self.dirty.items()]
            await conn.execute(SET_HEADS, *columns(heads, 5))
        if self.new_contacts:
            await conn.execute(_ADD_CONTACTS, *columns(list(self.new_contacts), 2))
