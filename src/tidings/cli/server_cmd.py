"""``tidings server``: run the relay until SIGTERM or Ctrl-C, on the embedded SQLite store or, with
``--store postgresql://…``, on a PostgreSQL database that several relay nodes share."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from ..clockfile import file_clock
from ..configfile import parse_duration
from ..errors import StartupError, StoreError
from ..server.app import Relay
from ..server.config import ServerConfig, load_config
from ..server.datadir import (
    DB_FILE,
    KEY_FILE,
    PUSH_KEY_FILE,
    SENDER_CERT_KEY_FILE,
    load_or_create_key,
    load_or_create_push_key,
    load_or_create_sender_cert_key,
    prepare_data_dir,
    prepare_db_file,
)
from ..server.health import STORE_HEARTBEAT_INTERVAL
from ..server.listener import raise_open_file_limit
from ..server.logs import setup_logging
from ..store import PostgresStore, SQLiteStore, Store
from ..store.pg_errors import redact


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``server`` subcommand."""
    p = sub.add_parser(
        "server",
        help="run a relay (SQLite store in a data directory, or PostgreSQL)",
        description=(
            "Run a tidings relay. It stores ciphertext per device until each device acks it, "
            "and acks a send (✓) only after the database's commit (SQLite in the data "
            "directory, or PostgreSQL with --store). Settings come from flags, "
            "TIDINGS_* environment variables and a TOML file ([server] table), in that order. "
            "Prints its WebSocket URL and key fingerprint; stops gracefully on SIGTERM/Ctrl-C."
        ),
        epilog=(
            "Exit status: 0 after a graceful stop; 1 when it cannot start (a bad setting, a port "
            "in use, an unwritable data directory, a damaged key file, a database it cannot "
            "reach or migrate), with one line on stderr saying what to do."
        ),
    )
    p.add_argument("--config", type=Path, help="TOML config file (env: TIDINGS_CONFIG)")
    p.add_argument("--data-dir", type=Path, help="where the database and key live")
    p.add_argument(
        "--store",
        help="sqlite (default: relay.db in the data directory) or the URL of a PostgreSQL "
        "database shared by several relay nodes, postgresql://user@host:5432/tidings "
        "(env: TIDINGS_STORE)",
    )
    p.add_argument(
        "--redis",
        help="with a PostgreSQL store: the Redis of several relay nodes, redis://host:6379/0, "
        "for cross-node wake-ups within milliseconds (env: TIDINGS_REDIS_URL; see docs/nodes.md)",
    )
    p.add_argument(
        "--node-id",
        help="this node's name in logs, /metrics and /healthz (default <hostname>:<port>)",
    )
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="WebSocket port (default 7400; 0 = any free port)")
    p.add_argument("--metrics-host", help="address of /metrics and /healthz")
    p.add_argument("--metrics-port", type=int, help="metrics port (default 7401; 0 = off)")
    p.add_argument("--retention", help="how long undelivered items are kept (e.g. 30d, 12h)")
    p.add_argument("--max-queue", type=int, help="per-device queue limit (items)")
    p.add_argument("--rate", type=float, help="per-account sends per second (sustained)")
    p.add_argument("--burst", type=int, help="per-account send burst")
    p.add_argument(
        "--proxy-header",
        choices=["none", "x-forwarded-for", "x-real-ip"],
        help="behind a reverse proxy: the header holding the client's address (default none)",
    )
    p.add_argument(
        "--registrations-per-address",
        type=int,
        help="REGISTERs per client address per hour (default 10; 0 = no limit)",
    )
    p.add_argument(
        "--new-account-age",
        help="accounts younger than this get smaller budgets (default 24h; 0 = off)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        help="connections served at once (default 0: derived from the limit of open files)",
    )
    p.add_argument(
        "--max-connections-per-ip",
        type=int,
        help="connections served at once from one address (default 1000; 0 = no cap)",
    )
    p.add_argument(
        "--push-allow-private",
        action="store_true",
        default=None,
        help="accept push endpoints on http:// and on loopback or private addresses (labs, "
        "tests, a LAN's UnifiedPush distributor; default off: SSRF)",
    )
    p.add_argument(
        "--push-contact",
        help="the operator's mailto: or https: contact in VAPID tokens "
        "(default mailto:postmaster@localhost)",
    )
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=["json", "text"])
    p.add_argument(
        "--clock-file",
        type=Path,
        help="testing: a file holding seconds to add to the clock, re-read when it changes "
        "(env: TIDINGS_CLOCK_FILE); lets the lab move time forward by days",
    )
    p.add_argument("--json", action="store_true", help="print the ready line as JSON")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> ServerConfig:
    """The configuration from the file, the environment and the flags."""
    path = args.config or (
        Path(os.environ["TIDINGS_CONFIG"]) if "TIDINGS_CONFIG" in os.environ else None
    )
    overrides: dict[str, object] = {
        "data_dir": args.data_dir,
        "store": args.store,
        "redis_url": args.redis,
        "node_id": args.node_id,
        "host": args.host,
        "port": args.port,
        "metrics_host": args.metrics_host,
        "metrics_port": args.metrics_port,
        "retention_seconds": parse_duration(args.retention) if args.retention else None,
        "max_queue": args.max_queue,
        "rate_per_second": args.rate,
        "rate_burst": args.burst,
        "proxy_header": args.proxy_header,
        "address_registrations_per_hour": args.registrations_per_address,
        "new_account_age": args.new_account_age,
        "max_connections": args.max_connections,
        "max_connections_per_ip": args.max_connections_per_ip,
        "push_allow_private": args.push_allow_private,
        "push_contact": args.push_contact,
        "log_level": args.log_level,
        "log_format": args.log_format,
    }
    return load_config(path, os.environ, overrides)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``tidings server``."""
    config = build_config(args)
    setup_logging(config.log_level, config.log_format, sys.stderr, node=config.node)
    clock_file = args.clock_file or os.environ.get("TIDINGS_CLOCK_FILE")
    clock = file_clock(Path(clock_file), config.clock_offset) if clock_file else None
    return asyncio.run(_serve(config, args.json, clock))


async def _serve(config: ServerConfig, as_json: bool, clock: Callable[[], float] | None) -> int:
    before, after = raise_open_file_limit()
    log = logging.getLogger("tidings.server")
    if after != before:
        log.info("= limit of open files raised from %d to %d (the hard limit)", before, after)
    prepare_data_dir(config.data_dir)
    key = load_or_create_key(config.data_dir / KEY_FILE)
    push_key = load_or_create_push_key(config.data_dir / PUSH_KEY_FILE)
    cert_key = load_or_create_sender_cert_key(config.data_dir / SENDER_CERT_KEY_FILE)
    store: Store
    if config.uses_postgres:
        store = PostgresStore(config.store)
    else:
        prepare_db_file(config.data_dir / DB_FILE)
        store = SQLiteStore(config.data_dir / DB_FILE)
    # A database on the network can go away while the relay is idle: probe it on a heartbeat,
    # so /healthz (and a load balancer) learns of it without waiting for a client's write.
    heartbeat = STORE_HEARTBEAT_INTERVAL if config.uses_postgres else None
    relay = Relay(
        config,
        store,
        key,
        clock=clock,
        push_key=push_key,
        sender_cert_key=cert_key,
        store_heartbeat=heartbeat,
    )
    # Handlers first: a SIGTERM that arrives while starting (or right after the ready line)
    # must stop the relay gracefully, not kill it.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await relay.start()
    except StoreError as exc:  # a database it cannot reach, or whose schema it cannot migrate
        raise StartupError(f"cannot open the store: {exc}") from None
    # Everything allocated so far lives as long as the process: keep the garbage collector
    # from scanning it again on every full collection (measured: ~10% of the relay's CPU).
    gc.freeze()
    assert relay.address is not None
    host, port = relay.address
    url = f"ws://{host}:{port}/v1"
    metrics = (
        f"http://{relay.metrics_address[0]}:{relay.metrics_address[1]}/metrics"
        if relay.metrics_address
        else None
    )
    if as_json:
        ready = {
            "event": "listening",
            "url": url,
            "key": relay.static_public.hex(),
            "fingerprint": relay.fingerprint,
            "metrics": metrics,
            "pid": os.getpid(),
            "node": relay.node_id,
        }
        print(json.dumps(ready), flush=True)
    else:
        print(f"tidings relay listening on {url}", flush=True)
        print(f"server key fingerprint: {relay.fingerprint}", flush=True)
        if metrics:
            print(f"metrics: {metrics} (health: /healthz)", flush=True)
        print(f"data: {config.data_dir.resolve()}", flush=True)
        if config.uses_postgres:
            print(f"store: {redact(config.store)}", flush=True)
        if config.redis_url:
            print(f"redis: {redact(config.redis_url)} ({relay.health()[1]['redis']})", flush=True)
        print(f"node: {relay.node_id}", flush=True)
    await stop.wait()
    await relay.stop()
    return 0
