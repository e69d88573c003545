"""End-to-end relay benchmark: the real server and N sender/receiver pairs as separate processes.

Usage: ``python bench/relay_bench.py [--pairs 50] [--messages 200] [--rate 0] [--payload 200]
[--out bench/results/relay.json] [--quick] [--profile] [--store postgresql://… [--nodes N
--redis redis://…]]``. With ``--peers mosquitto,prosody
--rounds 3`` it runs tidings and each peer alternately (``_relay_peers.py``, ``peers/``) and
prints them side by side. See ``bench/README.md``.

It starts ``tidings server`` as its own process (on a temporary data directory on disk, so the
durable ✓ costs what it costs; rate limits and queue limits raised so nothing is throttled),
registers 2×pairs accounts plus the idle ones, and starts worker processes
(``bench/_bench_pair.py``), each running ``--pairs-per-process`` pairs on one uvloop event loop.
When every client is connected it reads the server's CPU time (utime + stime of
``/proc/<pid>/stat``), tells the workers to go, waits for every message to be delivered (✓✓ seen
by its sender), reads the CPU time again and divides. Then it opens ``--idle`` more connections
and divides the server's RSS growth by their number. It prints a table and writes the figures as
JSON.

Every wait has a deadline; on any exit (including Ctrl-C or SIGTERM) every process it started is
terminated, then killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from _relay_config import Config, parse_args
from _relay_machine import machine_info, source_digest
from _relay_peers import main_peers
from _relay_procs import Processes
from _relay_report import table
from _relay_run import guarded


def config_json(cfg: Config) -> dict[str, object]:
    """The options as recorded in the JSON report."""
    return {
        "pairs": cfg.pairs,
        "messages": cfg.messages,
        "rate": cfg.rate,
        "payload": cfg.payload,
        "window": cfg.window,
        "pairs_per_process": cfg.pairs_per_process,
        "worker_processes": -(-cfg.pairs // cfg.pairs_per_process),
        "idle": cfg.idle,
        "profile": cfg.profile or None,
        "perf": cfg.perf,
        "store": "postgresql" if cfg.store else "sqlite",
        "nodes": cfg.nodes,
    }


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    if cfg.peers:
        return main_peers(cfg, config_json(cfg))
    out = cfg.out
    print(
        f"relay bench: {cfg.pairs} pairs × {cfg.messages} messages, payload {cfg.payload} B, "
        f"{'window ' + str(cfg.window) if not cfg.rate else str(cfg.rate) + ' msg/s'} per sender, "
        f"{-(-cfg.pairs // cfg.pairs_per_process)} worker processes"
        + (f", profiling with {cfg.profile}" if cfg.profile else ""),
        flush=True,
    )
    log: list[str] = []
    procs = Processes()
    load_at_start = os.getloadavg()[0]
    digest = source_digest()
    started = time.monotonic()
    try:
        report = asyncio.run(guarded(cfg, procs, log))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\n".join(log), file=sys.stderr)
        print("interrupted; every process was stopped", file=sys.stderr)
        return 130
    except Exception as exc:
        print("\n".join(log), file=sys.stderr)
        print(f"relay bench failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.kill_all_now()  # only what survived the orderly stop (normally nothing)
    for line in log:
        print(line)
    report = {
        "bench": "relay",
        "config": config_json(cfg),
        "machine": machine_info(load_at_start, digest),
        **report,
        "bench_s": round(time.monotonic() - started, 1),
    }
    for line in table(report):
        print(line)
    nodes = report.get("nodes", {})
    if nodes.get("count", 1) > 1 or "database_cpu_us_per_message" in nodes:
        per = ", ".join(f"{x:g}" for x in nodes["cpu_us_per_message_per_node"])
        print(
            f"{nodes['count']} node(s): {nodes['messages_per_s']:g} messages/s; relay CPU per "
            f"message per node {per} µs (all nodes {nodes['cpu_us_per_message_all_nodes']:g} µs)"
            + (
                f"; database CPU per message {nodes['database_cpu_us_per_message']:g} µs"
                if "database_cpu_us_per_message" in nodes
                else ""
            )
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"written to {out}")
    return 0 if report["complete"] else 2


if __name__ == "__main__":
    sys.exit(main())
