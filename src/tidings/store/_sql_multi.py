"""SQLite: the multi-recipient send (``Store.submit_multi``), on the store's thread.

It runs as an ordinary write of the group committer (in the batch's transaction, in its own
savepoint, committed with the batch's one fsync): it reads what it needs, decides by
:mod:`tidings.store._multi`, and only then writes — the shared body once (``shared_bodies``,
``refs`` = the number of items), one inbox row per device with ``shared_id``, the devices'
counters, the idempotency record and new contacts. A refusal writes nothing. The shared body is
deleted by the trigger of migration 0008 with the last row that refers to it.
"""

from __future__ import annotations

import sqlite3

from tidings.store import _multi
from tidings.store._expiry_order import ArrivalOrder
from tidings.store._lookup import _CONTACTS, _HEADS, _select, record_key
from tidings.store.base import (
    DeviceRef,
    InboxItem,
    ItemKind,
    MultiSubmission,
    MultiSubmitResult,
    Stored,
)

_SENT = "SELECT stored_at FROM sent WHERE id_key = ? AND sender_account = ? AND sender_device = ?"
_INSERT_BODY = "INSERT INTO shared_bodies (body, refs) VALUES (?, ?)"
_INSERT_ITEM = (
    "INSERT INTO inbox (account, device_id, seq, kind, sender_account, sender_device,"
    " message_id, payload, enqueued_at, expires_at, stranger, shared_id, out_of_order)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_SET_HEAD = (
    "UPDATE devices SET last_seq = ?, depth = ?, strangers = ? WHERE account = ? AND device_id = ?"
)
_RECORD_SENT = (
    "INSERT INTO sent (sender_account, sender_device, id_key, stored_at, expires_at)"
    " VALUES (?, ?, ?, ?, ?)"
)
_ADD_CONTACT = "INSERT OR IGNORE INTO contacts (account, contact) VALUES (?, ?)"
_MESSAGE = int(ItemKind.MESSAGE)


def submit_multi(
    conn: sqlite3.Connection, sub: MultiSubmission, order: ArrivalOrder
) -> MultiSubmitResult:
    """Decide and store ``sub`` (see the module docstring); ``order`` flags its rows for
    expiry (:mod:`tidings.store._expiry_order`)."""
    sender = sub.sender
    key = (sender.account, sender.device_id, sub.message_id)
    row = conn.execute(_SENT, (record_key(sub.message_id), *key[:2])).fetchone()
    if row is not None:
        return Stored(items=(), stored_at=float(row[0]), duplicate=True)
    # Set-based reads, as the one-to-one path's (:mod:`tidings.store._lookup`): a few
    # statements for any number of accounts, not one per account.
    accounts = [(account,) for account, _ in sub.recipients]
    heads: dict[DeviceRef, list[int]] = {}
    current: dict[str, list[DeviceRef]] = {}
    for account, device_id, last_seq, depth, strangers in _select(conn, _HEADS, accounts):
        ref = DeviceRef(account, device_id)
        heads[ref] = [last_seq, depth, strangers]
        current.setdefault(account, []).append(ref)
    pairs = [(account, sender.account) for (account,) in accounts if account != sender.account]
    contacts = {(row[0], row[1]) for row in _select(conn, _CONTACTS, pairs)}
    refusal, strangers = _multi.decide(
        sub,
        current,
        lambda ref: (heads[ref][1], heads[ref][2]),
        lambda account, contact: (account, contact) in contacts,
    )
    if refusal is not None:
        return refusal
    count = sum(len(parts) for _, parts in sub.recipients)
    shared_id = conn.execute(_INSERT_BODY, (sub.shared, count)).lastrowid
    rows, items = [], []
    now, expires_at = sub.now, sub.expires_at
    late = order.flag(conn, expires_at)
    for (_, parts), stranger in zip(sub.recipients, strangers, strict=True):
        flag = int(stranger)
        for ref, part in parts:
            head = heads[ref]
            head[0] += 1
            head[1] += 1
            head[2] += flag
            seq = head[0]
            rows.append(
                (
                    ref.account,
                    ref.device_id,
                    seq,
                    _MESSAGE,
                    *key,
                    part,
                    now,
                    expires_at,
                    flag,
                    shared_id,
                    late,
                )
            )
            items.append(
                (
                    ref,
                    InboxItem(
                        seq,
                        ItemKind.MESSAGE,
                        sender,
                        sub.message_id,
                        part,
                        now,
                        expires_at,
                        sub.shared,
                    ),
                )
            )
    conn.executemany(_INSERT_ITEM, rows)
    conn.executemany(
        _SET_HEAD, [(h[0], h[1], h[2], ref.account, ref.device_id) for ref, h in heads.items()]
    )
    conn.execute(_RECORD_SENT, (*key[:2], record_key(key[2]), now, expires_at))
    conn.executemany(_ADD_CONTACT, _multi.new_contacts(sub))
    return Stored(items=tuple(items), stored_at=now)
