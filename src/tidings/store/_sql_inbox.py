"""SQLite operations on inboxes: submit, fetch, ack, expire (run on the store's thread).

The hot path is :func:`submit`: one upsert of the idempotency record (which is also the duplicate
check), then the item rows and the new counters by ``executemany``; the device sets, seq counters
and depths come from the :class:`~tidings.store._heads.HeadCache`, so a send reads nothing else.
Each function runs inside its own savepoint; raising, or
:class:`~tidings.store._groupcommit.Rollback` for a refusal, undoes what it wrote.

Submits and acks usually take the set-based path of :mod:`tidings.store._bulk` instead, which
must answer exactly as :func:`submit` and :func:`ack` here; these remain its fallback (a segment
that raises is redone op by op with them) and the reference the tests compare it with.

``devices.last_seq`` and ``devices.depth`` are kept in step with the ``inbox`` rows by every
write here, so the queue limit, :func:`last_seq` and :func:`queue_depth` cost no ``COUNT``.
"""

from __future__ import annotations

import sqlite3

from tidings.store._groupcommit import Rollback
from tidings.store._heads import HeadCache
from tidings.store._rules import check_targets, first_full, is_stranger
from tidings.store.base import (
    DeviceRef,
    ExpiryResult,
    InboxItem,
    ItemKind,
    Stored,
    Submission,
    SubmitResult,
)

