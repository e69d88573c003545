"""SQLite operations of sealed sender: access keys, identity keys, sealed sends and their tag
records (run on the store's thread).

Each function is one operation of :class:`~tidings.store.sqlite.SQLiteStore` (see
``Store.put_access_key``, ``Store.access_key``, ``Store.identity_key``, ``Store.submit_sealed``,
``Store.tag_states``). A sealed send runs as an ordinary write of the group committer (in the
batch's transaction, in its own savepoint): it reads, decides by :mod:`tidings.store._sealed`,
and only then writes its inbox rows (kind 3, no sender), the devices' counters and its tag
record (migration 0012). The trigger of 0012 takes a copy off its record whatever deletes the
row; expiry (:mod:`tidings.store._sql_inbox`) marks records expired and purges old ones.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from tidings.errors import IntegrityError, Rule
from tidings.store import _sealed
from tidings.store.base import (
    NO_SENDER,
    TAG_RETENTION,
    AccessDenied,
    DeviceRef,
    InboxItem,
    ItemKind,
    SealedSubmission,
    SealedSubmitResult,
    Stored,
    TagState,
)

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


_TAG = "SELECT stored_at FROM sealed_tags WHERE tag = ? AND recipient = ?"
_HEADS = "SELECT device_id, last_seq, depth, strangers FROM devices WHERE account = ?"
_INSERT_ITEM = (
    "INSERT INTO inbox (account, device_id, seq, kind, sender_account, sender_device,"
    " message_id, payload, enqueued_at, expires_at, stranger) VALUES (?,?,?,?,?,?,?,?,?,?,1)"
)
_SET_HEAD = (
    "UPDATE devices SET last_seq = ?, depth = ?, strangers = ? WHERE account = ? AND device_id = ?"
)
_RECORD = (
    "INSERT INTO sealed_tags (tag, recipient, queued, stored_at, forget_at) VALUES (?,?,?,?,?)"
)
_STATES = "SELECT queued, expired FROM sealed_tags WHERE tag = ?"
_SEALED = int(ItemKind.SEALED)


def submit_sealed(conn: sqlite3.Connection, sub: SealedSubmission) -> SealedSubmitResult:
    """Decide and store ``sub`` (see the module docstring)."""
    if not _sealed.access_ok(access_key(conn, sub.recipient), sub.access_key):
        return AccessDenied()
    row = conn.execute(_TAG, (sub.tag, sub.recipient)).fetchone()
    if row is not None:
        return Stored(items=(), stored_at=float(row[0]), duplicate=True)
    heads = {
        DeviceRef(sub.recipient, device_id): [last_seq, depth, strangers]
        for device_id, last_seq, depth, strangers in conn.execute(_HEADS, (sub.recipient,))
    }
    refusal = _sealed.decide(sub, heads, lambda ref: heads[ref][1], lambda ref: heads[ref][2])
    if refusal is not None:
        return refusal
    rows, items = [], []
    now, expires_at, tag = sub.now, sub.expires_at, sub.tag
    for ref, payload in sub.payloads:
        head = heads[ref]
        head[0] += 1
        head[1] += 1
        head[2] += 1  # every sealed item counts as a stranger's (tidings.store._sealed)
        seq = head[0]
        rows.append(
            (ref.account, ref.device_id, seq, _SEALED, "", 0, tag, payload, now, expires_at)
        )
        items.append(
            (ref, InboxItem(seq, ItemKind.SEALED, NO_SENDER, tag, payload, now, expires_at))
        )
    conn.executemany(_INSERT_ITEM, rows)
    conn.executemany(
        _SET_HEAD, [(h[0], h[1], h[2], ref.account, ref.device_id) for ref, h in heads.items()]
    )
    conn.execute(_RECORD, (tag, sub.recipient, len(rows), now, expires_at + TAG_RETENTION))
    return Stored(items=tuple(items), stored_at=now)


def tag_states(conn: sqlite3.Connection, tags: Sequence[bytes]) -> list[TagState]:
    """The state of each tag (see ``Store.tag_states``)."""
    return [
        _sealed.combine(
            _sealed.state(queued, bool(expired))
            for queued, expired in conn.execute(_STATES, (bytes(tag),))
        )
        for tag in tags
    ]
