"""One lab run: the relay, the workload's device processes, the lab clock, the record.

:class:`LabRun` is what a scenario's fault script (:mod:`.scenarios`) drives: it starts the
relay (in the lab's server namespace for kernel scenarios, behind the user-space fault proxy for
proxy scenarios), registers the workload's accounts, starts and waits for the device processes,
records each fault, and finishes the run (every device drains, then ``settled``).

Invariants:

* Nothing waits by sleeping: waits follow the processes' JSON lines with deadlines
  (:func:`~tidings.lab.procs.wait_until`); the only sleeps are the fault windows themselves
  (how long a fault lasts is the scenario's pacing).
* Every process is created in the run's :class:`ProcRegistry`; the caller owns its cleanup
  (and :meth:`LabRun.close_proxy`).
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..client import register
from .clock import LabClock
from .mounts import Mounts
from .netns import SERVER_ADDRESS, NetLab, argv_in
from .procs import DeviceProc, LabProcError, ProcRegistry, ServerProc, wait_until
from .proxy_thread import ThreadedProxy
from .record import DeviceStarted, Fault, JsonlWriter, RunStarted, ServerStarted, Settled
from .workload import PLAN_FILE, Workload, events_path

__all__ = [
    "DAYS",
    "PHASE",
    "SERVER_ARGS",
    "SERVER_CONFIG",
    "SERVER_LOG",
    "LabRun",
    "Params",
    "Scenario",
]


#: Seconds in a day (the offline-for-days clock jump).
DAYS = 86400.0

#: Deadline of one phase of a run (seconds); a healthy run needs a fraction of it.
PHASE = 60.0

#: The server log the checker scans: every start's stdout and stderr, joined after the run.
SERVER_LOG = "server.log"

#: The relay's config for lab runs: sweep expired items often (the default is once a minute);
#: no new-account budget (every account of a run is minutes old, and the workload sends faster
#: than a new account may).
SERVER_CONFIG = "[server]\nexpiry_interval = 0.5\nnew_account_age = 0\n"

#: The relay's flags for lab runs: the per-account send budget out of the way of a workload
#: that sends (and receipts) faster than a person (``hostile-load`` keeps the defaults).
SERVER_ARGS = ("--rate", "10000", "--burst", "10000")


@dataclass(frozen=True, slots=True)
class Params:
    """A variant's size: accounts and their devices, messages per device, their rate, and how
    long fault windows last (seconds); ``repeat`` is how many times the fault is injected."""

    users: tuple[str, ...]
    devices: tuple[int, ...]
    messages: int
    rate: float
    window: float
    repeat: int = 1
    read_probability: float = 0.5


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named scenario: what it does, its seed, its variants and its fault script."""

    name: str
    description: str
    seed: int
    quick: Params
    full: Params
    script: Callable[[LabRun], None]
    kernel: bool = False
    #: Devices reach the relay through the user-space fault proxy (no root needed).
    proxy: bool = False
    #: The run mounts small tmpfs file systems (:mod:`.mounts`; needs root).
    mounts: bool = False
    #: The run starts the lab's own PostgreSQL and Redis (:mod:`.services`; no root needed).
    services: bool = False
    #: The relay's config file and extra flags (see :data:`SERVER_CONFIG`, :data:`SERVER_ARGS`).
    relay_config: str = SERVER_CONFIG
    relay_args: tuple[str, ...] = SERVER_ARGS
    #: The failure users of other messengers reported that this reproduces (paraphrased), the
    #: public reports of it, and what the checker holds tidings to: the report's table
    #: "failures of other messengers that tidings survives" (:mod:`.report_complaints`).
    complaint: str = ""
    links: tuple[str, ...] = ()
    invariant: str = ""
    #: Called first by :meth:`LabRun.setup`, before the relay starts: e.g. start a resolver,
    #: move the relay to another address, name it (:attr:`LabRun.relay_name`).
    prepare: Callable[[LabRun], None] | None = None


# ----------------------------------------------------------------------------- the run


