"""SQLite: the sealed multi-recipient send (``Store.submit_sealed_multi``), on the store's
thread.

It runs as an ordinary write of the group committer (in the batch's transaction, in its own
savepoint, committed with the batch's one fsync): it reads the accounts' access keys, tag
records and device counters set-based, decides by :mod:`tidings.store._sealed_multi`, and only
then writes — the shared body once (``shared_bodies`` of migration 0008, ``refs`` = the number
of items), one inbox row per device (kind 3, no sender, the tag as message id, ``shared_id``),
the devices' counters, and one tag record per account (``sealed_tags`` of 0012). No new
migration: the two triggers already do the rest whatever deletes a row — 0008's drops the
body with its last row, 0012's takes the copy off its account's record.
"""

from __future__ import annotations

import sqlite3

from tidings.store import _sealed_multi
from tidings.store._lookup import _HEADS, _select
from tidings.store.base import (
    NO_SENDER,
    TAG_RETENTION,
    DeviceRef,
    InboxItem,
    ItemKind,
    SealedMultiSubmission,
    SealedMultiSubmitResult,
    Stored,
)

_KEYS = (
    "WITH k(account) AS (VALUES {values}) SELECT a.account, a.access_key FROM k"
    " CROSS JOIN access_keys AS a ON a.account = k.account"
)
_TAGS = (
    "WITH k(tag, recipient) AS (VALUES {values}) SELECT t.stored_at FROM k"
    " CROSS JOIN sealed_tags AS t ON t.tag = k.tag AND t.recipient = k.recipient"
)
_INSERT_BODY = "INSERT INTO shared_bodies (body, refs) VALUES (?, ?)"
_INSERT_ITEM = (
    "INSERT INTO inbox (account, device_id, seq, kind, sender_account, sender_device,"
    " message_id, payload, enqueued_at, expires_at, stranger, shared_id)"
    " VALUES (?,?,?,?,'',0,?,?,?,?,1,?)"
)
_SET_HEAD = (
    "UPDATE devices SET last_seq = ?, depth = ?, strangers = ? WHERE account = ? AND device_id = ?"
)
_RECORD = (
    "INSERT INTO sealed_tags (tag, recipient, queued, stored_at, forget_at) VALUES (?,?,?,?,?)"
)
_SEALED = int(ItemKind.SEALED)


def submit_sealed_multi(
    conn: sqlite3.Connection, sub: SealedMultiSubmission
) -> SealedMultiSubmitResult:
    """Decide and store ``sub`` (see the module docstring)."""
    accounts = [(account,) for account, _, _ in sub.recipients]
    keys = {row[0]: bytes(row[1]) for row in _select(conn, _KEYS, accounts)}
    refusal = _sealed_multi.denied(sub, keys)
    if refusal is not None:
        return refusal
    tag = sub.tag
    known = _select(conn, _TAGS, [(tag, account) for (account,) in accounts])
    if known:
        return Stored(items=(), stored_at=min(float(row[0]) for row in known), duplicate=True)
    heads: dict[DeviceRef, list[int]] = {}
    current: dict[str, list[DeviceRef]] = {}
    for account, device_id, last_seq, depth, strangers in _select(conn, _HEADS, accounts):
        ref = DeviceRef(account, device_id)
        heads[ref] = [last_seq, depth, strangers]
        current.setdefault(account, []).append(ref)
    refusal = _sealed_multi.decide(
        sub, current, lambda ref: heads[ref][1], lambda ref: heads[ref][2]
    )
    if refusal is not None:
        return refusal
    shared_id = conn.execute(_INSERT_BODY, (sub.shared, _sealed_multi.device_count(sub))).lastrowid
    rows, items, records = [], [], []
    now, expires_at = sub.now, sub.expires_at
    for account, _, parts in sub.recipients:
        for ref, part in parts:
            head = heads[ref]
            head[0] += 1
            head[1] += 1
            head[2] += 1  # every sealed item counts as a stranger's (tidings.store._sealed)
            seq = head[0]
            rows.append(
                (ref.account, ref.device_id, seq, _SEALED, tag, part, now, expires_at, shared_id)
            )
            item = InboxItem(
                seq, ItemKind.SEALED, NO_SENDER, tag, part, now, expires_at, sub.shared
            )
            items.append((ref, item))
        records.append((tag, account, len(parts), now, expires_at + TAG_RETENTION))
    conn.executemany(_INSERT_ITEM, rows)
    conn.executemany(
        _SET_HEAD, [(h[0], h[1], h[2], ref.account, ref.device_id) for ref, h in heads.items()]
    )
    conn.executemany(_RECORD, records)
    return Stored(items=tuple(items), stored_at=now)
