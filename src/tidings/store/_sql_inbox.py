"""SQLite operations on inboxes besides submit and ack: fetch, counters, expiry (run on the
store's thread). Submits and acks are :mod:`tidings.store._inbox_writes`.

``devices.last_seq`` and ``devices.depth`` are kept in step with the ``inbox`` rows by every
write, so the queue limit, :func:`last_seq` and :func:`queue_depth` cost no ``COUNT``.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from tidings.store._expiry_order import ArrivalOrder
from tidings.store.base import (
    DeviceRef,
    ExpiryResult,
    InboxItem,
    ItemKind,
)

_ITEM_COLUMNS = (
    "seq, kind, sender_account, sender_device, message_id, payload, enqueued_at, expires_at"
)
_INSERT_ITEM = (
    f"INSERT INTO inbox (account, device_id, {_ITEM_COLUMNS}, stranger, out_of_order)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
)
_SET_HEAD = (
    "UPDATE devices SET last_seq = ?, depth = ?, strangers = ? WHERE account = ? AND device_id = ?"
)
# A multi-send's item brings its shared body (migration 0008); a one-to-one item has none.
_FETCH = (
    "SELECT i.seq, i.kind, i.sender_account, i.sender_device, i.message_id, i.payload,"
    " i.enqueued_at, i.expires_at, s.body FROM inbox AS i"
    " LEFT JOIN shared_bodies AS s ON s.id = i.shared_id"
    " WHERE i.account = ? AND i.device_id = ? AND i.seq > ? ORDER BY i.seq LIMIT ?"
)
_HEAD = "SELECT last_seq, depth FROM devices WHERE account = ? AND device_id = ?"
_TOTAL = "SELECT coalesce(sum(depth), 0) FROM devices"
# Expiry's two sources (tidings.store._expiry_order): the rows out of arrival order, by their
# partial index, and the others from the start of the table, where they are in expiry order.
_DUE_OUT_OF_ORDER = (
    f"SELECT account, device_id, {_ITEM_COLUMNS}, stranger FROM inbox"
    " WHERE out_of_order = 1 AND expires_at <= ? ORDER BY expires_at, account, device_id, seq"
    " LIMIT ?"
)
_IN_ORDER = (
    f"SELECT account, device_id, {_ITEM_COLUMNS}, stranger FROM inbox"
    " WHERE out_of_order = 0 ORDER BY id"
)
_EXPIRES_AT = 9  # the column of a due row
_REMOVE = "DELETE FROM inbox WHERE account = ? AND device_id = ? AND seq = ?"
_HEADS_OF = (
    "SELECT device_id, last_seq, depth, strangers FROM devices WHERE account = ? ORDER BY device_id"
)
_PURGE_SENT = "DELETE FROM sent WHERE expires_at <= ?"
_PURGE_CODES = "DELETE FROM link_codes WHERE expires_at <= ?"
_TAG_EXPIRED = "UPDATE sealed_tags SET expired = 1 WHERE tag = ? AND recipient = ?"
_PURGE_TAGS = "DELETE FROM sealed_tags WHERE forget_at <= ?"

_ItemRow = tuple[int, int, str, int, bytes, bytes, float, float]


def fetch(
    conn: sqlite3.Connection, device: DeviceRef, after_seq: int, limit: int
) -> list[InboxItem]:
    """Up to ``limit`` items of the device's inbox with ``seq > after_seq``, by seq."""
    rows = conn.execute(_FETCH, (device.account, device.device_id, after_seq, max(limit, 0)))
    return [_item(row[:8], row[8]) for row in rows]


def last_seq(conn: sqlite3.Connection, device: DeviceRef) -> int:
    """The highest seq ever assigned to the device's inbox (0 if none)."""
    row = conn.execute(_HEAD, (device.account, device.device_id)).fetchone()
    return 0 if row is None else int(row[0])


def queue_depth(conn: sqlite3.Connection, device: DeviceRef) -> int:
    """How many items the device's inbox holds."""
    row = conn.execute(_HEAD, (device.account, device.device_id)).fetchone()
    return 0 if row is None else int(row[1])


def total_queued(conn: sqlite3.Connection) -> int:
    """How many items all inboxes hold together."""
    return int(conn.execute(_TOTAL).fetchone()[0])


