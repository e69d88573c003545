"""Sealed sender's promise, checked on everything the relay wrote (issue 12): after a run in
which a marker account sends only sealed messages (and gets only sealed receipts), a scan of
the relay's database — every row of every table, and the raw bytes of the database file and
its WAL — its debug log and its metrics finds no sender identity for any sealed item.

What the relay may know of the marker account is what it knows of any account: its own device
rows, its keys, its own authenticated session's log lines, and its name as the *recipient* of
items queued for it. What it must not have is the marker as the sender of a sealed item, a
record tying a sealed item to the marker's device, or a message id of a sealed message (those
travel only inside the sealed payload).
"""

from __future__ import annotations

import io
import logging
import os
import re
import sqlite3
from pathlib import Path
from typing import Any

from tests.harness import ClientLab, RelayLab, is_received, is_status
from tidings.delivery import Status
from tidings.refs import DeviceRef
from tidings.server.logs import JsonFormatter
from tidings.store._lookup import record_key

#: Tables that describe an account itself: the marker's name may be in them (as the account).
OWN_TABLES = {
    "accounts",
    "devices",
    "device_cards",
    "prekey_owners",
    "one_time_prekeys",
    "link_codes",
    "access_keys",
    "push_subscriptions",
}


def rows(db_path: Path) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    """Every row of every table of the relay's database (WAL included: SQLite reads it)."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        names = [
            r[0]
            for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not r[0].startswith("sqlite_")
        ]
        out = {}
        for name in names:
            cur = db.execute(f'SELECT * FROM "{name}"')
            out[name] = ([d[0] for d in cur.description], cur.fetchall())
        return out
    finally:
        db.close()


def marker_rows(db_path: Path, needle: bytes) -> set[tuple[str, tuple[Any, ...]]]:
    """The rows, outside the account's own tables, that hold the marker anywhere."""
    return {
        (table, row)
        for table, (_, table_rows) in rows(db_path).items()
        if table not in OWN_TABLES
        for row in table_rows
        if any(contains(v, needle) for v in row)
    }


def contains(value: Any, needle: bytes) -> bool:
    if isinstance(value, str):
        return needle in value.encode()
    if isinstance(value, bytes):
        return needle in value
    return False


async def test_a_scan_of_the_relay_finds_no_sender_of_any_sealed_item(
    relays: RelayLab, clients: ClientLab, tmp_path: Path
) -> None:
    relay = await relays.start(log_level="debug")
    log_text = io.StringIO()
    handler = logging.StreamHandler(log_text)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(lambda record: record.name.startswith("tidings.server"))
    logger = logging.getLogger("tidings")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    marker = f"zq-sender-{os.urandom(4).hex()}"
    try:
        sender = await clients.new(marker)
        bob = await clients.new("bob")
        bob1 = DeviceRef("bob", 1)
        # Bob writes first: his profile key reaches the marker with it, so every message the
        # marker ever sends bob can go sealed (the marker's key goes with its first, sealed).
        first = await bob.client.send(marker, "hello")
        await sender.until(is_received(first))
        assert sender.client.sealed_keys.access_key_for("bob") is not None  # came before it
        await bob.client.drain(10)
        await sender.client.drain(10)
        warm_up_rows = marker_rows(tmp_path / "relay.db", marker.encode())
        ids = []
        for i in range(6):
            mid = await sender.client.send("bob", f"sealed {i}")
            await bob.until(is_received(mid))
            ids.append(mid)
        assert await bob.client.mark_read(ids) == len(ids)
        for mid in ids:
            await sender.until(is_status(mid, Status.READ, bob1))  # receipts came back sealed
        await sender.client.drain(10)
        await bob.client.drain(10)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)

    # Every message of the marker went sealed, and so did bob's receipts to it.
    for mid in ids:
        points = [p.point for p in sender.client.trace(mid)]
        assert "sealed_stored" in points, points
    tags = [r.tag for r in sender.client.store.sealed_records().values()]
    assert len(tags) >= len(ids)

    needle = marker.encode()
    db_path = tmp_path / "relay.db"
    tables = rows(db_path)
    sealed_items = 0
    for table, (columns, table_rows) in tables.items():
        for row in table_rows:
            for column, value in zip(columns, row, strict=True):
                for mid in ids:  # no record of a sealed message's id, in either byte order
                    assert not contains(value, mid), (table, column)
                    assert not contains(value, record_key(mid)), (table, column)
                if not contains(value, needle) or table in OWN_TABLES:
                    continue
                if (table, row) in warm_up_rows:
                    continue  # written before the sealed phase (e.g. its first receipt to bob)
                # Since, the marker may only be the account an item is queued for (bob's sealed
                # receipts to it) and the recipient of their tag records.
                allowed = {("inbox", "account"), ("sealed_tags", "recipient")}
                assert (table, column) in allowed, (table, column, row)
        if table == "inbox":
            kind = columns.index("kind")
            for row in table_rows:
                if row[kind] == 3:
                    sealed_items += 1
                    record = dict(zip(columns, row, strict=True))
                    assert (record["sender_account"], record["sender_device"]) == ("", 0)
    # The tag records of the marker's sealed sends name bob, the recipient, and nothing else.
    tag_columns, tag_rows = tables["sealed_tags"]
    by_tag = {r[tag_columns.index("tag")]: r for r in tag_rows}
    for tag in tags:
        if tag in by_tag:  # (forgotten ones are gone)
            assert by_tag[tag][tag_columns.index("recipient")] == "bob"
            assert not any(contains(v, needle) for v in by_tag[tag])
    # No idempotency record (`sent`) or contact record (`contacts`) of the marker's since the
    # sealed phase began: its messages and its receipts all went sealed.
    new = marker_rows(db_path, needle) - warm_up_rows
    assert {table for table, _ in new} <= {"inbox", "sealed_tags"}, new

    # The raw bytes of the database and its WAL (old page images included) hold no message
    # id of a sealed message: nothing ties a sealed item to the message the marker sent.
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("relay.db*") if p.is_file())
    assert len(raw) > 10_000 and any(tag in raw for tag in tags)  # real data: the tags are
    for mid in ids:
        assert mid not in raw

    # The relay's debug log: no line that tells of a sealed send or a tag names the marker,
    # and no line that names the marker (its own session's: registered, open, certificate)
    # tells of a sealed send, a tag or bob.
    logged = log_text.getvalue()
    lines = logged.splitlines()
    assert f"= registered {marker}.1" in logged  # real data
    tag_hexes = [t.hex() for t in tags] + [t.hex()[:12] for t in tags]
    for line in lines:
        sealed_line = re.search(r"seal|tag", line, re.IGNORECASE) or any(
            h in line for h in tag_hexes
        )
        if marker in line:
            assert not sealed_line, line
            assert "bob" not in line, line
        if sealed_line:
            assert marker not in line, line

    # Metrics carry no account at all.
    metrics = relay.metrics.render()
    assert b"tidings_sealed_sends_total" in metrics and needle not in metrics
