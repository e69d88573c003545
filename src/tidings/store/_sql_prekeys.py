"""SQLite operations on prekeys (run on the store's thread; schema in ``0002_prekeys.sql``).

Each function is one operation of :class:`~tidings.store.sqlite.SQLiteStore`, run by the group
committer inside its own savepoint (writes) so raising undoes everything it wrote. A take is one
write operation: the store's single writer thread runs it alone, so two fetches can never read
the same one-time prekey before either deletes it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from tidings.errors import IntegrityError, Rule
from tidings.store.base import DeviceRef, PreKey, PreKeyBundle, PreKeyCounts

_EC, _KEM = 0, 1  #: one_time_prekeys.kind

_DEVICE_EXISTS = "SELECT 1 FROM devices WHERE account = ? AND device_id = ?"
_OWNER = (
    "SELECT identity_key, signed_id, signed_public, signed_signature, last_resort_id,"
    " last_resort_public, last_resort_signature FROM prekey_owners"
    " WHERE account = ? AND device_id = ?"
)
_INSERT_OWNER = (
    "INSERT INTO prekey_owners (account, device_id, identity_key, signed_id, signed_public,"
    " signed_signature, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (account, device_id) DO UPDATE SET signed_id = excluded.signed_id,"
    " signed_public = excluded.signed_public, signed_signature = excluded.signed_signature,"
    " updated_at = excluded.updated_at"
)
_SET_LAST_RESORT = (
    "UPDATE prekey_owners SET last_resort_id = ?, last_resort_public = ?,"
    " last_resort_signature = ? WHERE account = ? AND device_id = ?"
)
_PUT_ONE_TIME = (
    "INSERT OR REPLACE INTO one_time_prekeys"
    " (account, device_id, kind, key_id, public, signature, uploaded_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_COUNTS = (
    "SELECT kind, COUNT(*) FROM one_time_prekeys WHERE account = ? AND device_id = ? GROUP BY kind"
)
_FIRST = (
    "SELECT key_id, public, signature FROM one_time_prekeys"
    " WHERE account = ? AND device_id = ? AND kind = ? ORDER BY key_id LIMIT 1"
)
_DELETE = (
    "DELETE FROM one_time_prekeys WHERE account = ? AND device_id = ? AND kind = ? AND key_id = ?"
)

_OwnerRow = tuple[bytes, int, bytes, bytes, int | None, bytes | None, bytes | None]


def put_prekeys(
    conn: sqlite3.Connection,
    device: DeviceRef,
    identity_key: bytes,
    signed_prekey: PreKey,
    one_time: Sequence[PreKey],
    kem: Sequence[PreKey],
    now: float,
) -> PreKeyCounts:
    """Store an upload (see ``Store.put_prekeys``)."""
    ref = (device.account, device.device_id)
    if conn.execute(_DEVICE_EXISTS, ref).fetchone() is None:
        raise IntegrityError(Rule.UNKNOWN_DEVICE)
    owner: _OwnerRow | None = conn.execute(_OWNER, ref).fetchone()
    if owner is not None and owner[0] != identity_key:
        raise IntegrityError(Rule.IDENTITY_KEY_CHANGED)
    s = signed_prekey
    conn.execute(_INSERT_OWNER, (*ref, identity_key, s.key_id, s.public, s.signature, now))
    rows = [(*ref, _EC, k.key_id, k.public, b"", now) for k in one_time]
    for k in kem:
        if k.last_resort:
            conn.execute(_SET_LAST_RESORT, (k.key_id, k.public, k.signature, *ref))
        else:
            rows.append((*ref, _KEM, k.key_id, k.public, k.signature, now))
    conn.executemany(_PUT_ONE_TIME, rows)
    return _counts(conn, ref)


def take_prekey_bundle(
    conn: sqlite3.Connection, device: DeviceRef, one_time: bool = True
) -> PreKeyBundle | None:
    """Take a bundle (see ``Store.take_prekey_bundle``); without ``one_time`` a read only."""
    ref = (device.account, device.device_id)
    owner: _OwnerRow | None = conn.execute(_OWNER, ref).fetchone()
    if owner is None:
        return None
    identity_key, signed_id, signed_public, signed_signature, lr_id, lr_public, lr_sig = owner
    signed = PreKey(signed_id, signed_public, signed_signature)
    if not one_time:
        if lr_id is None or lr_public is None or lr_sig is None:
            return None
        last_resort = PreKey(lr_id, lr_public, lr_sig, last_resort=True)
        return PreKeyBundle(identity_key, signed, None, last_resort, _counts(conn, ref))
    # The KEM prekey first: without one there is no bundle, and nothing may have been taken.
    kem = _take(conn, ref, _KEM)
    if kem is None:
        if lr_id is None or lr_public is None or lr_sig is None:
            return None
        kem = PreKey(lr_id, lr_public, lr_sig, last_resort=True)
    ec = _take(conn, ref, _EC)
    if ec is not None:
        ec = PreKey(ec.key_id, ec.public)
    return PreKeyBundle(identity_key, signed, ec, kem, _counts(conn, ref))


def prekey_counts(conn: sqlite3.Connection, device: DeviceRef) -> PreKeyCounts | None:
    """The device's one-time prekey counts, or ``None`` without an upload."""
    ref = (device.account, device.device_id)
    if conn.execute(_OWNER, ref).fetchone() is None:
        return None
    return _counts(conn, ref)


def _take(conn: sqlite3.Connection, ref: tuple[str, int], kind: int) -> PreKey | None:
    row = conn.execute(_FIRST, (*ref, kind)).fetchone()
    if row is None:
        return None
    conn.execute(_DELETE, (*ref, kind, row[0]))
    return PreKey(row[0], row[1], row[2])


def _counts(conn: sqlite3.Connection, ref: tuple[str, int]) -> PreKeyCounts:
    found = dict(conn.execute(_COUNTS, ref).fetchall())
    return PreKeyCounts(one_time=found.get(_EC, 0), kem=found.get(_KEM, 0))