def expire(
    conn: sqlite3.Connection,
    now: float,
    notice_expires_at: float,
    limit: int,
    order: ArrivalOrder,
) -> ExpiryResult:
    """Remove up to ``limit`` expired items, oldest first (see ``Store.expire``); ``order``
    flags the notices (:mod:`tidings.store._expiry_order`)."""
    order.forget()  # the sweep may remove the in-order row that set its high mark
    due = _due(conn, now, limit)
    conn.executemany(_REMOVE, [row[:3] for row in due])
    counters = _Counters(conn)
    expired, notices, missed, rows, tags = [], [], [], [], []
    for row in due:
        account, device_id = row[0], row[1]
        ref, item = DeviceRef(account, device_id), _item(row[2:10])
        counters.shrink(ref, row[10])
        if item.kind is ItemKind.SEALED:  # no sender to tell: its tag record says EXPIRED
            expired.append((ref, item))
            tags.append((item.message_id, account))
            continue
        if item.kind is not ItemKind.MESSAGE:
            continue  # an expired notice goes silently
        expired.append((ref, item))
        owner = item.sender.account
        for owner_device, seq in counters.grow_all(owner):
            notice = InboxItem(
                seq, ItemKind.EXPIRED, ref, item.message_id, b"", now, notice_expires_at
            )
            notices.append((DeviceRef(owner, owner_device), notice))
            sender = (account, device_id, item.message_id)
            rows.append(
                (owner, owner_device, seq, notice.kind, *sender, b"", now, notice_expires_at, 0)
            )
        next_seq = counters.grow(ref)
        if next_seq is None:  # pragma: no cover - items of a device that does not exist
            continue
        gone = InboxItem(
            next_seq, ItemKind.MISSED, item.sender, item.message_id, b"", now, notice_expires_at
        )
        missed.append((ref, gone))
        origin = (item.sender.account, item.sender.device_id, item.message_id)
        rows.append(
            (account, device_id, next_seq, gone.kind, *origin, b"", now, notice_expires_at, 0)
        )
    if rows:
        late = order.flag(conn, notice_expires_at)  # all of them expire together
        conn.executemany(_INSERT_ITEM, [(*row, late) for row in rows])
    conn.executemany(_SET_HEAD, counters.rows())
    conn.executemany(_TAG_EXPIRED, tags)
    conn.execute(_PURGE_SENT, (now,))
    conn.execute(_PURGE_TAGS, (now,))
    conn.execute(_PURGE_CODES, (now,))  # housekeeping: an expired code can never be used
    return ExpiryResult(expired=tuple(expired), notices=tuple(notices), missed=tuple(missed))


def _due(conn: sqlite3.Connection, now: float, limit: int) -> list[Any]:
    """The first ``limit`` rows with ``expires_at <= now`` by (expires_at, account, device_id,
    seq): the first of those out of order (by their index) merged with the first in order (by
    rowid, which is expires_at order but not that order among equal ``expires_at``: so every
    row with the same ``expires_at`` as the last one taken is taken too, then the merge cuts)."""
    if limit <= 0:
        return []
    due: list[Any] = conn.execute(_DUE_OUT_OF_ORDER, (now, limit)).fetchall()
    cursor = conn.execute(_IN_ORDER)
    try:
        last: object = None
        for taken, row in enumerate(cursor):
            expires_at = row[_EXPIRES_AT]
            if expires_at > now or (taken >= limit and expires_at != last):
                break
            due.append(row)
            last = expires_at
    finally:
        cursor.close()
    due.sort(key=lambda row: (row[_EXPIRES_AT], row[0], row[1], row[2]))
    return due[:limit]


class _Counters:
    """``[last_seq, depth, strangers]`` of the devices an expiry pass touches, per account."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._accounts: dict[str, dict[int, list[int]]] = {}

    def _of(self, account: str) -> dict[int, list[int]]:
        heads = self._accounts.get(account)
        if heads is None:
            rows = self._conn.execute(_HEADS_OF, (account,))
            heads = self._accounts[account] = {row[0]: [row[1], row[2], row[3]] for row in rows}
        return heads

    def shrink(self, ref: DeviceRef, stranger: int) -> None:
        head = self._of(ref.account).get(ref.device_id)
        if head is not None:
            head[1] -= 1
            head[2] -= stranger

    def grow(self, ref: DeviceRef) -> int | None:
        """Take the next seq of ``ref`` (``None``: no such device)."""
        head = self._of(ref.account).get(ref.device_id)
        if head is None:
            return None
        head[0] += 1
        head[1] += 1
        return head[0]

    def grow_all(self, account: str) -> list[tuple[int, int]]:
        """Take the next seq of every device of ``account``: ``(device id, seq)`` by id."""
        taken = []
        for device_id, head in self._of(account).items():
            head[0] += 1
            head[1] += 1
            taken.append((device_id, head[0]))
        return taken

    def rows(self) -> list[tuple[int, int, int, str, int]]:
        return [
            (last, depth, strangers, account, device_id)
            for account, heads in self._accounts.items()
            for device_id, (last, depth, strangers) in heads.items()
        ]


def _item(row: _ItemRow, shared: bytes | None = None) -> InboxItem:
    seq, kind, sender_account, sender_device, message_id, payload, enqueued_at, expires_at = row
    return InboxItem(
        seq,
        ItemKind(kind),
        DeviceRef(sender_account, sender_device),
        message_id,
        payload,
        enqueued_at,
        expires_at,
        shared or b"",
    )
