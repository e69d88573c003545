"""Several devices per person: every device of an account in step, through faults.

``multi-device`` gives each of three accounts three devices; every device sends and reads (a
message read on one device is read on all of them: read-state sync, issue 13), while one of
them is killed -9 and restarted on its home, then the relay is killed -9 and restarted. The
delivery rules judge every device (sent-message copies included); then the scenario waits,
bounded, for every account's devices to agree on what was read, writes the ``read_sync``
line, and the checker's ``read_diverged`` (:mod:`.checker_reads`) fails every message still
read on one device and unread on another. The complaint it reproduces: "I read it on my
laptop, my phone still says unread" (https://github.com/signalapp/Signal-Desktop/issues/4404,
https://github.com/element-hq/element-web/issues/2706). Registered in
:data:`tidings.lab.scenarios.SCENARIOS`.
"""

from __future__ import annotations

from .checker_reads import READ_FAULT, divergence
from .checker_view import StoreSnapshot, read_store
from .labrun import PHASE, LabRun, Params, Scenario

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
    """kill -9 of a device, then of the relay, under load; then read-state convergence."""
    run.start_all()
    names = sorted(run.devices)
    first, second = (run.planned * k // 3 for k in (1, 2))
    run.wait_composed(max(1, first))
    victim = run.devices[run.rng.choice(names)]
    run.progress(f"kill -9 of {victim.name}")
    t = run.clock.now()
    victim.kill9()
    run.fault("kill9", victim.name, t, None, n=1)
    victim.start()
    run.wait_composed(max(1, second))
    run.progress("kill -9 of the relay")
    t = run.clock.now()
    run.server.kill9()
    run.fault("kill9", "server", t, None, n=1)
    run.server.restart()
    run.wait_complete()
    accounts = _accounts(run)
    run.progress("waiting for every account's devices to agree on what was read")
    t = run.clock.now()
    run.window(READ_DELAY)  # the last reads of the run are still being made
    run.wait_file(lambda: _diverged(run, accounts) == 0, PHASE, "read state to converge")
    run.fault(READ_FAULT, "all", t, run.clock.now(), accounts=len(accounts))


_THREE = ("alice", "bob", "carol")

DEVICE_SCENARIOS = (
    Scenario(
        "multi-device",
        "three devices per account; a device and the relay killed -9; read state in step",
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
            "G1–G5 on every device of every account, and read state converges "
            "(lost, duplicated, reordered, read_diverged)"
        ),
    ),
)
