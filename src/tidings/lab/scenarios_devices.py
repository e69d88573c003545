"""Several devices per person: every device of an account in step, through faults.

``multi-device`` gives each of three accounts three devices; every device sends and reads (a
message read on one device is read on all of them: read-state sync, issue 13), while one of
them is killed -9 and restarted on its home, then the relay is killed -9 and restarted. The
delivery rules judge every device (sent-message copies included); then the scenario waits,
bounded, for every account's devices to agree on what was read and on each sent message's
statuses, writes the ``in_step`` line, and the checker's ``read_diverged`` and
``status_diverged`` (:mod:`.checker_reads`) fail every message the devices still disagree on.
The complaint it reproduces: "I read it on my laptop, my phone still says unread" (https://github.com/signalapp/Signal-Desktop/issues/4404,
https://github.com/element-hq/element-web/issues/2706). Registered in
:data:`tidings.lab.scenarios.SCENARIOS`.
"""

from __future__ import annotations

from .checker_reads import IN_STEP_FAULT, divergence
from .checker_view import StoreSnapshot, read_store
from .labrun import PHASE, LabRun, Params, Scenario
from .procs import wait_until

__all__ = ["DEVICE_SCENARIOS", "multi_device"]

#: Seconds a device waits at most before it reads a message (the workload's ``read_delay``):
#: after the run completes, reads can still be on their way for that long.
READ_DELAY = 0.5


def _accounts(run: LabRun) -> dict[str, list[str]]:
    accounts: dict[str, list[str]] = {}
    for name in sorted(run.devices):
        accounts.setdefault(name.rpartition(".")[0], []).append(name)
    return accounts


def _diverged(run: LabRun, accounts: dict[str, list[str]]) -> int:
    stores: dict[str, StoreSnapshot] = {
        name: read_store(name, run.devices[name].home) for name in run.devices
    }
    return len(divergence(stores, accounts))


def multi_device(run: LabRun) -> None:
    """kill -9 of a device while a new one is linked, then of the relay, then an unlink, under
    load; then reads and statuses in step."""
    run.start_all()
    names = sorted(run.devices)
    first, second = (run.planned * k // 3 for k in (1, 2))
    run.wait_composed(max(1, first))
    victim = run.devices[run.rng.choice(names)]
    run.progress(f"kill -9 of {victim.name}, and a new device linked to the first account")
    t = run.clock.now()
    victim.kill9()
    run.fault("kill9", victim.name, t, None, n=1)
    linker = next(run.devices[n] for n in names if n.endswith(".1") and n != victim.name)
    linked = run.link_device(linker)
    victim.start()
    run.wait_composed(max(1, second))
    run.progress(f"kill -9 of the relay ({linked.name} linked)")
    t = run.clock.now()
    run.server.kill9()
    run.fault("kill9", "server", t, None, n=1)
    run.server.restart()
    gone = _unlink_one(run, names, linked.name)
    run.wait_complete()
    accounts = {a: [d for d in ds if d != gone] for a, ds in _accounts(run).items()}
    run.progress("waiting for every account's devices to agree on reads and statuses")
    t = run.clock.now()
    run.window(READ_DELAY)  # the last reads of the run are still being made
    run.wait_file(
        lambda: _diverged(run, accounts) == 0, PHASE, "read state and statuses to converge"
    )
    run.fault(IN_STEP_FAULT, "all", t, run.clock.now(), accounts=len(accounts))


def _unlink_one(run: LabRun, names: list[str], linked: str) -> str:
    """Unlink the last device of the last account (a lost laptop) once it composed its plan
    (an unlinked device can send nothing more), from that account's first device."""
    gone = names[-1]
    device = run.devices[gone]
    wait_until(lambda: device.find("done") is not None, PHASE, f"{gone} composed", device)
    account, _, number = gone.rpartition(".")
    t = run.clock.now()
    run.progress(f"{gone} is unlinked by {account}.1")
    run.devices[f"{account}.1"].unlink(int(number))
    device.wait_line("disconnected", PHASE)  # the relay closed its session: it is out
    run.fault("unlink", gone, t, run.clock.now(), by=f"{account}.1")
    del run.devices[gone]  # stopped with the others' processes at the end, not finished
    run.expected.pop(gone, None)
    device.kill9()
    return gone


_THREE = ("alice", "bob", "carol")

DEVICE_SCENARIOS = (
    Scenario(
        "multi-device",
        "three devices per account; a device and the relay killed -9; reads and ticks in step",
        124,
        Params(_THREE, (3, 3, 3), 6, 4.0, 0.0, read_probability=0.8),
        Params(_THREE, (3, 3, 3), 120, 5.0, 0.0, read_probability=0.8),
        multi_device,
        complaint=(
            "a message read on the laptop still shows unread on the phone; a linked device "
            "misses messages"
        ),
        links=(
            "https://github.com/signalapp/Signal-Desktop/issues/4404",
            "https://github.com/element-hq/element-web/issues/2706",
        ),
        invariant=(
            "G1–G5 on every device of every account; reads and statuses converge "
            "(lost, duplicated, reordered, read_diverged, status_diverged)"
        ),
    ),
)
