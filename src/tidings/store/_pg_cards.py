"""PostgreSQL operations on device cards: certificates and last seen (in the store's task).

Each function is one operation of :class:`~tidings.store.postgres.PostgresStore` (see
``Store.put_certificate``, ``Store.mark_seen``, ``Store.device_cards``). A card is put under
``FOR KEY SHARE`` of its device's row, as a link code is (:mod:`tidings.store._pg_devices`):
it is in place before a concurrent unlink deletes it, or finds no device.
"""

from __future__ import annotations

import asyncpg

from tidings.errors import IntegrityError, Rule
from tidings.store.base import DeviceCard, DeviceRef

_DEVICE_EXISTS = "SELECT 1 FROM devices WHERE account = $1 AND device_id = $2 FOR KEY SHARE"
_PUT_CERT = (
    "INSERT INTO device_cards (account, device_id, certificate) VALUES ($1, $2, $3)"
    " ON CONFLICT (account, device_id) DO UPDATE SET certificate = excluded.certificate"
)
_MARK_SEEN = (
    "INSERT INTO device_cards (account, device_id, last_seen) VALUES ($1, $2, $3)"
    " ON CONFLICT (account, device_id) DO UPDATE"
    " SET last_seen = GREATEST(COALESCE(device_cards.last_seen, 0), excluded.last_seen)"
)
_CARDS = (
    "SELECT d.device_id, c.last_seen, c.certificate FROM devices d LEFT JOIN device_cards c"
    " ON c.account = d.account AND c.device_id = d.device_id WHERE d.account = $1"
    " ORDER BY d.device_id"
)


async def put_certificate(conn: asyncpg.Connection, device: DeviceRef, certificate: bytes) -> None:
    """Store ``device``'s certificate, replacing an earlier one."""
    if await conn.fetchval(_DEVICE_EXISTS, device.account, device.device_id) is None:
        raise IntegrityError(Rule.UNKNOWN_DEVICE)
    await conn.execute(_PUT_CERT, device.account, device.device_id, certificate)


async def mark_seen(conn: asyncpg.Connection, device: DeviceRef, at: float) -> None:
    """Record that ``device`` was connected at ``at`` (the latest wins; no such device: no-op)."""
    if await conn.fetchval(_DEVICE_EXISTS, device.account, device.device_id) is not None:
        await conn.execute(_MARK_SEEN, device.account, device.device_id, at)


async def device_cards(conn: asyncpg.Connection, account: str) -> list[DeviceCard]:
    """The account's current devices with their cards, by id."""
    return [
        DeviceCard(DeviceRef(account, int(d)), seen, None if cert is None else bytes(cert))
        for d, seen, cert in await conn.fetch(_CARDS, account)
    ]
