"""The fault lab's named scenarios: a relay, a seeded workload, and one kind of fault.

Each :class:`Scenario` has a default seed, a quick variant (seconds, for the test suite) and a
full one, and a fault script run against a :class:`LabRun` (the relay, the device processes,
the lab clock and, for kernel scenarios, a :class:`~tidings.lab.netns.NetLab`).

A run directory gets the whole record (:mod:`.record`): the ``run`` and ``server`` lines, the
``device`` lines (from :meth:`Workload.setup`), one ``fault`` line per fault injected (written
when the fault ends, with its window on the lab clock), and ``settled`` once every device
finished (``finish`` drains its outbox). The runner (:mod:`.runner`) then calls the checker.

Invariants:

* Nothing waits by sleeping: waits follow the processes' JSON lines with deadlines
  (:func:`~tidings.lab.procs.wait_until`); the only sleeps are the fault windows themselves
  (how long a fault lasts is the scenario's pacing).
* Kernel scenarios (``kernel=True``) need :func:`~tidings.lab.netns.kernel_faults_available`
  to return None: the relay runs in the lab's server namespace on ``SERVER_ADDRESS`` and each
  device in its own client namespace; the accounts are registered from a client namespace too
  (``python -m tidings.lab.scenarios --setup``), since the root namespace cannot reach the relay.
* Every process is created in the run's :class:`ProcRegistry`; the caller owns its cleanup.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .clock import LabClock
from .netns import SERVER_ADDRESS, NetLab, argv_in
from .procs import DeviceProc, LabProcError, ProcRegistry, ServerProc, wait_until
from .proxy_thread import ThreadedProxy
from .record import Fault, JsonlWriter, RunStarted, ServerStarted, Settled
from .workload import PLAN_FILE, Workload, events_path

__all__ = [
    "DAYS",
    "SCENARIOS",
    "LabRun",
    "Params",
    "Scenario",
    "get",
]

#: Seconds in a day (the offline-for-days clock jump).
DAYS = 86400.0

#: Deadline of one phase of a run (seconds); a healthy run needs a fraction of it.
PHASE = 60.0

#: The server log the checker scans: every start's stdout and stderr, joined after the run.
SERVER_LOG = "server.log"

#: The relay's config for lab runs: sweep expired items often (the default is once a minute).
SERVER_CONFIG = "[server]\nexpiry_interval = 0.5\n"


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
        (run_dir / "relay.toml").write_text(SERVER_CONFIG)
        config = str(run_dir / "relay.toml")
        server_args = ["--rate", "10000", "--burst", "10000", "--config", config]
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
        self.devices: dict[str, DeviceProc] = {}
        self.namespaces: dict[str, str] = {}
        self.expected: dict[str, int] = {}
        self.proxy: ThreadedProxy | None = None

    # ------------------------------------------------------------ set up

    def setup(self) -> None:
        """Start the relay, register the workload's accounts, create the device processes."""
        self.progress("starting the relay")
        self.server.start()
        self.progress("registering accounts")
        names = list(self.workload.plans)
        if self.netlab is not None:
            for name, client_ns in zip(names, self.netlab.clients, strict=False):
                self.namespaces[name] = client_ns
            homes = self._setup_in(self.netlab.clients[0])
        else:
            url = self.server.url
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

    def _setup_in(self, ns: str) -> dict[str, Path]:
        """Register the workload from inside client namespace ``ns`` (a child process)."""
        spec = {
            "url": self.server.url,
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
        self.server.terminate()
        self.join_server_logs()
        self.close_proxy()

    def close_proxy(self) -> None:
        """Stop the fault proxy, if this run has one."""
        if self.proxy is not None:
            self.proxy.close()

    def join_server_logs(self) -> None:
        """Write ``RUN/server.log``: every relay start's stdout and stderr (for G6's scan)."""
        with (self.run_dir / SERVER_LOG).open("wb") as out:
            for path in sorted(self.logs.glob(f"{self.server.name}-*.std*")):
                out.write(path.read_bytes())

    def totals(self) -> tuple[int, int]:
        """``(composed, received)`` over every device, from their last progress lines."""
        composed = sum(d.progress()[0] for d in self.devices.values())
        received = sum(d.progress()[1] for d in self.devices.values())
        return composed, received

    @property
    def planned(self) -> int:
        return sum(len(p.items) for p in self.workload.plans.values())


# ----------------------------------------------------------------------------- scripts


def _thresholds(run: LabRun) -> list[int]:
    """Composed counts at which to inject the fault ``repeat`` times, spread over the plan."""
    n = run.params.repeat
    return [max(1, run.planned * (i + 1) // (n + 1)) for i in range(n)]


def server_crash(run: LabRun) -> None:
    run.start_all()
    for i, at in enumerate(_thresholds(run)):
        run.wait_composed(at)
        run.progress(f"kill -9 of the relay ({i + 1}/{run.params.repeat})")
        t = run.clock.now()
        run.server.kill9()
        run.fault("kill9", "server", t, None, n=i + 1)
        run.server.restart()
    run.wait_complete()


def client_crash(run: LabRun) -> None:
    run.start_all()
    names = sorted(run.devices)
    for i, at in enumerate(_thresholds(run)):
        run.wait_composed(at)
        victim = run.devices[run.rng.choice(names)]
        run.progress(f"kill -9 of {victim.name} ({i + 1}/{run.params.repeat})")
        t = run.clock.now()
        victim.kill9()
        run.fault("kill9", victim.name, t, None, n=i + 1)
        victim.start()
    run.wait_complete()


def server_outage(run: LabRun) -> None:
    run.start_all()
    for i, at in enumerate(_thresholds(run)):
        run.wait_composed(at)
        run.progress(f"relay down for {run.params.window:g} s ({i + 1}/{run.params.repeat})")
        t = run.clock.now()
        run.server.terminate()
        run.window()
        run.server.start()
        run.fault("server_down", "server", t, run.clock.now(), seconds=run.params.window)
    run.wait_complete()


def offline_for_days(run: LabRun) -> None:
    victim_account = run.params.users[1]
    victim = run.devices[f"{victim_account}.1"]
    others = [d for d in run.devices.values() if d is not victim]
    run.start_all()
    run.progress(f"{victim.name} goes offline")
    t0 = run.clock.now()
    victim.finish(PHASE)
    run.wait_composed(sum(len(run.workload.plans[d.name].items) for d in others) // 2, others)
    run.window()  # the messages composed so far reach the relay (✓) and wait there
    run.progress("the lab clock jumps 35 days")
    t = run.clock.now()
    run.clock.jump(35 * DAYS)
    run.fault("clock_jump", "all", t, None, days=35)

    def expired() -> set[str]:
        return {
            e["mid"]
            for d in others
            for e in run.events(d.name)
            if e.get("ev") == "status" and e.get("status") == "expired"
            if e.get("device") == victim.name
        }

    run.wait_file(lambda: bool(expired()), PHASE, f"✗ expired for {victim.name}")
    run.window()  # every sender gets its notices of the one sweep
    gone = expired()
    run.progress(f"{len(gone)} messages expired; {victim.name} comes back")
    run.expected[victim.name] -= len(gone)
    victim.start()
    run.fault("offline", victim.name, t0, run.clock.now(), expired=len(gone))
    run.wait_complete()


def flaky_wifi(run: LabRun) -> None:
    lab = _netlab(run)
    run.start_all()
    run.wait_composed(max(1, run.planned // 10))
    losses = {name: run.rng.randint(5, 30) for name in run.namespaces}
    run.progress("loss " + ", ".join(f"{n} {p}%" for n, p in losses.items()))
    t = run.clock.now()
    for name, percent in losses.items():
        lab.set_loss(run.namespaces[name], percent)
    run.window()
    for name in losses:
        lab.set_loss(run.namespaces[name], 0)
    end = run.clock.now()
    for name, percent in losses.items():
        run.fault("loss", name, t, end, percent=percent, namespace=run.namespaces[name])
    _reconnect_all(run)
    run.wait_complete()


def dead_zone(run: LabRun) -> None:
    lab = _netlab(run)
    run.start_all()
    names = sorted(run.namespaces)
    for i, at in enumerate(_thresholds(run)):
        run.wait_composed(at)
        name = run.rng.choice(names)
        run.progress(f"dead zone for {name}, {run.params.window:g} s ({i + 1})")
        t = run.clock.now()
        lab.dead_zone_start(run.namespaces[name])
        run.window()
        lab.dead_zone_end(run.namespaces[name])
        run.fault("dead_zone", name, t, run.clock.now(), namespace=run.namespaces[name])
        run.devices[name].reconnect()
    run.wait_complete()


def handoff(run: LabRun) -> None:
    lab = _netlab(run)
    run.start_all()
    names = sorted(run.namespaces)
    for i, at in enumerate(_thresholds(run)):
        run.wait_composed(at)
        name = run.rng.choice(names)
        device = run.devices[name]
        run.progress(f"handoff of {name} ({i + 1})")
        t = run.clock.now()
        since = len(device.lines)
        address = lab.handoff(run.namespaces[name])
        run.fault("handoff", name, t, None, address=address)
        # The old connection dies silently: the client's keepalive notices, then it reconnects.
        device.wait_line("disconnected", PHASE, since)
        device.reconnect()
    run.wait_complete()


def mixed(run: LabRun) -> None:
    """Everything at once: loss on every device while the relay and a device are killed -9,
    then a dead zone on one device and a frozen process (SIGSTOP) on another, before the air
    clears."""
    lab = _netlab(run)
    run.start_all()
    names = sorted(run.namespaces)
    first, second, third = _thresholds(run)[:3]
    run.wait_composed(first)
    losses = {name: run.rng.randint(5, 30) for name in names}
    run.progress("loss " + ", ".join(f"{n} {p}%" for n, p in losses.items()))
    t_loss = run.clock.now()
    for name, percent in losses.items():
        lab.set_loss(run.namespaces[name], percent)
    run.progress("kill -9 of the relay, in the lossy air")
    t = run.clock.now()
    run.server.kill9()
    run.fault("kill9", "server", t, None, n=1)
    run.server.restart()
    run.wait_composed(second)
    victim = run.devices[run.rng.choice(names)]
    run.progress(f"kill -9 of {victim.name}")
    t = run.clock.now()
    victim.kill9()
    run.fault("kill9", victim.name, t, None, n=1)
    victim.start()
    run.wait_composed(third)
    zone = run.rng.choice(names)
    t = run.clock.now()
    frozen = run.devices[run.rng.choice([n for n in names if n != zone])]
    run.progress(f"dead zone for {zone}, {frozen.name} frozen, {run.params.window:g} s")
    lab.dead_zone_start(run.namespaces[zone])
    frozen.stop()
    run.window()
    frozen.cont()
    lab.dead_zone_end(run.namespaces[zone])
    end = run.clock.now()
    run.fault("dead_zone", zone, t, end, namespace=run.namespaces[zone])
    run.fault("sigstop", frozen.name, t, end)
    for name in names:
        lab.set_loss(run.namespaces[name], 0)
    end = run.clock.now()
    for name, percent in losses.items():
        run.fault("loss", name, t_loss, end, percent=percent, namespace=run.namespaces[name])
    _reconnect_all(run)
    run.wait_complete()


def half_open(run: LabRun) -> None:
    """The article's silent failures through the user-space proxy: a stall (bytes held, the
    connection up), then half-open connections (nothing passes, nothing closes): only the
    application's keepalive can tell, and the devices reconnect through the proxy."""
    if run.proxy is None:
        raise LabProcError("half-open needs the fault proxy")
    proxy = run.proxy
    run.start_all()
    first, second = _thresholds(run)[:2]
    run.wait_composed(first)
    run.progress(f"proxy stalls every connection for {run.params.window:g} s")
    t = run.clock.now()
    proxy.call(proxy.proxy.stall)
    run.window()
    proxy.call(proxy.proxy.resume)
    run.fault("stall", "proxy", t, run.clock.now())
    run.wait_composed(second)
    run.progress("proxy turns every connection half-open (keepalive must notice)")
    marks = {name: len(device.lines) for name, device in run.devices.items()}
    t = run.clock.now()
    proxy.call(proxy.proxy.half_open)
    for name, device in run.devices.items():
        device.wait_line("disconnected", PHASE, marks[name])
    run.fault("half_open", "proxy", t, run.clock.now())
    run.wait_complete()


def _netlab(run: LabRun) -> NetLab:
    if run.netlab is None:
        raise LabProcError(f"{run.scenario.name} needs network namespaces")
    return run.netlab


def _reconnect_all(run: LabRun) -> None:
    for device in run.devices.values():
        if device.alive:
            device.reconnect()


# ----------------------------------------------------------------------------- the list

_THREE = ("alice", "bob", "carol")


def _p(
    messages: int, rate: float, window: float, repeat: int = 1, devices: tuple[int, ...] = (1, 2, 1)
) -> Params:
    return Params(_THREE, devices, messages, rate, window, repeat)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "server-crash",
            "repeated kill -9 of the relay under load, restarted on the same port",
            101,
            _p(15, 8.0, 0.0, repeat=2),
            _p(200, 10.0, 0.0, repeat=8),
            server_crash,
        ),
        Scenario(
            "client-crash",
            "kill -9 of a device mid-run, restarted on the same home",
            102,
            _p(15, 8.0, 0.0, repeat=2),
            _p(200, 10.0, 0.0, repeat=8),
            client_crash,
        ),
        Scenario(
            "server-outage",
            "the relay is down for a stretch while the devices keep composing",
            103,
            _p(15, 5.0, 1.5),
            _p(200, 5.0, 20.0, repeat=3),
            server_outage,
        ),
        Scenario(
            "offline-for-days",
            "a recipient is offline while the clock jumps 35 days: ✗ expired, rest delivered",
            104,
            _p(12, 6.0, 1.0, devices=(2, 1, 1)),
            _p(100, 5.0, 3.0, devices=(2, 1, 1)),
            offline_for_days,
        ),
        Scenario(
            "flaky-wifi",
            "sustained 5-30% packet loss on every client namespace (kernel)",
            105,
            _p(15, 3.0, 4.0),
            _p(200, 5.0, 30.0),
            flaky_wifi,
            kernel=True,
        ),
        Scenario(
            "dead-zone",
            "a device's radio goes dead (every packet dropped), then comes back (kernel)",
            106,
            _p(15, 4.0, 3.0),
            _p(200, 5.0, 20.0, repeat=3),
            dead_zone,
            kernel=True,
        ),
        Scenario(
            "handoff",
            "a device moves to a new address (WiFi to cellular); its connection dies (kernel)",
            107,
            _p(15, 4.0, 0.0),
            _p(200, 5.0, 0.0, repeat=3),
            handoff,
            kernel=True,
        ),
        Scenario(
            "half-open",
            "a stall, then half-open connections through a TCP proxy: keepalive notices (no root)",
            109,
            _p(15, 4.0, 2.0, repeat=2),
            _p(200, 5.0, 8.0, repeat=2),
            half_open,
            proxy=True,
        ),
        Scenario(
            "mixed",
            "all at once: loss everywhere, kill -9 of the relay and of a device, a dead zone",
            108,
            _p(15, 3.0, 2.0, repeat=3),
            _p(200, 5.0, 15.0, repeat=3),
            mixed,
            kernel=True,
        ),
    )
}


def get(name: str) -> Scenario:
    """The scenario ``name``. Raises KeyError with the known names."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None


def device_count(scenario: Scenario, quick: bool) -> int:
    """How many device processes (client namespaces) a variant needs."""
    return sum((scenario.quick if quick else scenario.full).devices)


# ----------------------------------------------------------------------------- setup child


def _setup_main(argv: list[str] | None = None) -> int:
    """``python -m tidings.lab.scenarios --setup SPEC``: register a workload (run inside a
    client namespace); print the homes as JSON."""
    p = argparse.ArgumentParser(prog="python -m tidings.lab.scenarios")
    p.add_argument("--setup", required=True, help="JSON: url, run_dir, clock, workload")
    spec = json.loads(p.parse_args(argv).setup)
    workload = Workload(**spec["workload"])
    clock = LabClock(Path(spec["clock"]))
    homes = workload.setup(spec["url"], Path(spec["run_dir"]), clock.now)
    print(json.dumps({name: str(home) for name, home in homes.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(_setup_main())
