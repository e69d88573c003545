"""Throughput and CPU of the PostgreSQL store per relayed message, on one node.

Usage: ``python bench/pg_store_bench.py [--url URL] [--pairs P] [--messages N] [--nodes K]
[--out PATH]``. ``--url`` names a maintenance database of the server (default
``postgresql://postgres@127.0.0.1:5432/postgres``); the bench creates its own database there and
drops it at the end. Prints a table and writes the same figures as JSON (default
``bench/results/pg_store.json``).

What runs: ``--nodes`` :class:`~tidings.store.PostgresStore` instances (each one connection, as
each relay node has) on one event loop, and ``--pairs`` sender/receiver pairs of one-device
accounts spread over them. Each pair relays its messages back to back: a submit (200-byte
payload), then the receiver's ack of it — the relay's two writes per message on its hot path.
Phases:

* ``single``: one pair: every write is a transaction of its own (a lone writer).
* ``heavy``: ``--pairs`` pairs at once: the writes waiting when a transaction starts share it.

Per message: ``client_us`` is the bench process's CPU (the store's Python and asyncpg: what a
relay node pays), ``db_us`` the CPU of the database backends serving the store's connections
(``/proc/PID/stat`` of ``pg_backend_pid()``: parsing, executing, WAL insertion and the commit's
flush; the WAL writer and checkpointer are not counted), ``commits_per_msg`` the store's
COMMITs. Wall-clock figures on a shared machine move with its other load; the CPU figures less.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from tidings.store import DeviceRef, PostgresStore, Stored, Submission

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_OUT = Path(__file__).parent / "results" / "pg_store.json"
PAYLOAD = b"\x01" * 200
NOW = 1_700_000_000.0
RETENTION = 30 * 86_400.0
TICKS = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (a database backend)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def _backend_pids(url: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'tidings-relay'"
        )
    finally:
        await conn.close()
    return [int(row[0]) for row in rows]


async def _pair(store: PostgresStore, n: int, messages: int) -> None:
    sender, receiver = DeviceRef(f"s{n}", 1), DeviceRef(f"r{n}", 1)
    for _ in range(messages):
        sub = Submission(
            sender,
            uuid.uuid4().bytes,
            receiver.account,
            ((receiver, PAYLOAD),),
            NOW,
            NOW + RETENTION,
            10_000,
        )
        result = await store.submit(sub)
        assert isinstance(result, Stored) and not result.duplicate
        assert await store.ack(receiver, result.items[0][1].seq) == 1


async def _phase(url: str, nodes: int, pairs: int, messages: int) -> dict[str, float]:
    stores = [PostgresStore(url) for _ in range(nodes)]
    for store in stores:
        await store.open()
    try:
        for n in range(pairs):
            store = stores[n % nodes]
            await store.create_account(f"s{n}", uuid.uuid4().bytes * 2, "s", NOW)
            await store.create_account(f"r{n}", uuid.uuid4().bytes * 2, "r", NOW)
        pids = await _backend_pids(url)
        commits = sum(store.stats.commits for store in stores)
        db_before = sum(_proc_cpu(pid) for pid in pids)
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        await asyncio.gather(*(_pair(stores[n % nodes], n, messages) for n in range(pairs)))
        wall = time.perf_counter() - wall_before
        cpu = time.process_time() - cpu_before
        db = sum(_proc_cpu(pid) for pid in pids) - db_before
        commits = sum(store.stats.commits for store in stores) - commits
    finally:
        for store in stores:
            await store.close()
    total = pairs * messages
    return {
        "messages": total,
        "messages_per_s": round(total / wall),
        "client_us": round(cpu / total * 1e6, 1),
        "db_us": round(db / total * 1e6, 1),
        "commits_per_msg": round(commits / total, 3),
    }


async def main(args: argparse.Namespace) -> dict[str, object]:
    admin = await asyncpg.connect(args.url)
    results: dict[str, object] = {}
    try:
        for name, pairs, messages in (
            ("single", 1, max(args.messages // 10, 50)),
            ("heavy", args.pairs, max(args.messages // args.pairs, 1)),
        ):
            database = f"tidings_bench_{uuid.uuid4().hex[:8]}"
            await admin.execute(f'CREATE DATABASE "{database}"')
            try:
                url = urlunsplit(urlsplit(args.url)._replace(path=f"/{database}"))
                results[name] = await _phase(url, args.nodes, pairs, messages)
            finally:
                await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        results["server"] = await admin.fetchval("SHOW server_version")
        results["synchronous_commit"] = await admin.fetchval("SHOW synchronous_commit")
    finally:
        await admin.close()
    results["machine"] = f"{platform.machine()}, {os.cpu_count()} cores (shared)"
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="a maintenance database")
    parser.add_argument("--pairs", type=int, default=64, help="pairs of the heavy phase")
    parser.add_argument("--messages", type=int, default=6400, help="messages of the heavy phase")
    parser.add_argument("--nodes", type=int, default=1, help="PostgresStore instances")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    figures = asyncio.run(main(args))
    for phase in ("single", "heavy"):
        row = figures[phase]
        assert isinstance(row, dict)
        print(phase.ljust(8), "  ".join(f"{key}={value}" for key, value in row.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
