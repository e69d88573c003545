"""The relay bench's options: command line → :class:`Config`."""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "relay.json"
DEFAULT_QUICK_OUT = HERE / "results" / "relay-quick.json"
DEFAULT_PEERS_OUT = HERE / "results" / "relay-peers.json"
#: The peer systems ``--peers`` may name (``bench/peers/servers.py``).
PEER_NAMES = ("mosquitto", "prosody")
#: Most relay nodes ``--nodes`` starts: these machines have 2 cores; more would only measure
#: the scheduler.
MAX_NODES = 4


@dataclass
class Config:
    pairs: int
    messages: int
    rate: float
    payload: int
    window: int
    pairs_per_process: int
    idle: int
    timeout: float
    profile: str  # "", "py-spy" or "cprofile"
    profile_rate: int
    profile_native: bool
    perf: bool
    client_dir: Path | None
    keep: bool
    top: int
    out: Path
    peers: tuple[str, ...] = ()  # peer systems run alternately with tidings ("" = none)
    rounds: int = 1
    skip_tidings: bool = False  # with --peers: run only the peers (the harness' own test)
    prosody_archive: str = "none"
    prosody_gc: str = "shipped"
    store: str = ""  # the relay's --store ("": SQLite in its temporary data directory)
    nodes: int = 1  # relay nodes on one PostgreSQL store (--store), joined by Redis (--redis)
    redis: str = ""  # the nodes' --redis


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(
        description="Relay benchmark: real server and sender/receiver pairs in separate processes."
    )
    p.add_argument("--pairs", type=int, help="sender/receiver pairs (default 50; quick 10)")
    p.add_argument("--messages", type=int, help="messages per sender (default 200; quick 100)")
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="messages/s per sender (0: as fast as the window allows)",
    )
    p.add_argument("--payload", type=int, default=200, help="message body bytes")
    p.add_argument(
        "--window", type=int, default=64, help="with --rate 0: unanswered sends per sender"
    )
    p.add_argument(
        "--pairs-per-process", type=int, default=10, help="pairs per worker process (one loop)"
    )
    p.add_argument(
        "--idle", type=int, help="idle connections for the RSS figure (default 200; quick 50)"
    )
    p.add_argument("--timeout", type=float, default=300.0, help="deadline of the measured phase")
    p.add_argument("--out", type=Path, help="JSON report (default bench/results/relay.json)")
    p.add_argument("--quick", action="store_true", help="a small run (10 pairs × 100)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="profile the server during the measured phase (py-spy if installed, else cProfile)",
    )
    p.add_argument(
        "--profiler", choices=["py-spy", "cprofile"], help="force a profiler (implies --profile)"
    )
    p.add_argument("--profile-rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument(
        "--profile-native",
        action="store_true",
        help="py-spy --native: include C/Cython frames (pauses the server per sample)",
    )
    p.add_argument(
        "--perf",
        action="store_true",
        help="also sample the server with `perf record -e cpu-clock` (CPU by library/symbol)",
    )
    p.add_argument("--top", type=int, default=25, help="profile entries to print")
    p.add_argument(
        "--client-dir", type=Path, help="where client homes go (default /dev/shm: tmpfs)"
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary directories")
    p.add_argument(
        "--peers",
        default="",
        help=f"peer systems run alternately with tidings, comma-separated: {','.join(PEER_NAMES)}",
    )
    p.add_argument(
        "--rounds", type=int, default=1, help="with --peers: rounds of tidings and each peer"
    )
    p.add_argument("--skip-tidings", action="store_true", help="with --peers: run the peers only")
    p.add_argument(
        "--prosody-archive",
        choices=["none", "internal", "sql"],
        default="none",
        help="Prosody: also archive every message with mod_mam (files, or SQLite)",
    )
    p.add_argument(
        "--prosody-gc",
        choices=["shipped", "lua"],
        default="shipped",
        help="Prosody's Lua GC: as shipped (pause 105 %%, speed 500) or Lua's own (200 %%, 100)",
    )
    p.add_argument(
        "--store",
        default="",
        help="the relay's --store: a PostgreSQL URL of an empty database (default: SQLite)",
    )
    p.add_argument(
        "--nodes",
        type=int,
        default=1,
        help=f"relay nodes (1..{MAX_NODES}) on the --store PostgreSQL database, joined by --redis; "
        "each sender on one node, its receiver on the next",
    )
    p.add_argument("--redis", default="", help="with --nodes 2 or more: the nodes' --redis URL")
    a = p.parse_args(argv)
    if not 1 <= a.nodes <= MAX_NODES:
        p.error(f"--nodes must be 1..{MAX_NODES}")
    if a.nodes > 1 and not (a.store.startswith("postgresql://") and a.redis):
        p.error("--nodes 2 or more needs --store postgresql://… and --redis redis://…")
    peers = tuple(name for name in a.peers.split(",") if name)
    unknown = [name for name in peers if name not in PEER_NAMES]
    if unknown:
        p.error(f"unknown peer {unknown[0]!r} (known: {', '.join(PEER_NAMES)})")
    if (a.rounds != 1 or a.skip_tidings) and not peers:
        p.error("--rounds and --skip-tidings need --peers")
    profile = a.profiler or ""
    if a.profile and not profile:
        profile = "py-spy" if shutil.which("py-spy") else "cprofile"
    cfg = Config(
        pairs=a.pairs or (10 if a.quick else 50),
        messages=a.messages or (100 if a.quick else 200),
        rate=a.rate,
        payload=a.payload,
        window=a.window,
        pairs_per_process=a.pairs_per_process,
        idle=a.idle if a.idle is not None else (50 if a.quick else 200),
        timeout=a.timeout,
        profile=profile,
        profile_rate=a.profile_rate,
        profile_native=a.profile_native,
        perf=a.perf,
        client_dir=a.client_dir,
        keep=a.keep,
        top=a.top,
        out=a.out
        or (DEFAULT_PEERS_OUT if peers else DEFAULT_QUICK_OUT if a.quick else DEFAULT_OUT),
        peers=peers,
        rounds=a.rounds,
        skip_tidings=a.skip_tidings,
        prosody_archive=a.prosody_archive,
        prosody_gc=a.prosody_gc,
        store=a.store,
        nodes=a.nodes,
        redis=a.redis,
    )
    if (
        min(cfg.pairs, cfg.messages, cfg.window, cfg.pairs_per_process, cfg.rounds) < 1
        or cfg.idle < 0
    ):
        p.error("--pairs, --messages, --window, --pairs-per-process and --rounds must be positive")
    return cfg
