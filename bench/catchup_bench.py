"""Catch-up benchmark: a device comes back to 10,000 queued end-to-end messages.

Usage: ``python bench/catchup_bench.py [--messages 10000] [--runs 3] [--tmpfs] [--no-strace]
[--sender burst|sequential] [--out bench/results/catchup.json] [--quick]``. See
``bench/README.md``.

Each run starts ``tidings server`` as its own process (data directory on disk; rate and queue
limits raised so nothing is throttled), registers ``alice`` and ``bob`` with the SDK, then:

1. **queue**: a device process (``bench/_catchup_device.py send``) runs alice's real client and
   sends ``--messages`` messages to bob, who is offline; it reports the time until the relay
   stored all of them (✓ on every one). ``--sender burst`` (the default) starts every send at
   once, as an app, a bot or a forwarded batch does; 10,000 queued messages come from such
   bursts (no person types 10,000). ``--sender sequential`` awaits each ``send()`` before
   the next, as a person typing (at machine speed): each returns only once its message is
   durable (G2), so that costs at least one fsync'd transaction per message; its figures
   measure the per-send overhead, not the queueing of a batch. Figures before 2026-12-03
   were all sequential.
2. **catch-up**: a device process (``_catchup_device.py receive``) runs bob's real client, which
   connects and is delivered the whole queue; it reports the time until every message was
   decrypted, committed and shown, and until its delivered receipts were stored by the relay.

It reads the relay's CPU (``/proc/<pid>/stat``) around each phase, and, unless ``--no-strace``,
runs the relay and both device processes under ``strace --seccomp-bpf -e trace=fsync,fdatasync``
to count their fsyncs (only those two syscalls stop the process; their cost is a few µs next to
the millisecond of the fsync itself). The client homes are on disk unless ``--tmpfs``.
The figures of every run, their medians and the machine go to the JSON file.

Every wait has a deadline; every process it started is stopped on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _relay_machine import machine_info, source_digest
from _relay_probe import CLK_TCK, proc_cpu_ticks
from _relay_procs import Processes, free_port, read_event

HERE = Path(__file__).resolve().parent
DEVICE = HERE / "_catchup_device.py"
CPU_PROFILE = HERE / "_cpu_profile.py"
#: Deadline of the relay's start-up, and of one phase of a device process (seconds).
SERVER_START_TIMEOUT = 30.0
PHASE_TIMEOUT = 900.0
#: Seconds the relay may take to exit after SIGTERM before it is killed.
STOP_GRACE = 15.0
#: The issue's target: 10,000 messages caught up within this many seconds, stores on disk.
TARGET_CATCHUP_S = 3.0
#: The issue's target: client CPU per message, each end.
TARGET_CLIENT_US = 500.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=10_000, help="messages queued (10000)")
    p.add_argument("--runs", type=int, default=3, help="runs; the report gives medians (3)")
    p.add_argument("--tmpfs", action="store_true", help="client homes on /dev/shm, not disk")
    p.add_argument("--no-strace", action="store_true", help="do not count fsyncs")
    p.add_argument("--quick", action="store_true", help="1,000 messages, 1 run")
    p.add_argument(
        "--sender",
        choices=("burst", "sequential"),
        default="burst",
        help="how the sender queues: all sends at once (an app, a bot: default) or one "
        "after the other, each awaited (a person typing)",
    )
    p.add_argument("--out", type=Path, default=None, help="JSON report path")
    p.add_argument("--keep", action="store_true", help="keep the temporary directories")
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="run the receiving device under cProfile; print its top N functions",
    )
    p.add_argument(
        "--profile-sender",
        type=int,
        default=0,
        metavar="N",
        help="run the sending device under cProfile (CPU time); print its top N functions",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.messages, args.runs = 1_000, 1
    if args.out is None:
        name = "catchup-quick.json" if args.quick else "catchup.json"
        args.out = HERE / "results" / name
    if args.messages < 1 or args.runs < 1:
        p.error("--messages and --runs must be at least 1")
    return args


def traced(argv: list[str], trace_file: Path | None) -> list[str]:
    """``argv`` under strace counting fsyncs into ``trace_file`` (``None``: as it is)."""
    if trace_file is None:
        return argv
    return [
        "strace",
        "-f",
        "-qq",
        "-ttt",
        "--seccomp-bpf",
        "-e",
        "trace=fsync,fdatasync",
        "-o",
        str(trace_file),
        *argv,
    ]


_SYSCALL = re.compile(r"^\d+\s+(\d+\.\d+)\s+(fsync|fdatasync)\(")


def count_fsyncs(
    trace_file: Path | None, since: float = 0.0, until: float = float("inf")
) -> int | None:
    """The fsync and fdatasync calls in a strace log (one line per call: pid, wall time, call)
    that started between ``since`` and ``until`` (``time.time()`` values)."""
    if trace_file is None or not trace_file.exists():
        return None
    count = 0
    for line in trace_file.read_text().splitlines():
        match = _SYSCALL.match(line)
        if match and since <= float(match.group(1)) < until:
            count += 1
    return count


def relay_cpu_s(pid: int) -> float:
    utime, stime = proc_cpu_ticks(pid)
    return (utime + stime) / CLK_TCK


async def run_device(
    procs: Processes, name: str, argv: list[str], root: Path, trace: Path | None
) -> dict[str, Any]:
    proc = await procs.start(name, traced(argv, trace), root / f"{name}.stderr", stdin=False)
    done = await read_event(proc, name, PHASE_TIMEOUT)
    async with asyncio.timeout(60):
        await proc.wait()
    done["fsyncs"] = count_fsyncs(trace)
    return done


async def one_run(args: argparse.Namespace, root: Path, n: int) -> dict[str, Any]:
    from tidings.client import register

    strace = not args.no_strace
    procs = Processes()
    homes_base = Path("/dev/shm") if args.tmpfs else root
    homes = Path(tempfile.mkdtemp(prefix=f"homes-{n}-", dir=homes_base))
    server_trace = root / f"server-{n}.strace" if strace else None
    server_argv = [
        sys.executable,
        *("-m", "tidings", "server", "--data-dir", str(root / f"server-{n}"), "--port", "0"),
        *("--json", "--rate", "1000000", "--burst", "1000000", "--max-queue", "10000000"),
        *("--log-level", "warning", "--new-account-age", "0"),
        *("--metrics-port", str(free_port())),
    ]
    pid = 0
    try:
        server = await procs.start(
            "server", traced(server_argv, server_trace), root / f"server-{n}.stderr", stdin=False
        )
        ready = await read_event(server, "server", SERVER_START_TIMEOUT)
        url, pid = str(ready["url"]), int(ready["pid"])
        async with asyncio.timeout(30):
            await register(homes / "alice", url, "alice")
        async with asyncio.timeout(30):
            await register(homes / "bob", url, "bob")
        py = [sys.executable, str(DEVICE)]

        cpu0, w0 = relay_cpu_s(pid), time.time()
        t = root / f"alice-{n}.strace" if strace else None
        tx = [*py, "send", str(homes / "alice"), str(args.messages), "bob", args.sender]
        if args.profile_sender:
            tx = [sys.executable, str(CPU_PROFILE), str(root / f"alice-{n}.prof"), *tx[1:]]
        queue = await run_device(procs, f"alice-{n}", tx, root, t)
        cpu1, w1 = relay_cpu_s(pid), time.time()
        t = root / f"bob-{n}.strace" if strace else None
        rx = [*py, "receive", str(homes / "bob"), str(args.messages)]
        if args.profile:
            rx = [sys.executable, "-m", "cProfile", "-o", str(root / f"bob-{n}.prof"), *rx[1:]]
        catchup = await run_device(procs, f"bob-{n}", rx, root, t)
        cpu2, w2 = relay_cpu_s(pid), time.time()
        os.kill(pid, signal.SIGTERM)  # the relay itself: strace, its parent, then exits
        await procs.stop(server, grace=STOP_GRACE)
    finally:
        if pid:  # under strace, stopping strace would leave the relay running
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await procs.stop_all()
        procs.kill_all_now()
        if not args.keep:
            shutil.rmtree(homes, ignore_errors=True)
    queue["relay_cpu_s"] = cpu1 - cpu0
    catchup["relay_cpu_s"] = cpu2 - cpu1
    queue["relay_fsyncs"] = count_fsyncs(server_trace, w0, w1)
    catchup["relay_fsyncs"] = count_fsyncs(server_trace, w1, w2)
    return {"queue": queue, "catchup": catchup}


def per_message(run: dict[str, Any], n: int) -> dict[str, float | None]:
    """The run's figures per message (µs of CPU, transactions, fsyncs)."""
    q, c = run["queue"], run["catchup"]

    def per(value: object, scale: float = 1.0) -> float | None:
        return None if value is None else float(value) * scale / n  # type: ignore[arg-type]

    return {
        "catchup_s": c["elapsed_s"],
        "receipts_stored_s": c["receipts_stored_s"],
        "sender_all_sent_s": q["elapsed_s"],
        "receiver_cpu_us": per(c["cpu_s"], 1e6),
        "sender_cpu_us": per(q["cpu_s"], 1e6),
        "sender_sys_cpu_us": per(q.get("sys_cpu_s"), 1e6),
        "relay_cpu_us_catchup": per(c["relay_cpu_s"], 1e6),
        "relay_cpu_us_queue": per(q["relay_cpu_s"], 1e6),
        "receiver_transactions": per(c["transactions"]),
        "sender_transactions": per(q["transactions"]),
        "receiver_fsyncs": per(c.get("fsyncs")),
        "sender_fsyncs": per(q.get("fsyncs")),
        "relay_fsyncs_catchup": per(c.get("relay_fsyncs")),
        "relay_fsyncs_queue": per(q.get("relay_fsyncs")),
    }


