"""The client's own backoff, with nobody telling it the network is back (G7).

Every other kernel scenario's devices call ``Client.reconnect_now()`` the moment they are
offline and poll it (:mod:`tidings.lab.device`), as an app does on a connectivity change: those
runs prove delivery, not that a client left alone comes back (the complaint of
https://github.com/chrisknepper/android-messages-desktop/issues/169: after the network came
back, "Unable to Connect" until the user refreshed by hand). ``own-backoff`` runs every device
with ``--no-hints`` and its connection log on, then cuts every device off twice: a dead zone
(every packet dropped, the link up: only the keepalive notices, and SYNs vanish) and the link
going down (connects fail at once with "network unreachable", so the backoff climbs to its
cap). Each window outlasts the keepalive's dead-after, so every connection dies.

Beyond the delivery rules (nothing lost, duplicated or reordered), each fault line carries
``reconnect_within``, the bound :func:`~tidings.lab.checker_link.liveness_bound` derives from the
devices' settings (keepalive timeout, connect timeout, backoff cap); the checker's
``unrecovered`` rule fails a device not in session again by then, and ``hinted`` one that ran
with hints. The fault line also reports ``recovered_in``, the seconds each device took, read
from its connection log. The quick variant caps the backoff at :data:`QUICK_SETTINGS`' 2 s and
runs a 2.5 s keepalive timeout so that the whole run takes seconds; the full one runs the
client's defaults (a 30 s cap, a 10 s keepalive timeout). Registered in
:data:`tidings.lab.scenarios.SCENARIOS`.
"""

from __future__ import annotations

from collections.abc import Callable

from ..client.config import ClientConfig
from .checker_link import liveness_bound, read_links, recovered_in
from .device_log import link_path
from .labrun import LabRun, Params, Scenario
from .netns import NetLab
from .procs import LabProcError

__all__ = [
    "BACKOFF_SCENARIOS",
    "QUICK_SETTINGS",
    "bound",
    "cut_all",
    "device_settings",
    "go_hintless",
    "own_backoff",
    "wait_recovered",
]

#: The quick variant's client settings: a 2 s backoff cap, a keepalive that declares a silent
#: connection dead after 2.5 s (the defaults are 30 s and 10 s: the full variant's).
QUICK_SETTINGS = {
    "keepalive_seconds": "1",
    "keepalive_timeout_seconds": "2.5",
    "reconnect_initial_seconds": "0.25",
    "reconnect_max_seconds": "2",
}


def device_settings(run: LabRun) -> dict[str, str]:
    """The client settings of this variant's devices (none for a full run: the defaults)."""
    return dict(QUICK_SETTINGS) if run.quick else {}


def bound(run: LabRun) -> float:
    """The liveness bound of this variant's devices, from their settings."""
    defaults = ClientConfig()
    settings = device_settings(run)
    cap = float(settings.get("reconnect_max_seconds", defaults.reconnect_max_seconds))
    dead = float(settings.get("keepalive_timeout_seconds", defaults.keepalive_timeout_seconds))
    return liveness_bound(cap, dead)


def go_hintless(run: LabRun) -> None:
    """Before the devices start: no hints, this variant's settings, connection logs on."""
    for name, device in run.devices.items():
        device.hints = False
        device.settings = device_settings(run)
        device.link_log = link_path(run.run_dir, name)


def wait_recovered(
    run: LabRun, names: list[str], start: float, end: float, within: float | None = None
) -> dict[str, float]:
    """Wait (at most ``within``, by default the liveness bound, plus a margin) until each
    device is in session after the fault that began at ``start``; return each one's seconds
    from ``end`` (from its log). One that did not come back is left out: the checker's
    ``unrecovered`` names it."""
    limit = (bound(run) if within is None else within) + 2.0

    def took() -> dict[str, float]:
        links, _ = read_links(run.run_dir, names)
        got = {n: recovered_in(links[n], start, end) for n in names}
        return {n: round(s, 3) for n, s in got.items() if s is not None}

    try:
        run.wait_file(lambda: len(took()) == len(names), limit, "every device in session")
    except LabProcError:
        run.progress("some device did not come back in time")
    return took()


def cut_all(
    run: LabRun, kind: str, cut: Callable[[str], None], heal: Callable[[str], None]
) -> None:
    """``cut`` every device's namespace, let the window pass, ``heal`` them; wait until every
    device is back by itself; one fault line per device with the bound and its time."""
    names = sorted(run.namespaces)
    run.progress(f"{kind} on every device, {run.params.window:g} s; no reconnect hints")
    start = run.clock.now()
    for name in names:
        cut(run.namespaces[name])
    run.window()
    for name in names:
        heal(run.namespaces[name])
    end = run.clock.now()
    took = wait_recovered(run, names, start, end)
    slowest = max(took.values(), default=float("nan"))
    run.progress(f"{len(took)}/{len(names)} devices back by themselves, slowest {slowest:.2f} s")
    for name in names:
        detail = {"namespace": run.namespaces[name], "hints": False}
        detail |= {"reconnect_within": bound(run), "recovered_in": took.get(name)}
        run.fault(kind, name, start, end, **detail)


def own_backoff(run: LabRun) -> None:
    """A dead zone, then a link down, on every device at once, each ``window`` seconds; the
    devices come back by their own backoff."""
    lab = _netlab(run)
    go_hintless(run)
    run.start_all()
    first, second = _thresholds(run)
    run.wait_composed(first)
    cut_all(run, "dead_zone", lab.dead_zone_start, lab.dead_zone_end)
    run.wait_composed(second)
    cut_all(run, "link_down", lab.link_down, lab.link_up)
    run.wait_complete()


def _thresholds(run: LabRun) -> tuple[int, int]:
    return max(1, run.planned // 4), max(2, run.planned * 2 // 3)


def _netlab(run: LabRun) -> NetLab:
    if run.netlab is None:
        raise LabProcError(f"{run.scenario.name} needs network namespaces")
    return run.netlab


_THREE = ("alice", "bob", "carol")

BACKOFF_SCENARIOS = (
    Scenario(
        "own-backoff",
        "dead zone, then link down, on every device; no reconnect hints: own backoff (kernel)",
        121,
        Params(_THREE, (1, 2, 1), 24, 2.0, 4.0),
        Params(_THREE, (1, 2, 1), 200, 3.0, 20.0),
        own_backoff,
        kernel=True,
        complaint="'Unable to Connect' after the network came back, until refreshed by hand",
        links=("https://github.com/chrisknepper/android-messages-desktop/issues/169",),
        invariant="G7: without any hint, every device back by its own backoff within the "
        "bound its settings give; nothing lost, duplicated or reordered",
    ),
)
