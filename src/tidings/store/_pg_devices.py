"""PostgreSQL operations on accounts, devices and link codes (in the store's task).

Each function is one operation of :class:`~tidings.store.postgres.PostgresStore`, run by the
group committer inside its own savepoint: raising undoes everything the function wrote (a
unique key that fails aborts only the savepoint). Concurrent nodes: a link code is consumed by
``DELETE … RETURNING``, which only one transaction can do; a device id comes from the account
row's ``UPDATE … RETURNING``, which locks it until the commit.

Adding and removing devices serialise per account on the account row: :func:`add_device` and
:func:`remove_device` lock it (``FOR UPDATE``) before they count the account's devices, and
PostgreSQL's READ COMMITTED reads each later statement from a snapshot taken after the lock was
granted, so each sees what the other committed. Two nodes unlinking an account's last two
devices at once thus remove one and refuse the other (``LAST_DEVICE``); two linking past the
limit add one. An unlink then locks the account's device rows, in key order as a send does
(:mod:`tidings.store._pg_inbox`), so no send is adding to the inbox it deletes; a link code,
prekey or push subscription is put under ``FOR KEY SHARE`` of its device's row, so it is either
in place before the unlink deletes it or finds no device.
"""

from __future__ import annotations

import asyncpg

from tidings.errors import IntegrityError, Rule
from tidings.store.base import Device, DeviceRef

_DEVICE_COLUMNS = "account, device_id, noise_key, created_at"

_INSERT_ACCOUNT = "INSERT INTO accounts (account, next_device_id, created_at) VALUES ($1, 2, $2)"
_INSERT_DEVICE = f"INSERT INTO devices ({_DEVICE_COLUMNS}) VALUES ($1, $2, $3, $4)"
#: ``FOR KEY SHARE``: a concurrent unlink waits for the code to be in place, then deletes it.
_DEVICE_EXISTS = "SELECT 1 FROM devices WHERE account = $1 AND device_id = $2 FOR KEY SHARE"
_INSERT_CODE = (
    "INSERT INTO link_codes (account, code_hash, issued_by, created_at, expires_at)"
    " VALUES ($1, $2, $3, $4, $5)"
)
_CONSUME_CODE = (
    "DELETE FROM link_codes WHERE account = $1 AND code_hash = $2 AND expires_at > $3 RETURNING 1"
)
_NEXT_DEVICE_ID = (
    "UPDATE accounts SET next_device_id = next_device_id + 1 WHERE account = $1"
    " RETURNING next_device_id - 1"
)
_DEVICE_BY_KEY = f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE noise_key = $1"
_DEVICES_OF = f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE account = $1 ORDER BY device_id"

_LOCK_ACCOUNT = "SELECT 1 FROM accounts WHERE account = $1 FOR UPDATE"
_COUNT_DEVICES = "SELECT count(*) FROM devices WHERE account = $1"
#: The account's device rows, locked in key order (as a send locks them): their ids.
_LOCK_DEVICES = "SELECT device_id FROM devices WHERE account = $1 ORDER BY device_id FOR UPDATE"
#: What goes with a removed device (``Store.remove_device``): every row keyed by it.
_REMOVE = (
    "DELETE FROM inbox WHERE account = $1 AND device_id = $2",
    "DELETE FROM prekey_owners WHERE account = $1 AND device_id = $2",
    "DELETE FROM one_time_prekeys WHERE account = $1 AND device_id = $2",
    "DELETE FROM push_subscriptions WHERE account = $1 AND device_id = $2",
    "DELETE FROM device_cards WHERE account = $1 AND device_id = $2",
    "DELETE FROM link_codes WHERE account = $1 AND issued_by = $2",
    "DELETE FROM devices WHERE account = $1 AND device_id = $2",
)