def medians(rows: list[dict[str, float | None]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key in rows[0]:
        values = [r[key] for r in rows if r[key] is not None]
        out[key] = statistics.median(values) if values else None  # type: ignore[type-var]
    return out


LABELS = [
    ("catchup_s", "catch-up: all messages decrypted, committed, shown", "s", 2),
    ("receipts_stored_s", "catch-up: … and the receipts stored by the relay", "s", 2),
    ("sender_all_sent_s", "queue: sender's time until ✓ on all", "s", 2),
    ("receiver_cpu_us", "receiver CPU per message", "µs", 0),
    ("sender_cpu_us", "sender CPU per message", "µs", 0),
    ("sender_sys_cpu_us", "… of it in the kernel (writes, fsyncs, sockets)", "µs", 0),
    ("relay_cpu_us_catchup", "relay CPU per message, catch-up", "µs", 0),
    ("relay_cpu_us_queue", "relay CPU per message, queueing", "µs", 0),
    ("receiver_transactions", "receiver transactions per message", "", 2),
    ("sender_transactions", "sender transactions per message", "", 2),
    ("receiver_fsyncs", "receiver fsyncs per message", "", 2),
    ("sender_fsyncs", "sender fsyncs per message", "", 2),
    ("relay_fsyncs_catchup", "relay fsyncs per message, catch-up", "", 2),
    ("relay_fsyncs_queue", "relay fsyncs per message, queueing", "", 2),
]


def table(med: dict[str, float | None], runs: int) -> list[str]:
    lines = [f"{'figure (median of ' + str(runs) + ')':<56} {'value':>10}"]
    for key, label, unit, digits in LABELS:
        value = med.get(key)
        shown = "n/a" if value is None else f"{value:,.{digits}f} {unit}".strip()
        lines.append(f"{label:<56} {shown:>10}")
    return lines


def print_profile(root: Path, args: argparse.Namespace, device: str = "bob") -> None:
    """A device's top functions by own time, from the first run's profile (``bob``: the
    receiver, ``--profile``; ``alice``: the sender, ``--profile-sender``)."""
    import io
    import pstats

    top = args.profile if device == "bob" else args.profile_sender
    out = io.StringIO()
    stats = pstats.Stats(str(root / f"{device}-0.prof"), stream=out)
    stats.sort_stats("tottime").print_stats(top)
    text = out.getvalue()
    print(text)
    suffix = "-profile.txt" if device == "bob" else "-sender-profile.txt"
    path = args.out.with_name(args.out.stem + suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"profile written to {path} (raw: {root / f'{device}-0.prof'})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.no_strace and shutil.which("strace") is None:
        print("catch-up bench: strace not found (apt install strace), or pass --no-strace")
        return 1
    where = "/dev/shm (tmpfs)" if args.tmpfs else "disk"
    print(
        f"catch-up bench: {args.messages:,} messages, {args.runs} run(s), client homes on {where},"
        f" {args.sender} sends"
    )
    load_at_start, digest, started = os.getloadavg()[0], source_digest(), time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="tidings-catchup-bench-"))
    runs: list[dict[str, Any]] = []
    try:
        for n in range(args.runs):
            run = asyncio.run(one_run(args, root, n))
            runs.append(run)
            fig = per_message(run, args.messages)
            print(
                f"run {n + 1}: catch-up {fig['catchup_s']:.2f} s, sender ✓ on all "
                f"{fig['sender_all_sent_s']:.2f} s, receiver {fig['receiver_cpu_us']:.0f} µs/msg, "
                f"sender {fig['sender_cpu_us']:.0f} µs/msg",
                flush=True,
            )
    except KeyboardInterrupt:
        print("interrupted; every process was stopped", file=sys.stderr)
        return 130
    except Exception as exc:
        print(
            f"catch-up bench failed: {type(exc).__name__}: {exc} (logs in {root})", file=sys.stderr
        )
        return 1
    finally:
        profiled = args.profile or args.profile_sender
        if runs and not args.keep and not profiled:  # a failed run keeps its logs
            shutil.rmtree(root, ignore_errors=True)
    if args.profile:
        print_profile(root, args)
    if args.profile_sender:
        print_profile(root, args, "alice")
    rows = [per_message(r, args.messages) for r in runs]
    med = medians(rows)
    complete = all(r["queue"]["complete"] and r["catchup"]["complete"] for r in runs)
    for line in table(med, len(runs)):
        print(line)
    catchup, rx, tx = med["catchup_s"], med["receiver_cpu_us"], med["sender_cpu_us"]
    scaled = catchup * 10_000 / args.messages if catchup is not None else None
    print(
        f"target: 10,000 in ≤ {TARGET_CATCHUP_S:.0f} s (this run, scaled: {scaled:.1f} s); "
        f"client CPU ≤ {TARGET_CLIENT_US:.0f} µs/msg (receiver {rx:.0f}, sender {tx:.0f})"
    )
    report = {
        "bench": "catchup",
        "config": {
            "messages": args.messages,
            "runs": args.runs,
            "client_homes": "tmpfs" if args.tmpfs else "disk",
            "sender": args.sender,
            "fsyncs_counted": not args.no_strace,
        },
        "machine": machine_info(load_at_start, digest),
        "complete": complete,
        "median": med,
        "runs": runs,
        "bench_s": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"written to {args.out}")
    return 0 if complete else 2


if __name__ == "__main__":
    sys.exit(main())
