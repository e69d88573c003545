"""SQLite operations on accounts, devices and link codes (run on the store's thread).

Each function is one operation of :class:`~tidings.store.sqlite.SQLiteStore`, run inside its own
savepoint by the group committer: raising undoes everything the function wrote.
"""

from __future__ import annotations

import sqlite3

from tidings.errors import IntegrityError, Rule
from tidings.store.base import Device, DeviceRef

_DEVICE_COLUMNS = "account, device_id, noise_key, created_at"

_INSERT_ACCOUNT = "INSERT INTO accounts (account, next_device_id, created_at) VALUES (?, 2, ?)"
_INSERT_DEVICE = f"INSERT INTO devices ({_DEVICE_COLUMNS}) VALUES (?, ?, ?, ?)"
_DEVICE_EXISTS = "SELECT 1 FROM devices WHERE account = ? AND device_id = ?"
_INSERT_CODE = (
    "INSERT INTO link_codes (account, code_hash, issued_by, created_at, expires_at)"
    " VALUES (?, ?, ?, ?, ?)"
)
_CONSUME_CODE = "DELETE FROM link_codes WHERE account = ? AND code_hash = ? AND expires_at > ?"
_NEXT_DEVICE_ID = (
    "UPDATE accounts SET next_device_id = next_device_id + 1 WHERE account = ?"
    " RETURNING next_device_id - 1"
)
_DEVICE_BY_KEY = f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE noise_key = ?"
_DEVICES_OF = f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE account = ? ORDER BY device_id"

_COUNT_DEVICES = "SELECT COUNT(*) FROM devices WHERE account = ?"
#: What goes with a removed device (``Store.remove_device``): every row keyed by it.
_REMOVE = (
    "DELETE FROM inbox WHERE account = ? AND device_id = ?",
    "DELETE FROM prekey_owners WHERE account = ? AND device_id = ?",
    "DELETE FROM one_time_prekeys WHERE account = ? AND device_id = ?",
    "DELETE FROM push_subscriptions WHERE account = ? AND device_id = ?",
    "DELETE FROM device_cards WHERE account = ? AND device_id = ?",
    "DELETE FROM link_codes WHERE account = ? AND issued_by = ?",
    "DELETE FROM devices WHERE account = ? AND device_id = ?",
)

_DeviceRow = tuple[str, int, bytes, float]


def create_account(
    conn: sqlite3.Connection,
    account: str,
    noise_key: bytes,
    name: str,
    now: float,
) -> Device:
    """Create ``account`` with device 1 (see ``Store.create_account``; ``name`` is not kept)."""
    try:
        conn.execute(_INSERT_ACCOUNT, (account, now))
    except sqlite3.IntegrityError as exc:
        raise IntegrityError(Rule.ACCOUNT_EXISTS) from exc
    return _insert_device(conn, DeviceRef(account, 1), noise_key, now)


def put_link_code(
    conn: sqlite3.Connection, device: DeviceRef, code_hash: bytes, expires_at: float, now: float
) -> None:
    """Store a one-use link code issued by ``device`` (see ``Store.put_link_code``)."""
    if conn.execute(_DEVICE_EXISTS, (device.account, device.device_id)).fetchone() is None:
        raise IntegrityError(Rule.UNKNOWN_DEVICE)
    try:
        conn.execute(_INSERT_CODE, (device.account, code_hash, device.device_id, now, expires_at))
    except sqlite3.IntegrityError as exc:
        raise IntegrityError(Rule.LINK_CODE_EXISTS) from exc


def add_device(
    conn: sqlite3.Connection,
    account: str,
    noise_key: bytes,
    name: str,
    code_hash: bytes,
    now: float,
    max_devices: int | None = None,
) -> Device:
    """Consume a link code and add the next device (see ``Store.add_device``)."""
    if conn.execute(_CONSUME_CODE, (account, code_hash, now)).rowcount != 1:
        raise IntegrityError(Rule.INVALID_LINK_CODE)
    if max_devices is not None and _count(conn, account) >= max_devices:
        raise IntegrityError(Rule.TOO_MANY_DEVICES)  # the savepoint puts the code back
    row = conn.execute(_NEXT_DEVICE_ID, (account,)).fetchone()
    if row is None:  # a code outlived its account: refuse like any bad code
        raise IntegrityError(Rule.INVALID_LINK_CODE)
    return _insert_device(conn, DeviceRef(account, int(row[0])), noise_key, now)


def remove_device(conn: sqlite3.Connection, device: DeviceRef) -> None:
    """Remove a device and everything keyed by it (see ``Store.remove_device``)."""
    key = (device.account, device.device_id)
    if conn.execute(_DEVICE_EXISTS, key).fetchone() is None:
        raise IntegrityError(Rule.UNKNOWN_DEVICE)
    if _count(conn, device.account) <= 1:
        raise IntegrityError(Rule.LAST_DEVICE)
    for sql in _REMOVE:
        conn.execute(sql, key)


def _count(conn: sqlite3.Connection, account: str) -> int:
    return int(conn.execute(_COUNT_DEVICES, (account,)).fetchone()[0])


def device_by_key(conn: sqlite3.Connection, noise_key: bytes) -> Device | None:
    """The device registered with this Noise static key, if any."""
    row = conn.execute(_DEVICE_BY_KEY, (noise_key,)).fetchone()
    return None if row is None else _device(row)


def devices(conn: sqlite3.Connection, account: str) -> list[Device]:
    """The account's current devices, by id."""
    return [_device(row) for row in conn.execute(_DEVICES_OF, (account,))]


def _insert_device(
    conn: sqlite3.Connection, ref: DeviceRef, noise_key: bytes, now: float
) -> Device:
    try:
        conn.execute(_INSERT_DEVICE, (ref.account, ref.device_id, noise_key, now))
    except sqlite3.IntegrityError as exc:
        # (account, device_id) is fresh by next_device_id, so only the key can collide.
        raise IntegrityError(Rule.KEY_ALREADY_REGISTERED) from exc
    return Device(ref=ref, noise_key=noise_key, created_at=now)


def _device(row: _DeviceRow) -> Device:
    account, device_id, noise_key, created_at = row
    return Device(DeviceRef(account, device_id), noise_key, created_at)
