"""The checker on doctored runs of the time scenarios (:mod:`tidings.lab.scenarios_time`).

Each test builds a synthetic run the way ``clock-skew`` leaves one (a sender whose clock ran
2 h fast, then was corrected mid-run) with :class:`~tests.lab.test_checker.FakeRun`, breaks it
the way other messengers break, and proves the checker names it.
"""

from __future__ import annotations

from pathlib import Path

from tests.lab.test_checker import FakeRun
from tidings.lab.checker import check, format_violations
from tidings.lab.record import Fault
from tidings.lab.scenarios_time import FAST

#: alice.1's four messages to bob: #1 and #2 while its clock ran 2 h fast, #3 and #4 after
#: network time corrected it, so their timestamps are 2 h *earlier* than #1's and #2's.
_LAB_TIMES = (101.0, 102.0, 103.0, 104.0)
_SKEWS = (FAST, FAST, 0.0, 0.0)


def _skewed_run(tmp_path: Path) -> tuple[FakeRun, list[bytes]]:
    r = FakeRun(tmp_path, "clock-skew")
    for label in ("alice.1", "bob.1"):
        r.device(label)
    r.record.write(Fault(102.5, "clock_step", "alice.1", 102.5, None, {"seconds": -FAST}))
    mids = []
    for at, skew in zip(_LAB_TIMES, _SKEWS, strict=True):
        mid = r.send("alice.1", "bob", at, skew=skew)
        r.ack("alice.1", mid, at + 0.2)
        mids.append(mid)
    return r, mids


def _sent_at(r: FakeRun, mid: bytes) -> float:
    m = r.stores["alice.1"].message(mid)
    assert m is not None
    return m.sent_at


def test_shown_in_send_order_despite_timestamps_going_back_is_ok(tmp_path: Path) -> None:
    """tidings' own behaviour: display order is the sender device's send order, although the
    timestamps of #3 and #4 are earlier than those of #1 and #2."""
    r, mids = _skewed_run(tmp_path)
    assert _sent_at(r, mids[2]) < _sent_at(r, mids[1])  # the run is what it claims to be
    for i, mid in enumerate(mids):
        r.deliver("bob.1", "alice.1", mid, 110.0 + i)
    result = check(r.finish())
    assert result.ok, format_violations(result)


def test_shown_in_sender_timestamp_order_is_reordered(tmp_path: Path) -> None:
    """The bug of the issues the scenario cites: the receiver sorts by the sender's timestamp,
    so #3 and #4 (sent after the correction) are displayed above #1 and #2."""
    r, mids = _skewed_run(tmp_path)
    by_timestamp = sorted(mids, key=lambda mid: _sent_at(r, mid))
    assert by_timestamp == [mids[2], mids[3], mids[0], mids[1]]
    for i, mid in enumerate(by_timestamp):
        r.deliver("bob.1", "alice.1", mid, 110.0 + i)
    result = check(r.finish())
    assert {v.kind for v in result.violations} == {"reordered"}
    flagged = sorted((v.message_id_hex, v.device) for v in result.violations)
    assert flagged == sorted([(mids[0].hex(), "bob.1"), (mids[1].hex(), "bob.1")])
    assert "#1 displayed after #4" in format_violations(result)