_ITEM_COLUMNS = (
    "seq, kind, sender_account, sender_device, message_id, payload, enqueued_at, expires_at"
)
_RECORD_SENT = (
    "INSERT INTO sent (sender_account, sender_device, message_id, stored_at, expires_at)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
_SENT_AT = (
    "SELECT stored_at FROM sent WHERE sender_account = ? AND sender_device = ? AND message_id = ?"
)
_ACCOUNT_EXISTS = "SELECT 1 FROM accounts WHERE account = ?"
_INSERT_ITEM = (
    f"INSERT INTO inbox (account, device_id, {_ITEM_COLUMNS}, stranger)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)
_SET_HEAD = (
    "UPDATE devices SET last_seq = ?, depth = ?, strangers = ? WHERE account = ? AND device_id = ?"
)
_ADD_CONTACT = "INSERT INTO contacts (account, contact) VALUES (?, ?) ON CONFLICT DO NOTHING"
_STRANGERS_UPTO = (
    "SELECT count(*) FROM inbox WHERE account = ? AND device_id = ? AND seq <= ? AND stranger = 1"
)
_FETCH = (
    f"SELECT {_ITEM_COLUMNS} FROM inbox WHERE account = ? AND device_id = ? AND seq > ?"
    " ORDER BY seq LIMIT ?"
)
_ACK = "DELETE FROM inbox WHERE account = ? AND device_id = ? AND seq <= ?"
_SHRINK = (
    "UPDATE devices SET depth = depth - ?, strangers = strangers - ?"
    " WHERE account = ? AND device_id = ?"
)
_HEAD = "SELECT last_seq, depth FROM devices WHERE account = ? AND device_id = ?"
_TOTAL = "SELECT coalesce(sum(depth), 0) FROM devices"
_DUE = (
    f"SELECT account, device_id, {_ITEM_COLUMNS}, stranger FROM inbox WHERE expires_at <= ?"
    " ORDER BY expires_at, account, device_id, seq LIMIT ?"
)
_REMOVE = "DELETE FROM inbox WHERE account = ? AND device_id = ? AND seq = ?"
_HEADS_OF = (
    "SELECT device_id, last_seq, depth, strangers FROM devices WHERE account = ? ORDER BY device_id"
)
_PURGE_SENT = "DELETE FROM sent WHERE expires_at <= ?"
_PURGE_CODES = "DELETE FROM link_codes WHERE expires_at <= ?"

_ItemRow = tuple[int, int, str, int, bytes, bytes, float, float]


def submit(conn: sqlite3.Connection, cache: HeadCache, sub: Submission) -> SubmitResult:
    """Store a send (see ``Store.submit`` and ``tidings.store._rules``)."""
    sender = sub.sender
    record = (sender.account, sender.device_id, sub.message_id, sub.now, sub.expires_at)
    if conn.execute(_RECORD_SENT, record).rowcount == 0:
        (stored_at,) = conn.execute(_SENT_AT, record[:3]).fetchone()
        return Stored(items=(), stored_at=stored_at, duplicate=True)
    heads = cache.get(conn, sub.recipient)
    known = heads is not None or _exists(conn, sub.recipient)
    if sender.account != sub.recipient:
        own = cache.get(conn, sender.account) or {}
        heads = {**heads, **own} if heads else own
    elif heads is None:
        heads = {}
    stranger = is_stranger(sub, lambda account, contact: cache.is_contact(conn, account, contact))
    refusal = check_targets(sub, heads, known) or first_full(
        sub, lambda ref: heads[ref][1], (lambda ref: heads[ref][2]) if stranger else None
    )
    if refusal is not None:
        raise Rollback(refusal)  # and the idempotency record goes with it
    items, rows, counters, flags = [], [], [], []
    kind = ItemKind.MESSAGE
    for ref, payload in sub.payloads:
        last_seq, depth, strangers = heads[ref]
        seq = last_seq + 1
        flag = int(stranger and ref.account == sub.recipient)
        item = InboxItem(seq, kind, sender, sub.message_id, payload, sub.now, sub.expires_at)
        items.append((ref, item))
        rows.append(
            (ref.account, ref.device_id, seq, kind, *record[:3], payload, *record[3:], flag)
        )
        counters.append((seq, depth + 1, strangers + flag, ref.account, ref.device_id))
        flags.append(flag)
    conn.executemany(_INSERT_ITEM, rows)
    conn.executemany(_SET_HEAD, counters)
    contact = (sender.account, sub.recipient)
    new_contact = contact[0] != contact[1] and not cache.knows_contact(*contact)
    if new_contact:
        conn.execute(_ADD_CONTACT, contact)
    for (ref, _), flag in zip(sub.payloads, flags, strict=True):  # last: the SQL succeeded
        head = heads[ref]
        head[0] += 1
        head[1] += 1
        head[2] += flag
    if new_contact:
        cache.add_contact(*contact)
    return Stored(items=tuple(items), stored_at=sub.now)


def _exists(conn: sqlite3.Connection, account: str) -> bool:
    return conn.execute(_ACCOUNT_EXISTS, (account,)).fetchone() is not None


def fetch(
    conn: sqlite3.Connection, device: DeviceRef, after_seq: int, limit: int
) -> list[InboxItem]:
    """Up to ``limit`` items of the device's inbox with ``seq > after_seq``, by seq."""
    rows = conn.execute(_FETCH, (device.account, device.device_id, after_seq, max(limit, 0)))
    return [_item(row) for row in rows]


def ack(conn: sqlite3.Connection, cache: HeadCache, device: DeviceRef, up_to_seq: int) -> int:
    """Delete the device's items with ``seq <= up_to_seq``; return how many were deleted."""
    where = (device.account, device.device_id, up_to_seq)
    heads = cache.get(conn, device.account)
    head = None if heads is None else heads.get(device)
    strangers = 0
    if head is None or head[2] > 0:  # only then can a stranger's item go
        strangers = int(conn.execute(_STRANGERS_UPTO, where).fetchone()[0])
    deleted: int = conn.execute(_ACK, where).rowcount
    if deleted:
        conn.execute(_SHRINK, (deleted, strangers, device.account, device.device_id))
        cache.shrink(device, deleted, strangers)
    return deleted


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
    conn: sqlite3.Connection, cache: HeadCache, now: float, notice_expires_at: float, limit: int
) -> ExpiryResult:
    """Remove up to ``limit`` expired items, oldest first (see ``Store.expire``)."""
    due = conn.execute(_DUE, (now, max(limit, 0))).fetchall()
    conn.executemany(_REMOVE, [row[:3] for row in due])
    counters = _Counters(conn)
    expired, notices, missed, rows = [], [], [], []
    for row in due:
        account, device_id = row[0], row[1]
        ref, item = DeviceRef(account, device_id), _item(row[2:10])
        counters.shrink(ref, row[10])
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
    conn.executemany(_INSERT_ITEM, rows)
    conn.executemany(_SET_HEAD, counters.rows())
    for account in counters.accounts():
        cache.invalidate(account)  # rewritten in bulk here: simpler to reload than to patch
    conn.execute(_PURGE_SENT, (now,))
    conn.execute(_PURGE_CODES, (now,))  # housekeeping: an expired code can never be used
    return ExpiryResult(expired=tuple(expired), notices=tuple(notices), missed=tuple(missed))


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

    def accounts(self) -> list[str]:
        return list(self._accounts)

    def rows(self) -> list[tuple[int, int, int, str, int]]:
        return [
            (last, depth, strangers, account, device_id)
            for account, heads in self._accounts.items()
            for device_id, (last, depth, strangers) in heads.items()
        ]


def _item(row: _ItemRow) -> InboxItem:
    seq, kind, sender_account, sender_device, message_id, payload, enqueued_at, expires_at = row
    return InboxItem(
        seq,
        ItemKind(kind),
        DeviceRef(sender_account, sender_device),
        message_id,
        payload,
        enqueued_at,
        expires_at,
    )
