"""Cost of the frame codec: encode + parse of SEND, DELIVER and ACK, against msgpack alone.

Usage: ``python bench/wire_bench.py [--out PATH] [--repeat N]``. Prints a table in µs per call
and writes the same figures as JSON (default ``bench/results/wire.json``).

Each figure is the best of ``--repeat`` runs, timed in CPU time of this process
(``time.process_time``): the minimum is the cost of the code itself, and CPU time leaves out
the time other processes held the core (wall-clock figures on a busy machine vary by 2x).
"msgpack" is ``unpackb(packb(body))`` of the same MessagePack array: msgpack's own cost, with
no frame built or checked.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import timeit
from collections.abc import Callable
from pathlib import Path

import msgpack

from tidings.wire import Ack, Deliver, Frame, Send, Target, parse

DEFAULT_OUT = Path(__file__).parent / "results" / "wire.json"
MESSAGE_ID = bytes(range(16))

#: The frames measured: a send to one other device plus the sender's other device, a delivery
#: of a typical short message (200 bytes of ciphertext), and an ack.
FRAMES: dict[str, Frame] = {
    "SEND (2 targets, 200 B)": Send(
        MESSAGE_ID, "bob", (Target("bob", 1, b"\x01" * 200), Target("alice", 2, b"\x02" * 200))
    ),
    "DELIVER (200 B)": Deliver(
        123_456, 0, "alice", 1, MESSAGE_ID, 1_700_000_000.25, 1_702_592_000.25, b"\x03" * 200
    ),
    "ACK": Ack(123_456),
}


def best_us(fn: Callable[[], object], number: int, repeat: int) -> float:
    """The fastest of ``repeat`` runs of ``number`` calls, in µs of CPU per call."""
    timer = timeit.Timer(fn, timer=time.process_time)
    return round(min(timer.repeat(number=number, repeat=repeat)) / number * 1e6, 3)


def measure(frame: Frame, number: int, repeat: int) -> dict[str, float | int]:
    """µs per call of encode, parse, both, and msgpack's own pack + unpack of the same body."""
    body = frame.serialize()
    obj = msgpack.unpackb(body)
    return {
        "encode_us": best_us(frame.serialize, number, repeat),
        "parse_us": best_us(lambda: parse(body), number, repeat),
        "encode_parse_us": best_us(lambda: parse(frame.serialize()), number, repeat),
        "msgpack_us": best_us(
            lambda: msgpack.unpackb(msgpack.packb(obj, use_bin_type=True), raw=False),
            number,
            repeat,
        ),
        "body_bytes": len(body),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to write")
    parser.add_argument("--number", type=int, default=5_000, help="calls per run")
    parser.add_argument("--repeat", type=int, default=50, help="runs; the best is kept")
    args = parser.parse_args()

    results = {name: measure(frame, args.number, args.repeat) for name, frame in FRAMES.items()}
    print(f"{'frame':<26}{'encode':>9}{'parse':>9}{'both':>9}{'msgpack':>9}  (µs per call)")
    for name, r in results.items():
        print(
            f"{name:<26}{r['encode_us']:>9.2f}{r['parse_us']:>9.2f}"
            f"{r['encode_parse_us']:>9.2f}{r['msgpack_us']:>9.2f}"
        )
    report = {
        "python": platform.python_version(),
        "msgpack": ".".join(map(str, msgpack.version)),
        "machine": platform.machine(),
        "number": args.number,
        "repeat": args.repeat,
        "frames": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
