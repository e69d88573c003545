"""PostgreSQL operations on prekeys (in the store's task; schema in ``pg_migrations/0001``).

Each function is one operation of :class:`~tidings.store.postgres.PostgresStore`, run by the
group committer inside its own savepoint, so raising undoes everything it wrote.

A one-time prekey is handed out by at most one fetch, whichever node runs it: the take is one
``DELETE … RETURNING`` of the row that ``SELECT … FOR UPDATE SKIP LOCKED`` picked, so two
concurrent fetches pick two different rows (the second skips the row the first locked) and a
row deleted by a committed fetch is gone for every later one. A fetch that finds every
remaining one-time key of a kind locked by fetches still in flight takes none of that kind (for
KEM: the last-resort key) rather than wait: if one of those rolls back, its key stays for later.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from tidings.errors import IntegrityError, Rule
from tidings.store._pg_inbox import columns
from tidings.store.base import DeviceRef, PreKey, PreKeyBundle, PreKeyCounts

_EC, _KEM = 0, 1  #: one_time_prekeys.kind

#: ``FOR KEY SHARE``: a concurrent unlink waits for the upload, then deletes it with the device.
_DEVICE_EXISTS = "SELECT 1 FROM devices WHERE account = $1 AND device_id = $2 FOR KEY SHARE"
_OWNER = (
    "SELECT identity_key, signed_id, signed_public, signed_signature, last_resort_id,"
    " last_resort_public, last_resort_signature FROM prekey_owners"
    " WHERE account = $1 AND device_id = $2"
)
#: Inserts or updates the owner row, unless it holds another identity key: then no row comes
#: back, and nothing was written (one statement, so a concurrent upload cannot slip between).
_PUT_OWNER = (
    "INSERT INTO prekey_owners (account, device_id, identity_key, signed_id, signed_public,"
    " signed_signature, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    " ON CONFLICT (account, device_id) DO UPDATE SET signed_id = excluded.signed_id,"
    " signed_public = excluded.signed_public, signed_signature = excluded.signed_signature,"
    " updated_at = excluded.updated_at"
    " WHERE prekey_owners.identity_key = excluded.identity_key RETURNING 1"
)
_SET_LAST_RESORT = (
    "UPDATE prekey_owners SET last_resort_id = $3, last_resort_public = $4,"
    " last_resort_signature = $5 WHERE account = $1 AND device_id = $2"
)
_PUT_ONE_TIME = (
    "INSERT INTO one_time_prekeys"
    " (account, device_id, kind, key_id, public, signature, uploaded_at)"
    " SELECT * FROM unnest($1::text[], $2::int[], $3::smallint[], $4::bigint[], $5::bytea[],"
    " $6::bytea[], $7::float8[])"
    " ON CONFLICT (account, device_id, kind, key_id) DO UPDATE SET public = excluded.public,"
    " signature = excluded.signature, uploaded_at = excluded.uploaded_at"
)
_COUNTS = (
    "SELECT kind, count(*) FROM one_time_prekeys WHERE account = $1 AND device_id = $2"
    " GROUP BY kind"
)
_TAKE = (
    "DELETE FROM one_time_prekeys WHERE (account, device_id, kind, key_id) = ("
    "SELECT account, device_id, kind, key_id FROM one_time_prekeys"
    " WHERE account = $1 AND device_id = $2 AND kind = $3 ORDER BY key_id LIMIT 1"
    " FOR UPDATE SKIP LOCKED) RETURNING key_id, public, signature"
)


async def put_prekeys(
    conn: asyncpg.Connection,
    device: DeviceRef,
    identity_key: bytes,
    signed_prekey: PreKey,
    one_time: Sequence[PreKey],
    kem: Sequence[PreKey],
    now: float,
) -> PreKeyCounts:
    """Store an upload (see ``Store.put_prekeys``)."""
    ref = (device.account, device.device_id)
    if await conn.fetchval(_DEVICE_EXISTS, *ref) is None:
        raise IntegrityError(Rule.UNKNOWN_DEVICE)
    s = signed_prekey
    stored = await conn.fetchval(
        _PUT_OWNER, *ref, identity_key, s.key_id, s.public, s.signature, now
    )
    if stored is None:
        raise IntegrityError(Rule.IDENTITY_KEY_CHANGED)
    # By (kind, key id), the last one of an upload wins, as a stored key is replaced.
    rows: dict[tuple[int, int], tuple[object, ...]] = {}
    for k in one_time:
        rows[_EC, k.key_id] = (*ref, _EC, k.key_id, k.public, b"", now)
    for k in kem:
        if k.last_resort:
            await conn.execute(_SET_LAST_RESORT, *ref, k.key_id, k.public, k.signature)
        else:
            rows[_KEM, k.key_id] = (*ref, _KEM, k.key_id, k.public, k.signature, now)
    if rows:
        await conn.execute(_PUT_ONE_TIME, *columns(list(rows.values()), 7))
    return await _counts(conn, ref)


async def take_prekey_bundle(
    conn: asyncpg.Connection, device: DeviceRef, one_time: bool = True
) -> PreKeyBundle | None:
    """Take a bundle (see ``Store.take_prekey_bundle``); without ``one_time`` a read only."""
    ref = (device.account, device.device_id)
    owner = await conn.fetchrow(_OWNER, *ref)
    if owner is None:
        return None
    identity_key, signed_id, signed_public, signed_signature, lr_id, lr_public, lr_sig = owner
    signed = PreKey(signed_id, bytes(signed_public), bytes(signed_signature))
    last_resort = None
    if lr_id is not None and lr_public is not None and lr_sig is not None:
        last_resort = PreKey(lr_id, bytes(lr_public), bytes(lr_sig), last_resort=True)
    if not one_time:
        if last_resort is None:
            return None
        return PreKeyBundle(
            bytes(identity_key), signed, None, last_resort, await _counts(conn, ref)
        )
    # The KEM prekey first: without one there is no bundle, and nothing may have been taken.
    kem = await _take(conn, ref, _KEM) or last_resort
    if kem is None:
        return None
    ec = await _take(conn, ref, _EC)
    if ec is not None:
        ec = PreKey(ec.key_id, ec.public)
    return PreKeyBundle(bytes(identity_key), signed, ec, kem, await _counts(conn, ref))


async def prekey_counts(conn: asyncpg.Connection, device: DeviceRef) -> PreKeyCounts | None:
    """The device's one-time prekey counts, or ``None`` without an upload."""
    ref = (device.account, device.device_id)
    if await conn.fetchrow(_OWNER, *ref) is None:
        return None
    return await _counts(conn, ref)


async def _take(conn: asyncpg.Connection, ref: tuple[str, int], kind: int) -> PreKey | None:
    row = await conn.fetchrow(_TAKE, *ref, kind)
    return None if row is None else PreKey(row[0], bytes(row[1]), bytes(row[2]))


async def _counts(conn: asyncpg.Connection, ref: tuple[str, int]) -> PreKeyCounts:
    found = {row[0]: row[1] for row in await conn.fetch(_COUNTS, *ref)}
    return PreKeyCounts(one_time=found.get(_EC, 0), kem=found.get(_KEM, 0))
