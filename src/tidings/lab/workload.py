"""The lab's workload: who sends what to whom, and when — one deterministic plan per device.

A :class:`Workload` turns its parameters and a seed into a :class:`DevicePlan` per device
(``account.N``); :meth:`Workload.setup` registers the accounts and links their extra devices on
a running relay, writes the plan file that every device process reads
(:mod:`tidings.lab.device`), and records each device in ``RUN/record.jsonl``.

Invariants:

- The plans depend only on the parameters (the seed included): the same workload gives the
  same recipients, times and bodies, so a lab run can be replayed.
- Every body is unique in a run: it is its marker ``tdlab-<seed>-<acct>.<dev>-<n>-<hex>`` (the
  hex from the seeded RNG), so a checker can find each message in any store by its body.
- A device only sends to other accounts; every message reaches each device of the recipient
  account and, as a sent-message copy, each other device of the sender's account
  (:meth:`Workload.expected`).
- Each device's item times ``at`` (seconds after it starts composing) never decrease.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..client import Client, register
from ..wire import check_account
from .record import events_path

__all__ = [
    "PLAN_FILE",
    "RECORD_FILE",
    "DevicePlan",
    "PlanItem",
    "Workload",
    "append_record",
    "events_path",
    "load_plan",
]

#: File names inside a run directory.
PLAN_FILE = "plan.json"
RECORD_FILE = "record.jsonl"

#: Seconds to wait for a relay answer during setup.
SETUP_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class PlanItem:
    """One message to compose: the ``n``-th of its device, to account ``to``, ``at`` seconds
    after the device starts composing, with a unique ``body``."""

    n: int
    to: str
    at: float
    body: str


@dataclass(frozen=True, slots=True)
class DevicePlan:
    """What one device does: its messages, and how it reads what it receives (each message
    from another account is marked read with probability ``read_probability``, after a
    delay drawn uniformly from ``[0, read_delay]`` seconds)."""

    name: str
    account: str
    device: int
    seed: int
    items: tuple[PlanItem, ...]
    read_probability: float
    read_delay: float

    def __post_init__(self) -> None:
        check_account(self.account)
        if self.name != f"{self.account}.{self.device}":
            raise ValueError(f"plan name {self.name!r} is not account.device")
        if not 0.0 <= self.read_probability <= 1.0 or self.read_delay < 0:
            raise ValueError("read_probability must be in [0, 1] and read_delay >= 0")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> DevicePlan:
        items = tuple(PlanItem(**item) for item in obj["items"])
        return cls(**{**obj, "items": items})


def load_plan(path: Path, name: str) -> DevicePlan:
    """The plan of device ``name`` in the plan file ``path``.

    Raises:
        KeyError: the file has no plan for ``name``.
    """
    plans = json.loads(path.read_text())["devices"]
    return DevicePlan.from_json(plans[name])


def append_record(run_dir: Path, obj: dict[str, Any]) -> None:
    """Append one JSON line to ``RUN/record.jsonl``."""
    with (run_dir / RECORD_FILE).open("a") as f:
        f.write(json.dumps(obj) + "\n")


class Workload:
    """Deterministic per-device plans (see the module docstring).

    Args:
        users: how many accounts (named ``user0``, ``user1``, …) or their names (at least 2).
        devices_per_user: devices per account: one number for all, or one per account.
        messages: messages each device composes.
        rate: messages per second per device (Poisson arrivals); 0 composes all at once.
        read_probability: chance that a device marks a received message read.
        seed: the seed of everything random in the plans.
        read_delay: longest delay before a message is marked read (seconds).
    """

    def __init__(
        self,
        users: int | Sequence[str],
        devices_per_user: int | Sequence[int],
        messages: int,
        rate: float,
        read_probability: float,
        seed: int,
        read_delay: float = 0.5,
    ) -> None:
        names = [f"user{i}" for i in range(users)] if isinstance(users, int) else list(users)
        counts = (
            [devices_per_user] * len(names)
            if isinstance(devices_per_user, int)
            else list(devices_per_user)
        )
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError("a workload needs at least two distinct accounts")
        if len(counts) != len(names) or min(counts) < 1:
            raise ValueError("devices_per_user needs one count >= 1 per account")
        if messages < 0 or rate < 0:
            raise ValueError("messages and rate must be >= 0")
        for name in names:
            check_account(name)
        self.accounts = dict(zip(names, counts, strict=True))
        self.messages = messages
        self.rate = rate
        self.read_probability = read_probability
        self.seed = seed
        self.read_delay = read_delay
        self.plans = {p.name: p for p in self._make_plans()}

    def _make_plans(self) -> list[DevicePlan]:
        rng = random.Random(self.seed)
        plans = []
        for account, count in self.accounts.items():
            others = [a for a in self.accounts if a != account]
            for device in range(1, count + 1):
                name = f"{account}.{device}"
                items, at = [], 0.0
                for n in range(self.messages):
                    if self.rate > 0 and n > 0:
                        at += rng.expovariate(self.rate)
                    marker = f"tdlab-{self.seed}-{name}-{n}-{rng.getrandbits(48):012x}"
                    items.append(PlanItem(n, rng.choice(others), round(at, 6), marker))
                plans.append(
                    DevicePlan(
                        *(name, account, device, self.seed, tuple(items)),
                        *(self.read_probability, self.read_delay),
                    )
                )
        return plans

    def expected(self, name: str) -> set[str]:
        """The bodies device ``name`` must end up storing as received: every message to its
        account, and every message from the other devices of its account."""
        me = self.plans[name]
        return {
            item.body
            for plan in self.plans.values()
            if plan.name != name
            for item in plan.items
            if item.to == me.account or plan.account == me.account
        }

    def write_plans(self, path: Path) -> None:
        """Write the plan file every device process reads."""
        devices = {name: plan.to_json() for name, plan in self.plans.items()}
        path.write_text(json.dumps({"seed": self.seed, "devices": devices}, indent=1) + "\n")

    def setup(
        self,
        server_url: str | Callable[[str], str],
        run_dir: Path,
        clock: Callable[[], float] = time.time,
    ) -> dict[str, Path]:
        """Register every account and device on the relay at ``server_url`` (synchronous
        wrapper of :meth:`asetup`; call it outside an event loop)."""
        return asyncio.run(self.asetup(server_url, run_dir, clock))

    async def asetup(
        self,
        server_url: str | Callable[[str], str],
        run_dir: Path,
        clock: Callable[[], float] = time.time,
    ) -> dict[str, Path]:
        """Register the accounts (device 1) and link their other devices; write the plan file
        and one ``device`` line per device to ``RUN/record.jsonl`` (its ``home`` relative to
        ``RUN``, so the record reads the same from any working directory, or moved).
        ``server_url`` may be a function of the device's name (``account.N``): its relay URLs,
        e.g. several nodes in its own order.

        Returns:
            The home of each device, by name (``account.N``), under ``RUN/homes``.

        Raises:
            RefusedError, ConnectionBroken: from :func:`tidings.client.register`.
            TimeoutError: the relay did not answer within ``SETUP_TIMEOUT``.
        """
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "events").mkdir(exist_ok=True)
        self.write_plans(run_dir / PLAN_FILE)

        def url_of(name: str) -> str:
            return server_url(name) if callable(server_url) else server_url

        homes: dict[str, Path] = {}
        for account, count in self.accounts.items():
            first = run_dir / "homes" / f"{account}.1"
            await register(first, url_of(f"{account}.1"), account)
            homes[f"{account}.1"] = first
            for device in range(2, count + 1):
                home = run_dir / "homes" / f"{account}.{device}"
                identity = await register(
                    home, url_of(f"{account}.{device}"), account, link_code=await _link_code(first)
                )
                if identity.device_id != device:
                    raise ValueError(f"{account} got device {identity.device_id}, not {device}")
                homes[f"{account}.{device}"] = home
        for name, home in homes.items():
            acct, dev = name.rsplit(".", 1)
            record = {"ev": "device", "account": acct, "device": int(dev)}
            home_in_run = home.relative_to(run_dir).as_posix()  # the record's paths are RUN's
            append_record(run_dir, {"t": clock(), **record, "home": home_in_run})
        return homes


async def _link_code(home: Path) -> bytes:
    """A link code from the registered device in ``home`` (connects, asks, disconnects)."""
    client = Client(home)
    try:
        await client.start()
        await client.wait_connected(SETUP_TIMEOUT)
        async with asyncio.timeout(SETUP_TIMEOUT):
            code, _ = await client.link_code()
        return code
    finally:
        await client.close()
