"""Two clocks: converting retry and arrival times between the monotonic and the wall clock.

Literal clock readings only (CONVENTIONS §11): a wall clock stepped back or forward by an hour
between storing a time and reading it back must cost at most the clamp window.
"""

from __future__ import annotations

import pytest

from tidings.delivery import RETRY_CAP, ClockReading
from tidings.errors import LocalProtocolError

HOUR = 3600.0


def test_a_monotonic_time_is_shown_on_the_wall_clock() -> None:
    now = ClockReading(wall=1_000.0, mono=50.0)
    assert now.to_wall(55.0) == 1_005.0
    assert now.to_wall(50.0) == 1_000.0
    assert now.to_wall(20.0) == 970.0


def test_a_stored_retry_time_comes_back_as_stored_without_a_step() -> None:
    stored = ClockReading(1_000.0, 50.0).to_wall(55.0)  # refused at 1000: retry 5 s later
    after_restart = ClockReading(wall=1_001.0, mono=7.0)  # a new process: another mono origin
    assert after_restart.to_mono(stored, 0.0, RETRY_CAP) == 11.0  # 4 s left


def test_a_wall_clock_stepped_back_an_hour_costs_at_most_the_cap() -> None:
    stored = 1_005.0
    stepped_back = ClockReading(wall=1_001.0 - HOUR, mono=7.0)
    assert stepped_back.to_mono(stored, 0.0, RETRY_CAP) == 7.0 + RETRY_CAP  # not 7 + 3604


def test_a_wall_clock_stepped_forward_an_hour_makes_it_due_at_once() -> None:
    stepped_forward = ClockReading(wall=1_001.0 + HOUR, mono=7.0)
    assert stepped_forward.to_mono(1_005.0, 0.0, RETRY_CAP) == 7.0


def test_a_stored_arrival_time_keeps_at_most_a_hold_of_its_past() -> None:
    hold = 30.0
    received_at = 1_000.0
    assert ClockReading(1_010.0, 500.0).to_mono(received_at, -hold, 0.0) == 490.0
    assert ClockReading(1_010.0 + HOUR, 500.0).to_mono(received_at, -hold, 0.0) == 470.0
    assert ClockReading(1_010.0 - HOUR, 500.0).to_mono(received_at, -hold, 0.0) == 500.0


def test_an_empty_window_is_refused() -> None:
    with pytest.raises(LocalProtocolError):
        ClockReading(0.0, 0.0).to_mono(0.0, 1.0, 0.0)