async def create_account(
    conn: asyncpg.Connection, account: str, noise_key: bytes, name: str, now: float
) -> Device:
    """Create ``account`` with device 1 (see ``Store.create_account``; ``name`` is not kept)."""
    try:
        await conn.execute(_INSERT_ACCOUNT, account, now)
    except asyncpg.UniqueViolationError as exc:
        raise IntegrityError(Rule.ACCOUNT_EXISTS) from exc
    return await _insert_device(conn, DeviceRef(account, 1), noise_key, now)


async def put_link_code(
    conn: asyncpg.Connection, device: DeviceRef, code_hash: bytes, expires_at: float, now: float
) -> None:
    """Store a one-use link code issued by ``device`` (see ``Store.put_link_code``)."""
    if await conn.fetchval(_DEVICE_EXISTS, device.account, device.device_id) is None:
        raise IntegrityError(Rule.UNKNOWN_DEVICE)
    try:
        await conn.execute(
            _INSERT_CODE, device.account, code_hash, device.device_id, now, expires_at
        )
    except asyncpg.UniqueViolationError as exc:
        raise IntegrityError(Rule.LINK_CODE_EXISTS) from exc


async def add_device(
    conn: asyncpg.Connection,
    account: str,
    noise_key: bytes,
    name: str,
    code_hash: bytes,
    now: float,
    max_devices: int | None = None,
) -> Device:
    """Consume a link code and add the next device (see ``Store.add_device``)."""
    if await conn.fetchval(_CONSUME_CODE, account, code_hash, now) is None:
        raise IntegrityError(Rule.INVALID_LINK_CODE)
    if await conn.fetchval(_LOCK_ACCOUNT, account) is None:
        raise IntegrityError(Rule.INVALID_LINK_CODE)  # a code outlived its account
    if max_devices is not None and await _count(conn, account) >= max_devices:
        raise IntegrityError(Rule.TOO_MANY_DEVICES)  # the savepoint puts the code back
    device_id = await conn.fetchval(_NEXT_DEVICE_ID, account)
    if device_id is None:  # a code outlived its account: refuse like any bad code
        raise IntegrityError(Rule.INVALID_LINK_CODE)
    return await _insert_device(conn, DeviceRef(account, int(device_id)), noise_key, now)


async def remove_device(conn: asyncpg.Connection, device: DeviceRef) -> None:
    """Remove a device and everything keyed by it (see ``Store.remove_device``)."""
    key = (device.account, device.device_id)
    if await conn.fetchval(_LOCK_ACCOUNT, device.account) is None:
        raise IntegrityError(Rule.UNKNOWN_DEVICE)
    ids = [row[0] for row in await conn.fetch(_LOCK_DEVICES, device.account)]
    if device.device_id not in ids:
        raise IntegrityError(Rule.UNKNOWN_DEVICE)
    if len(ids) <= 1:
        raise IntegrityError(Rule.LAST_DEVICE)
    for sql in _REMOVE:
        await conn.execute(sql, *key)


async def _count(conn: asyncpg.Connection, account: str) -> int:
    return int(await conn.fetchval(_COUNT_DEVICES, account))


async def device_by_key(conn: asyncpg.Connection, noise_key: bytes) -> Device | None:
    """The device registered with this Noise static key, if any."""
    row = await conn.fetchrow(_DEVICE_BY_KEY, noise_key)
    return None if row is None else _device(row)


async def devices(conn: asyncpg.Connection, account: str) -> list[Device]:
    """The account's current devices, by id."""
    return [_device(row) for row in await conn.fetch(_DEVICES_OF, account)]


async def _insert_device(
    conn: asyncpg.Connection, ref: DeviceRef, noise_key: bytes, now: float
) -> Device:
    try:
        await conn.execute(_INSERT_DEVICE, ref.account, ref.device_id, noise_key, now)
    except asyncpg.UniqueViolationError as exc:
        # (account, device_id) is fresh by next_device_id, so only the key can collide.
        raise IntegrityError(Rule.KEY_ALREADY_REGISTERED) from exc
    return Device(ref=ref, noise_key=noise_key, created_at=now)


def _device(row: asyncpg.Record) -> Device:
    return Device(DeviceRef(row[0], row[1]), bytes(row[2]), float(row[3]))
