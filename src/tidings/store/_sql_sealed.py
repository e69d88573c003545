"""SQLite operations of sealed sender: access keys, identity keys (run on the store's thread).

Each function is one operation of :class:`~tidings.store.sqlite.SQLiteStore` (see
``Store.put_access_key``, ``Store.access_key``, ``Store.identity_key``).
"""

from __future__ import annotations

import sqlite3

from tidings.errors import IntegrityError, Rule
from tidings.store.base import DeviceRef

_DEVICE_EXISTS = "SELECT 1 FROM devices WHERE account = ? AND device_id = ?"
_PUT = (
    "INSERT INTO access_keys (account, access_key) VALUES (?, ?)"
    " ON CONFLICT (account) DO UPDATE SET access_key = excluded.access_key"
)
_GET = "SELECT access_key FROM access_keys WHERE account = ?"
_IDENTITY = "SELECT identity_key FROM prekey_owners WHERE account = ? AND device_id = ?"


def put_access_key(conn: sqlite3.Connection, device: DeviceRef, access_key: bytes) -> None:
    """Store ``device``'s account's access key, replacing the one stored."""
    if conn.execute(_DEVICE_EXISTS, (device.account, device.device_id)).fetchone() is None:
        raise IntegrityError(Rule.UNKNOWN_DEVICE)
    conn.execute(_PUT, (device.account, access_key))


def access_key(conn: sqlite3.Connection, account: str) -> bytes | None:
    """The account's access key, or ``None``."""
    row = conn.execute(_GET, (account,)).fetchone()
    return None if row is None else bytes(row[0])


def identity_key(conn: sqlite3.Connection, device: DeviceRef) -> bytes | None:
    """The identity key of ``device``'s prekey uploads, or ``None``."""
    row = conn.execute(_IDENTITY, (device.account, device.device_id)).fetchone()
    return None if row is None else bytes(row[0])