class LabRun:
    """One scenario run: relay, workload, device processes, lab clock, record, (netlab).

    Args:
        scenario: what to run.
        run_dir: the run directory (created).
        quick: run the quick variant.
        seed: the workload's seed.
        registry: reaps every process of the run.
        netlab: a started :class:`NetLab` with one client per device, for kernel scenarios.
        progress: called with a short status text at each phase.
    """

    def __init__(
        self,
        scenario: Scenario,
        run_dir: Path,
        *,
        quick: bool,
        seed: int,
        registry: ProcRegistry,
        netlab: NetLab | None = None,
        progress: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.scenario = scenario
        self.params = scenario.quick if quick else scenario.full
        self.run_dir = run_dir
        self.quick = quick
        self.seed = seed
        self.registry = registry
        self.netlab = netlab
        self.progress = progress
        self.rng = random.Random(seed)
        if (run_dir / "record.jsonl").exists():
            raise FileExistsError(f"{run_dir} already holds a run: give a new directory")
        run_dir.mkdir(parents=True, exist_ok=True)
        self.clock = LabClock(run_dir / "clock")
        self.record = JsonlWriter(run_dir / "record.jsonl", fsync=False)
        self.record.write(RunStarted(self.clock.now(), scenario.name, seed, quick))
        self.logs = run_dir / "logs"
        self.workload = Workload(
            list(self.params.users),
            list(self.params.devices),
            self.params.messages,
            self.params.rate,
            self.params.read_probability,
            seed,
        )
        (run_dir / "relay.toml").write_text(scenario.relay_config)
        server_args = [*scenario.relay_args, "--config", str(run_dir / "relay.toml")]
        self.server = ServerProc(
            run_dir / "relay",
            self.logs,
            host=SERVER_ADDRESS if netlab is not None else "127.0.0.1",
            clock_file=self.clock.path,
            args=server_args,
            argv_prefix=argv_in(netlab.server_ns, []) if netlab is not None else (),
            registry=registry,
        )
        self.record.write(ServerStarted(self.clock.now(), "relay", SERVER_LOG))
        #: Every relay process of the run (more than one: the nodes of ``node-crash``); their
        #: logs are joined into :data:`SERVER_LOG`, and :meth:`finish` stops them all.
        self.servers: list[ServerProc] = [self.server]
        #: Called by :meth:`finish` once every device drained, before the relays stop.
        self.on_settled: list[Callable[[], None]] = []
        #: The relay's URLs a device registers with (its nodes, preferred first), by device
        #: name; None: :attr:`relay_url`.
        self.relay_urls: Callable[[str], str] | None = None
        #: What a scenario's ``prepare`` hands to its script (e.g. the lab's own services).
        self.context: dict[str, Any] = {}
        #: Called by the runner once every process of the run was reaped.
        self.cleanups: list[Callable[[], None]] = []
        self.devices: dict[str, DeviceProc] = {}
        self.namespaces: dict[str, str] = {}
        self.expected: dict[str, int] = {}
        self.proxy: ThreadedProxy | None = None
        #: The run's tmpfs mounts; the runner closes them once every process was reaped.
        self.mounts = Mounts()
        #: The host name the devices know the relay by (registered in their homes), if any;
        #: None: its address.
        self.relay_name: str | None = None

    # ------------------------------------------------------------ set up

    def setup(self) -> None:
        """Start the relay, register the workload's accounts, create the device processes."""
        if self.scenario.prepare is not None:
            self.scenario.prepare(self)
        if not self.server.alive:  # a prepare may have started it (and other nodes)
            self.progress("starting the relay")
            self.server.start()
        self.progress("registering accounts")
        names = list(self.workload.plans)
        if self.netlab is not None:
            for name, client_ns in zip(names, self.netlab.clients, strict=False):
                self.namespaces[name] = client_ns
            homes = self._setup_in(self.netlab.clients[0])
        else:
            url: str | Callable[[str], str] = self.relay_urls or self.relay_url
            if self.scenario.proxy:
                self.proxy = ThreadedProxy("127.0.0.1", self.server.port)
                url = self.proxy.url  # the devices know the relay by the proxy's address
            homes = self.workload.setup(url, self.run_dir, self.clock.now)
        for name, home in homes.items():
            ns = self.namespaces.get(name)
            self.devices[name] = DeviceProc(
                home,
                events_path(self.run_dir, name),
                self.run_dir / PLAN_FILE,
                self.logs,
                name=name,
                clock_file=self.clock.path,
                argv_prefix=argv_in(ns, []) if ns is not None else (),
                registry=self.registry,
            )
            self.expected[name] = len(self.workload.expected(name))

    @property
    def relay_url(self) -> str:
        """The URL the devices register with: the relay's, by :attr:`relay_name` if set."""
        url = urlparse(self.server.url)
        if self.relay_name is None:
            return self.server.url
        return url._replace(netloc=f"{self.relay_name}:{url.port}").geturl()

    def _setup_in(self, ns: str) -> dict[str, Path]:
        """Register the workload from inside client namespace ``ns`` (a child process)."""
        spec = {
            "url": self.relay_url,
            "run_dir": str(self.run_dir),
            "clock": str(self.clock.path),
            "workload": {
                "users": list(self.params.users),
                "devices_per_user": list(self.params.devices),
                "messages": self.params.messages,
                "rate": self.params.rate,
                "read_probability": self.params.read_probability,
                "seed": self.seed,
            },
        }
        argv = [sys.executable, "-m", "tidings.lab.scenarios", "--setup", json.dumps(spec)]
        done = subprocess.run(
            argv_in(ns, argv), capture_output=True, text=True, timeout=PHASE, check=False
        )
        if done.returncode != 0:
            raise LabProcError(f"setup in {ns} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return {name: Path(home) for name, home in json.loads(done.stdout).items()}

    # ------------------------------------------------------------ helpers for scripts

    def link_device(self, existing: DeviceProc) -> DeviceProc:
        """Link a new device to ``existing``'s account mid-run and start it: a plan with no
        messages of its own (it receives, reads and syncs), its ``device`` line, and a
        ``link`` fault whose window is the registration (sends the relay stored before it
        could not name the device; :meth:`RunView.expects`). No netlab (kernel) runs."""
        account = existing.name.rpartition(".")[0]
        code = existing.link_code()
        start = self.clock.now()
        home = self.run_dir / "homes" / f"{account}.new{len(self.devices)}"
        identity = asyncio.run(register(home, self.relay_url, account, link_code=code))
        end = self.clock.now()
        name = f"{account}.{identity.device_id}"
        final = self.run_dir / "homes" / name
        home.rename(final)
        plans = json.loads((self.run_dir / PLAN_FILE).read_text())
        template = plans["devices"][existing.name]
        plans["devices"][name] = {
            **template,
            "name": name,
            "device": identity.device_id,
            "items": [],
        }
        (self.run_dir / PLAN_FILE).write_text(json.dumps(plans, indent=1) + "\n")
        self.record.write(
            DeviceStarted(
                end, account, identity.device_id, final.relative_to(self.run_dir).as_posix()
            )
        )
        self.fault("link", name, start, end, by=existing.name)
        device = DeviceProc(
            final,
            events_path(self.run_dir, name),
            self.run_dir / PLAN_FILE,
            self.logs,
            name=name,
            clock_file=self.clock.path,
            registry=self.registry,
        )
        self.devices[name] = device
        self.expected[name] = 0  # what it must hold is judged from the link on (the checker)
        device.start()
        device.wait_line("connected", PHASE)
        return device

    def fault(self, kind: str, target: str, start: float, end: float | None, **detail: Any) -> None:
        """Append one ``fault`` line (lab clock) to the record."""
        self.record.write(Fault(self.clock.now(), kind, target, start, end, detail))

    def window(self, seconds: float | None = None) -> None:
        """Let a fault last: the scenario's pacing, not a wait for something."""
        time.sleep(self.params.window if seconds is None else seconds)

    def start_all(self, only: list[str] | None = None) -> None:
        """Start the devices (all by default) and wait for their ``ready`` lines."""
        procs = [self.devices[n] for n in (only or list(self.devices))]
        for device in procs:
            device.spawn()
        for device in procs:
            device.wait_line("ready")
        for device in procs:
            device.wait_line("connected", PHASE)

    def composed(self) -> int:
        return sum(d.progress()[0] for d in self.devices.values())

    def wait_composed(self, total: int, devices: list[DeviceProc] | None = None) -> None:
        """Wait until the devices (all by default) composed ``total`` messages together."""
        procs = devices or list(self.devices.values())
        wait_until(
            lambda: sum(d.progress()[0] for d in procs) >= total,
            PHASE,
            f"{total} messages composed",
            *procs,
        )

    def complete(self, name: str) -> bool:
        device = self.devices[name]
        return device.find("done") is not None and device.progress()[1] >= self.expected[name]

    def wait_complete(self) -> None:
        """Wait until every device composed its plan (all ✓) and got what it should."""
        self.progress("waiting for every device to complete")
        procs = list(self.devices.values())
        wait_until(lambda: all(self.complete(n) for n in self.devices), PHASE, "the run", *procs)

    def wait_file(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait for a condition on files (events the devices log but do not print): re-checked
        on every process line, and at least every 0.1 s, until ``timeout``."""
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() >= deadline:
                raise LabProcError(f"timed out waiting for {what}")
            try:
                wait_until(cond, 0.1, what)
            except LabProcError:
                continue

    def events(self, name: str) -> list[dict[str, Any]]:
        """The events a device logged so far (a line cut by a kill is skipped)."""
        try:
            text = events_path(self.run_dir, name).read_text()
        except OSError:
            return []
        out = []
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def finish(self) -> None:
        """Let every device drain and exit, record ``settled``, join the relay's logs."""
        self.progress("finishing: draining every outbox")
        for device in self.devices.values():
            device.finish(PHASE)
        self.record.write(Settled(self.clock.now()))
        self.record.close()
        for hook in self.on_settled:
            hook()
        for server in self.servers:
            if server.alive:
                server.terminate()
        self.join_server_logs()
        self.close_proxy()

    def close_proxy(self) -> None:
        """Stop the fault proxy, if this run has one."""
        if self.proxy is not None:
            self.proxy.close()

    def join_server_logs(self) -> None:
        """Write ``RUN/server.log``: every relay start's stdout and stderr (for G6's scan)."""
        with (self.run_dir / SERVER_LOG).open("wb") as out:
            for server in self.servers:
                for path in sorted(self.logs.glob(f"{server.name}-*.std*")):
                    out.write(path.read_bytes())

    def totals(self) -> tuple[int, int]:
        """``(composed, received)`` over every device, from their last progress lines."""
        composed = sum(d.progress()[0] for d in self.devices.values())
        received = sum(d.progress()[1] for d in self.devices.values())
        return composed, received

    @property
    def planned(self) -> int:
        return sum(len(p.items) for p in self.workload.plans.values())
