"""The relay's cost of a group message: CPU per fanned-out copy and bytes stored, MULTI_SEND
against one pairwise SEND per member device.

Usage: ``python bench/multisend_bench.py [--sizes 10,100,1000] [--repeat N] [--out PATH]``.
Prints a table and writes JSON (default ``bench/results/multisend.json``).

For a group of N member devices (N accounts of one device each: the most device-set checks),
one group message whose sealed-sender v2 form is measured (``seal_multi`` of a 200-byte
sender-key message: the shared part, and a 49-byte part per device):

* **multi**: the relay parses the MULTI_SEND frame, stores it (``SQLiteStore.submit_multi``:
  the shared part once, an item per device, one commit), builds and encodes the N DELIVER
  frames (``item_frame``: part || shared), and deletes the N items on the devices' acks (the
  last one takes the shared body, by the trigger of migration 0008);
* **pairwise**: the same through one SEND of the whole received message per device (what a
  relay without multi-recipient sends stores): N submits (group-committed together), N
  DELIVERs, N acks.

CPU is this process's (``time.process_time``: the store's thread included), divided by N: the
relay's cost per fanned-out copy, without the Noise encryption and WebSocket framing of each
DELIVER (the same for both). Bytes stored: pages the database file uses after ``--messages``
messages are stored and checkpointed (1 KiB pages, as the relay's), per message. Median of
``--repeat`` runs (5). The machine's load average is written with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import json
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from tidings.e2e.keys import IdentityKeyPair
from tidings.e2e.sealed import SealedContent
from tidings.e2e.sealed_v2 import SEALED_V2, seal_multi
from tidings.server.core_delivery import item_frame
from tidings.store import DeviceRef, MultiSubmission, SQLiteStore, Stored, Submission
from tidings.wire import MultiAccount, MultiDevice, MultiSend, encode, parse

DEFAULT_OUT = Path(__file__).parent / "results" / "multisend.json"
SENDER = DeviceRef("alice", 1)
RETENTION = 30 * 86_400.0
NOW = 1_800_000_000.0


def group_message() -> tuple[bytes, bytes]:
    """A real sealed v2 group message's shared part and one device's part (0x22 || header)."""
    from tidings.e2e.certificates import SenderCertificate, ServerCertificate
    from tidings.e2e.sealed import TYPE_SENDERKEY_MESSAGE

    def key(label: bytes) -> IdentityKeyPair:
        return IdentityKeyPair(hashlib.sha256(label).digest())

    sender, root, server_key = key(b"s"), key(b"r"), key(b"k")
    server = ServerCertificate.issue(1, server_key.public, root)
    cert = SenderCertificate.issue("alice", 1, sender.public, 2**60, server, server_key)
    # A 200-byte message as a sender-key message (~97 bytes of header and signature).
    content = SealedContent(TYPE_SENDERKEY_MESSAGE, cert, os.urandom(200 + 97), group_id=bytes(32))
    shared, headers = seal_multi(content, sender, [key(b"m").public], os.urandom)
    return shared, bytes([SEALED_V2]) + headers[0]


def members(size: int) -> list[DeviceRef]:
    return [DeviceRef(f"m{i:05d}", 1) for i in range(size)]


async def setup(path: Path, size: int) -> SQLiteStore:
    store = SQLiteStore(path)
    await store.open()
    await store.create_account("alice", hashlib.sha256(b"alice").digest(), "a", NOW)
    await asyncio.gather(
        *(
            store.create_account(
                ref.account, hashlib.sha256(ref.account.encode()).digest(), "m", NOW
            )
            for ref in members(size)
        )
    )
    return store


def used_bytes(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


async def fan_out(store: SQLiteStore, items: tuple[tuple[DeviceRef, object], ...]) -> None:
    """What the relay does per copy after the commit: a DELIVER built and encoded, the ack."""
    for _, item in items:
        encode(item_frame(item))  # type: ignore[arg-type]
    await asyncio.gather(*(store.ack(ref, item.seq) for ref, item in items))  # type: ignore[attr-defined]


async def run_multi(store: SQLiteStore, size: int, n: int, shared: bytes, part: bytes) -> float:
    refs = members(size)
    frame = MultiSend(
        n,
        n.to_bytes(16, "big"),
        shared,
        tuple(MultiAccount(r.account, (MultiDevice(1, part),)) for r in refs),
    )
    body = frame.serialize()
    start = time.process_time()
    parsed = parse(body)
    assert isinstance(parsed, MultiSend)
    sub = MultiSubmission(
        SENDER,
        parsed.message_id,
        parsed.shared,
        tuple(
            (e.account, tuple((DeviceRef(e.account, d.device_id), d.part) for d in e.devices))
            for e in parsed.recipients
        ),
        NOW,
        NOW + RETENTION,
        10_000,
    )
    result = await store.submit_multi(sub)
    assert isinstance(result, Stored) and len(result.items) == size
    await fan_out(store, result.items)
    return time.process_time() - start


async def run_pairwise(store: SQLiteStore, size: int, n: int, payload: bytes) -> float:
    refs = members(size)
    start = time.process_time()
    subs = [
        Submission(
            SENDER,
            (n * 100_000 + i).to_bytes(16, "big"),
            r.account,
            ((r, payload),),
            NOW,
            NOW + RETENTION,
            10_000,
        )
        for i, r in enumerate(refs)
    ]
    for sub in subs:  # the relay parses each SEND frame
        parse(encode_send(sub)[4:])
    results = await asyncio.gather(*(store.submit(sub) for sub in subs))
    items = tuple(item for r in results if isinstance(r, Stored) for item in r.items)
    assert len(items) == size
    await fan_out(store, items)
    return time.process_time() - start


def encode_send(sub: Submission) -> bytes:
    from tidings.wire import Send, Target

    return encode(
        Send(
            sub.message_id,
            sub.recipient,
            tuple(Target(r.account, r.device_id, p) for r, p in sub.payloads),
        )
    )


async def stored_bytes(
    tmp: Path, size: int, messages: int, shared: bytes, part: bytes
) -> dict[str, float]:
    out = {}
    for kind in ("multi", "pairwise"):
        path = tmp / f"bytes-{kind}-{size}.db"
        store = await setup(path, size)
        before = used_bytes(path)
        refs = members(size)
        for n in range(messages):
            if kind == "multi":
                sub = MultiSubmission(
                    SENDER,
                    n.to_bytes(16, "big"),
                    shared,
                    tuple((r.account, ((r, part),)) for r in refs),
                    NOW,
                    NOW + RETENTION,
                    10_000,
                )
                await store.submit_multi(sub)
            else:
                await asyncio.gather(
                    *(
                        store.submit(
                            Submission(
                                SENDER,
                                (n * 100_000 + i).to_bytes(16, "big"),
                                r.account,
                                ((r, part + shared),),
                                NOW,
                                NOW + RETENTION,
                                10_000,
                            )
                        )
                        for i, r in enumerate(refs)
                    )
                )
        await store.close()
        out[kind] = (used_bytes(path) - before) / messages
    return out


async def measure(size: int, repeat: int, messages: int) -> dict[str, object]:
    shared, part = group_message()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        store = await setup(tmp / f"cpu-{size}.db", size)
        await run_multi(store, size, 10_000_000, shared, part)  # warm-up: caches, statements
        multi = [await run_multi(store, size, n, shared, part) for n in range(repeat)]
        pair = [await run_pairwise(store, size, 1000 + n, part + shared) for n in range(repeat)]
        await store.close()
        stored = await stored_bytes(tmp, size, messages, shared, part)
    return {
        "devices": size,
        "shared_bytes": len(shared),
        "part_bytes": len(part),
        "multi_cpu_us_per_copy": round(statistics.median(multi) * 1e6 / size, 1),
        "pairwise_cpu_us_per_copy": round(statistics.median(pair) * 1e6 / size, 1),
        "multi_stored_bytes_per_message": round(stored["multi"]),
        "pairwise_stored_bytes_per_message": round(stored["pairwise"]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10,100,1000")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--messages", type=int, default=20, help="messages stored for the bytes")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = p.parse_args()
    load_before = os.getloadavg()
    rows = [asyncio.run(measure(int(s), a.repeat, a.messages)) for s in a.sizes.split(",")]
    load_after = os.getloadavg()
    print(
        f"{'devices':>7} {'shared B':>8} {'multi µs/copy':>13} {'pairwise µs/copy':>16}"
        f" {'multi B/msg':>11} {'pairwise B/msg':>14}"
    )
    for r in rows:
        print(
            f"{r['devices']:>7} {r['shared_bytes']:>8} {r['multi_cpu_us_per_copy']:>13}"
            f" {r['pairwise_cpu_us_per_copy']:>16} {r['multi_stored_bytes_per_message']:>11,}"
            f" {r['pairwise_stored_bytes_per_message']:>14,}"
        )
    print(f"load average before {load_before}, after {load_after}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(
        json.dumps(
            {
                "bench": "multisend",
                "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "machine": {
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "load_before": load_before,
                    "load_after": load_after,
                },
                "repeat": a.repeat,
                "messages_for_bytes": a.messages,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
