"""PostgreSQL: the sealed multi-recipient send (``Store.submit_sealed_multi``), in the store's
task.

It runs as an ordinary write of the group committer (in the batch's transaction, in its own
savepoint, committed with the batch). It reads the accounts' access keys and decides rule 1 of
:mod:`tidings.store._sealed_multi`; then, as every writer to inboxes does, locks the counter
rows of every device of the accounts (``FOR UPDATE``, in key order: a concurrent duplicate or
another node's send to the same devices waits, and no deadlock can form), looks the tag up,
decides the rest, and only then writes: the shared body once (``shared_bodies`` of migration
0003), one inbox row per device (kind 3, no sender, the tag as message id, ``shared_id``; one
``unnest`` insert), the counters, and one tag record per account (``sealed_tags`` of 0006). No
new migration: the triggers of 0003 and 0006 do the rest whatever deletes a row.
"""

from __future__ import annotations

import asyncpg

from tidings.store import _sealed_multi
from tidings.store._pg_inbox import SET_HEADS, columns, lock_heads
from tidings.store.base import (
    NO_SENDER,
    TAG_RETENTION,
    InboxItem,
    ItemKind,
    SealedMultiSubmission,
    SealedMultiSubmitResult,
    Stored,
)

_KEYS = "SELECT account, access_key FROM access_keys WHERE account = ANY($1::text[])"
_TAGS = "SELECT min(stored_at) FROM sealed_tags WHERE tag = $1 AND recipient = ANY($2::text[])"
_INSERT_BODY = "INSERT INTO shared_bodies (body, refs) VALUES ($1, $2) RETURNING id"
_INSERT_ITEMS = (
    "INSERT INTO inbox (account, device_id, seq, kind, sender_account, sender_device,"
    " message_id, payload, enqueued_at, expires_at, stranger, shared_id)"
    " SELECT *, $12::bigint FROM unnest($1::text[], $2::int[], $3::bigint[], $4::smallint[],"
    " $5::text[], $6::int[], $7::bytea[], $8::bytea[], $9::float8[], $10::float8[],"
    " $11::bool[])"
)
_RECORDS = (
    "INSERT INTO sealed_tags (tag, recipient, queued, stored_at, forget_at)"
    " SELECT $1::bytea, r, q, $4::float8, $5::float8 FROM unnest($2::text[], $3::int[]) AS u(r, q)"
)
_SEALED = int(ItemKind.SEALED)


async def submit_sealed_multi(
    conn: asyncpg.Connection, sub: SealedMultiSubmission
) -> SealedMultiSubmitResult:
    """Decide and store ``sub`` (see the module docstring)."""
    accounts = [account for account, _, _ in sub.recipients]
    keys = {row[0]: bytes(row[1]) for row in await conn.fetch(_KEYS, accounts)}
    refusal = _sealed_multi.denied(sub, keys)
    if refusal is not None:
        return refusal
    locked = await lock_heads(conn, accounts)  # first: a concurrent duplicate waits here
    tag = sub.tag
    stored_at = await conn.fetchval(_TAGS, tag, accounts)
    if stored_at is not None:
        return Stored(items=(), stored_at=float(stored_at), duplicate=True)
    heads = {ref: head for account_heads in locked.values() for ref, head in account_heads.items()}
    refusal = _sealed_multi.decide(
        sub,
        {account: list(h) for account, h in locked.items()},
        lambda ref: heads[ref][1],
        lambda ref: heads[ref][2],
    )
    if refusal is not None:
        return refusal
    shared_id = await conn.fetchval(_INSERT_BODY, sub.shared, _sealed_multi.device_count(sub))
    rows, items, touched = [], [], {}
    now, expires_at = sub.now, sub.expires_at
    for _, _, parts in sub.recipients:
        for ref, part in parts:
            head = heads[ref]
            head[0] += 1
            head[1] += 1
            head[2] += 1  # every sealed item counts as a stranger's (tidings.store._sealed)
            touched[ref] = head
            rows.append(
                (
                    ref.account,
                    ref.device_id,
                    head[0],
                    _SEALED,
                    "",
                    0,
                    tag,
                    part,
                    now,
                    expires_at,
                    True,
                )
            )
            item = InboxItem(
                head[0], ItemKind.SEALED, NO_SENDER, tag, part, now, expires_at, sub.shared
            )
            items.append((ref, item))
    await conn.execute(_INSERT_ITEMS, *columns(rows, 11), shared_id)
    counters = [(r.account, r.device_id, h[0], h[1], h[2]) for r, h in touched.items()]
    await conn.execute(SET_HEADS, *columns(counters, 5))
    counts = [len(parts) for _, _, parts in sub.recipients]
    await conn.execute(_RECORDS, tag, accounts, counts, now, expires_at + TAG_RETENTION)
    return Stored(items=tuple(items), stored_at=now)
