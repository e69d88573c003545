"""Message ids (tidings.delivery.msgids): the time first, then randomness."""

from __future__ import annotations

import itertools

import pytest

from tidings.delivery.msgids import TIME_BYTES, new_message_id


def test_an_id_is_the_millisecond_then_the_random_bytes() -> None:
    mid = new_message_id(1_765_000_000.1234, lambda n: b"\xab" * n)
    assert len(mid) == 16
    assert mid[:TIME_BYTES] == (1_765_000_000_123).to_bytes(6, "big")
    assert mid[TIME_BYTES:] == b"\xab" * 10
    # Golden bytes: 2026-12-07T00:00:00Z with zero randomness.
    assert new_message_id(1_796_601_600.0, bytes).hex() == "01a24dccd800" + "00" * 10


def test_ids_made_later_sort_later_whatever_their_randomness() -> None:
    tails = itertools.cycle([b"\xff" * 10, b"\x00" * 10])
    ids = [new_message_id(1_765_000_000 + i / 1000, lambda n: next(tails)) for i in range(50)]
    assert ids == sorted(ids) and len(set(ids)) == 50


@pytest.mark.parametrize("now", [-0.001, float(1 << 48) / 1000])
def test_a_time_no_id_can_hold_is_refused(now: float) -> None:
    with pytest.raises(ValueError, match="time"):
        new_message_id(now, bytes)


def test_a_short_random_source_is_refused() -> None:
    with pytest.raises(ValueError, match="length"):
        new_message_id(1.0, lambda n: b"x")
