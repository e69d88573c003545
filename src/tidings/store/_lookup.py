"""What a segment of submits and acks must know before it decides, read set-based.

One ``SELECT`` per kind of value for the whole segment (per :data:`CHUNK` keys), whatever its
size: the counters ``[last_seq, depth, strangers]`` of every device of every account it names,
the idempotency records of its sends that exist, and the contact pairs its sends ask about. The
keys are bound as a ``VALUES`` list joined to the table's primary key, so each is one index
seek; the list is padded (with its last key) to one of a few widths, so the statements are
prepared once and then come from the connection's statement cache.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from tidings.store.base import DeviceRef, Submission

#: The most keys one lookup statement binds: 256 x 3 values stays far below SQLite's limit of
#: bound parameters (32,766), and a segment (at most ``max_batch`` operations) needs few.
CHUNK = 256

#: The widths a key list is padded to: at most five statements per kind of lookup.
WIDTHS = (1, 4, 16, 64, CHUNK)

#: ``[last_seq, depth, strangers]`` of each device of one account, by device (in id order).
Heads = dict[DeviceRef, list[int]]

#: An idempotency record's key: (sender account, sender device id, message id).
SentKey = tuple[str, int, bytes]

_HEADS = (
    "WITH k(account) AS (VALUES {values}) SELECT d.account, d.device_id, d.last_seq, d.depth,"
    " d.strangers FROM k CROSS JOIN devices AS d ON d.account = k.account"
    " ORDER BY d.account, d.device_id"
)
_SENT = (
    "WITH k(a, d, m) AS (VALUES {values}) SELECT s.sender_account, s.sender_device,"
    " s.message_id, s.stored_at FROM k CROSS JOIN sent AS s"
    " ON s.sender_account = k.a AND s.sender_device = k.d AND s.message_id = k.m"
)
_CONTACTS = (
    "WITH k(a, c) AS (VALUES {values}) SELECT t.account, t.contact FROM k"
    " CROSS JOIN contacts AS t ON t.account = k.a AND t.contact = k.c"
)


@dataclass(slots=True)
class Known:
    """What the database held for a segment's keys; the segment updates it as it decides."""

    heads: dict[str, Heads]  #: by account; an account without devices is absent
    sent: dict[SentKey, float]  #: stored_at of each record, committed or of this segment
    contacts: set[tuple[str, str]]  #: (account, an account it sent to), of those asked about


def lookup(conn: sqlite3.Connection, ops: Sequence[object]) -> Known:
    """Read what the submits and acks in ``ops`` need (anything else in ``ops`` is ignored)."""
    accounts: dict[str, None] = {}
    keys: dict[SentKey, None] = {}
    pairs: dict[tuple[str, str], None] = {}
    for op in ops:
        sub: Submission | None = getattr(op, "sub", None)
        if sub is None:
            device: DeviceRef | None = getattr(op, "device", None)
            if device is not None:
                accounts[device.account] = None
            continue
        sender = sub.sender
        accounts[sub.recipient] = None
        accounts[sender.account] = None
        keys[sender.account, sender.device_id, sub.message_id] = None
        if sender.account != sub.recipient:
            pairs[sender.account, sub.recipient] = None  # to be written unless known
            pairs[sub.recipient, sender.account] = None  # is the sender a stranger?
    heads: dict[str, Heads] = {}
    for account, device_id, last_seq, depth, strangers in _select(
        conn, _HEADS, [(account,) for account in accounts]
    ):
        heads.setdefault(account, {})[DeviceRef(account, device_id)] = [last_seq, depth, strangers]
    sent = {(row[0], row[1], row[2]): row[3] for row in _select(conn, _SENT, list(keys))}
    contacts = {(row[0], row[1]) for row in _select(conn, _CONTACTS, list(pairs))}
    return Known(heads, sent, contacts)


def _select(
    conn: sqlite3.Connection, template: str, keys: Sequence[tuple[object, ...]]
) -> list[Any]:
    """The rows ``template`` finds for ``keys`` (one tuple of values per key)."""
    rows: list[Any] = []
    for start in range(0, len(keys), CHUNK):
        chunk = list(keys[start : start + CHUNK])
        width = next(width for width in WIDTHS if width >= len(chunk))
        # The padding finds the same rows again: the callers keep them in dicts and sets.
        chunk.extend([chunk[-1]] * (width - len(chunk)))
        params = [value for key in chunk for value in key]
        rows.extend(conn.execute(_statement(template, width, len(chunk[0])), params))
    return rows


@lru_cache(maxsize=64)
def _statement(template: str, width: int, arity: int) -> str:
    one = "(" + ",".join("?" * arity) + ")"
    return template.format(values=",".join([one] * width))
