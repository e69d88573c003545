"""Memory per idle connection on a FRESH relay process (issue 10: ≤ 8 KiB).

``relay_bench.py``'s RSS figure is read after a 50-pair run and a thousand registrations: the
allocator then has free memory to hand out, and the figure is flattered (~0-15 KiB). This one
starts a relay that has served nobody: the accounts are written into its database before it
starts (the store's own ``create_account``), so the relay process has opened no connection
before the measurement. Then:

1. start ``tidings server`` on that data directory, wait ``--settle`` s, read its VmRSS;
2. open ``--connections`` M authenticated connections from this process (Noise XX, HELLO with
   cursor 0, WELCOME back), ``--concurrency`` at a time; they stay idle (the client's keepalive
   pings every few seconds, as real clients do);
3. wait ``--settle`` s, read VmRSS again; report (after − before) / M in KiB.

Runs ``--runs`` times (a fresh relay each) and reports the median. Writes JSON to
``bench/results/idle.json`` (or ``--out``).

    python bench/idle_bench.py                     # 1,000 connections × 3 runs
    python bench/idle_bench.py --connections 200 --runs 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _relay_procs import child_env, free_port, read_event

from tidings.client.connect import CLIENT_KEEPALIVE, open_channel
from tidings.net.channel import ChannelClosed, Event, FrameReceived, HandshakeDone
from tidings.net.ws import ChannelConnection
from tidings.noise import generate_keypair
from tidings.server.datadir import DB_FILE
from tidings.store.sqlite import SQLiteStore
from tidings.wire import PROTOCOL_VERSION, Hello, Welcome

HERE = Path(__file__).resolve().parent
#: Seconds the relay is left alone before each RSS reading (start-up, then the connections).
SETTLE = 2.0
#: How long the whole connect phase may take.
CONNECT_TIMEOUT = 300.0


def rss_kib(pid: int) -> int:
    """The process's resident set (VmRSS) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def seed_accounts(db: Path, count: int) -> list[bytes]:
    """Create ``count`` accounts (one device each) in the relay's database; their Noise
    private keys, in order."""
    store = SQLiteStore(db)
    await store.open()
    keys = []
    try:
        for i in range(count):
            private, public = generate_keypair(os.urandom)
            await store.create_account(f"idle{i}", public, "idle", time.time())
            keys.append(private)
    finally:
        await store.close()
    return keys


class _Idle:
    """The handler of one idle client: HELLO after the handshake, then wait for WELCOME."""

    def __init__(self) -> None:
        self.welcomed = asyncio.get_running_loop().create_future()

    def on_channel_event(self, conn: ChannelConnection, event: Event) -> None:
        if isinstance(event, HandshakeDone):
            conn.send_frame(Hello(PROTOCOL_VERSION, 0))
        elif isinstance(event, FrameReceived) and isinstance(event.frame, Welcome):
            if not self.welcomed.done():
                self.welcomed.set_result(None)
        elif isinstance(event, ChannelClosed) and not self.welcomed.done():
            self.welcomed.set_exception(RuntimeError(f"closed: {event.code} {event.reason}"))

    def on_disconnected(self, conn: ChannelConnection) -> None:
        if not self.welcomed.done():
            self.welcomed.set_exception(RuntimeError("disconnected"))


async def one_run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    data = root / "relay"
    data.mkdir()
    keys = await seed_accounts(data / DB_FILE, args.connections)
    entry = ["-m", "tidings"] if not args.server_entry else args.server_entry.split()
    env = child_env()
    if args.trace:
        entry = [str(HERE / "_trace_server.py")]
        env["IDLE_TRACE_OUT"] = str(Path(args.trace).resolve())
    signal_server = args.signal_server or bool(args.trace)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *entry,
        "server",
        "--data-dir",
        str(data),
        "--port",
        "0",
        "--json",
        "--log-level",
        "warning",
        "--max-connections",
        str(args.connections + 100),
        "--metrics-port",  # a free one: the default (7401) may be taken by another relay
        str(free_port()),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=(root / "server.stderr").open("wb"),
    )
    conns: list[ChannelConnection] = []
    try:
        try:
            ready = await read_event(proc, "server", 30.0)
        except RuntimeError:
            sys.stderr.write((root / "server.stderr").read_text())
            raise
        pid, url = int(ready["pid"]), str(ready["url"])
        await asyncio.sleep(args.settle)
        before = rss_kib(pid)
        if signal_server:
            os.kill(pid, signal.SIGUSR1)
        gate = asyncio.Semaphore(args.concurrency)

        async def connect(private: bytes) -> None:
            async with gate:
                handler = _Idle()
                conn = await open_channel(url, handler, private, None, CLIENT_KEEPALIVE)
                conns.append(conn)
                await handler.welcomed

        async with asyncio.timeout(CONNECT_TIMEOUT):
            await asyncio.gather(*(connect(k) for k in keys))
        await asyncio.sleep(args.settle)
        after = rss_kib(pid)
        if signal_server:
            os.kill(pid, signal.SIGUSR2)
            await asyncio.sleep(args.settle * 5)
        per = (after - before) / len(keys)
        print(
            f"  {len(keys)} idle connections: RSS {before:,} → {after:,} KiB = {per:.2f} KiB each",
            flush=True,
        )
        return {
            "connections": len(keys),
            "rss_before_kib": before,
            "rss_after_kib": after,
            "kib_per_connection": round(per, 2),
        }
    finally:
        for conn in conns:
            conn.close()
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(15):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def main(args: argparse.Namespace) -> int:
    runs = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="tidings-idle-") as tmp:
            runs.append(await one_run(args, Path(tmp)))
    median = statistics.median(r["kib_per_connection"] for r in runs)
    report = {
        "bench": "idle",
        "connections": args.connections,
        "runs": runs,
        "kib_per_connection_median": median,
        "target_kib": 8.0,
        "loadavg": os.getloadavg(),
        "python": sys.version.split()[0],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"median RSS per idle connection: {median:.2f} KiB (target ≤ 8) → {out}")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--connections", type=int, default=1000, help="idle connections (1000)")
    p.add_argument("--runs", type=int, default=3, help="fresh relays, one run each (3)")
    p.add_argument("--concurrency", type=int, default=50, help="connects in progress at once")
    p.add_argument("--settle", type=float, default=SETTLE, help="seconds before each reading")
    p.add_argument(
        "--server-entry",
        default="",
        help="run the relay as `python ENTRY server …` (e.g. a tracemalloc wrapper script)",
    )
    p.add_argument(
        "--signal-server",
        action="store_true",
        help="send the relay SIGUSR1 before and SIGUSR2 after the connections (for a wrapper)",
    )
    p.add_argument(
        "--trace",
        default="",
        metavar="PATH",
        help="run the relay under tracemalloc (bench/_trace_server.py) and write what the "
        "connections allocated to PATH: sizes by line and by traceback (RSS is then inflated)",
    )
    p.add_argument("--out", default=str(HERE / "results" / "idle.json"))
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
