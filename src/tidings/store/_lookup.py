"""What a segment of submits and acks must know before it decides, read set-based.

One ``SELECT`` per kind of value for the whole segment (a few for a long one), whatever its
size: the counters ``[last_seq, depth, strangers]`` of every device of every account it names,
the idempotency records of its sends that exist, and the contact pairs its sends ask about. The
keys are bound as a ``VALUES`` list joined to the table's primary key, so each is one index
seek; a list is split into pieces of power-of-two widths (100 keys: 64 + 32 + 4), so there are
few distinct statements, each prepared once and then taken from the connection's statement
cache, and no key is looked up twice (padding to a width cost up to 2.5x the seeks).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from tidings.store.base import DeviceRef, Submission

#: The widths a key list is split into, widest first: at most nine statements per lookup kind.
WIDTHS = (256, 128, 64, 32, 16, 8, 4, 2, 1)

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
    " s.id_key, s.stored_at FROM k CROSS JOIN sent AS s"
    " ON s.id_key = k.m AND s.sender_account = k.a AND s.sender_device = k.d"
)
#: Bytes at the end of a message id that go first in its record's key (the time, in the ids the
#: reference client makes: ``tidings.delivery.msgids``).
_KEY_ROTATION = 6


def record_key(message_id: bytes) -> bytes:
    """The ``sent`` table's key of ``message_id``: its last 6 bytes first (migration 0010), so
    that the records of ids ending with their time are stored in time order, new ones at the
    right edge. Any bytes work: an id of another layout only loses the locality."""
    return message_id[-_KEY_ROTATION:] + message_id[:-_KEY_ROTATION]


def message_id_of(key: bytes) -> bytes:
    """The message id whose :func:`record_key` is ``key``."""
    if len(key) < _KEY_ROTATION:
        return key
    return key[_KEY_ROTATION:] + key[:_KEY_ROTATION]


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
    #: the segment's own DeviceRef objects, reused for the counters' keys: building and hashing
    #: new ones was a third of the lookup's time
    refs: dict[tuple[str, int], DeviceRef] = {}
    for op in ops:
        sub: Submission | None = getattr(op, "sub", None)
        if sub is None:
            device: DeviceRef | None = getattr(op, "device", None)
            if device is not None:
                accounts[device.account] = None
                refs[device.account, device.device_id] = device
            continue
        sender = sub.sender
        accounts[sub.recipient] = None
        accounts[sender.account] = None
        keys[sender.account, sender.device_id, sub.message_id] = None
        for ref, _ in sub.payloads:
            refs[ref.account, ref.device_id] = ref
        if sender.account != sub.recipient:
            pairs[sender.account, sub.recipient] = None  # to be written unless known
            pairs[sub.recipient, sender.account] = None  # is the sender a stranger?
    heads: dict[str, Heads] = {}
    for account, device_id, last_seq, depth, strangers in _select(
        conn, _HEADS, [(account,) for account in accounts]
    ):
        ref = refs.get((account, device_id)) or DeviceRef(account, device_id)
        heads.setdefault(account, {})[ref] = [last_seq, depth, strangers]
    asked = [(account, device_id, record_key(mid)) for account, device_id, mid in keys]
    sent = {(row[0], row[1], message_id_of(row[2])): row[3] for row in _select(conn, _SENT, asked)}
    contacts = {(row[0], row[1]) for row in _select(conn, _CONTACTS, list(pairs))}
    return Known(heads, sent, contacts)


def _select(
    conn: sqlite3.Connection, template: str, keys: Sequence[tuple[object, ...]]
) -> list[Any]:
    """The rows ``template`` finds for ``keys`` (one tuple of values per key)."""
    rows: list[Any] = []
    start, left = 0, len(keys)
    for width in WIDTHS:
        while left >= width:
            chunk = keys[start : start + width]
            params = [value for key in chunk for value in key]
            rows.extend(conn.execute(_statement(template, width, len(chunk[0])), params))
            start += width
            left -= width
    return rows


@lru_cache(maxsize=32)
def _statement(template: str, width: int, arity: int) -> str:
    one = "(" + ",".join("?" * arity) + ")"
    return template.format(values=",".join([one] * width))
