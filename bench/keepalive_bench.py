"""The relay's CPU for idle, authenticated connections: what keepalive costs per connection.

docs/scale.md's model needs it: at scale most connections are idle, and each one still makes
the client PING after ``keepalive_seconds`` (5 s) of silence and the relay answer (and PING
after its own 10 s). This bench starts a fresh ``tidings server`` (SQLite, the accounts written
into its database before it starts, as ``idle_bench.py`` does), opens ``--connections``
authenticated connections from this process (Noise XX, HELLO, WELCOME) with the client's
default keepalive, waits 2 s, then reads the relay's CPU (utime + stime from ``/proc/PID/stat``)
over ``--window`` seconds. Reports µs of relay CPU per connection-second, and per keepalive
exchange (÷ the client's ping rate). Writes JSON (default ``bench/results/keepalive.json``).

    python bench/keepalive_bench.py                      # 1,000 connections, 30 s
    python bench/keepalive_bench.py --connections 200 --window 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from _relay_procs import child_env, read_event
from idle_bench import _Idle, seed_accounts

from tidings.client.config import DEFAULT_KEEPALIVE_SECONDS
from tidings.client.connect import CLIENT_KEEPALIVE, open_channel
from tidings.net.ws import ChannelConnection
from tidings.server.datadir import DB_FILE

HERE = Path(__file__).resolve().parent


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(args: argparse.Namespace, root: Path) -> dict[str, float]:
    data = root / "relay"
    data.mkdir()
    keys = await seed_accounts(data / DB_FILE, args.connections)
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "tidings", "server", "--data-dir", str(data), "--port", "0"),
        *("--metrics-port", "0", "--json", "--log-level", "warning"),
        *("--max-connections", str(args.connections + 100)),
        env=child_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    conns: list[ChannelConnection] = []
    try:
        ready = await read_event(proc, "server", 30.0)
        pid, url = int(ready["pid"]), str(ready["url"])
        gate = asyncio.Semaphore(50)

        async def connect(private: bytes) -> None:
            async with gate:
                handler = _Idle()
                conns.append(await open_channel(url, handler, private, None, CLIENT_KEEPALIVE))
                await handler.welcomed

        await asyncio.gather(*(connect(k) for k in keys))
        await asyncio.sleep(2.0)  # the connect phase's work is over
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(args.window)  # the measured window: idle connections, keepalive only
        cpu1, t1 = cpu_seconds(pid), time.monotonic()
    finally:
        for conn in conns:
            conn.close()
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
    per_conn_s = (cpu1 - cpu0) / (args.connections * (t1 - t0)) * 1e6
    return {
        "connections": args.connections,
        "window_s": round(t1 - t0, 2),
        "relay_cpu_s": round(cpu1 - cpu0, 3),
        "us_per_connection_second": round(per_conn_s, 2),
        "us_per_client_ping": round(per_conn_s * DEFAULT_KEEPALIVE_SECONDS, 1),
    }


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="tidings-keepalive-") as tmp:
        result = await measure(args, Path(tmp))
    report = {"bench": "keepalive", **result, "loadavg": os.getloadavg()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{result['connections']} idle connections, {result['window_s']} s: relay CPU "
        f"{result['relay_cpu_s']} s = {result['us_per_connection_second']} µs per "
        f"connection-second ({result['us_per_client_ping']} µs per client PING) → {out}"
    )
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--connections", type=int, default=1000, help="idle connections (1000)")
    p.add_argument("--window", type=float, default=30.0, help="seconds measured (30)")
    p.add_argument("--out", default=str(HERE / "results" / "keepalive.json"))
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
