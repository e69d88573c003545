"""PostgreSQL operations of sealed sender: access keys, identity keys.

Each function is one operation of :class:`~tidings.store.postgres.PostgresStore` (see
``Store.put_access_key``, ``Store.access_key``, ``Store.identity_key``).
"""

from __future__ import annotations

import asyncpg

from tidings.errors import IntegrityError, Rule
from tidings.store.base import DeviceRef

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
