"""The lab's workload: deterministic per-device plans, and the registration of a run."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tidings.client.connect import DB_NAME
from tidings.client.store import ClientStore
from tidings.errors import FrameError
from tidings.lab.procs import ProcRegistry, ServerProc
from tidings.lab.workload import (
    PLAN_FILE,
    RECORD_FILE,
    DevicePlan,
    PlanItem,
    Workload,
    load_plan,
)

MARKER = re.compile(r"^tdlab-(\d+)-([a-z0-9_-]+)\.(\d+)-(\d+)-[0-9a-f]{12}$")


def workload(seed: int = 7, **kwargs: Any) -> Workload:
    params: dict[str, Any] = {
        "users": 3,
        "devices_per_user": [1, 2, 3],
        "messages": 20,
        "rate": 10.0,
        "read_probability": 0.5,
        "seed": seed,
    }
    params.update(kwargs)
    return Workload(**params)


def test_plans_are_a_function_of_the_parameters_and_the_seed() -> None:
    assert workload().plans == workload().plans
    assert workload(seed=8).plans != workload().plans
    assert workload(rate=5.0).plans != workload().plans


def test_every_device_gets_a_plan_named_account_dot_device() -> None:
    w = workload()
    assert sorted(w.plans) == ["user0.1", "user1.1", "user1.2", "user2.1", "user2.2", "user2.3"]
    assert all(len(p.items) == 20 for p in w.plans.values())
    assert Workload(["al", "bo"], 2, 1, 0, 0, 1).accounts == {"al": 2, "bo": 2}


def test_bodies_are_unique_markers_naming_seed_device_and_number() -> None:
    w = workload()
    bodies = [item.body for plan in w.plans.values() for item in plan.items]
    assert len(set(bodies)) == len(bodies)
    for plan in w.plans.values():
        for item in plan.items:
            match = MARKER.match(item.body)
            assert match is not None, item.body
            seed, account, device, n = match.groups()
            assert (int(seed), account, int(device), int(n)) == (
                7,
                plan.account,
                plan.device,
                item.n,
            )


def test_messages_go_to_other_accounts_at_non_decreasing_times() -> None:
    w = workload()
    for plan in w.plans.values():
        assert all(item.to != plan.account and item.to in w.accounts for item in plan.items)
        times = [item.at for item in plan.items]
        assert times == sorted(times) and times[0] == 0.0
        assert times[-1] > 0  # rate 10/s: about 2 s for 20 messages
    assert {item.to for p in w.plans.values() for item in p.items} == set(w.accounts)
    assert all(i.at == 0.0 for p in workload(rate=0.0).plans.values() for i in p.items)


def test_expected_counts_messages_to_the_account_and_copies_from_sibling_devices() -> None:
    w = Workload(["alice", "bob"], [1, 2], 4, 0, 0, 3)
    from_alice = {i.body for i in w.plans["alice.1"].items}
    bob1 = {i.body for i in w.plans["bob.1"].items}
    bob2 = {i.body for i in w.plans["bob.2"].items}
    assert w.expected("alice.1") == bob1 | bob2
    assert w.expected("bob.1") == from_alice | bob2
    assert w.expected("bob.2") == from_alice | bob1


def test_the_plan_file_round_trips(tmp_path: Path) -> None:
    w = workload()
    w.write_plans(tmp_path / PLAN_FILE)
    for name, plan in w.plans.items():
        assert load_plan(tmp_path / PLAN_FILE, name) == plan
    assert json.loads((tmp_path / PLAN_FILE).read_text())["seed"] == 7
    with pytest.raises(KeyError):
        load_plan(tmp_path / PLAN_FILE, "nobody.1")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"users": 1},
        {"users": ["a", "a"]},
        {"users": ["Not-Valid!", "b"]},
        {"devices_per_user": [1, 2]},
        {"devices_per_user": 0},
        {"messages": -1},
        {"rate": -1.0},
        {"read_probability": 1.5},
    ],
)
def test_invalid_parameters_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises((ValueError, FrameError)):
        workload(**kwargs)


def test_a_plan_name_must_match_its_account_and_device() -> None:
    with pytest.raises(ValueError, match=r"account\.device"):
        DevicePlan("bob.2", "bob", 1, 0, (PlanItem(0, "al", 0.0, "x"),), 0.0, 0.0)


@pytest.mark.proc
def test_setup_registers_every_device_and_records_it(tmp_path: Path) -> None:
    w = Workload(["alice", "bob"], [1, 3], 2, 0, 0, 9)
    with ProcRegistry() as reg:
        server = ServerProc(tmp_path / "relay", tmp_path / "logs", registry=reg)
        server.start()
        homes = w.setup(server.url, tmp_path / "run", clock=lambda: 123.0)
    assert sorted(homes) == ["alice.1", "bob.1", "bob.2", "bob.3"]
    for name, home in homes.items():
        assert home == tmp_path / "run" / "homes" / name
        with ClientStore(home / DB_NAME) as store:
            identity = store.get_identity()
        assert identity is not None
        assert f"{identity.account}.{identity.device_id}" == name
    lines = [json.loads(x) for x in (tmp_path / "run" / RECORD_FILE).read_text().splitlines()]
    assert lines == [
        {
            "t": 123.0,
            "ev": "device",
            "account": n.split(".")[0],
            "device": int(n[-1]),
            "home": f"homes/{n}",
        }
        for n in ["alice.1", "bob.1", "bob.2", "bob.3"]
    ]
    assert (tmp_path / "run" / PLAN_FILE).exists()
