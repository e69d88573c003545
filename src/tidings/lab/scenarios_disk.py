"""A full disk: the relay's data directory, then a device's home, run out of space mid-run.

``disk-full`` reproduces the complaint "messages lost when the phone's storage was full"
(see :data:`DISK_SCENARIOS` for the public reports): an app that acks, shows or drops what it
could not store. The relay's data directory and one device's home are each a small tmpfs of
their own (:mod:`.mounts`, the files copied onto it before the relay restarts and the device
first starts). Once a quarter of the plan is composed the relay's tmpfs is filled with ballast:
the relay must answer STORE_UNAVAILABLE (the senders keep their messages in the outbox) and
never ✓ a message it did not commit. Then the device's home fills up: its next write fails,
``send()`` raises StoreUnavailable (the user sees "not sent") or a commit fails, and the device
stops, saying so (``storage_failed``). Then both are freed: the relay's next write succeeds, the
device is started again on its home and sends what it had to (the refused item again, as a user
re-sends it). Everything must arrive.

The checker's rules for it are :mod:`.checker_disk` (``ack_not_stored``, ``failure_hidden``,
``refused_but_queued``, ``disk_full_unfelt``) on top of ``lost`` and the others.
Registered in :data:`tidings.lab.scenarios.SCENARIOS`.
"""

from __future__ import annotations

from .labrun import PHASE, LabRun, Params, Scenario
from .mounts import fill, free

__all__ = ["DEVICE_TMPFS", "DISK_SCENARIOS", "RELAY_TMPFS", "disk_full"]

#: The relay's tmpfs: room for the quick and the full variant's database (a few MiB) before
#: the ballast takes the rest.
RELAY_TMPFS = 24 * 1024 * 1024
#: The device's tmpfs: its store is well under a MiB in the quick variant.
DEVICE_TMPFS = 8 * 1024 * 1024


def disk_full(run: LabRun) -> None:
    """The relay's disk fills at a quarter of the plan, the victim's (the second account's
    first device) once the relay refused a send; each stays full for a window, the relay's
    is freed first, then the victim's (and the victim started again)."""
    relay_dir = run.server.data_dir
    victim = run.devices[f"{run.params.users[1]}.1"]
    run.progress("the relay's data directory and a device's home move to small tmpfs mounts")
    run.server.terminate()
    run.mounts.mount_over(relay_dir, RELAY_TMPFS)
    run.server.start()
    run.mounts.mount_over(victim.home, DEVICE_TMPFS)
    run.start_all()
    run.wait_composed(max(1, run.planned // 4))

    run.progress("the relay's disk is full")
    t_relay = run.clock.now()
    relay_ballast = fill(relay_dir)
    run.wait_file(
        lambda: _refused(run, "STORE_UNAVAILABLE", t_relay) > 0,
        PHASE,
        "a send refused STORE_UNAVAILABLE",
    )
    run.window()

    run.progress(f"{victim.name}'s disk is full too")
    t_device = run.clock.now()
    device_ballast = fill(victim.home)
    line = victim.wait_line("storage_failed", PHASE)
    code = victim.wait_exit()
    run.progress(f"{victim.name} stopped (exit {code}): {line['storage_failed']['state']}")
    run.window()

    refused = _refused(run, "STORE_UNAVAILABLE", t_relay)
    free(relay_dir)
    run.progress(f"the relay's disk has room again ({refused} refusals while full)")
    run.fault("disk_full", "server", t_relay, run.clock.now(), ballast=relay_ballast,
              refused=refused)  # fmt: skip
    run.window()
    free(victim.home)
    run.progress(f"{victim.name}'s disk has room again; it starts on its home")
    victim.start()
    run.fault("disk_full", victim.name, t_device, run.clock.now(), ballast=device_ballast,
              exit=code)  # fmt: skip
    run.wait_complete()


def _refused(run: LabRun, code: str, since: float) -> int:
    """How many ``refused`` lines with ``code`` the devices wrote from ``since`` (lab clock)."""
    return sum(
        1
        for name in run.devices
        for e in run.events(name)
        if e.get("ev") == "refused" and e.get("code") == code and e.get("t", 0.0) >= since
    )


_THREE = ("alice", "bob", "carol")

DISK_SCENARIOS = (
    Scenario(
        "disk-full",
        "the relay's disk fills up, then a device's: refused, never a false ✓; freed, all sent",
        113,
        Params(_THREE, (1, 2, 1), 20, 4.0, 1.0),
        Params(_THREE, (1, 2, 1), 200, 5.0, 10.0),
        disk_full,
        mounts=True,
        complaint=(
            "a message sent while the disk is full is lost; a send fails for lack of storage and "
            "the user is not told"
        ),
        links=(
            "https://github.com/jens-maus/yam/issues/621",
            "https://github.com/BlueBubblesApp/bluebubbles-app/issues/2805",
        ),
        invariant=(
            "G1/G5: no ✓ for what the relay did not commit, failures shown, everything delivered "
            "after (ack_not_stored, failure_hidden, refused_but_queued, lost)"
        ),
    ),
)
