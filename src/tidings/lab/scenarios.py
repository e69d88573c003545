"""The fault lab's named scenarios: a seeded workload and the faults injected into it.

Each :class:`~tidings.lab.labrun.Scenario` has a default seed, a quick variant (seconds, for the
test suite) and a full one, and a fault script run against a :class:`~tidings.lab.labrun.LabRun`
(the relay, the device processes, the lab clock and, for kernel scenarios, a
:class:`~tidings.lab.netns.NetLab`; for proxy scenarios, a
:class:`~tidings.lab.proxy_thread.ThreadedProxy`). Each script records every fault it injects
(``run.fault``); the runner (:mod:`.runner`) finishes the run and calls the checker.

Kernel scenarios (``kernel=True``) need :func:`~tidings.lab.netns.kernel_faults_available` to
return None: the relay runs in the lab's server namespace and each device in its own client
namespace; the accounts are registered from a client namespace too (``python -m
tidings.lab.scenarios --setup``), since the root namespace cannot reach the relay.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from .clock import LabClock
from .labrun import DAYS, PHASE, LabRun, Params, Scenario
from .netns import NetLab
from .procs import LabProcError
from .scenarios_backoff import BACKOFF_SCENARIOS
from .scenarios_devices import DEVICE_SCENARIOS
from .scenarios_disk import DISK_SCENARIOS
from .scenarios_dns import DNS_SCENARIOS
from .scenarios_groups import GROUP_SCENARIOS
from .scenarios_hostile import HOSTILE_SCENARIOS
from .scenarios_mtu import MTU_SCENARIOS
from .scenarios_nodes import NODE_SCENARIOS
from .scenarios_push import PUSH_SCENARIOS
from .scenarios_storm import STORM_SCENARIOS
from .scenarios_time import TIME_SCENARIOS
from .workload import Workload

__all__ = [
    "DAYS",
    "SCENARIOS",
    "LabRun",
    "Params",
    "Scenario",
    "get",
]

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
    then a dead zone on one device and a frozen process (SIGSTOP) on another, then a link
    going down and up, before the air clears."""
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
    flap = run.rng.choice(names)
    run.progress(f"link of {flap} down and up again")
    t = run.clock.now()
    lab.link_down(run.namespaces[flap])
    run.window(run.params.window / 2)
    lab.link_up(run.namespaces[flap])
    run.fault("link_down", flap, t, run.clock.now(), namespace=run.namespaces[flap])
    for name in names:
        lab.set_loss(run.namespaces[name], 0)
    end = run.clock.now()
    for name, percent in losses.items():
        run.fault("loss", name, t_loss, end, percent=percent, namespace=run.namespaces[name])
    _reconnect_all(run)
    run.wait_complete()


def half_open(run: LabRun) -> None:
    """What a middlebox can do to TCP, through the user-space proxy: a slow, throttled path, a
    stall (bytes held, the connection up), resets (every connection aborted), then half-open
    connections (nothing passes, nothing closes): only the application's keepalive can tell,
    and the devices reconnect through the proxy."""
    if run.proxy is None:
        raise LabProcError("half-open needs the fault proxy")
    proxy, p = run.proxy, run.proxy.proxy
    run.start_all()
    first, second = _thresholds(run)[:2]
    run.wait_composed(first)
    run.progress(f"proxy: 150 ms latency, 16 KiB/s, then a stall, {run.params.window:g} s each")
    t = run.clock.now()
    proxy.call(p.latency, 0.15)
    proxy.call(p.throttle, 16 * 1024)
    run.window()
    proxy.call(p.latency, 0.0)
    proxy.call(p.throttle, None)
    run.fault("slow_path", "proxy", t, run.clock.now(), latency=0.15, throttle=16 * 1024)
    t = run.clock.now()
    proxy.call(p.stall)
    run.window()
    proxy.call(p.resume)
    run.fault("stall", "proxy", t, run.clock.now())
    run.progress("proxy resets every connection (RST)")
    t = run.clock.now()
    cut = _reconnected_after(run, lambda: proxy.call(p.reset_all))
    run.fault("reset", "proxy", t, run.clock.now(), disconnected=cut)
    run.wait_composed(second)
    run.progress("proxy turns every connection half-open (keepalive must notice)")
    t = run.clock.now()
    cut = _reconnected_after(run, lambda: proxy.call(p.half_open))
    run.fault("half_open", "proxy", t, run.clock.now(), disconnected=cut)
    run.wait_complete()


