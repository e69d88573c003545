"""PostgreSQL operations on inboxes besides submit and ack: fetch, counters, expiry.

``devices.last_seq``, ``depth`` and ``strangers`` are kept in step with the ``inbox`` rows by
every write (under the counter row's lock), so limits, :func:`last_seq` and :func:`queue_depth`
cost no ``COUNT``.

Expiry on several nodes: each pass first takes the transaction-level advisory lock
:data:`EXPIRY_LOCK` with ``pg_try_advisory_xact_lock``; a node that does not get it returns an
empty result at once (another node is sweeping, and will notify). The holder then locks the
counter rows it will change, in key order like every writer, before it deletes the due rows
(those another node acked meanwhile are gone and skipped).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from tidings.store._pg_inbox import INSERT_ITEMS, SET_HEADS, columns, lock_heads
from tidings.store.base import DeviceRef, ExpiryResult, InboxItem, ItemKind

#: The advisory lock key of the expiry sweep: one node sweeps at a time. An arbitrary 64-bit
#: constant ("tidings" + 2), distinct from the migrations' lock.
EXPIRY_LOCK = 0x7469_6469_6E67_7302

_ITEM_COLUMNS = (
    "seq, kind, sender_account, sender_device, message_id, payload, enqueued_at, expires_at"
)
# A multi-send's item brings its shared body (migration 0003); a one-to-one item has none.
_FETCH = (
    "SELECT i.seq, i.kind, i.sender_account, i.sender_device, i.message_id, i.payload,"
    " i.enqueued_at, i.expires_at, s.body FROM inbox AS i"
    " LEFT JOIN shared_bodies AS s ON s.id = i.shared_id"
    " WHERE i.account = $1 AND i.device_id = $2 AND i.seq > $3 ORDER BY i.seq LIMIT $4"
)
_HEAD = "SELECT last_seq, depth FROM devices WHERE account = $1 AND device_id = $2"
_LAST_SEQS = (
    "SELECT d.account, d.device_id, d.last_seq FROM devices AS d"
    " JOIN unnest($1::text[], $2::int[]) AS k(a, i) ON d.account = k.a AND d.device_id = k.i"
)
_TOTAL = "SELECT coalesce(sum(depth), 0) FROM devices"
_TRY_LOCK = "SELECT pg_try_advisory_xact_lock($1)"
_DUE = (
    f"SELECT account, device_id, {_ITEM_COLUMNS}, stranger FROM inbox WHERE expires_at <= $1"
    " ORDER BY expires_at, account, device_id, seq LIMIT $2"
)
_REMOVE = (
    "DELETE FROM inbox AS i USING unnest($1::text[], $2::int[], $3::bigint[]) AS k(a, d, s)"
    " WHERE i.account = k.a AND i.device_id = k.d AND i.seq = k.s"
    " RETURNING i.account, i.device_id, i.seq"
)
_PURGE_SENT = "DELETE FROM sent WHERE expires_at <= $1"
_TAGS_EXPIRED = (
    "UPDATE sealed_tags AS t SET expired = true FROM unnest($1::bytea[], $2::text[]) AS k(g, r)"
    " WHERE t.tag = k.g AND t.recipient = k.r"
)
_PURGE_TAGS = "DELETE FROM sealed_tags WHERE forget_at <= $1"
_PURGE_CODES = "DELETE FROM link_codes WHERE expires_at <= $1"

_NOTHING = ExpiryResult(expired=(), notices=())


async def fetch(
    conn: asyncpg.Connection, device: DeviceRef, after_seq: int, limit: int
) -> list[InboxItem]:
    """Up to ``limit`` items of the device's inbox with ``seq > after_seq``, by seq."""
    rows = await conn.fetch(_FETCH, device.account, device.device_id, after_seq, max(limit, 0))
    return [_item(tuple(row)[:8], row[8]) for row in rows]


async def last_seqs(conn: asyncpg.Connection, devices: Sequence[DeviceRef]) -> dict[DeviceRef, int]:
    """The highest seq ever assigned to each of ``devices`` that exists, in one statement."""
    rows = await conn.fetch(
        _LAST_SEQS, [d.account for d in devices], [d.device_id for d in devices]
    )
    return {DeviceRef(str(r[0]), int(r[1])): int(r[2]) for r in rows}


async def last_seq(conn: asyncpg.Connection, device: DeviceRef) -> int:
    """The highest seq ever assigned to the device's inbox (0 if none)."""
    row = await conn.fetchrow(_HEAD, device.account, device.device_id)
    return 0 if row is None else int(row[0])


