"""Bytes at rest per row of the PostgreSQL store: an idempotency record (``sent``) and a
queued copy (``inbox``) for several payload sizes, indexes included.

docs/scale.md's storage figures come from here. The bench creates a database on the server at
``--url`` (a maintenance database; default ``postgresql://postgres@127.0.0.1:5432/postgres``),
lets :class:`~tidings.store.PostgresStore` migrate it, inserts ``--rows`` rows of each kind with
random 16-byte message ids (as clients make them), runs ``VACUUM ANALYZE`` and reads
``pg_total_relation_size`` (heap, TOAST and every index; the inbox over its partitions), then
drops the database. Writes JSON (default ``bench/results/pg_rowsize.json``).

    python bench/pg_rowsize_bench.py                         # 100,000 rows; 200, 370, 531 B
    python bench/pg_rowsize_bench.py --payloads 200,1000 --rows 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from tidings.store import PostgresStore

HERE = Path(__file__).resolve().parent
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
#: A random 16-byte message id per row (random ids spread over the indexes as real ones do).
_ID = "decode(md5(random()::text || i), 'hex')"


async def total_size(conn: asyncpg.Connection, table: str) -> int:
    """Bytes of ``table`` with its TOAST and indexes, over its partitions if it has any."""
    parts = await conn.fetch(
        "SELECT inhrelid::regclass::text AS p FROM pg_inherits WHERE inhparent = $1::regclass",
        table,
    )
    names = [r["p"] for r in parts] or [table]
    return sum(
        [await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", n) for n in names]
    )


async def measure(url: str, rows: int, payloads: list[int]) -> dict[str, object]:
    store = PostgresStore(url)
    await store.open()  # migrates the new database
    await store.close()
    conn = await asyncpg.connect(url)
    try:
        accounts = [f"user{i:07d}" for i in range(rows)]
        await conn.execute(
            f"INSERT INTO sent SELECT a, 1, {_ID}, 1e9, 2e9"
            " FROM unnest($1::text[]) WITH ORDINALITY AS t(a, i)",
            accounts,
        )
        await conn.execute("VACUUM ANALYZE sent")
        sent = await total_size(conn, "sent") / rows
        inbox: dict[str, float] = {}
        for size in payloads:
            await conn.execute("TRUNCATE inbox")
            await conn.execute(
                f"INSERT INTO inbox SELECT a, 1, 1, 0, 'peer', 1, {_ID}, $2::bytea, 1e9, 2e9,"
                " false FROM unnest($1::text[]) WITH ORDINALITY AS t(a, i)",
                accounts,
                os.urandom(size),
            )
            await conn.execute("VACUUM ANALYZE inbox")
            inbox[str(size)] = await total_size(conn, "inbox") / rows
    finally:
        await conn.close()
    return {"rows": rows, "sent_bytes_per_record": round(sent), "inbox_bytes_per_row": inbox}


async def main(args: argparse.Namespace) -> int:
    name = f"tidings_rowsize_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(args.url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = urlunsplit(urlsplit(args.url)._replace(path=f"/{name}"))
        payloads = [int(p) for p in args.payloads.split(",")]
        result = await measure(url, args.rows, payloads)
        result["server"] = await admin.fetchval("SHOW server_version")
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"bench": "pg_rowsize", **result}, indent=2) + "\n")
    print(f"sent: {result['sent_bytes_per_record']} B per idempotency record")
    for size, per in result["inbox_bytes_per_row"].items():  # type: ignore[attr-defined]
        print(f"inbox: payload {size} B → {per:.0f} B per queued copy ({per - int(size):.0f} over)")
    print(f"→ {out}")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--url", default=DEFAULT_URL, help="a maintenance database of the server")
    p.add_argument("--rows", type=int, default=100_000, help="rows of each kind (100,000)")
    p.add_argument("--payloads", default="200,370,531", help="inbox payload sizes, bytes")
    p.add_argument("--out", default=str(HERE / "results" / "pg_rowsize.json"))
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
