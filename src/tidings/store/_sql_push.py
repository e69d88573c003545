"""SQLite operations on Web Push subscriptions (run on the store's thread; migration 0007).

Each function is one operation of :class:`~tidings.store.sqlite.SQLiteStore`, run inside its own
savepoint by the group committer: raising undoes everything the function wrote.
"""

from __future__ import annotations

import sqlite3

from tidings.errors import IntegrityError, Rule
from tidings.store.base import DeviceRef, PushSubscription

_COLUMNS = (
    "account, device_id, endpoint, p256dh, auth, created_at, dead, wake_since, wake_attempts,"
    " wake_next, wake_sent_at"
)
_DEVICE_EXISTS = "SELECT 1 FROM devices WHERE account = ? AND device_id = ?"
_PUT = f"INSERT OR REPLACE INTO push_subscriptions ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
_DELETE = "DELETE FROM push_subscriptions WHERE account = ? AND device_id = ?"
_ALL = f"SELECT {_COLUMNS} FROM push_subscriptions ORDER BY account, device_id"


def put(conn: sqlite3.Connection, sub: PushSubscription) -> None:
    """Store ``sub``, replacing its device's (see ``Store.put_push_subscription``)."""
    ref = sub.device
    if conn.execute(_DEVICE_EXISTS, (ref.account, ref.device_id)).fetchone() is None:
        raise IntegrityError(Rule.UNKNOWN_DEVICE)
    conn.execute(
        _PUT,
        (
            ref.account,
            ref.device_id,
            sub.endpoint,
            sub.p256dh,
            sub.auth,
            sub.created_at,
            int(sub.dead),
            sub.wake_since,
            sub.wake_attempts,
            sub.wake_next,
            sub.wake_sent_at,
        ),
    )


def delete(conn: sqlite3.Connection, device: DeviceRef) -> bool:
    """Drop the device's subscription; whether there was one."""
    return conn.execute(_DELETE, (device.account, device.device_id)).rowcount > 0


def all_subscriptions(conn: sqlite3.Connection) -> list[PushSubscription]:
    """Every stored subscription, by account and device id."""
    return [
        PushSubscription(
            DeviceRef(account, device_id),
            endpoint,
            p256dh,
            auth,
            created_at,
            bool(dead),
            wake_since,
            wake_attempts,
            wake_next,
            wake_sent_at,
        )
        for (
            account,
            device_id,
            endpoint,
            p256dh,
            auth,
            created_at,
            dead,
            wake_since,
            wake_attempts,
            wake_next,
            wake_sent_at,
        ) in conn.execute(_ALL)
    ]