async def queue_depth(conn: asyncpg.Connection, device: DeviceRef) -> int:
    """How many items the device's inbox holds."""
    row = await conn.fetchrow(_HEAD, device.account, device.device_id)
    return 0 if row is None else int(row[1])


async def total_queued(conn: asyncpg.Connection) -> int:
    """How many items all inboxes hold together."""
    return int(await conn.fetchval(_TOTAL))


async def expire(
    conn: asyncpg.Connection, now: float, notice_expires_at: float, limit: int
) -> ExpiryResult:
    """Remove up to ``limit`` expired items, oldest first (see ``Store.expire``); nothing when
    another node's sweep holds :data:`EXPIRY_LOCK`."""
    if not await conn.fetchval(_TRY_LOCK, EXPIRY_LOCK):
        return _NOTHING
    due = [tuple(row) for row in await conn.fetch(_DUE, now, max(limit, 0))]
    accounts = {row[0] for row in due} | {row[4] for row in due if row[3] == ItemKind.MESSAGE}
    heads = await lock_heads(conn, list(accounts))
    removed = set()
    if due:
        keys = columns([row[:3] for row in due], 3)
        removed = {(row[0], row[1], row[2]) for row in await conn.fetch(_REMOVE, *keys)}
    counters = {
        account: {ref.device_id: head for ref, head in by_ref.items()}
        for account, by_ref in heads.items()
    }
    expired, notices, missed, rows, tags = [], [], [], [], []
    for row in due:
        if (row[0], row[1], row[2]) not in removed:
            continue  # acked by another node since it was read
        ref, item = DeviceRef(row[0], row[1]), _item(row[2:10])
        own = counters.get(ref.account, {})
        head = own.get(ref.device_id)
        if head is not None:
            head[1] -= 1
            head[2] -= row[10]
        if item.kind is ItemKind.SEALED:  # no sender to tell: its tag record says EXPIRED
            expired.append((ref, item))
            tags.append((item.message_id, ref.account))
            continue
        if item.kind is not ItemKind.MESSAGE:
            continue  # an expired notice goes silently
        expired.append((ref, item))
        owner = item.sender.account
        for owner_device, owner_head in counters.get(owner, {}).items():
            seq = _grow(owner_head)
            notice = InboxItem(
                seq, ItemKind.EXPIRED, ref, item.message_id, b"", now, notice_expires_at
            )
            notices.append((DeviceRef(owner, owner_device), notice))
            origin = (ref.account, ref.device_id, item.message_id)
            rows.append((owner, owner_device, seq, 1, *origin, b"", now, notice_expires_at, False))
        if head is None:  # pragma: no cover - items of a device that does not exist
            continue
        seq = _grow(head)
        gone = InboxItem(
            seq, ItemKind.MISSED, item.sender, item.message_id, b"", now, notice_expires_at
        )
        missed.append((ref, gone))
        origin = (item.sender.account, item.sender.device_id, item.message_id)
        rows.append((*row[:2], seq, 2, *origin, b"", now, notice_expires_at, False))
    await _write(conn, rows, heads)
    if tags:
        await conn.execute(_TAGS_EXPIRED, *columns(tags, 2))
    await conn.execute(_PURGE_SENT, now)
    await conn.execute(_PURGE_TAGS, now)
    await conn.execute(_PURGE_CODES, now)  # housekeeping: an expired code can never be used
    return ExpiryResult(expired=tuple(expired), notices=tuple(notices), missed=tuple(missed))


def _grow(head: list[int]) -> int:
    head[0] += 1
    head[1] += 1
    return head[0]


async def _write(
    conn: asyncpg.Connection,
    rows: Sequence[tuple[object, ...]],
    heads: dict[str, dict[DeviceRef, list[int]]],
) -> None:
    if rows:
        await conn.execute(INSERT_ITEMS, *columns(rows, 11))
    changed = [
        (ref.account, ref.device_id, *head) for by in heads.values() for ref, head in by.items()
    ]
    if changed:
        await conn.execute(SET_HEADS, *columns(changed, 5))


def _item(row: tuple[object, ...], shared: bytes | None = None) -> InboxItem:
    seq, kind, sender_account, sender_device, message_id, payload, enqueued_at, expires_at = row
    assert isinstance(seq, int) and isinstance(kind, int) and isinstance(sender_account, str)
    assert isinstance(sender_device, int) and isinstance(message_id, bytes)
    assert isinstance(payload, bytes)
    assert isinstance(enqueued_at, float) and isinstance(expires_at, float)
    return InboxItem(
        seq,
        ItemKind(kind),
        DeviceRef(sender_account, sender_device),
        message_id,
        payload,
        enqueued_at,
        expires_at,
        shared or b"",
    )
