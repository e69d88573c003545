"""PostgreSQL: the multi-recipient send (``Store.submit_multi``), in the store's task.

It runs as an ordinary write of the group committer (in the batch's transaction, in its own
savepoint, committed with the batch). As a one-to-one submit does, it first locks the counter
rows of every device of the accounts it names (``FOR UPDATE``, in key order: another node's
send to the same devices waits, and no deadlock can form), then decides by
:mod:`tidings.store._multi`, and only then writes: the shared body once, one inbox row per
device with ``shared_id`` (one ``unnest`` insert), the counters, the idempotency record and new
contacts. A refusal writes nothing. The trigger of migration 0003 deletes the shared body with
the last row that refers to it.
"""

from __future__ import annotations

import asyncpg

from tidings.store import _multi
from tidings.store._pg_inbox import SET_HEADS, columns, lock_heads
from tidings.store.base import (
    InboxItem,
    ItemKind,
    MultiSubmission,
    MultiSubmitResult,
    Stored,
)

_SENT = (
    "SELECT stored_at FROM sent WHERE sender_account = $1 AND sender_device = $2"
    " AND message_id = $3"
)
_CONTACTS = "SELECT account FROM contacts WHERE contact = $1 AND account = ANY($2::text[])"
_INSERT_BODY = "INSERT INTO shared_bodies (body, refs) VALUES ($1, $2) RETURNING id"
_INSERT_ITEMS = (
    "INSERT INTO inbox (account, device_id, seq, kind, sender_account, sender_device,"
    " message_id, payload, enqueued_at, expires_at, stranger, shared_id)"
    " SELECT *, $12::bigint FROM unnest($1::text[], $2::int[], $3::bigint[], $4::smallint[],"
    " $5::text[], $6::int[], $7::bytea[], $8::bytea[], $9::float8[], $10::float8[],"
    " $11::bool[])"
)
_RECORD_SENT = (
    "INSERT INTO sent (sender_account, sender_device, message_id, stored_at, expires_at)"
    " VALUES ($1, $2, $3, $4, $5)"
)
_ADD_CONTACTS = (
    "INSERT INTO contacts (account, contact) SELECT * FROM unnest($1::text[], $2::text[])"
    " ON CONFLICT DO NOTHING"
)
_MESSAGE = int(ItemKind.MESSAGE)


async def submit_multi(conn: asyncpg.Connection, sub: MultiSubmission) -> MultiSubmitResult:
    """Decide and store ``sub`` (see the module docstring)."""
    sender = sub.sender
    accounts = [account for account, _ in sub.recipients]
    locked = await lock_heads(conn, accounts)  # first: a concurrent duplicate waits here
    stored_at = await conn.fetchval(_SENT, sender.account, sender.device_id, sub.message_id)
    if stored_at is not None:
        return Stored(items=(), stored_at=float(stored_at), duplicate=True)
    heads = {ref: head for account_heads in locked.values() for ref, head in account_heads.items()}
    knows = {row[0] for row in await conn.fetch(_CONTACTS, sender.account, accounts)}
    refusal, strangers = _multi.decide(
        sub,
        {account: list(h) for account, h in locked.items()},
        lambda ref: (heads[ref][1], heads[ref][2]),
        lambda account, contact: contact == sender.account and account in knows,
    )
    if refusal is not None:
        return refusal
    count = sum(len(parts) for _, parts in sub.recipients)
    shared_id = await conn.fetchval(_INSERT_BODY, sub.shared, count)
    rows, items, touched = [], [], {}
    now, expires_at, mid = sub.now, sub.expires_at, sub.message_id
    for (_, parts), stranger in zip(sub.recipients, strangers, strict=True):
        for ref, part in parts:
            head = heads[ref]
            head[0] += 1
            head[1] += 1
            head[2] += int(stranger)
            touched[ref] = head
            row = (ref.account, ref.device_id, head[0], _MESSAGE, sender.account)
            rows.append((*row, sender.device_id, mid, part, now, expires_at, stranger))
            item = InboxItem(
                head[0], ItemKind.MESSAGE, sender, mid, part, now, expires_at, sub.shared
            )
            items.append((ref, item))
    await conn.execute(_INSERT_ITEMS, *columns(rows, 11), shared_id)
    counters = [(r.account, r.device_id, h[0], h[1], h[2]) for r, h in touched.items()]
    await conn.execute(SET_HEADS, *columns(counters, 5))
    await conn.execute(_RECORD_SENT, sender.account, sender.device_id, mid, now, expires_at)
    await conn.execute(_ADD_CONTACTS, *columns(_multi.new_contacts(sub), 2))
    return Stored(items=tuple(items), stored_at=now)
