"""Cursor safety: a device catching up on a long queue while its connection keeps breaking.

``reconnect-storm`` reproduces the complaint "a month of history silently skipped after a
reconnect" (https://github.com/processone/fluux-messenger/pull/534: a live message arriving
during the post-connect catch-up moved the catch-up cursor past the offline gap, which was never
fetched; also https://github.com/conversejs/converse.js/issues/2940). One device stays offline
while the others queue a few hundred messages for it; then it comes back and, during its
catch-up, the fault proxy resets every connection again and again (and the device is killed -9
once, restarted on its home) while the others keep sending to it live. The checker's
``skipped`` rule fails a run in which a device holds a message the relay queued for it after
one it never got (its cursor moved past an unfetched item); ``lost`` and ``duplicated`` cover
the rest. Registered in :data:`tidings.lab.scenarios.SCENARIOS`.
"""

from __future__ import annotations

from .labrun import PHASE, LabRun, Params, Scenario
from .procs import DeviceProc, LabProcError, wait_until

__all__ = ["STORM_SCENARIOS", "reconnect_storm"]


def reconnect_storm(run: LabRun) -> None:
    """The last account's first device is the victim; ``repeat`` connection breaks spread over
    its catch-up (each after it showed another ``queued / (repeat + 1)`` messages since its last
    reconnect), the middle one a kill -9 of the victim. Each fault line says how many it had
    shown (``received``) of the ``queued``: breaks after the catch-up hit live traffic only."""
    if run.proxy is None:
        raise LabProcError("reconnect-storm needs the fault proxy")
    proxy, p = run.proxy, run.proxy.proxy
    victim = run.devices[f"{run.params.users[-1]}.1"]
    others = [d for d in run.devices.values() if d is not victim]
    run.start_all([d.name for d in others])
    t0 = run.clock.now()
    run.progress(f"{victim.name} offline while the others queue for it")
    run.wait_composed(sum(len(run.workload.plans[d.name].items) for d in others) * 2 // 3, others)
    queued = _queued_for(run, victim)
    run.progress(f"{victim.name} comes back to ~{queued} queued messages; the storm begins")
    victim.start()
    run.fault("offline", victim.name, t0, run.clock.now(), queued=queued)
    n = run.params.repeat
    for i in range(n):
        # each break comes once the victim showed another slice of its queue since the last one
        want = victim.progress()[1] + max(1, queued // (n + 1))
        _wait_received(victim, min(want, run.expected[victim.name]))
        got = victim.progress()[1]
        t = run.clock.now()
        if i == n // 2:
            run.progress(f"kill -9 of {victim.name} mid-catch-up ({got} received)")
            victim.kill9()
            run.fault("kill9", victim.name, t, None, n=i + 1, received=got)
            victim.start()
            victim.wait_line("connected", PHASE)
            continue
        mark = len(victim.lines)
        proxy.call(p.reset_all)  # the others reconnect by themselves; the storm follows the victim
        victim.wait_line("connected", PHASE, mark)
        run.fault("reset", "proxy", t, run.clock.now(), n=i + 1, received=got, of=queued)
    run.wait_complete()


def _queued_for(run: LabRun, victim: DeviceProc) -> int:
    """How many messages composed so far target ``victim`` (its offline queue, roughly)."""
    account = victim.name.rpartition(".")[0]
    return sum(
        1
        for d in run.devices.values()
        if d is not victim
        for e in run.events(d.name)
        if e.get("ev") == "composed" and (e["to"] == account or d.name.startswith(account + "."))
    )


def _wait_received(device: DeviceProc, total: int) -> None:
    wait_until(
        lambda: device.progress()[1] >= total, PHASE, f"{device.name} received {total}", device
    )


_THREE = ("alice", "bob", "carol")

STORM_SCENARIOS = (
    Scenario(
        "reconnect-storm",
        "a device catches up on a long queue while its connection is reset again and again",
        111,
        Params(_THREE, (1, 2, 1), 450, 100.0, 0.0, repeat=5),
        Params(_THREE, (1, 2, 1), 3000, 100.0, 0.0, repeat=15),
        reconnect_storm,
        proxy=True,
        complaint=(
            "a live message during the catch-up after a reconnect moved the cursor past a month "
            "of history"
        ),
        links=(
            "https://github.com/processone/fluux-messenger/pull/534",
            "https://github.com/conversejs/converse.js/issues/2940",
        ),
        invariant="G1/G7: no cursor moves past an unfetched item (skipped, lost, duplicated)",
    ),
)
