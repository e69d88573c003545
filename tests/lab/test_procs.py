"""The fault lab's processes, clock and device driver, with a real relay and real devices.

Each process test starts ``tidings server`` (:class:`ServerProc`) and device processes
(:class:`DeviceProc`, :mod:`tidings.lab.device`) following a small seeded :class:`Workload`,
breaks one of them (``kill -9`` of the relay or of a device, SIGSTOP/SIGCONT, a clock jump),
lets the run finish, and then checks from the devices' own stores that every recipient device
stored every message exactly once and that no plan item was composed twice.

Nothing sleeps: every wait follows the processes' JSON lines with a deadline. Every process's
stdout and stderr are kept under ``tmp_path/logs``.
"""

from __future__ import annotations

import collections
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tidings.client.connect import DB_NAME
from tidings.client.store import ClientStore, Direction
from tidings.lab.clock import LabClock, file_clock
from tidings.lab.procs import DeviceProc, ProcRegistry, ServerProc, wait_until
from tidings.lab.workload import PLAN_FILE, Workload, events_path

#: Days the lab moves its clock forward in the clock tests (past the 30-day retention).
JUMP = 35 * 86400.0

#: Deadline of one phase of a run (seconds): a healthy run needs a fraction of it.
PHASE = 20.0


class Lab:
    """One relay, a workload registered on it, and a device process per device."""

    def __init__(self, root: Path, reg: ProcRegistry, workload: Workload) -> None:
        self.root = root
        self.workload = workload
        self.clock = LabClock(root / "clock")
        # The default 20 sends/s per account would slow these runs down with back-pressure.
        rate = ["--rate", "10000", "--burst", "10000"]
        self.server = ServerProc(
            root / "relay", root / "logs", clock_file=self.clock.path, args=rate, registry=reg
        )
        self.server.start()
        self.homes = workload.setup(self.server.url, root, self.clock.now)
        self.devices = {
            name: DeviceProc(
                home,
                events_path(root, name),
                root / PLAN_FILE,
                root / "logs",
                name=name,
                clock_file=self.clock.path,
                registry=reg,
            )
            for name, home in self.homes.items()
        }

    def start_all(self) -> None:
        for device in self.devices.values():
            device.spawn()
        for device in self.devices.values():
            device.wait_line("ready")

    def complete(self, device: DeviceProc) -> bool:
        """The device composed its whole plan (all ✓) and stored all it should receive."""
        expected = len(self.workload.expected(device.name))
        return device.find("done") is not None and device.progress()[1] >= expected

    def wait_complete(self) -> None:
        procs = list(self.devices.values())
        wait_until(lambda: all(self.complete(d) for d in procs), PHASE, "the run", *procs)

    def finish_all(self) -> dict[str, dict[str, Any]]:
        return {name: device.finish() for name, device in self.devices.items()}

    def check_stores(self) -> None:
        """Every device stored each of its plan's messages once as sent, and each message it
        should receive once as received — nothing lost, nothing doubled (G1-G3)."""
        for name, home in self.homes.items():
            sent, received = stored_bodies(home)
            plan = {item.body for item in self.workload.plans[name].items}
            assert sorted(sent) == sorted(plan), name
            assert sorted(received) == sorted(self.workload.expected(name)), name

    def check_events(self) -> None:
        """Each events file has one composed line per plan item and one received line per
        message the device should receive."""
        for name in self.homes:
            lines = read_events(events_path(self.root, name))
            composed = [line["body"] for line in lines if line["ev"] == "composed"]
            plan = [item.body for item in self.workload.plans[name].items]
            assert sorted(composed) == sorted(plan), name
            received = [line["mid"] for line in lines if line["ev"] == "received"]
            assert len(received) == len(set(received)) == len(self.workload.expected(name))
            assert all({"t", "ev"} <= line.keys() for line in lines)


def stored_bodies(home: Path) -> tuple[list[str], list[str]]:
    """The bodies a device's store holds: (sent by it, received by it)."""
    sent: list[str] = []
    received: list[str] = []
    with ClientStore(home / DB_NAME) as store:
        for conv in store.conversations():
            for m in store.messages(conv.conversation, limit=10**9):
                target = sent if m.direction is Direction.OUT else received
                target.append(m.body.decode())
    return sent, received


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def reg() -> Iterator[ProcRegistry]:
    with ProcRegistry() as registry:
        yield registry


def small(seed: int, rate: float = 0.0, read_probability: float = 0.5) -> Workload:
    """alice (one device) and bob (two devices), 10 messages per device."""
    return Workload(["alice", "bob"], [1, 2], 10, rate, read_probability, seed)


# ------------------------------------------------------------------------------ the lab clock


def test_lab_clock_jump_is_seen_by_file_clock_readers(tmp_path: Path) -> None:
    clock = LabClock(tmp_path / "clock")
    reader = file_clock(tmp_path / "clock")
    assert clock.offset == 0.0
    assert abs(reader() - time.time()) < 5
    assert clock.jump(JUMP) == JUMP
    assert abs(reader() - time.time() - JUMP) < 5
    assert abs(clock.now() - time.time() - JUMP) < 5
    # Two jumps in quick succession: the second one is seen too (distinct mtimes).
    clock.jump(1.0)
    clock.jump(1.0)
    assert clock.offset == JUMP + 2
    assert abs(reader() - time.time() - JUMP - 2) < 5
    clock.set(0.0)
    assert abs(reader() - time.time()) < 5
    assert LabClock(tmp_path / "clock").offset == 0.0  # reopening keeps the file


