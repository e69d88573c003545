"""The relay addressed by name: a resolver that fails, and a route to the relay that goes away.

Both scenarios register the devices with ``ws://relay.tidings-lab.test:PORT/v1`` (a ``.test``
name, RFC 6761 §6.2); the lab runs its own resolver (:mod:`tidings.lab.dns_server`) on the
bridge (10.77.0.1:53) and every client namespace resolves through it
(:meth:`~tidings.lab.netns.NetLab.use_resolver`), while the relay listens on the routed
:data:`~tidings.lab.netns.RELAY_ADDRESS`. Devices run without reconnect hints, on the quick
settings of :mod:`.scenarios_backoff`: what brings them back is the client alone.

``dns-failure`` reproduces "the app cannot connect while DNS is broken although the server is
fine": https://github.com/signalapp/Signal-Android/issues/7869 and
https://github.com/signalapp/Signal-Desktop/issues/2429 (the service's name resolved to
127.0.0.1 for a while: "Not delivered", "Disconnected, attempting reconnect in 60 seconds"),
https://github.com/eclipse-paho/paho.mqtt.c/issues/996 (an auto-reconnecting client that never
reconnected once its resolver configuration was fixed). Three times the resolver breaks — it
stops answering, then answers SERVFAIL, then answers a stale address (:data:`WRONG_ADDRESS`,
where no relay is any more) — and while it is broken the relay restarts, so every device must
connect again *during* the failure: through the last address that proved to be the relay
(:class:`~tidings.client.addresses.RelayAddresses`). Each restart's fault line per device
carries ``reconnect_within`` = :func:`dns_bound` (the connect timeout, the backoff cap, the
resolver timeout, one attempt delay and the slack); the resolver stays broken until every
device is back or that bound has passed, so a client that forgot the address fails the
checker's ``unrecovered``.

``route-withdrawal`` reproduces a route that disappears while DNS still answers (a VPN or
mobile network withdrawing a prefix; https://github.com/telegramdesktop/tdesktop/issues/4920:
after a VPN closed, "reconnect in xy seconds" forever, until a reboot): the route to the relay
is deleted (``ip route del``: connects fail at once, "network unreachable"), then, after it
came back, pointed at a next hop nobody has (connects hang until ARP gives up). Each window
outlasts the keepalive's dead-after; the fault lines carry the liveness bound of
:mod:`.scenarios_backoff`.

Both: nothing lost, duplicated or reordered (the delivery rules), and every device back by
itself (``unrecovered``, ``hinted``). Registered in :data:`tidings.lab.scenarios.SCENARIOS`.
"""

from __future__ import annotations

from ..client.config import ClientConfig
from ..client.connect import ATTEMPT_DELAY, CONNECT_TIMEOUT, RESOLVE_TIMEOUT
from .checker_link import RECOVERY_SLACK
from .dns import Mode
from .dns_server import ResolverProc
from .labrun import LabRun, Params, Scenario
from .netns import RELAY_ADDRESS, SERVER_ADDRESS, NetLab
from .procs import LabProcError
from .scenarios_backoff import bound, cut_all, device_settings, go_hintless, wait_recovered

__all__ = [
    "DNS_SCENARIOS",
    "RELAY_NAME",
    "WRONG_ADDRESS",
    "dns_bound",
    "dns_failure",
    "prepare_named_relay",
    "route_withdrawal",
]

#: The relay's name in the lab's zone (``.test`` is reserved for testing, RFC 6761 §6.2).
RELAY_NAME = "relay.tidings-lab.test"
#: The stale answer: routed to the server namespace like the relay's address, but nobody has
#: it there (the relay "moved"): connects to it go unanswered or fail.
WRONG_ADDRESS = "10.78.0.2"

#: The resolver's failures, in the order ``dns-failure`` injects them.
DNS_FAULTS = (Mode.TIMEOUT, Mode.SERVFAIL, Mode.WRONG)


def dns_bound(run: LabRun) -> float:
    """Seconds after the relay is back by which a device whose resolver fails must be in
    session again: an attempt begun while the relay was down that waits out the connect
    timeout on a stale address (≤ :data:`~tidings.client.connect.CONNECT_TIMEOUT`), its
    backoff wait (≤ the cap), the next attempt's lookup that times out (≤
    :data:`~tidings.client.connect.RESOLVE_TIMEOUT`) and its attempt delay before the last
    good address (:data:`~tidings.client.connect.ATTEMPT_DELAY`), and :data:`RECOVERY_SLACK`.
    A client without the last good address cannot meet it: the resolver stays broken past it."""
    cap = device_settings(run).get("reconnect_max_seconds")
    cap_s = float(cap) if cap is not None else ClientConfig().reconnect_max_seconds
    return CONNECT_TIMEOUT + cap_s + RESOLVE_TIMEOUT + ATTEMPT_DELAY + RECOVERY_SLACK


