"""SQLite operations on device cards: certificates and last seen (run on the store's thread).

Each function is one operation of :class:`~tidings.store.sqlite.SQLiteStore` (see
``Store.put_certificate``, ``Store.mark_seen``, ``Store.device_cards``).
"""

from __future__ import annotations

import sqlite3

from tidings.errors import IntegrityError, Rule
from tidings.store.base import DeviceCard, DeviceRef

_DEVICE_EXISTS = "SELECT 1 FROM devices WHERE account = ? AND device_id = ?"
_PUT_CERT = (
    "INSERT INTO device_cards (account, device_id, certificate) VALUES (?, ?, ?)"
    " ON CONFLICT (account, device_id) DO UPDATE SET certificate = excluded.certificate"
)
_MARK_SEEN = (
    "INSERT INTO device_cards (account, device_id, last_seen) VALUES (?, ?, ?)"
    " ON CONFLICT (account, device_id) DO UPDATE"
    " SET last_seen = MAX(COALESCE(last_seen, 0), excluded.last_seen)"
)
_CARDS = (
    "SELECT d.device_id, c.last_seen, c.certificate FROM devices d LEFT JOIN device_cards c"
    " ON c.account = d.account AND c.device_id = d.device_id WHERE d.account = ?"
    " ORDER BY d.device_id"
)


def put_certificate(conn: sqlite3.Connection, device: DeviceRef, certificate: bytes) -> None:
    """Store ``device``'s certificate, replacing an earlier one."""
    key = (device.account, device.device_id)
    if conn.execute(_DEVICE_EXISTS, key).fetchone() is None:
        raise IntegrityError(Rule.UNKNOWN_DEVICE)
    conn.execute(_PUT_CERT, (*key, certificate))


def mark_seen(conn: sqlite3.Connection, device: DeviceRef, at: float) -> None:
    """Record that ``device`` was connected at ``at`` (the latest wins; no such device: no-op)."""
    key = (device.account, device.device_id)
    if conn.execute(_DEVICE_EXISTS, key).fetchone() is not None:
        conn.execute(_MARK_SEEN, (*key, at))


def device_cards(conn: sqlite3.Connection, account: str) -> list[DeviceCard]:
    """The account's current devices with their cards, by id."""
    return [
        DeviceCard(DeviceRef(account, int(d)), seen, None if cert is None else bytes(cert))
        for d, seen, cert in conn.execute(_CARDS, (account,))
    ]
