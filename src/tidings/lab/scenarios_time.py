"""Scenarios about time: device clocks that are wrong, and a clock corrected mid-run.

Registered in :data:`tidings.lab.scenarios.SCENARIOS` with the others (same
:class:`~tidings.lab.labrun.Scenario` shape, same runner and checker).

``clock-skew`` reproduces the complaint "messages out of order because a phone's clock was
wrong, then corrected" (https://github.com/signalapp/Signal-Android/issues/3619: a phone an
hour ahead, corrected, and new messages placed above older ones;
https://github.com/signalapp/Signal-Desktop/issues/780: a clock two hours ahead, corrected,
new messages not shown). One sender device runs 2 h fast and another 2 h slow (the device
process's ``--clock-skew``, on top of the lab clock; the relay's clock stays right); halfway
through, network time corrects the fast one — its wall clock steps back 2 h, so its later
messages carry *earlier* timestamps than its earlier ones. A receiver that sorted by the
sender's timestamp would show them above; the checker's ``reordered`` rule (display order
against the sender device's counters, i.e. its send order) fails such a run.
"""

from __future__ import annotations

from .labrun import LabRun, Params, Scenario

__all__ = ["FAST", "SLOW", "TIME_SCENARIOS", "clock_skew"]

#: How far the fast device's clock runs ahead of the lab clock, and the slow one's behind.
FAST = 2 * 3600.0
SLOW = -2 * 3600.0


def clock_skew(run: LabRun) -> None:
    """The first account's first device runs :data:`FAST`, the last account's first device
    :data:`SLOW`; once half the plan is composed the fast one's clock is corrected (a step)."""
    users = run.params.users
    fast, slow = run.devices[f"{users[0]}.1"], run.devices[f"{users[-1]}.1"]
    fast.clock_skew, slow.clock_skew = FAST, SLOW
    run.progress(f"{fast.name} runs {FAST / 3600:+g} h, {slow.name} {SLOW / 3600:+g} h")
    t0 = run.clock.now()
    run.start_all()
    run.wait_composed(run.planned // 2)
    run.progress(f"network time corrects {fast.name}: its clock steps back {FAST / 3600:g} h")
    t = run.clock.now()
    fast.skew(0.0)
    run.fault("clock_skew", fast.name, t0, t, seconds=FAST)
    run.fault("clock_step", fast.name, t, None, seconds=-FAST)
    run.wait_complete()
    run.fault("clock_skew", slow.name, t0, run.clock.now(), seconds=SLOW)


_THREE = ("alice", "bob", "carol")

TIME_SCENARIOS = (
    Scenario(
        "clock-skew",
        "one sender's clock 2 h fast (then corrected), another's 2 h slow; the relay's right",
        110,
        Params(_THREE, (1, 2, 1), 20, 5.0, 0.0),
        Params(_THREE, (1, 2, 1), 200, 5.0, 0.0),
        clock_skew,
        complaint="messages out of order after a phone's clock was wrong and then corrected",
        links=(
            "https://github.com/signalapp/Signal-Android/issues/3619",
            "https://github.com/signalapp/Signal-Desktop/issues/780",
        ),
        invariant=(
            "G4: display order is the sender device's send order, never its clock (reordered)"
        ),
    ),
)