def _reconnected_after(run: LabRun, fault: Callable[[], None]) -> int:
    """Inject ``fault``, then wait until every device has a new connection (a device that was
    between connections at that moment just connects); return how many were cut off."""
    marks = {name: len(device.lines) for name, device in run.devices.items()}
    fault()
    for name, device in run.devices.items():
        device.wait_line("connected", PHASE, marks[name])
    return sum(d.find("disconnected", marks[n]) is not None for n, d in run.devices.items())


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
            complaint=(
                "messages waiting for delivery are lost for good when the server shuts down"
            ),
            links=("https://github.com/kontalk/tigase-extension/issues/67",),
            invariant=(
                "G1: no ✓'d message lost through kill -9 of the relay (lost, duplicated, reordered)"
            ),
        ),
        Scenario(
            "client-crash",
            "kill -9 of a device mid-run, restarted on the same home",
            102,
            _p(15, 8.0, 0.0, repeat=2),
            _p(200, 10.0, 0.0, repeat=8),
            client_crash,
            complaint=(
                "the app was killed between acking a message and saving it, or while sending: "
                "the message is gone"
            ),
            links=(
                "https://github.com/kontalk/androidclient/issues/589",
                "https://github.com/element-hq/element-x-ios/issues/517",
            ),
            invariant=(
                "G2: what send() returned for survives kill -9 of the device (lost_before_ack, "
                "lost)"
            ),
        ),
        Scenario(
            "server-outage",
            "the relay is down for a stretch while the devices keep composing",
            103,
            _p(15, 5.0, 1.5),
            _p(200, 5.0, 20.0, repeat=3),
            server_outage,
            complaint=(
                "after the server restarted the client never reconnected until the page was "
                "reloaded"
            ),
            links=("https://github.com/conversejs/converse.js/issues/1075",),
            invariant="G2/G7: queued work resumes by itself when the relay is back (lost)",
        ),
        Scenario(
            "offline-for-days",
            "a recipient is offline while the clock jumps 35 days: ✗ expired, rest delivered",
            104,
            _p(12, 6.0, 1.0, devices=(2, 1, 1)),
            _p(100, 5.0, 3.0, devices=(2, 1, 1)),
            offline_for_days,
            complaint=(
                "messages sent while a device was offline never arrived; a day later they showed "
                "undelivered"
            ),
            links=("https://github.com/iNPUTmice/Conversations/issues/1704",),
            invariant=(
                "G1/G5: each message delivered or its sender told ✗ expired, never both (lost, "
                "expired_and_delivered)"
            ),
        ),
        Scenario(
            "flaky-wifi",
            "sustained 5-30% packet loss on every client namespace (kernel)",
            105,
            _p(15, 3.0, 4.0),
            _p(200, 5.0, 30.0),
            flaky_wifi,
            kernel=True,
            complaint="a message sent on bad connectivity flickers and disappears for good",
            links=("https://github.com/element-hq/element-x-ios/issues/675",),
            invariant="G1–G4 under 5–30 % packet loss (lost, duplicated, reordered)",
        ),
        Scenario(
            "dead-zone",
            "a device's radio goes dead (every packet dropped), then comes back (kernel)",
            106,
            _p(15, 4.0, 3.0),
            _p(200, 5.0, 20.0, repeat=3),
            dead_zone,
            kernel=True,
            complaint=(
                "mobile data lost mid-send: the message stays stuck, not sent even after the "
                "data returns"
            ),
            links=("https://github.com/ubports/telegram-app/issues/99",),
            invariant=(
                "G7: the keepalive notices, the device reconnects and resumes from its cursor "
                "(lost, reordered)"
            ),
        ),
        Scenario(
            "handoff",
            "a device moves to a new address (WiFi to cellular); its connection dies (kernel)",
            107,
            _p(15, 4.0, 0.0),
            _p(200, 5.0, 0.0, repeat=3),
            handoff,
            kernel=True,
            complaint=(
                "messages stay unsent on mobile data until WiFi comes back; turning WiFi off "
                "leaves sending stuck"
            ),
            links=(
                "https://github.com/signalapp/Signal-Android/issues/8520",
                "https://github.com/wireapp/wire-ios/pull/3100",
            ),
            invariant=(
                "G7: the dead connection on the old address is noticed and resumed (lost, "
                "duplicated)"
            ),
        ),
        Scenario(
            "half-open",
            "TCP proxy: slow path, stall, resets, then half-open (keepalive notices); no root",
            109,
            _p(15, 4.0, 2.0, repeat=2),
            _p(200, 5.0, 8.0, repeat=2),
            half_open,
            proxy=True,
            complaint=(
                "the app does not notice its connection died and gets no message until it is opened"
            ),
            links=("https://github.com/iNPUTmice/Conversations/issues/876",),
            invariant=(
                "G7: a half-open or stalled TCP connection is detected within the keepalive "
                "interval (lost)"
            ),
        ),
        Scenario(
            "mixed",
            "all at once: loss, kill -9 of relay and device, dead zone, SIGSTOP, link flap",
            108,
            _p(15, 3.0, 2.0, repeat=3),
            _p(200, 5.0, 15.0, repeat=3),
            mixed,
            kernel=True,
            complaint="significant delay or missing messages on a mobile connection",
            links=("https://github.com/status-im/status-legacy/issues/21172",),
            invariant=(
                "G1–G7 with every fault at once (lost, duplicated, reordered, false_delivered)"
            ),
        ),
        *TIME_SCENARIOS,
        *STORM_SCENARIOS,
        *MTU_SCENARIOS,
        *DISK_SCENARIOS,
        *NODE_SCENARIOS,
        *HOSTILE_SCENARIOS,
        *BACKOFF_SCENARIOS,
        *DNS_SCENARIOS,
        *DEVICE_SCENARIOS,
        *PUSH_SCENARIOS,
        *GROUP_SCENARIOS,
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