@pytest.mark.proc
def test_clock_jump_reaches_the_relay_and_the_devices(tmp_path: Path, reg: ProcRegistry) -> None:
    lab = Lab(tmp_path, reg, small(1))
    lab.clock.jump(JUMP)
    on_lab_time = lab.devices["alice.1"]
    on_wall_time = DeviceProc(
        lab.homes["bob.1"],
        tmp_path / "wall.jsonl",
        tmp_path / PLAN_FILE,
        tmp_path / "logs",
        name="bob.1",
        argv_prefix=["env", "LAB_PREFIX=1"],  # as ``ip netns exec NS`` would wrap it
        registry=reg,
    )
    on_lab_time.start()
    on_wall_time.start()
    # The relay's clock (WELCOME's server_time) is 35 days ahead of the wall clock and in
    # step with a device reading the same file.
    assert abs(on_lab_time.wait_line("connected")["server_offset"]) < 5
    assert abs(on_wall_time.wait_line("connected")["server_offset"] - JUMP) < 5
    on_lab_time.wait_line("done", PHASE)
    composed = [e for e in read_events(events_path(tmp_path, "alice.1")) if e["ev"] == "composed"]
    assert composed and all(abs(e["t"] - time.time() - JUMP) < 60 for e in composed)


# ------------------------------------------------------------------------------ runs


@pytest.mark.proc
def test_a_run_completes_and_every_device_stores_every_message_once(
    tmp_path: Path, reg: ProcRegistry
) -> None:
    lab = Lab(tmp_path, reg, small(2))
    lab.start_all()
    lab.wait_complete()
    alice = lab.devices["alice.1"]
    # Every message of alice's reaches ✓✓ at both of bob's devices (their receipts come back).
    wait_until(lambda: alice.progress()[2] >= 20, PHASE, "alice's ✓✓", alice)
    finished = lab.finish_all()
    assert all(f["composed"] == 10 and f["unacked"] == 0 for f in finished.values())
    assert all(f["drained"] for f in finished.values())
    lab.check_stores()
    lab.check_events()
    statuses = [e for e in read_events(events_path(tmp_path, "alice.1")) if e["ev"] == "status"]
    delivered = {(e["mid"], e["device"]) for e in statuses if e["status"] == "delivered"}
    assert {d for _, d in delivered} == {"bob.1", "bob.2"} and len(delivered) == 20
    # And each read receipt it got names a message someone logged as read.
    read = {
        m
        for n in lab.homes
        for e in read_events(events_path(tmp_path, n))
        for m in e.get("mids", [])
    }
    assert {e["mid"] for e in statuses if e["status"] == "read"} <= read


@pytest.mark.proc
def test_server_kill9_and_restart_on_the_same_port_loses_nothing(
    tmp_path: Path, reg: ProcRegistry
) -> None:
    lab = Lab(tmp_path, reg, small(3, rate=20.0))
    url = lab.server.url
    lab.start_all()
    for device in lab.devices.values():
        device.wait_line("connected")  # so that each one sees its session break
    alice = lab.devices["alice.1"]
    wait_until(lambda: alice.progress()[0] >= 3, PHASE, "alice to compose 3", alice)
    lab.server.kill9()
    for device in lab.devices.values():
        device.wait_line("disconnected")
    lab.server.restart()
    assert lab.server.url == url
    lab.wait_complete()
    lab.finish_all()
    lab.check_stores()
    lab.check_events()


@pytest.mark.proc
def test_device_kill9_and_restart_resumes_without_composing_twice(
    tmp_path: Path, reg: ProcRegistry
) -> None:
    # 5 messages/s: the 7 items after the third are spread over seconds, so a controller slowed
    # down by a loaded machine still kills it mid-plan (at 20/s it sometimes saw all 10 done)
    lab = Lab(tmp_path, reg, small(4, rate=5.0))
    lab.start_all()
    alice = lab.devices["alice.1"]
    wait_until(lambda: alice.progress()[0] >= 3, PHASE, "alice to compose 3", alice)
    assert alice.kill9() == -9
    alice.restart()
    ready = alice.wait_line("ready")["ready"]
    assert 3 <= ready["composed"] < 10  # killed mid-plan; the store told it what was done
    lab.wait_complete()
    lab.finish_all()
    lab.check_stores()  # every plan body stored once as sent: no item composed twice
    lab.check_events()  # and logged once, even one whose line the kill cut off
    ids = collections.Counter(
        e["mid"] for e in read_events(events_path(tmp_path, "alice.1")) if e["ev"] == "composed"
    )
    assert len(ids) == 10 and set(ids.values()) == {1}


@pytest.mark.proc
def test_sigstop_then_sigcont_of_a_device_recovers(tmp_path: Path, reg: ProcRegistry) -> None:
    lab = Lab(tmp_path, reg, small(5))
    lab.start_all()
    frozen = lab.devices["bob.2"]
    frozen.stop()
    others = [d for d in lab.devices.values() if d is not frozen]
    wait_until(lambda: all(d.find("done") for d in others), PHASE, "the others", *others)
    frozen.cont()
    lab.wait_complete()
    lab.finish_all()
    lab.check_stores()
    lab.check_events()


@pytest.mark.proc
def test_the_registry_leaves_no_process_behind_when_the_body_raises(tmp_path: Path) -> None:
    procs: list[ServerProc | DeviceProc] = []
    with pytest.raises(RuntimeError, match="boom"), ProcRegistry() as reg:
        lab = Lab(tmp_path, reg, small(6))
        lab.start_all()
        lab.devices["bob.1"].stop()  # a frozen process is reaped too
        procs = [lab.server, *lab.devices.values()]
        assert all(p.alive for p in procs)
        raise RuntimeError("boom")
    assert len(procs) == 4
    for p in procs:
        assert not p.alive
        with pytest.raises(ProcessLookupError):
            os.kill(p.pid, 0)  # reaped: not even a zombie is left
