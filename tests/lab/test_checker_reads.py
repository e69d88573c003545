"""The checker's read-state convergence rule (``read_diverged``, tidings.lab.checker_reads) on
small synthetic runs built like the lab's (tests.lab.test_checker.FakeRun): real stores."""

from __future__ import annotations

from pathlib import Path

from tests.lab.test_checker import FakeRun, kinds
from tidings.lab.checker import KINDS, check, format_violations
from tidings.lab.checker_reads import READ_FAULT
from tidings.lab.record import Fault
from tidings.store.base import DeviceRef


def bobs_run(tmp_path: Path) -> tuple[FakeRun, bytes]:
    """alice.1 sent bob (two devices) a message, delivered to both of bob's devices."""
    r = FakeRun(tmp_path)
    for label in ("alice.1", "bob.1", "bob.2"):
        r.device(label)
    mid = r.send("alice.1", "bob", 101.0)
    r.ack("alice.1", mid, 101.2)
    r.deliver_all("alice.1", mid, 101.5)
    return r, mid


def read_on(r: FakeRun, device: str, mid: bytes, at: float) -> None:
    assert r.stores[device].mark_read([(DeviceRef("alice", 1), mid)], at) != []


def test_a_message_read_on_one_device_and_unread_on_another_diverges(tmp_path: Path) -> None:
    r, mid = bobs_run(tmp_path)
    read_on(r, "bob.1", mid, 120.0)
    r.record.write(Fault(150.0, READ_FAULT, "all", 140.0, 150.0, {}))
    result = check(r.finish())
    assert kinds(result) == ["read_diverged"]
    (v,) = result.violations
    assert v.message_id_hex == mid.hex()
    assert "read on bob.1 but unread on bob.2" in v.detail
    assert "read_diverged" in format_violations(result) and "read_diverged" in KINDS


def test_read_everywhere_or_nowhere_is_in_step(tmp_path: Path) -> None:
    r, mid = bobs_run(tmp_path)
    second = r.send("alice.1", "bob", 110.0)
    r.ack("alice.1", second, 110.2)
    r.deliver_all("alice.1", second, 110.5)  # never read: in step too
    read_on(r, "bob.1", mid, 120.0)
    read_on(r, "bob.2", mid, 121.0)  # read elsewhere reached bob.2
    r.record.write(Fault(150.0, READ_FAULT, "all", 140.0, 150.0, {}))
    result = check(r.finish())
    assert result.ok, format_violations(result)


def test_without_the_convergence_wait_the_rule_is_not_judged(tmp_path: Path) -> None:
    """A run that stopped its devices without waiting cannot hold them to it."""
    r, mid = bobs_run(tmp_path)
    read_on(r, "bob.1", mid, 120.0)
    result = check(r.finish())
    assert result.ok, format_violations(result)


def test_a_sent_copy_on_the_senders_other_device_has_nothing_to_read(tmp_path: Path) -> None:
    r = FakeRun(tmp_path)
    for label in ("alice.1", "alice.2", "bob.1"):
        r.device(label)
    mid = r.send("alice.1", "bob", 101.0)
    r.ack("alice.1", mid, 101.2)
    r.deliver_all("alice.1", mid, 101.5)  # alice.2 holds a copy, never "read"
    r.record.write(Fault(150.0, READ_FAULT, "all", 140.0, 150.0, {}))
    result = check(r.finish())
    assert result.ok, format_violations(result)
