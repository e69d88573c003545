"""Hostile load: users chat while strangers flood the relay.

``hostile-load`` reproduces the complaint "a spam wave or a flood of connections made the
server unusable and messages stuck" (see :data:`HOSTILE_SCENARIOS` for the public reports). The
relay runs with its real limits (the defaults of ``tidings.server.config``, not the lab's raised
send budget) and a small per-device queue, so that the limits bind within a quick run. Once a
third of the plan is composed (the *quiet* phase), the flood process (:mod:`.hostile`) runs for
a window: unauthenticated and slowloris connections from other loopback addresses, peers that
finish the Noise handshake and idle (the relay must close them at ``auth_timeout``), and fresh
accounts (as many as the per-address registration budget lets through) sending random bytes to
every device of the second account as fast as the relay answers. The messages composed from the
flood's start to its end are the *flood* phase; the report shows the ✓ and ✓✓ latencies of the
two phases side by side (:func:`.checker_hostile.phase_latencies`).

The checker's rules for it are :mod:`.checker_hostile` (``legit_refused``, ``idle_not_closed``,
``flood_over_budget``, ``registrations_over_budget``) on top of ``lost`` (every legitimate
message delivered) and ``phantom`` (no flood bytes shown as a message).
Registered in :data:`tidings.lab.scenarios.SCENARIOS`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..server.config import (
    DEFAULT_ADDRESS_REGISTRATIONS_PER_HOUR,
    DEFAULT_RATE_BURST,
    DEFAULT_RATE_PER_SECOND,
    DEFAULT_STRANGER_QUEUE_SHARE,
)
from .hostile import GRACE, FloodSpec
from .labrun import PHASE, LabRun, Params, Scenario
from .procs import LabProcError, Proc, ProcRegistry

__all__ = ["AUTH_TIMEOUT", "HOSTILE_SCENARIOS", "MAX_QUEUE", "FloodProc", "hostile_load"]

#: Seconds the relay gives a peer to say who it is after the handshake: short, so the quick
#: run sees the idle peers closed (the default, 10 s, is the same rule, later).
AUTH_TIMEOUT = 2.0
#: Items one device may have queued: small, so the flood meets the stranger share
#: (:data:`~tidings.server.config.DEFAULT_STRANGER_QUEUE_SHARE` of it) within seconds.
MAX_QUEUE = 200
#: Connections from one address: the flood's unauthenticated connections come from two
#: addresses and meet it; the legitimate devices (and idle peers) come from 127.0.0.1.
MAX_CONNECTIONS_PER_IP = 40

_RELAY_CONFIG = (
    "[server]\nexpiry_interval = 0.5\nnew_account_age = 0\n"
    f"max_queue = {MAX_QUEUE}\nauth_timeout = {AUTH_TIMEOUT}\n"
    f"max_connections_per_ip = {MAX_CONNECTIONS_PER_IP}\n"
)

#: The relay's limits the checker judges the flood's counters by.
LIMITS = {
    "auth_timeout": AUTH_TIMEOUT,
    "grace": GRACE,
    "rate": DEFAULT_RATE_PER_SECOND,
    "burst": DEFAULT_RATE_BURST,
    "registrations_per_hour": DEFAULT_ADDRESS_REGISTRATIONS_PER_HOUR,
    "stranger_queue": int(MAX_QUEUE * DEFAULT_STRANGER_QUEUE_SHARE),
    "max_connections_per_ip": MAX_CONNECTIONS_PER_IP,
}

#: The flood's size per variant.
_FLOOD: dict[bool, dict[str, Any]] = {
    True: {"raw": 100, "idle": 16, "accounts": 10, "sends": 300, "window": 3.0},
    False: {"raw": 400, "idle": 25, "accounts": 12, "sends": 2000, "window": 20.0},
}


class FloodProc(Proc):
    """The flood process (:mod:`tidings.lab.hostile`); its one line is ``{"flood": {...}}``."""

    def __init__(
        self, url: str, directory: Path, spec: FloodSpec, log_dir: Path, registry: ProcRegistry
    ) -> None:
        super().__init__("flood", log_dir, registry=registry)
        self.url, self.directory, self.spec = url, directory, spec

    def argv(self) -> list[str]:
        spec = json.dumps(asdict(self.spec))
        argv = [sys.executable, "-m", "tidings.lab.hostile", "--url", self.url]
        return [*argv, "--dir", str(self.directory), "--spec", spec]


def hostile_load(run: LabRun) -> None:
    """Quiet phase, then the flood (one ``flood`` fault with its counters and the limits),
    then the rest of the plan."""
    victim = run.params.users[1]
    devices = run.params.devices[1]
    spec = FloodSpec(victim, tuple(range(1, devices + 1)), auth_timeout=AUTH_TIMEOUT,
                     **_FLOOD[run.quick])  # fmt: skip
    run.start_all()
    run.wait_composed(max(1, run.planned // 3))
    run.progress(
        f"flood: {spec.raw} raw + {spec.idle} idle connections, up to {spec.accounts} fresh"
        f" accounts × {spec.sends} sends to {victim}, {spec.window:g} s"
    )
    flood = FloodProc(run.server.url, run.run_dir / "flood", spec, run.logs, run.registry)
    t = run.clock.now()
    flood.spawn()
    line = flood.wait_line("flood", spec.window + AUTH_TIMEOUT + GRACE + PHASE)
    code = flood.wait_exit()
    if code != 0:
        raise LabProcError(f"the flood process exited {code}\n{flood.describe()}")
    stats = line["flood"]
    run.progress(
        f"flood over: {stats['stored']} of {stats['sends']} flood sends stored,"
        f" refused {stats['refused']}, {stats['registered']} accounts registered"
    )
    run.fault("flood", "server", t, run.clock.now(), **stats, limits=LIMITS, victim=victim)
    run.wait_complete()


_THREE = ("alice", "bob", "carol")

HOSTILE_SCENARIOS = (
    Scenario(
        "hostile-load",
        "users chat through a flood: idle, slowloris and handshake-only peers, spam accounts",
        114,
        Params(_THREE, (1, 2, 1), 30, 4.0, 0.0),
        Params(_THREE, (1, 2, 1), 300, 4.0, 0.0),
        hostile_load,
        relay_config=_RELAY_CONFIG,
        relay_args=(),
        complaint="a flood of traffic or spam joins overloads the server until it fails",
        links=(
            "https://github.com/matrix-org/synapse/issues/12491",
            "https://github.com/matrix-org/synapse/issues/12578",
        ),
        invariant=(
            "G8: the users' messages all delivered, none refused for good; the relay's limits "
            "hold (lost, legit_refused, idle_not_closed, flood_over_budget)"
        ),
    ),
)
