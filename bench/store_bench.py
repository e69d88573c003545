"""CPU, commits and disk bytes of the SQLite store per submit, per ack and per relayed message.

Usage: ``python bench/store_bench.py [--ops N] [--tasks T] [--repeat R] [--out PATH]``. Prints a
table and writes the same figures as JSON (default ``bench/results/store.json``).

What runs: one :class:`~tidings.store.SQLiteStore` on a temporary file (on disk, so every commit
waits for a real fsync: ``synchronous=FULL``), ``--tasks`` sender/receiver pairs of one-device
accounts and one asyncio task per pair, all on one event loop. With that many operations
outstanding, the store's thread takes batches of about ``--tasks`` operations per transaction.

Phases, each ``--ops`` operations in total (split evenly over the tasks):

* ``submit``: each task sends to its receiver, one ``submit`` with 1 target (200 B payload) at a
  time — the relay's hot write.
* ``ack``: each task acks its receiver's items one seq at a time (each ack deletes one item):
  one ack per device per batch.
* ``ack_burst8``: each task fires 8 acks of its device at once (seq n..n+7), so a batch holds
  acks of the same device — what coalescing can merge.
* ``relay``: each task submits, then acks that item: one submit + one ack per item, mixed in
  the same batches, as in the relay.

The *message* phases run what the relay stores for one user message with its ✓✓: the message
(sender → receiver), the receiver's ack, the delivered receipt (receiver → sender), the
sender's ack — four writes — and report per message:

* ``single``: one pair, one operation at a time (each waits for the one before): a lone
  writer, e.g. one device catching up; every write is a batch of one.
* ``light``: ``--light-pairs`` pairs (5), each running its messages one after another, with
  exponential (Poisson) gaps between messages so that all together make ``--light-rate``
  messages/s (500: the relay's rate at 5-10 pairs): writes arrive one by one, as at the relay
  under light load.
* ``heavy``: ``--tasks`` pairs running their messages back to back: full batches.

For those, ``commits_per_msg`` is COMMITs per message and ``disk_bytes_per_msg`` the bytes the
process wrote to the disk (``/proc/self/io`` ``write_bytes``: WAL frames at each commit's fsync,
database pages at the checkpoints; the phase ends with one checkpoint, as the relay makes one a
second, so every page it dirtied is counted once in the database file too).

Figures are CPU time of the store's thread (``pthread_getcpuclockid``: SQLite, the fsync
syscalls and the Python of the operations), per operation; ``proc_us`` is the whole process
(the event loop's side included). Each is the best of ``--repeat`` runs on a fresh file.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import random
import sqlite3
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from tidings.delivery.msgids import new_message_id
from tidings.store import DeviceRef, SQLiteStore, Stored, Submission

DEFAULT_OUT = Path(__file__).parent / "results" / "store.json"
PAYLOAD = b"\x01" * 200
RETENTION = 30 * 86_400.0
NOW = 1_700_000_000.0
#: ``--random-ids``: message ids without their time (as clients made them before migration 0010).
RANDOM_IDS = False
MESSAGE_PHASES = ("single", "light", "heavy")
LIGHT_RATE = 500.0  # messages/s of the light phase, all pairs together (--light-rate)


def _disk_write_bytes() -> int:
    with open("/proc/self/io", encoding="ascii") as io:
        for line in io:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/self/io")


def _store_thread_clock() -> int:
    for thread in threading.enumerate():
        if thread.name == "tidings-store" and thread.ident is not None:
            return time.pthread_getcpuclockid(thread.ident)
    raise RuntimeError("store thread not found")


#: ``--commit-window``: passed to the store only when given (older stores have no such option).
STORE_OPTIONS: dict[str, float] = {}


async def _setup(path: Path, tasks: int) -> tuple[SQLiteStore, list[tuple[DeviceRef, DeviceRef]]]:
    store = SQLiteStore(path, **STORE_OPTIONS)  # type: ignore[arg-type]
    await store.open()
    pairs = []
    for n in range(tasks):
        sender = await store.create_account(f"s{n}", f"ks{n}".encode().ljust(32, b"."), "s", NOW)
        receiver = await store.create_account(f"r{n}", f"kr{n}".encode().ljust(32, b"."), "r", NOW)
        pairs.append((sender.ref, receiver.ref))
    return store, pairs


_CLOCK = itertools.count()
_IDS = random.Random(1)


def _submission(sender: DeviceRef, receiver: DeviceRef) -> Submission:
    """A send of ``PAYLOAD`` with a message id made as clients make them (the time in
    milliseconds, then random bytes: ``tidings.delivery.msgids``; ``--random-ids`` for the
    wholly random ids of earlier clients) at a time 1 ms after the previous send's (so the
    expiry indexes grow at their end, as at the relay)."""
    now = NOW + next(_CLOCK) * 1e-3
    if RANDOM_IDS:
        mid = _IDS.getrandbits(128).to_bytes(16, "big")
    else:
        mid = new_message_id(now, lambda n: _IDS.getrandbits(8 * n).to_bytes(n, "big"))
    return Submission(
        sender, mid, receiver.account, ((receiver, PAYLOAD),), now, now + RETENTION, 10**9
    )


async def _fill(store: SQLiteStore, pairs: list[tuple[DeviceRef, DeviceRef]], per: int) -> None:
    async def one(sender: DeviceRef, receiver: DeviceRef) -> None:
        for _ in range(per):
            result = await store.submit(_submission(sender, receiver))
            assert isinstance(result, Stored) and not result.duplicate

    await asyncio.gather(*(one(s, r) for s, r in pairs))


async def _phase(
    name: str,
    store: SQLiteStore,
    pairs: list[tuple[DeviceRef, DeviceRef]],
    per: int,
    light_rate: float = LIGHT_RATE,
) -> int:
    """Run the measured part of ``name``; return how many operations it made."""

    async def submitter(sender: DeviceRef, receiver: DeviceRef) -> None:
        for _ in range(per):
            result = await store.submit(_submission(sender, receiver))
            assert isinstance(result, Stored) and not result.duplicate

    async def acker(sender: DeviceRef, receiver: DeviceRef) -> None:
        for seq in range(1, per + 1):
            assert await store.ack(receiver, seq) == 1

    async def burst_acker(sender: DeviceRef, receiver: DeviceRef) -> None:
        for first in range(1, per + 1, 8):
            seqs = range(first, min(first + 8, per + 1))
            deleted = await asyncio.gather(*(store.ack(receiver, seq) for seq in seqs))
            assert sum(deleted) == len(seqs)

    async def relayer(sender: DeviceRef, receiver: DeviceRef) -> None:
        for _ in range(per // 2):
            result = await store.submit(_submission(sender, receiver))
            assert isinstance(result, Stored)
            assert await store.ack(receiver, result.items[0][1].seq) == 1

    rng = random.Random(f"store-bench-{len(pairs)}")
    gap = len(pairs) / light_rate  # mean seconds between one pair's messages

    async def messenger(sender: DeviceRef, receiver: DeviceRef) -> None:
        for _ in range(per):
            if name == "light":
                await asyncio.sleep(rng.expovariate(1 / gap))
            message = await store.submit(_submission(sender, receiver))
            assert isinstance(message, Stored)
            assert await store.ack(receiver, message.items[0][1].seq) == 1
            receipt = await store.submit(_submission(receiver, sender))
            assert isinstance(receipt, Stored)
            assert await store.ack(sender, receipt.items[0][1].seq) == 1

    workers: dict[str, Callable[[DeviceRef, DeviceRef], Awaitable[None]]] = {
        "submit": submitter,
        "ack": acker,
        "ack_burst8": burst_acker,
        "relay": relayer,
        "single": messenger,
        "light": messenger,
        "heavy": messenger,
    }
    await asyncio.gather(*(workers[name](s, r) for s, r in pairs))
    return len(pairs) * (per // 2 * 2 if name == "relay" else per)


async def _run_once(
    name: str, ops: int, tasks: int, light_pairs: int, light_rate: float
) -> dict[str, float]:
    if name in MESSAGE_PHASES:
        tasks = {"single": 1, "light": light_pairs}.get(name, tasks)
        ops = {"single": ops // 10, "light": ops // 5}.get(name, ops)  # messages
    per = ops // tasks
    with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp:
        store, pairs = await _setup(Path(tmp) / "s.db", tasks)
        try:
            if name.startswith("ack"):
                await _fill(store, pairs, per)
            await store.checkpoint()
            clock = _store_thread_clock()
            commits, committed = store.stats.commits, store.stats.committed_ops
            disk0 = _disk_write_bytes()
            thread0, proc0, wall0 = (
                time.clock_gettime(clock),
                time.process_time(),
                time.perf_counter(),
            )
            done = await _phase(name, store, pairs, per, light_rate)
            await store.checkpoint()  # what the WAL holds reaches the database file too
            disk1 = _disk_write_bytes()
            thread1, proc1, wall1 = (
                time.clock_gettime(clock),
                time.process_time(),
                time.perf_counter(),
            )
            batches = store.stats.commits - commits
            batched = store.stats.committed_ops - committed
        finally:
            await store.close()
    return {
        "store_us": (thread1 - thread0) / done * 1e6,
        "proc_us": (proc1 - proc0) / done * 1e6,
        "wall_us": (wall1 - wall0) / done * 1e6,
        "ops": batched if name in MESSAGE_PHASES else done,
        "messages": done if name in MESSAGE_PHASES else 0,
        "commits": batches,
        "mean_batch": batched / max(batches, 1),
        "commits_per_msg": batches / done if name in MESSAGE_PHASES else 0.0,
        "disk_bytes_per_msg": (disk1 - disk0) / done if name in MESSAGE_PHASES else 0.0,
        "disk_bytes_per_op": (disk1 - disk0) / max(batched, 1),
    }


async def _main(args: argparse.Namespace) -> dict[str, object]:
    phases: dict[str, dict[str, float]] = {}
    for name in args.phases:
        runs = [
            await _run_once(name, args.ops, args.tasks, args.light_pairs, args.light_rate)
            for _ in range(args.repeat)
        ]
        best = min(runs, key=lambda run: run["store_us"])
        phases[name] = {key: round(value, 2) for key, value in best.items()}
        # Commits and bytes depend on how batches formed, not on CPU luck: their medians.
        for key in ("commits_per_msg", "disk_bytes_per_msg", "disk_bytes_per_op", "mean_batch"):
            phases[name][key] = round(sorted(run[key] for run in runs)[len(runs) // 2], 2)
    return {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "machine": platform.machine(),
        "ops": args.ops,
        "tasks": args.tasks,
        "repeat": args.repeat,
        "light_pairs": args.light_pairs,
        "light_rate": args.light_rate,
        "store_options": STORE_OPTIONS,
        "loadavg": list(os.getloadavg()),
        "label": args.label,
        "random_ids": args.random_ids,
        "phases": phases,
    }


def _table(result: dict[str, object]) -> str:
    phases = result["phases"]
    assert isinstance(phases, dict)
    lines = [
        "per op, or per message (4 writes) in single/light/heavy",
        f"{'phase':<12} {'store µs':>9} {'process µs':>11} {'wall µs':>9}"
        f" {'commits':>8} {'mean batch':>11} {'commits/msg':>12} {'disk B/msg':>11}",
    ]
    for name, row in phases.items():
        per_msg = name in MESSAGE_PHASES
        lines.append(
            f"{name:<12} {row['store_us']:>9.1f} {row['proc_us']:>11.1f} {row['wall_us']:>9.1f}"
            f" {int(row['commits']):>8d} {row['mean_batch']:>11.1f}"
            + (
                f" {row['commits_per_msg']:>12.2f} {row['disk_bytes_per_msg']:>11.0f}"
                if per_msg
                else f" {'':>12} {'':>11}"
            )
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=20_000, help="operations per phase")
    parser.add_argument("--tasks", type=int, default=100, help="concurrent tasks (≈ batch size)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per phase; the best is kept")
    parser.add_argument(
        "--phases",
        nargs="+",
        default=["submit", "ack", "ack_burst8", "relay", *MESSAGE_PHASES],
        help="what to run",
    )
    parser.add_argument("--light-pairs", type=int, default=5, help="pairs of the light phase")
    parser.add_argument(
        "--light-rate", type=float, default=LIGHT_RATE, help="messages/s of the light phase"
    )
    parser.add_argument("--label", default="", help="a note stored in the JSON")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--commit-window", type=float, help="the store's commit window, s")
    parser.add_argument(
        "--random-ids", action="store_true", help="wholly random message ids (clients before 0010)"
    )
    args = parser.parse_args()
    global RANDOM_IDS
    RANDOM_IDS = args.random_ids
    if args.commit_window is not None:
        STORE_OPTIONS["commit_window"] = args.commit_window
    result = asyncio.run(_main(args))
    print(_table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
