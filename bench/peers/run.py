"""One run of one peer: its server, the workers, the measured phase, the idle connections.

The same steps as the tidings run (``bench/_relay_run.py``) with the peer's own server and
clients: start the server on a free loopback port and wait until it accepts connections, start
the workers (``--pairs-per-process`` pairs each) and wait until every client is connected and
subscribed (MQTT) or has its session with stream management on (XMPP), read ``/proc/<server>``,
send ``go``, wait for every worker's ``done``, settle, read ``/proc`` again; then open
``--idle`` more connections for the RSS figure, and stop everything. The report has the same
keys as tidings' (``_relay_report.summarize``), less the tidings-only ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _relay_config import Config
from _relay_probe import Snapshot, proc_status, ticks_us
from _relay_procs import Processes, free_port, read_event, send_command
from _relay_report import summarize

from peers.servers import DOMAIN, MOSQUITTO, Peer, Server, mosquitto_server, prosody_server

#: Deadlines, in seconds.
SERVER_START_TIMEOUT = 30.0
CONNECT_TIMEOUT = 120.0
#: How long a worker told to stop may take to close its clients before it gets SIGTERM.
WORKER_GRACE = 10.0
#: After the last ✓✓, how long to wait for trailing acks before reading the CPU again.
SETTLE = 0.3
#: How long the idle connections are left to settle before the RSS is read.
IDLE_SETTLE = 1.0
#: Keys of the tidings report that do not apply to a peer.
TIDINGS_ONLY = ("server_metrics_delta", "store_group_commit", "references_us_per_message")


async def wait_listening(proc: asyncio.subprocess.Process, port: int, name: str) -> None:
    """Return once ``127.0.0.1:port`` accepts a connection (the server is up)."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeError(f"{name} exited (code {proc.returncode}) while starting")
        try:
            async with asyncio.timeout(1):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return
    raise TimeoutError(f"{name} not listening on {port} after {SERVER_START_TIMEOUT:.0f}s")


def make_server(peer: Peer, cfg: Config, root: Path, accounts: list[str]) -> Server:
    port = free_port()
    if peer is MOSQUITTO:
        return mosquitto_server(root, port, cfg.window)
    return prosody_server(root, port, accounts, cfg.prosody_archive, cfg.prosody_gc)


async def start_worker(
    procs: Processes, peer: Peer, root: Path, name: str, spec: dict[str, Any]
) -> asyncio.subprocess.Process:
    spec_path = root / f"{name}.json"
    spec_path.write_text(json.dumps(spec))
    return await procs.start(
        name, [sys.executable, str(peer.worker), str(spec_path)], root / f"{name}.stderr"
    )


async def run_peer(peer: Peer, cfg: Config, procs: Processes, log: list[str]) -> dict[str, Any]:
    """The benchmark against ``peer``; returns the report."""
    root = Path(tempfile.mkdtemp(prefix=f"tidings-peer-{peer.name}-"))
    try:
        pairs = [(f"s{i:05d}", f"r{i:05d}") for i in range(cfg.pairs)]
        idle_names = [f"i{i:05d}" for i in range(cfg.idle)]
        accounts = [a for p in pairs for a in p] + idle_names
        server = make_server(peer, cfg, root, accounts)
        proc = await procs.start(peer.name, server.argv, root / "server.stderr", stdin=False)
        await wait_listening(proc, server.port, peer.name)
        pid = proc.pid
        log.append(f"{peer.name} pid {pid} on 127.0.0.1:{server.port} (data in {root})")
        base = {
            "host": "127.0.0.1",
            "port": server.port,
            "domain": DOMAIN,
            "connect_timeout": CONNECT_TIMEOUT,
        }
        # On the fresh process, before the workload (see bench/README.md, "Peers").
        idle_result = await idle_rss(procs, peer, pid, root, {**base, "names": idle_names})
        workers = []
        for n, i in enumerate(range(0, cfg.pairs, cfg.pairs_per_process)):
            spec = {
                **base,
                "mode": "pairs",
                "pairs": [
                    {"sender": s, "receiver": r} for s, r in pairs[i : i + cfg.pairs_per_process]
                ],
                "messages": cfg.messages,
                "payload": cfg.payload,
                "window": cfg.window,
                "go_timeout": CONNECT_TIMEOUT * 2 + 30,
                "run_timeout": cfg.timeout,
            }
            workers.append(await start_worker(procs, peer, root, f"worker{n}", spec))
        readies = await asyncio.gather(
            *(read_event(w, f"worker{n}", CONNECT_TIMEOUT + 30) for n, w in enumerate(workers))
        )
        connect_s = max(float(r.get("connect_s", 0)) for r in readies)
        log.append(f"{len(workers)} workers, {2 * cfg.pairs} clients connected ({connect_s:.1f}s)")

        await asyncio.sleep(0.5)
        idle0 = Snapshot.take(pid)
        await asyncio.sleep(1.0)
        idle1 = Snapshot.take(pid)
        idle_us_per_s = ticks_us(idle1.ticks - idle0.ticks) / (idle1.at - idle0.at)

        before = Snapshot.take(pid)
        t_go = time.monotonic()
        for w in workers:
            send_command(w, "go")
        dones = await asyncio.gather(
            *(read_event(w, f"worker{n}", cfg.timeout + 30) for n, w in enumerate(workers))
        )
        t_done = time.monotonic()
        await asyncio.sleep(SETTLE)
        after = Snapshot.take(pid)

        for w in workers:
            send_command(w, "stop")
        for w in workers:
            await procs.stop(w, grace=WORKER_GRACE)
        await procs.stop(proc)

        report = summarize(cfg, dones, before, after, t_done - t_go, idle_us_per_s, pid, {}, {})
        threads = report["server_cpu"]["us_per_message_by_thread"]
        report["server_cpu"]["us_per_message_by_thread"] = {
            label.replace("event loop (main thread)", "main thread"): us
            for label, us in threads.items()
        }
        for key in TIDINGS_ONLY:
            report.pop(key, None)
        for key in ("target_us_per_message", "target_met"):
            report["server_cpu"].pop(key, None)
        report["system"] = {"name": peer.name, "title": peer.title, "persists": server.persistence}
        report["idle_connections"] = idle_result
        report["setup"] = {
            "connect_s": connect_s,
            "server_pid": pid,
            "port": server.port,
            "phase_monotonic": [round(t_go, 4), round(t_done, 4)],
        }
        return report
    finally:
        try:
            await procs.stop_all()
        finally:
            if cfg.keep:
                log.append(f"kept {root}")
            else:
                shutil.rmtree(root, ignore_errors=True)


async def idle_rss(
    procs: Processes, peer: Peer, pid: int, root: Path, spec: dict[str, Any]
) -> dict[str, Any]:
    """Open an idle connection per name and read how much the server's RSS grew for each."""
    if not spec["names"]:
        return {"connections": 0}
    rss_before = proc_status(pid)["VmRSS"]
    worker = await start_worker(procs, peer, root, "idle", {**spec, "mode": "idle"})
    ready = await read_event(worker, "idle worker", CONNECT_TIMEOUT + 30)
    await asyncio.sleep(IDLE_SETTLE)
    rss_after = proc_status(pid)["VmRSS"]
    opened = int(ready.get("clients", 0))
    await procs.stop(worker, grace=WORKER_GRACE)
    return {
        "connections": opened,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "rss_per_connection_kib": round((rss_after - rss_before) / opened, 2) if opened else None,
    }
