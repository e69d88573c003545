"""A group chat through faults: members join and leave while the relay dies (issue 12).

``group-chat`` registers four accounts: alice (two devices), bob, carol (two devices) and dave.
Every plan item is a group message to ``@lab`` (:mod:`.device_groups`): a device sends once its
account is a member. Through the user-space fault proxy (no root):

1. ``alice.1`` creates the group with bob and carol (``group_create``: every member device
   logged it);
2. under 150 ms of latency, alice adds dave and the proxy resets every connection mid-change
   (``slow_path``, ``reset``, ``group_add`` — its end: every member device, dave's included,
   logged dave as a member);
3. kill -9 of the relay, restarted on its port;
4. once carol's devices composed their (shorter) plans and hold every group message for them
   the relay ✓'d so far (the lab time that held for is the fault's ``owed_until``), the proxy
   stalls every connection and carol leaves from ``carol.1`` (``stall``, ``group_leave`` —
   its end: every remaining member device logged carol gone); then a second kill -9 of the
   relay, while the others still send.

After every device is done, the scenario waits (bounded) until every group message reached
every device it was for, and the group rules (:mod:`.checker_groups`) judge the run per member
device. Registered in :data:`tidings.lab.scenarios.SCENARIOS`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .checker_groups import ADD_FAULT, LEAVE_FAULT
from .device_groups import group_log_path
from .labrun import PHASE, LabRun, Params, Scenario
from .procs import DeviceProc, LabProcError, wait_until

__all__ = ["GROUP", "GROUP_SCENARIOS", "group_chat", "prepare_groups"]

#: The group's name; plan items to ``@GROUP`` are its messages.
GROUP = "lab"
#: The accounts: the admin, a plain member, the one who leaves, the one who joins.
ADMIN, MEMBER, LEAVER, JOINER = "alice", "bob", "carol", "dave"
#: Latency the proxy adds while dave is added (seconds each way).
LATENCY = 0.15


def prepare_groups(run: LabRun) -> None:
    """Every plan item a group message; the leaver's plan is its first half (it leaves once
    done: what it sent is all sealed while it is a member)."""
    plans = {}
    for name, plan in run.workload.plans.items():
        items = tuple(replace(i, to="@" + GROUP) for i in plan.items)
        if plan.account == LEAVER:
            items = items[: max(1, len(items) // 2)]
        plans[name] = replace(plan, items=items)
    run.workload.plans = plans


def _view(run: LabRun, name: str) -> dict[str, Any] | None:
    """The device's last ``group`` line for :data:`GROUP`, or None."""
    try:
        text = group_log_path(run.run_dir, name).read_text()
    except OSError:
        return None
    last = None
    for raw in text.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if line.get("ev") == "group" and line.get("name") == GROUP:
            last = line
    return last


def _members(run: LabRun, name: str) -> set[str] | None:
    view = _view(run, name)
    return set(view["members"]) if view is not None else None


def _wait_views(run: LabRun, members: set[str], what: str) -> None:
    """Wait until every device of ``members`` (and the leaver's, if it just left) holds the
    group with exactly ``members``."""
    names = [n for n in run.devices if n.rpartition(".")[0] in members]
    run.wait_file(lambda: all(_members(run, n) == members for n in names), PHASE, what)


def _command(device: DeviceProc, cmd: dict[str, Any]) -> None:
    """Send a ``group_*`` command to ``device``; wait for its answer (durable on return)."""
    since = len(device.lines)
    device.write(cmd)

    def answered() -> bool:
        return (
            device.find("group_done", since) is not None or device.find("error", since) is not None
        )

    wait_until(answered, PHASE, str(cmd["cmd"]), device)
    if device.find("group_done", since) is None:
        raise LabProcError(f"{device.name}: {cmd['cmd']} refused: {device.find('error', since)}")


def _kill9(run: LabRun, n: int) -> None:
    run.progress(f"kill -9 of the relay ({n})")
    t = run.clock.now()
    run.server.kill9()
    run.fault("kill9", "server", t, None, n=n)
    run.server.restart()


