"""The receiving side of a catch-up without the relay: pages of DELIVERs into the real Inbox.

Usage::

    python bench/inbox_bench.py      # 3,000 messages, pages of 256, 3 runs → results/inbox.json
    python bench/inbox_bench.py --messages 10000 --profile 30

Alice's real :class:`DeviceCrypto` seals ``--messages`` end-to-end messages for bob (a PQXDH
session from bob's stored prekeys, as the relay would hand them out; every message a
PreKeySignalMessage, since bob never replies). Then bob's real :class:`Inbox`, on a real
:class:`ClientStore` on disk (WAL, ``synchronous=FULL``), is fed them as DELIVER frames, a page
(``--page``, the relay's delivery window) per store batch — begin, ``on_deliver`` for each,
the coalesced receipts, commit — as the client does with the frames of one read. Reported,
median over ``--runs``: CPU per message (``time.process_time`` around the feeding: decryption,
parsing, the store's statements and the commits' fsyncs as seen by this process), wall time,
SQL statements per message (a trace callback on bob's connection; it costs a little CPU of its
own) and commits. What it leaves out, against ``catchup_bench.py``: the WebSocket, Noise and
frame decoding, the connection core and the event loop's per-read overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tidings.client.clocks import Clocks
from tidings.client.crypto import DeviceCrypto
from tidings.client.events import ClientEvent, MessageReceived
from tidings.client.inbox import Inbox
from tidings.client.prekeys import DeviceKeys
from tidings.client.store import ClientStore, CryptoWrites, OutboxItem
from tidings.client.store._crypto import KEM, ONE_TIME, SIGNED
from tidings.delivery import ContentKind, Message
from tidings.store.base import DeviceRef
from tidings.wire import Deliver, KemKey, OneTimeKey, PrekeyBundle, SignedKey

ALICE, BOB = DeviceRef("alice", 1), DeviceRef("bob", 1)
RESULTS = Path(__file__).resolve().parent / "results"
NOW = time.time()


def bundle_of(store: ClientStore, crypto: DeviceCrypto, me: DeviceRef) -> PrekeyBundle:
    """What the relay would hand out for ``me``."""
    s, k = store.current_prekey(SIGNED), store.current_prekey(KEM)
    otk = next(p for p in store.prekeys() if p.kind == ONE_TIME)
    assert s is not None and s.signature is not None and k is not None and k.signature
    return PrekeyBundle(
        1,
        me.account,
        me.device_id,
        crypto.keys.identity.public.raw,
        SignedKey(s.key_id, s.public, s.signature),
        OneTimeKey(otk.key_id, otk.public),
        KemKey(k.key_id, k.public, k.signature, True),
    )


def device(path: Path, me: DeviceRef) -> tuple[ClientStore, DeviceCrypto]:
    store = ClientStore(path)
    DeviceKeys.create(store, NOW)
    return store, DeviceCrypto(store, me, lambda e: None, time.time)


def frames(tmp: Path, bob_store: ClientStore, bob_crypto: DeviceCrypto, n: int) -> list[Deliver]:
    """``n`` DELIVERs from alice to bob, sealed by alice's real crypto."""
    store, crypto = device(tmp / "alice.db", ALICE)
    store.save_crypto(crypto.install_bundle(bundle_of(bob_store, bob_crypto, BOB)))
    out = []
    for i in range(n):
        content = Message("alice:bob", i + 1, NOW, f"catch-up message {i:05d}".encode())
        mid = os.urandom(16)
        item = OutboxItem(i + 1, mid, "bob", ContentKind.MESSAGE, content.serialize(), NOW, 0, 0)
        writes = CryptoWrites(NOW)
        payloads, new = crypto.seal(item, [BOB], writes)
        store.save_sealed(new, writes)
        out.append(Deliver(i + 1, 0, "alice", 1, mid, NOW, NOW + 86400, payloads[BOB]))
    store.close()
    return out


async def feed(inbox: Inbox, store: ClientStore, pages: list[list[Deliver]]) -> None:
    for page in pages:
        store.begin_batch()
        inbox.begin_batch()
        for frame in page:
            inbox.on_deliver(frame)
        inbox.flush_receipts()
        store.commit_batch()


def run(n: int, page: int, profile: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="tidings-inbox-bench-") as tmp:  # /tmp: on disk here
        bob_store, bob_crypto = device(Path(tmp) / "bob.db", BOB)
        delivers = frames(Path(tmp), bob_store, bob_crypto, n)
        received: list[ClientEvent] = []
        inbox = Inbox(bob_store, BOB, received.append, Clocks(), bob_crypto)
        counts = {"statements": 0, "commits": 0}

        def trace(sql: str) -> None:
            counts["statements"] += 1
            if sql.startswith("COMMIT"):
                counts["commits"] += 1

        bob_store._db.set_trace_callback(trace)
        pages = [delivers[i : i + page] for i in range(0, n, page)]
        profiler = cProfile.Profile(time.process_time) if profile else None  # CPU, not fsync waits
        cpu0, t0 = time.process_time(), time.perf_counter()
        if profiler is not None:
            profiler.enable()
        asyncio.run(feed(inbox, bob_store, pages))
        if profiler is not None:
            profiler.disable()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        inbox.close()
        bob_store.close()
        shown = sum(isinstance(e, MessageReceived) for e in received)
        if shown != n:
            raise SystemExit(f"only {shown} of {n} messages were shown")
        if profiler is not None:
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(profile)
            print(text.getvalue())
        return {
            "cpu_us_per_message": cpu / n * 1e6,
            "wall_s": wall,
            "statements_per_message": counts["statements"] / n,
            "commits": counts["commits"],
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--page", type=int, default=256, help="DELIVERs per store batch")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--profile", type=int, default=0, help="print the top N functions (1 run)")
    ap.add_argument("--out", default=str(RESULTS / "inbox.json"), help="JSON report path")
    args = ap.parse_args()
    runs = [
        run(args.messages, args.page, args.profile) for _ in range(1 if args.profile else args.runs)
    ]
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(
        f"inbox bench: {args.messages:,} messages, pages of {args.page}, {len(runs)} run(s),"
        f" load {os.getloadavg()[0]:.2f}"
    )
    for key, value in median.items():
        print(f"  {key:28} {value:10.2f}")
    if not args.profile:
        report = {"args": vars(args), "load": os.getloadavg()[0], "runs": runs, "median": median}
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
