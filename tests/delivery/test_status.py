"""Statuses: the transition table, never backwards, the roll-up rule and the glyphs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.delivery.status import GLYPHS, Status, advance, glyph, rollup

P, S, D, R, E, F = (
    Status.PENDING,
    Status.SENT,
    Status.DELIVERED,
    Status.READ,
    Status.EXPIRED,
    Status.FAILED,
)

# The spec, restated independently of the implementation: (current, new) pairs that move.
ALLOWED = {
    (P, S), (P, D), (P, R), (P, E), (P, F),
    (S, D), (S, R), (S, E),
    (D, R),
    (E, D), (E, R),
}  # fmt: skip


def test_values_are_stable() -> None:
    assert [int(s) for s in (P, S, D, R, E, F)] == [0, 1, 2, 3, 4, 5]
    assert P < S < D < R


@pytest.mark.parametrize("current", list(Status))
@pytest.mark.parametrize("new", list(Status))
def test_transition_table(current: Status, new: Status) -> None:
    expected = new if (current, new) in ALLOWED else None
    assert advance(current, new) is expected


@pytest.mark.parametrize("new", list(Status))
def test_nothing_recorded_counts_as_pending(new: Status) -> None:
    assert advance(None, new) is advance(P, new)


def test_duplicates_are_ignored() -> None:
    for s in Status:
        assert advance(s, s) is None


def test_delivered_never_becomes_expired() -> None:
    assert advance(D, E) is None
    assert advance(R, E) is None


def test_a_receipt_overrides_an_expiry_notice() -> None:
    # The device fetched and committed it; its ack reached the server after the expiry pass.
    assert advance(E, D) is D


def test_failed_after_sent_is_ignored() -> None:
    assert advance(S, F) is None


@given(st.lists(st.sampled_from(list(Status)), max_size=12))
def test_progress_never_goes_backwards(events: list[Status]) -> None:
    current: Status | None = None
    delivered = False
    for new in events:
        moved = advance(current, new)
        if moved is None:
            continue
        assert current not in (R, F)  # terminal: nothing moves them
        if current in (S, D) and moved is not E:
            assert moved > current  # progress statuses only climb
        delivered = delivered or moved in (D, R)
        assert not (delivered and moved is E)  # a delivered device never expires
        current = moved


@given(st.lists(st.sampled_from(list(Status)), max_size=12))
def test_repeating_each_event_changes_nothing(events: list[Status]) -> None:
    def run(seq: list[Status]) -> Status | None:
        current: Status | None = None
        for new in seq:
            current = advance(current, new) or current
        return current

    assert run([e for e in events for _ in (1, 2)]) is run(events)


@pytest.mark.parametrize(
    ("statuses", "sent", "expected"),
    [
        ({}, False, P),
        ({}, True, S),
        ({1: P}, False, P),
        ({1: P}, True, S),  # the ✓ covers every device
        ({1: S, 2: D}, True, S),  # lowest progress
        ({1: D, 2: R}, True, D),
        ({1: R, 2: R}, True, R),
        ({1: E}, True, E),
        ({1: E, 2: E}, True, E),  # every device expired
        ({1: D, 2: E}, True, D),  # an expired device does not drag delivered to ✗
        ({1: S, 2: E}, True, S),  # device 1 may still fetch it
        ({1: P, 2: E}, True, S),
        ({1: R, 2: E}, True, R),
        ({1: D, 2: F}, True, F),  # a refusal is the whole message's
        ({1: F}, False, F),
    ],
)
def test_rollup(statuses: dict[int, Status], sent: bool, expected: Status) -> None:
    assert rollup(statuses, sent) is expected


def test_rollup_takes_any_device_key() -> None:
    assert rollup({("bob", 1): D, ("bob", 2): R}, sent=True) is D


def test_glyphs() -> None:
    assert set(GLYPHS) == set(Status)
    assert len(set(GLYPHS.values())) == len(Status)  # every status looks different
    assert [glyph(s) for s in (P, S, D, R, E, F)] == ["…", "✓", "✓✓", "R", "✗", "!"]
