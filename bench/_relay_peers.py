"""``relay_bench.py --peers``: tidings and its peers, alternately, in one invocation.

Round after round, each system runs the same workload (tidings, then each peer: ABCABC…) on a
server of its own started for that run; the report holds every run, each system's medians and
tidings' ratio to each peer, computed from this invocation's runs only — absolute times move
with the machine's load, ratios from one sitting are what we quote (issue 10).
"""

from __future__ import annotations

import asyncio
import datetime
import os
import signal
import statistics
import time
from collections.abc import Iterator
from typing import Any

from _relay_config import Config
from _relay_procs import Processes
from _relay_run import run as run_tidings
from peers.run import run_peer
from peers.servers import PEERS

#: The issue's target against Prosody: tidings' server CPU per message ≤ this × Prosody's.
PROSODY_RATIO_TARGET = 0.67
#: The figures compared side by side: (title, path in a run's report, unit).
FIGURES = (
    ("server CPU per relayed message", ("server_cpu", "us_per_message"), "µs"),
    ("relayed messages/s", ("throughput", "messages_per_s"), ""),
    ("server RSS per idle connection", ("idle_connections", "rss_per_connection_kib"), "KiB"),
    ("server disk writes per message", ("server_per_message", "disk_write_bytes"), "B"),
    ("clients' CPU per message", ("clients_cpu", "us_per_message"), "µs"),
)


def missing_peers(cfg: Config) -> list[str]:
    """The ``apt-get install`` packages of the named peers that are not installed."""
    return [PEERS[n].apt_package for n in cfg.peers if not PEERS[n].installed()]


def figure(report: dict[str, Any], path: tuple[str, str]) -> float | None:
    value = report.get(path[0], {}).get(path[1])
    return float(value) if value is not None else None


