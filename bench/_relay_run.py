"""One run of the relay bench: the server, the accounts, the workers, the measured phase,
the idle connections, then everything stopped (see ``bench/README.md``, "What runs")."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _relay_config import Config
from _relay_probe import Snapshot, postgres_ticks, proc_status, scrape_metrics, ticks_us
from _relay_procs import Processes, free_port, read_event, send_command, wait_for_file
from _relay_profile import (
    PROFILER_START_TIMEOUT,
    PROFILER_STOP_TIMEOUT,
    collect_profile,
    perf_summary,
    start_perf,
    start_pyspy,
)
from _relay_report import summarize

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_bench_pair.py"
CPROFILE_SERVER = HERE / "_bench_cprofile_server.py"

# Deadlines, in seconds.
SERVER_START_TIMEOUT = 30.0
REGISTER_TIMEOUT = 120.0
CONNECT_TIMEOUT = 60.0
#: How long a worker told to stop may take to close its clients before it gets SIGTERM.
WORKER_GRACE = 10.0
#: After the last ✓✓, how long to wait for the trailing ACK frames before reading the CPU again.
SETTLE = 0.3
#: How long the idle connections are left to settle before the RSS is read.
IDLE_SETTLE = 1.0
#: How many registrations run at once.
REGISTER_CONCURRENCY = 32


def server_argv(
    cfg: Config, data_dir: Path, metrics_port: int, prof_out: Path, node: int = 0
) -> list[str]:
    if cfg.profile == "cprofile":
        entry = [str(CPROFILE_SERVER), str(prof_out)]
    else:
        entry = ["-m", "tidings"]
    argv = [
        sys.executable,
        *entry,
        "server",
        "--data-dir",
        str(data_dir),
        "--port",
        "0",
        "--metrics-port",
        str(metrics_port),
        "--json",
        "--rate",
        "1000000",
        "--burst",
        "1000000",
        "--max-queue",
        "10000000",
        "--log-level",
        "warning",
        # Every account of the bench is new and registered from this one address.
        "--new-account-age",
        "0",
        "--registrations-per-address",
        "0",
    ]
    if cfg.store:
        argv += ["--store", cfg.store]
    if cfg.nodes > 1:
        argv += ["--redis", cfg.redis, "--node-id", f"node{node}"]
    return argv


async def start_nodes(
    cfg: Config, procs: Processes, root: Path, log: list[str]
) -> list[tuple[str, int]]:
    """Nodes 1.. of ``--nodes`` beside node 0 (already started in ``root/server-data``), with
    its keys (one relay: the devices pin one key); their (url, pid)."""
    out = []
    for n in range(1, cfg.nodes):
        data = root / f"node{n}-data"
        data.mkdir(mode=0o700)
        for key in ("server.key", "push.key"):
            shutil.copy2(root / "server-data" / key, data / key)
        node = await procs.start(
            f"node{n}",
            server_argv(cfg, data, free_port(), root / f"node{n}.prof", n),
            root / f"node{n}.stderr",
            stdin=False,
        )
        ready = await read_event(node, f"node{n}", SERVER_START_TIMEOUT)
        out.append((str(ready["url"]), int(ready["pid"])))
        log.append(f"node{n} pid {ready['pid']} at {ready['url']}")
    return out


async def register_all(url: str, homes: dict[str, Path]) -> None:
    """Register one device per account (in this process, a few at a time)."""
    from tidings.client import register

    gate = asyncio.Semaphore(REGISTER_CONCURRENCY)

    async def one(account: str, home: Path) -> None:
        async with gate:
            await register(home, url, account)

    async with asyncio.timeout(REGISTER_TIMEOUT):
        await asyncio.gather(*(one(a, h) for a, h in homes.items()))


async def run(cfg: Config, procs: Processes, log: list[str]) -> dict[str, Any]:
    """The benchmark; returns the report (see ``bench/README.md`` for each figure)."""
    root = Path(tempfile.mkdtemp(prefix="tidings-relay-bench-"))
    shm = Path("/dev/shm")
    client_base = cfg.client_dir or (shm if shm.is_dir() and os.access(shm, os.W_OK) else root)
    client_root = Path(tempfile.mkdtemp(prefix="tidings-relay-bench-clients-", dir=client_base))
    prof_out = root / ("server.pyspy.txt" if cfg.profile == "py-spy" else "server.prof")
    report: dict[str, Any] = {}
    try:
        # -- the server
        metrics_port = free_port()
        server = await procs.start(
            "server",
            server_argv(cfg, root / "server-data", metrics_port, prof_out),
            root / "server.stderr",
            stdin=False,
        )
        ready = await read_event(server, "server", SERVER_START_TIMEOUT)
        url, pid = str(ready["url"]), int(ready["pid"])
        metrics_url = ready.get("metrics")
        log.append(f"server pid {pid} at {url} (data on {root}, clients on {client_root})")
        nodes = [(url, pid), *await start_nodes(cfg, procs, root, log)]

        # -- accounts
        homes: dict[str, Path] = {}
        for i in range(cfg.pairs):
            homes[f"s{i:05d}"] = client_root / f"s{i:05d}"
            homes[f"r{i:05d}"] = client_root / f"r{i:05d}"
        idle_homes = {f"i{i:05d}": client_root / f"i{i:05d}" for i in range(cfg.idle)}
        t = time.monotonic()
        # with several nodes each sender registers (and so connects) on node i, its receiver on
        # node i + 1: every message crosses from one node to another through the database and
        # a Redis hint
        for n, (node_url, _) in enumerate(nodes):
            mine = {
                a: h for a, h in homes.items() if (int(a[1:]) + (a[0] == "r")) % len(nodes) == n
            }
            await register_all(node_url, mine if len(nodes) > 1 else {**homes, **idle_homes})
        if len(nodes) > 1:
            await register_all(url, idle_homes)
        log.append(
            f"registered {len(homes) + len(idle_homes)} accounts in {time.monotonic() - t:.1f}s"
        )

        # -- workers
        workers: list[asyncio.subprocess.Process] = []
        groups = [
            list(range(cfg.pairs))[i : i + cfg.pairs_per_process]
            for i in range(0, cfg.pairs, cfg.pairs_per_process)
        ]
        for n, group in enumerate(groups):
            spec = {
                "mode": "pairs",
                "pairs": [
                    {
                        "sender_home": str(homes[f"s{i:05d}"]),
                        "receiver_home": str(homes[f"r{i:05d}"]),
                        "receiver": f"r{i:05d}",
                    }
                    for i in group
                ],
                "messages": cfg.messages,
                "rate": cfg.rate,
                "payload": cfg.payload,
                "window": cfg.window,
                "connect_timeout": CONNECT_TIMEOUT,
                "go_timeout": CONNECT_TIMEOUT * 2 + PROFILER_START_TIMEOUT + 30,
                "run_timeout": cfg.timeout,
            }
            spec_path = root / f"worker{n}.json"
            spec_path.write_text(json.dumps(spec))
            workers.append(
                await procs.start(
                    f"worker{n}",
                    [sys.executable, str(WORKER), str(spec_path)],
                    root / f"worker{n}.stderr",
                )
            )
        readies = await asyncio.gather(
            *(read_event(w, f"worker{n}", CONNECT_TIMEOUT + 30) for n, w in enumerate(workers))
        )
        connect_s = max(float(r.get("connect_s", 0)) for r in readies)
        retries = sum(int(r.get("connect_retries", 0)) for r in readies)
        log.append(
            f"{len(workers)} workers, {2 * cfg.pairs} clients connected ({connect_s:.1f}s, "
            f"{retries} clients had to be restarted to connect)"
        )

        # -- idle cost of the connected server (shows the settle time costs nothing)
        await asyncio.sleep(0.5)
        idle0 = Snapshot.take(pid)
        await asyncio.sleep(1.0)
        idle1 = Snapshot.take(pid)
        idle_us_per_s = ticks_us(idle1.ticks - idle0.ticks) / (idle1.at - idle0.at)

        # -- the measured phase
        profiler: asyncio.subprocess.Process | None = None
        if cfg.profile == "py-spy":
            profiler = await start_pyspy(
                procs, pid, prof_out, cfg.profile_rate, cfg.profile_native, root, log
            )
        perf: asyncio.subprocess.Process | None = None
        if cfg.perf:
            perf = await start_perf(procs, pid, root / "server.perf.data", root, log)
        metrics0 = await scrape_metrics(metrics_url)
        if cfg.profile == "cprofile":
            os.kill(pid, signal.SIGUSR1)  # _bench_cprofile_server.py: enable the profiler
        before = Snapshot.take(pid)
        nodes_before = [Snapshot.take(p).ticks for _, p in nodes]
        db_before = postgres_ticks() if cfg.store else 0
        t_go = time.monotonic()
        for w in workers:
            send_command(w, "go")
        dones = await asyncio.gather(
            *(read_event(w, f"worker{n}", cfg.timeout + 30) for n, w in enumerate(workers))
        )
        t_done = time.monotonic()
        await asyncio.sleep(SETTLE)
        after = Snapshot.take(pid)
        nodes_after = [Snapshot.take(p).ticks for _, p in nodes]
        db_after = postgres_ticks() if cfg.store else 0
        if cfg.profile == "cprofile":
            os.kill(pid, signal.SIGUSR2)  # disable it and write the profile
            await wait_for_file(prof_out, PROFILER_STOP_TIMEOUT)
        for tool in (profiler, perf):
            if tool is not None:
                await procs.stop(tool, signal.SIGINT)
        metrics1 = await scrape_metrics(metrics_url)

        # -- RSS per idle connection
        idle_result = await idle_connections_rss(
            procs, pid, list(idle_homes.values()), metrics_url, root
        )

        for w in workers:
            send_command(w, "stop")
        for w in workers:
            await procs.stop(w, grace=WORKER_GRACE)
        await procs.stop(server)

        profile = collect_profile(cfg.profile, prof_out, cfg.out, cfg.top)

        if cfg.perf and perf is not None:
            report_perf = perf_summary(root / "server.perf.data", cfg.top)
        else:
            report_perf = None
        report = summarize(
            cfg, dones, before, after, t_done - t_go, idle_us_per_s, pid, metrics0, metrics1
        )
        report["idle_connections"] = idle_result
        relayed = max(1, sum(int(d["received"]) for d in dones))
        per_node = [
            ticks_us(b - a) / relayed for a, b in zip(nodes_before, nodes_after, strict=True)
        ]
        report["nodes"] = {
            "count": len(nodes),
            # every node's CPU per relayed message (each message crosses two nodes: its
            # sender's and its receiver's) and their sum: what the relay costs per message
            "cpu_us_per_message_per_node": [round(x, 1) for x in per_node],
            "cpu_us_per_message_all_nodes": round(sum(per_node), 1),
            "messages_per_s": round(relayed / max(t_done - t_go, 1e-9), 1),
        }
        if cfg.store:
            # every postgres process of the machine: the database this bench uses, and
            # whatever else asks that server meanwhile (nothing, on an otherwise idle machine)
            report["nodes"]["database_cpu_us_per_message"] = round(
                ticks_us(db_after - db_before) / relayed, 1
            )
        report["setup"] = {
            "connect_s": connect_s,
            # clients closed and created again because they did not connect in time
            "connect_retries": retries,
            "server_pid": pid,
            "url": url,
            # CLOCK_MONOTONIC is system-wide: lets other recorders cut out the measured phase.
            "phase_monotonic": [round(t_go, 4), round(t_done, 4)],
        }
        if profile is not None:
            report["profile"] = profile
        if report_perf is not None:
            report["perf"] = report_perf
        return report
    finally:
        try:
            await procs.stop_all()
        finally:
            if not cfg.keep:
                shutil.rmtree(client_root, ignore_errors=True)
                shutil.rmtree(root, ignore_errors=True)
            else:
                log.append(f"kept {root} and {client_root}")


async def idle_connections_rss(
    procs: Processes, pid: int, homes: list[Path], metrics_url: str | None, root: Path
) -> dict[str, Any]:
    """Open an idle connection per home and read how much the server's RSS grew for each."""
    conns_before = (await scrape_metrics(metrics_url)).get("tidings_connections")
    rss_before_idle = proc_status(pid)["VmRSS"]
    if not homes:
        return {"connections": 0}
    spec_path = root / "idle.json"
    spec_path.write_text(
        json.dumps(
            {
                "mode": "idle",
                "homes": [str(h) for h in homes],
                "connect_timeout": CONNECT_TIMEOUT,
            }
        )
    )
    idle_worker = await procs.start(
        "idle", [sys.executable, str(WORKER), str(spec_path)], root / "idle.stderr"
    )
    idle_ready = await read_event(idle_worker, "idle worker", CONNECT_TIMEOUT + 30)
    await asyncio.sleep(IDLE_SETTLE)
    rss_idle = proc_status(pid)["VmRSS"]
    conns_after = (await scrape_metrics(metrics_url)).get("tidings_connections")
    # The server's own count of new connections: a client that did not get to
    # "connected" may still hold an authenticated session on the server.
    if conns_before is not None and conns_after is not None:
        opened = int(conns_after - conns_before)
    else:
        opened = int(idle_ready.get("clients", 0))
    idle_result = {
        "connections": opened,
        "clients_connected": int(idle_ready.get("clients", 0)),
        "rss_before_kib": rss_before_idle,
        "rss_after_kib": rss_idle,
        "rss_per_connection_kib": (
            round((rss_idle - rss_before_idle) / opened, 2) if opened else None
        ),
        "errors": idle_ready.get("errors", []),
        "connect_retries": idle_ready.get("connect_retries", 0),
    }
    await procs.stop(idle_worker, grace=WORKER_GRACE)
    return idle_result


async def guarded(cfg: Config, procs: Processes, log: list[str]) -> dict[str, Any]:
    """:func:`run`, cancelled cleanly on SIGTERM as on Ctrl-C."""
    task = asyncio.ensure_future(run(cfg, procs, log))
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await task
