"""PostgreSQL operations on Web Push subscriptions (in the store's task; ``pg_migrations/0002``).

Each function is one operation of :class:`~tidings.store.postgres.PostgresStore`, run by the
group committer inside its own savepoint: raising undoes everything the function wrote.
Several nodes: a put checks its device under ``FOR KEY SHARE``, so a concurrent unlink (which
deletes the device row, :mod:`tidings.store._pg_devices`) waits for it, and then deletes the
subscription too, or runs first and the put finds no device: no subscription outlives its
device.
"""

from __future__ import annotations

import asyncpg

from tidings.errors import IntegrityError, Rule
from tidings.store.base import DeviceRef, PushSubscription

_COLUMNS = (
    "account, device_id, endpoint, p256dh, auth, created_at, dead, wake_since, wake_attempts,"
    " wake_next, wake_sent_at"
)
_DEVICE_EXISTS = "SELECT 1 FROM devices WHERE account = $1 AND device_id = $2 FOR KEY SHARE"
#: Replaces the device's subscription whole (endpoint, keys and wake-up state alike).
_PUT = (
    f"INSERT INTO push_subscriptions ({_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"
    " ON CONFLICT (account, device_id) DO UPDATE SET endpoint = excluded.endpoint,"
    " p256dh = excluded.p256dh, auth = excluded.auth, created_at = excluded.created_at,"
    " dead = excluded.dead, wake_since = excluded.wake_since,"
    " wake_attempts = excluded.wake_attempts, wake_next = excluded.wake_next,"
    " wake_sent_at = excluded.wake_sent_at"
)
_DELETE = "DELETE FROM push_subscriptions WHERE account = $1 AND device_id = $2 RETURNING 1"
_ALL = f"SELECT {_COLUMNS} FROM push_subscriptions ORDER BY account, device_id"
_ONE = f"SELECT {_COLUMNS} FROM push_subscriptions WHERE account = $1 AND device_id = $2"


async def put(conn: asyncpg.Connection, sub: PushSubscription) -> None:
    """Store ``sub``, replacing its device's (see ``Store.put_push_subscription``)."""
    ref = sub.device
    if await conn.fetchval(_DEVICE_EXISTS, ref.account, ref.device_id) is None:
        raise IntegrityError(Rule.UNKNOWN_DEVICE)
    await conn.execute(
        _PUT,
        ref.account,
        ref.device_id,
        sub.endpoint,
        sub.p256dh,
        sub.auth,
        sub.created_at,
        sub.dead,
        sub.wake_since,
        sub.wake_attempts,
        sub.wake_next,
        sub.wake_sent_at,
    )


async def delete(conn: asyncpg.Connection, device: DeviceRef) -> bool:
    """Drop the device's subscription; whether there was one."""
    return await conn.fetchval(_DELETE, device.account, device.device_id) is not None


async def all_subscriptions(conn: asyncpg.Connection) -> list[PushSubscription]:
    """Every stored subscription, by account and device id."""
    return [_subscription(row) for row in await conn.fetch(_ALL)]


async def subscription(conn: asyncpg.Connection, device: DeviceRef) -> PushSubscription | None:
    """The device's stored subscription, if it has one."""
    row = await conn.fetchrow(_ONE, device.account, device.device_id)
    return None if row is None else _subscription(row)


def _subscription(row: asyncpg.Record) -> PushSubscription:
    return PushSubscription(
        DeviceRef(row[0], row[1]),
        row[2],
        bytes(row[3]),
        bytes(row[4]),
        float(row[5]),
        bool(row[6]),
        None if row[7] is None else float(row[7]),
        int(row[8]),
        None if row[9] is None else float(row[9]),
        None if row[10] is None else float(row[10]),
    )
