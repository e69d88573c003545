"""The checker on doctored runs of ``mtu-black-hole`` (:mod:`tidings.lab.scenarios_mtu`).

The broken run is what the lab measured before the relay clamped its MSS: the first message to
a new contact (a ~2 KB prekey message) never crossed the black hole, the device kept
reconnecting, and the run settled with it still in the outbox.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lab.test_checker import FakeRun
from tidings.lab.checker import check, format_violations
from tidings.lab.record import Fault
from tidings.lab.scenarios_mtu import BLACK_HOLE


def _run(tmp_path: Path) -> tuple[FakeRun, bytes, bytes]:
    r = FakeRun(tmp_path, "mtu-black-hole")
    for label in ("alice.1", "bob.1"):
        r.device(label)
    detail = {"size": BLACK_HOLE, "delivered_in": 9.0}
    r.record.write(Fault(110.0, "mtu_black_hole", "alice.1", 100.0, 110.0, detail))
    first = r.send("alice.1", "bob", 101.0)  # the prekey message
    second = r.send("alice.1", "bob", 102.0)
    return r, first, second


def test_every_message_through_the_hole_is_ok_and_timed(tmp_path: Path) -> None:
    r, first, second = _run(tmp_path)
    for i, mid in enumerate((first, second)):
        r.ack("alice.1", mid, 103.0 + i)
        r.deliver("bob.1", "alice.1", mid, 108.0 + i)
    result = check(r.finish())
    assert result.ok, format_violations(result)
    assert result.latencies["delivered"] == pytest.approx((7.01, 7.01))  # composed → ✓✓, reported


def test_a_prekey_message_stuck_in_the_outbox_is_lost(tmp_path: Path) -> None:
    r, first, second = _run(tmp_path)  # neither ever ✓: the connection stalled on the first
    result = check(r.finish())
    assert {v.kind for v in result.violations} == {"lost"}
    assert sorted(v.message_id_hex for v in result.violations) == sorted(
        [first.hex(), second.hex()]
    )
    assert "never ✓ (in outbox)" in format_violations(result)
    assert "delivered" not in result.latencies or not result.latencies["delivered"]