def group_chat(run: LabRun) -> None:
    """Create, add under latency and resets, kill -9, leave under a stall, kill -9."""
    if run.proxy is None:
        raise LabProcError("group-chat needs the fault proxy")
    proxy, p = run.proxy, run.proxy.proxy
    admin, leaver = run.devices[f"{ADMIN}.1"], run.devices[f"{LEAVER}.1"]
    run.start_all()
    members = {ADMIN, MEMBER, LEAVER}
    run.progress(f"{admin.name} creates the group with {MEMBER} and {LEAVER}")
    t = run.clock.now()
    _command(admin, {"cmd": "group_create", "name": GROUP, "members": [MEMBER, LEAVER]})
    _wait_views(run, members, "every member device in the group")
    run.fault("group_create", GROUP, t, run.clock.now(), members=sorted(members))

    run.wait_composed(max(1, run.planned // 4))
    run.progress(f"{ADMIN} adds {JOINER} under {LATENCY * 1000:g} ms latency; proxy resets")
    t = run.clock.now()
    proxy.call(p.latency, LATENCY)
    _command(admin, {"cmd": "group_add", "name": GROUP, "members": [JOINER]})
    t_reset = run.clock.now()
    proxy.call(p.reset_all)
    run.fault("reset", "proxy", t_reset, run.clock.now())
    members.add(JOINER)
    _wait_views(run, members, f"{JOINER} in every member device's group")
    end = run.clock.now()
    proxy.call(p.latency, 0.0)
    run.fault("slow_path", "proxy", t, run.clock.now(), latency=LATENCY)
    run.fault(ADD_FAULT, JOINER, t, end, by=admin.name)

    run.wait_composed(max(1, run.planned // 2))
    _kill9(run, 1)

    carol = [d for n, d in run.devices.items() if n.startswith(LEAVER + ".")]
    _wait_done(run, carol, f"{LEAVER}'s devices composed")
    owed_until = _drained(run, [d.name for d in carol])
    run.progress(f"the proxy stalls every connection; {leaver.name} leaves the group")
    t = run.clock.now()
    proxy.call(p.stall)
    _command(leaver, {"cmd": "group_leave", "name": GROUP})
    run.window()
    proxy.call(p.resume)
    run.fault("stall", "proxy", t, run.clock.now())
    members.discard(LEAVER)
    _wait_views(run, members, f"{LEAVER} gone from every member device's group")
    run.fault(LEAVE_FAULT, LEAVER, t, run.clock.now(), by=leaver.name, owed_until=owed_until)
    _kill9(run, 2)
    run.wait_complete()
    run.progress("waiting for every group message to reach every device it was for")
    try:
        staying = [n for n in run.devices if not n.startswith(LEAVER + ".")]  # owed no more
        run.wait_file(lambda: _all_arrived(run, staying), PHASE, "every group message delivered")
    except LabProcError as exc:  # the checker names what is missing
        run.progress(str(exc))


def _wait_done(run: LabRun, devices: list[DeviceProc], what: str) -> None:
    done: Callable[[], bool] = lambda: all(d.find("done") is not None for d in devices)  # noqa: E731
    wait_until(done, PHASE, what, *devices)


def _acked_at(run: LabRun, sender: str) -> dict[str, float]:
    """When the relay first ✓'d each of ``sender``'s messages (its first status line)."""
    out: dict[str, float] = {}
    for e in run.events(sender):
        if e.get("ev") == "status" and e.get("status") in ("sent", "delivered", "read"):
            out.setdefault(str(e.get("mid")), float(e.get("t", 0.0)))
    return out


def _all_arrived(run: LabRun, devices: list[str] | None = None, until: float | None = None) -> bool:
    """Whether each of ``devices`` (all by default) has every group message sealed for its
    account (group logs) — with ``until``, every such message the relay ✓'d by then."""
    names = devices if devices is not None else list(run.devices)
    got = {n: {e.get("mid") for e in run.events(n) if e.get("ev") == "received"} for n in names}
    for sender in run.devices:
        try:
            text = group_log_path(run.run_dir, sender).read_text()
        except OSError:
            continue
        acked = _acked_at(run, sender) if until is not None else {}
        for raw in text.splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if line.get("ev") != "group_sent":
                continue
            if until is not None and acked.get(line["mid"], until + 1) > until:
                continue
            for n in names:
                mine = n != sender and n.rpartition(".")[0] in line["members"]
                if mine and line["mid"] not in got[n]:
                    return False
    return True


def _drained(run: LabRun, devices: list[str]) -> float:
    """Wait until ``devices`` hold every group message for them the relay ✓'d; the lab
    time that held for (every message ✓'d by then is theirs)."""
    held: list[float] = []

    def check() -> bool:
        now = run.clock.now()
        if _all_arrived(run, devices, now):
            held.append(now)
            return True
        return False

    run.wait_file(check, PHASE, f"{', '.join(devices)} caught up")
    return held[-1]


_FOUR = (ADMIN, MEMBER, LEAVER, JOINER)

GROUP_SCENARIOS = (
    Scenario(
        "group-chat",
        "a group of 3-4 accounts (two with two devices): a join under resets, a leave under a "
        "stall, two kill -9 of the relay; no root",
        151,
        Params(_FOUR, (2, 1, 2, 1), 12, 3.0, 1.0, read_probability=0.0),
        Params(_FOUR, (2, 1, 2, 1), 100, 5.0, 5.0, read_probability=0.0),
        group_chat,
        proxy=True,
        prepare=prepare_groups,
        complaint=(
            "a group message does not reach every member; a newly added member gets nothing "
            "from the group; a member who left keeps receiving its messages"
        ),
        links=(
            "https://github.com/signalapp/Signal-Android/issues/2701",
            "https://github.com/status-im/status-legacy/issues/1250",
            "https://github.com/signalapp/Signal-Android/issues/8443",
        ),
        invariant=(
            "G1–G4 per member device: nothing lost, duplicated or reordered; a leaver gets nothing "
            "sent after its leave; a joiner everything after its join (group_lost, "
            "group_duplicated, group_reordered, leaver_received, stale_members)"
        ),
    ),
)
