"""CPU and bytes of a group message at the ends: sender keys + sealed sender v2.

Usage: ``python bench/group_bench.py [--sizes 10,100,1000] [--repeat N] [--out PATH]``. Prints a
table and writes JSON (default ``bench/results/group.json``).

For a group of N member devices (each its own identity key: the worst case; devices of one
account share theirs, and so a header), one 200-byte message:

* **sender**: ``group_encrypt`` once (sender keys), then ``seal_multi`` to the N identity keys
  (sealed sender v2: the content sealed once, 48 bytes and two X25519 agreements per device);
* **receiver**: one device's ``open_sealed_v2`` (two agreements, AES-GCM-SIV) + ``group_decrypt``
  (signature check, AES-CBC);
* **bytes**: what the sender uploads (shared part + N × 48), against N pairwise v1 sealed
  messages (what a sender without multi-recipient sends would upload).

CPU time of this process (``time.process_time``), median of ``--repeat`` (5). What the relay
spends per fanned-out copy, and stores per message, is ``bench/multisend_bench.py``.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import platform
import statistics
import time
from pathlib import Path

from tidings.e2e.certificates import SenderCertificate, ServerCertificate
from tidings.e2e.keys import IdentityKeyPair
from tidings.e2e.sealed import TYPE_SENDERKEY_MESSAGE, SealedContent, seal
from tidings.e2e.sealed_v2 import open_sealed_v2, received, seal_multi
from tidings.e2e.senderkey import (
    SenderKeyRecord,
    group_decrypt,
    group_encrypt,
    new_distribution,
    process_distribution,
)

DEFAULT_OUT = Path(__file__).parent / "results" / "group.json"
PAYLOAD = bytes(range(200))
GROUP = bytes(16)


class _Rng:
    def __init__(self, seed: bytes) -> None:
        self.seed, self.n = seed, 0

    def __call__(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(self.seed + self.n.to_bytes(8, "big")).digest()
            self.n += 1
        return out[:n]


def identity(i: int) -> IdentityKeyPair:
    return IdentityKeyPair(hashlib.sha256(b"bench member %d" % i).digest())


def cpu_us(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()  # type: ignore[operator]
        times.append((time.process_time() - start) * 1e6)
    return statistics.median(times)


def measure(size: int, repeat: int) -> dict[str, float | int]:
    sender = identity(-1)
    root, server_key = identity(-2), identity(-3)
    server = ServerCertificate.issue(1, server_key.public, root)
    cert = SenderCertificate.issue("alice", 1, sender.public, 2**60, server, server_key)
    members = [identity(i) for i in range(size)]
    record, distribution = new_distribution(SenderKeyRecord(), GROUP, _Rng(b"bench"))
    theirs = process_distribution(SenderKeyRecord(), distribution)
    state = {"record": record}

    def send() -> tuple[bytes, list[bytes]]:
        state["record"], inner = group_encrypt(state["record"], GROUP, PAYLOAD)
        content = SealedContent(TYPE_SENDERKEY_MESSAGE, cert, inner, group_id=GROUP)
        return seal_multi(content, sender, [m.public for m in members], _Rng(b"m"))

    send_us = cpu_us(send, repeat)
    shared, headers = send()
    one = received(headers[0], shared)

    def receive() -> None:
        content = open_sealed_v2(one, members[0])
        group_decrypt(theirs, content.content)  # the same message each time: state unchanged

    receive_us = cpu_us(receive, max(repeat, 20))
    pairwise = len(
        seal(
            SealedContent(TYPE_SENDERKEY_MESSAGE, cert, b"\0" * 200),
            sender,
            members[0].public,
            _Rng(b"p"),
        )
    )
    return {
        "member_devices": size,
        "sender_us": round(send_us, 1),
        "sender_us_per_device": round(send_us / size, 2),
        "receiver_us": round(receive_us, 1),
        "upload_bytes": len(shared) + sum(len(h) for h in headers),
        "upload_bytes_per_device": round((len(shared) + 48 * size) / size, 1),
        "pairwise_upload_bytes": pairwise * size,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10,100,1000", help="member devices (comma-separated)")
    p.add_argument("--repeat", type=int, default=5, help="repetitions; the median is kept")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON file to write")
    args = p.parse_args()
    try:
        sizes = [int(x) for x in args.sizes.split(",")]
    except ValueError:
        p.error("--sizes is a comma-separated list of whole numbers")
    if any(n < 1 for n in sizes) or args.repeat < 1:
        p.error("sizes and --repeat are at least 1")
    rows = [measure(n, args.repeat) for n in sizes]
    print(
        f"{'devices':>8} {'sender µs':>10} {'µs/device':>10} {'receiver µs':>12} "
        f"{'upload B':>10} {'B/device':>9} {'pairwise B':>11}"
    )
    for r in rows:
        print(
            f"{r['member_devices']:>8} {r['sender_us']:>10,.0f} "
            f"{r['sender_us_per_device']:>10.1f} {r['receiver_us']:>12,.0f} "
            f"{r['upload_bytes']:>10,} {r['upload_bytes_per_device']:>9} "
            f"{r['pairwise_upload_bytes']:>11,}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "bench": "group",
                "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "machine": {"python": platform.python_version(), "cpu": platform.processor()},
                "payload_bytes": len(PAYLOAD),
                "repeat": args.repeat,
                "rows": rows,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
