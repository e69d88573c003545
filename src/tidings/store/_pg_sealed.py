"""PostgreSQL operations of sealed sender: access keys, identity keys, sealed sends and their
tag records.

Each function is one operation of :class:`~tidings.store.postgres.PostgresStore` (see
``Store.put_access_key``, ``Store.access_key``, ``Store.identity_key``, ``Store.submit_sealed``,
``Store.tag_states``). A sealed send runs as an ordinary write of the group committer (in the
batch's transaction, in its own savepoint). As every writer to inboxes does, it first locks the
recipient's counter rows (``FOR UPDATE``: another node's send to the same devices, or a
concurrent duplicate, waits), then decides by :mod:`tidings.store._sealed`, and only then
writes its inbox rows (kind 3, no sender), the counters and its tag record (migration 0006).
The trigger of 0006 takes a copy off its record whatever deletes the row; expiry
(:mod:`tidings.store._pg_queue`) marks records expired and purges old ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from tidings.errors import IntegrityError, Rule
from tidings.store import _sealed
from tidings.store._pg_inbox import INSERT_ITEMS, SET_HEADS, columns, lock_heads
from tidings.store.base import (
    NO_SENDER,
    TAG_RETENTION,
    AccessDenied,
    DeviceRef,
    InboxItem,
    ItemKind,
    SealedSubmission,
    SealedSubmitResult,
    Stored,
    TagState,
)

_DEVICE_EXISTS = "SELECT 1 FROM devices WHERE account = $1 AND device_id = $2 FOR KEY SHARE"
_PUT = (
    "INSERT INTO access_keys (account, access_key) VALUES ($1, $2)"
    " ON CONFLICT (account) DO UPDATE SET access_key = excluded.access_key"
)
_GET = "SELECT access_key FROM access_keys WHERE account = $1"
_IDENTITY = "SELECT identity_key FROM prekey_owners WHERE account = $1 AND device_id = $2"


async def put_access_key(conn: asyncpg.Connection, device: DeviceRef, access_key: bytes) -> None:
    """Store ``device``'s account's access key, replacing the one stored."""
    if await conn.fetchval(_DEVICE_EXISTS, device.account, device.device_id) is None:
        raise IntegrityError(Rule.UNKNOWN_DEVICE)
    await conn.execute(_PUT, device.account, access_key)


async def access_key(conn: asyncpg.Connection, account: str) -> bytes | None:
    """The account's access key, or ``None``."""
    value = await conn.fetchval(_GET, account)
    return None if value is None else bytes(value)


async def identity_key(conn: asyncpg.Connection, device: DeviceRef) -> bytes | None:
    """The identity key of ``device``'s prekey uploads, or ``None``."""
    value = await conn.fetchval(_IDENTITY, device.account, device.device_id)
    return None if value is None else bytes(value)


_TAG = "SELECT stored_at FROM sealed_tags WHERE tag = $1 AND recipient = $2"
_RECORD = (
    "INSERT INTO sealed_tags (tag, recipient, queued, stored_at, forget_at)"
    " VALUES ($1, $2, $3, $4, $5)"
)
_STATES = (
    "SELECT k.i, t.queued, t.expired FROM unnest($1::bytea[]) WITH ORDINALITY AS k(tag, i)"
    " JOIN sealed_tags AS t ON t.tag = k.tag"
)
_SEALED = int(ItemKind.SEALED)


async def submit_sealed(conn: asyncpg.Connection, sub: SealedSubmission) -> SealedSubmitResult:
    """Decide and store ``sub`` (see the module docstring)."""
    if not _sealed.access_ok(await access_key(conn, sub.recipient), sub.access_key):
        return AccessDenied()
    heads = (await lock_heads(conn, [sub.recipient])).get(sub.recipient, {})
    stored_at = await conn.fetchval(_TAG, sub.tag, sub.recipient)
    if stored_at is not None:
        return Stored(items=(), stored_at=float(stored_at), duplicate=True)
    refusal = _sealed.decide(sub, heads, lambda ref: heads[ref][1], lambda ref: heads[ref][2])
    if refusal is not None:
        return refusal
    rows, items, touched = [], [], []
    now, expires_at, tag = sub.now, sub.expires_at, sub.tag
    for ref, payload in sub.payloads:
        head = heads[ref]
        head[0] += 1
        head[1] += 1
        head[2] += 1  # every sealed item counts as a stranger's (tidings.store._sealed)
        seq = head[0]
        touched.append((ref.account, ref.device_id, head[0], head[1], head[2]))
        rows.append((ref.account, ref.device_id, seq, _SEALED, "", 0, tag, payload, now))
        items.append(
            (ref, InboxItem(seq, ItemKind.SEALED, NO_SENDER, tag, payload, now, expires_at))
        )
    await conn.execute(INSERT_ITEMS, *columns([(*r, expires_at, True) for r in rows], 11))
    await conn.execute(SET_HEADS, *columns(touched, 5))
    await conn.execute(_RECORD, tag, sub.recipient, len(rows), now, expires_at + TAG_RETENTION)
    return Stored(items=tuple(items), stored_at=now)


async def tag_states(conn: asyncpg.Connection, tags: Sequence[bytes]) -> list[TagState]:
    """The state of each tag (see ``Store.tag_states``), in one statement."""
    found: list[list[TagState]] = [[] for _ in tags]
    for index, queued, expired in await conn.fetch(_STATES, [bytes(tag) for tag in tags]):
        found[index - 1].append(_sealed.state(queued, expired))
    return [_sealed.combine(states) for states in found]