def prepare_named_relay(run: LabRun) -> None:
    """Before the relay starts: the lab's resolver in the server namespace, every client
    namespace resolving through it, the relay on the routed address and known by name."""
    lab = _netlab(run)
    names = {RELAY_NAME: RELAY_ADDRESS}
    resolver = ResolverProc(
        lab.server_ns, SERVER_ADDRESS, names, WRONG_ADDRESS, run.logs, registry=run.registry
    )
    run.progress(f"starting the lab's resolver: {RELAY_NAME} is {RELAY_ADDRESS}")
    resolver.start()
    lab.use_resolver(SERVER_ADDRESS)
    run.server.host = RELAY_ADDRESS
    run.relay_name = RELAY_NAME


def _resolver(run: LabRun) -> ResolverProc:
    found = [p for p in run.registry.procs if isinstance(p, ResolverProc)]
    if not found:
        raise LabProcError(f"{run.scenario.name} has no resolver (prepare_named_relay)")
    return found[0]


def dns_failure(run: LabRun) -> None:
    """Each of :data:`DNS_FAULTS` in turn; during each, the relay restarts."""
    resolver = _resolver(run)
    go_hintless(run)
    run.start_all()
    names = sorted(run.devices)
    within = dns_bound(run)
    for i, mode in enumerate(DNS_FAULTS):
        run.wait_composed(max(1, run.planned * (i + 1) // (len(DNS_FAULTS) + 1)))
        run.progress(f"resolver: {mode.value}, then the relay restarts while it is")
        t0 = run.clock.now()
        before = resolver.set_mode(mode)
        run.window()
        k0 = run.clock.now()
        run.server.terminate()
        run.server.start()
        k1 = run.clock.now()
        took = wait_recovered(run, names, k0, k1, within)
        slowest = max(took.values(), default=float("nan"))
        run.progress(f"{len(took)}/{len(names)} back while DNS is {mode.value}, {slowest:.2f} s")
        after = resolver.set_mode(Mode.ANSWER)
        t1 = run.clock.now()
        queries = {k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)}
        run.fault(f"dns_{mode.value}", "resolver", t0, t1, queries=queries)
        for name in names:
            detail = {"dns": mode.value, "hints": False, "reconnect_within": within}
            run.fault("relay_restart", name, k0, k1, **detail, recovered_in=took.get(name))
    run.wait_complete()


def route_withdrawal(run: LabRun) -> None:
    """The route to the relay deleted, then pointed at a dead next hop, on every device."""
    lab = _netlab(run)
    go_hintless(run)
    run.start_all()
    run.progress(f"liveness bound {bound(run):g} s; the resolver answers throughout")
    run.wait_composed(max(1, run.planned // 4))
    cut_all(run, "route_withdrawn", lab.withdraw_route, lab.restore_route)
    run.wait_composed(max(2, run.planned * 2 // 3))
    cut_all(run, "route_dead_hop", lab.dead_hop, lab.restore_route)
    run.wait_complete()


def _netlab(run: LabRun) -> NetLab:
    if run.netlab is None:
        raise LabProcError(f"{run.scenario.name} needs network namespaces")
    return run.netlab


_THREE = ("alice", "bob", "carol")

DNS_SCENARIOS = (
    Scenario(
        "dns-failure",
        "relay by name: resolver times out, SERVFAILs, answers stale; relay restarts (kernel)",
        122,
        Params(_THREE, (1, 2, 1), 30, 2.0, 1.5),
        Params(_THREE, (1, 2, 1), 200, 3.0, 20.0),
        dns_failure,
        kernel=True,
        prepare=prepare_named_relay,
        complaint="not delivered while DNS was broken although the server was fine; a client "
        "that never came back after its resolver was fixed",
        links=(
            "https://github.com/signalapp/Signal-Android/issues/7869",
            "https://github.com/signalapp/Signal-Desktop/issues/2429",
            "https://github.com/eclipse-paho/paho.mqtt.c/issues/996",
        ),
        invariant="G7: every device back within the bound while DNS is broken (last good "
        "address); nothing lost, duplicated or reordered",
    ),
    Scenario(
        "route-withdrawal",
        "relay by name: its route deleted, then via a dead next hop; DNS answers (kernel)",
        123,
        Params(_THREE, (1, 2, 1), 24, 2.0, 4.0),
        Params(_THREE, (1, 2, 1), 200, 3.0, 20.0),
        route_withdrawal,
        kernel=True,
        prepare=prepare_named_relay,
        complaint="after a VPN closed, 'reconnect in xy seconds' without success until a reboot",
        links=("https://github.com/telegramdesktop/tdesktop/issues/4920",),
        invariant="G7: every device back by itself within the bound once the route returns; "
        "nothing lost, duplicated or reordered",
    ),
)