def medians(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for _, path, _ in FIGURES:
        values = [v for v in (figure(r, path) for r in runs) if v is not None]
        out[".".join(path)] = round(statistics.median(values), 2) if values else None
    return out


def ratios(systems: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """tidings ÷ each peer: of the medians, and round by round."""
    if "tidings" not in systems:
        return {}
    key = "server_cpu.us_per_message"
    mine = systems["tidings"]
    out: dict[str, Any] = {}
    for name, peer in systems.items():
        if name == "tidings" or not peer["median"][key] or mine["median"][key] is None:
            continue
        per_round = [
            round(t["server_cpu"]["us_per_message"] / p["server_cpu"]["us_per_message"], 3)
            for t, p in zip(mine["runs"], peer["runs"], strict=False)
            if t["server_cpu"]["us_per_message"] and p["server_cpu"]["us_per_message"]
        ]
        entry: dict[str, Any] = {
            "server_cpu_per_message": round(mine["median"][key] / peer["median"][key], 3),
            "server_cpu_per_message_by_round": per_round,
        }
        if name == "prosody":
            entry["target"] = PROSODY_RATIO_TARGET
            entry["target_met"] = entry["server_cpu_per_message"] <= PROSODY_RATIO_TARGET
        out[name] = entry
    return out


async def alternate(cfg: Config, log: list[str]) -> dict[str, dict[str, Any]]:
    """Every round: tidings (unless skipped), then each peer; returns the runs by system."""
    order = ([] if cfg.skip_tidings else ["tidings"]) + list(cfg.peers)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in order}
    for n in range(cfg.rounds):
        for name in order:
            procs = Processes()
            started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
            load = os.getloadavg()[0]
            t = time.monotonic()
            try:
                if name == "tidings":
                    report = await run_tidings(cfg, procs, log)
                else:
                    report = await run_peer(PEERS[name], cfg, procs, log)
            finally:
                procs.kill_all_now()
            report["round"] = n + 1
            report["started"] = started
            report["loadavg_1m"] = [round(load, 2), round(os.getloadavg()[0], 2)]
            report["run_s"] = round(time.monotonic() - t, 1)
            runs[name].append(report)
            print(
                f"round {n + 1}/{cfg.rounds} {name:<10} "
                f"{report['server_cpu']['us_per_message']} µs/msg, "
                f"{report['throughput']['messages_per_s']} msg/s, complete={report['complete']}, "
                f"load {report['loadavg_1m'][0]}→{report['loadavg_1m'][1]} ({report['run_s']} s)",
                flush=True,
            )
    systems: dict[str, dict[str, Any]] = {}
    for name, reports in runs.items():
        persists = (
            "SQLite on disk, the ✓ after a durable (fsync'd) group commit"
            if name == "tidings"
            else reports[0]["system"]["persists"]
        )
        systems[name] = {"persists": persists, "median": medians(reports), "runs": reports}
    return systems


async def guarded(cfg: Config, log: list[str]) -> dict[str, dict[str, Any]]:
    """:func:`alternate`, cancelled cleanly on SIGTERM as on Ctrl-C."""
    task = asyncio.ensure_future(alternate(cfg, log))
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await task


def fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


def table(report: dict[str, Any]) -> Iterator[str]:
    """The systems side by side: medians, each run's value in brackets, then the ratios."""
    systems = report["systems"]
    names = list(systems)
    width = 38
    col = 32
    yield "-" * (width + col * len(names))
    yield f"{'median (runs)':<{width}}" + "".join(f"{n:<{col}}" for n in names)
    for title, path, unit in FIGURES:
        cells = []
        for name in names:
            s = systems[name]
            runs = "/".join(fmt(figure(r, path)) for r in s["runs"])
            cells.append(f"{fmt(s['median']['.'.join(path)])} ({runs})")
        yield f"{(title + (' ' + unit if unit else '')):<{width}}" + "".join(
            f"{c:<{col}}" for c in cells
        )
    complete = ["all" if all(r["complete"] for r in systems[n]["runs"]) else "NO" for n in names]
    yield f"{'complete':<{width}}" + "".join(f"{c:<{col}}" for c in complete)
    yield "-" * (width + col * len(names))
    for name, r in report["ratios"].items():
        line = (
            f"tidings ÷ {name}: {r['server_cpu_per_message']:.2f}× server CPU per message "
            f"(by round: {', '.join(f'{x:.2f}' for x in r['server_cpu_per_message_by_round'])})"
        )
        if "target" in r:
            line += f"; target ≤ {r['target']}×: {'met' if r['target_met'] else 'missed'}"
        yield line
    for name in names:
        yield f"{name} persists: {systems[name]['persists']}"


def main_peers(cfg: Config, config: dict[str, Any]) -> int:
    """``relay_bench.py --peers``: run, print the table, write the JSON; the exit code."""
    import json
    import sys

    from _relay_machine import machine_info, source_digest

    missing = missing_peers(cfg)
    if missing:
        print(f"not installed: apt-get install {' '.join(missing)}", file=sys.stderr)
        return 1
    order = ([] if cfg.skip_tidings else ["tidings"]) + list(cfg.peers)
    print(
        f"relay bench with peers: {' / '.join(order)} alternately, {cfg.rounds} rounds; "
        f"{cfg.pairs} pairs × {cfg.messages} messages, payload {cfg.payload} B, "
        f"window {cfg.window} per sender",
        flush=True,
    )
    log: list[str] = []
    load_at_start = os.getloadavg()[0]
    digest = source_digest()
    started = time.monotonic()
    try:
        systems = asyncio.run(guarded(cfg, log))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\n".join(log), file=sys.stderr)
        print("interrupted; every process was stopped", file=sys.stderr)
        return 130
    except Exception as exc:
        print("\n".join(log), file=sys.stderr)
        print(f"relay bench failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for line in log:
        print(line)
    report: dict[str, Any] = {
        "bench": "relay-peers",
        "config": {**config, "peers": list(cfg.peers), "rounds": cfg.rounds, "order": order},
        "machine": machine_info(load_at_start, digest),
        "complete": all(r["complete"] for s in systems.values() for r in s["runs"]),
        "ratios": ratios(systems),
        "systems": systems,
        "bench_s": round(time.monotonic() - started, 1),
    }
    if "prosody" in cfg.peers:
        report["config"]["prosody_archive"] = cfg.prosody_archive
        report["config"]["prosody_gc"] = cfg.prosody_gc
    for line in table(report):
        print(line)
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"written to {cfg.out}")
    return 0 if report["complete"] else 2
