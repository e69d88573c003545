"""Message ids (tidings.delivery.msgids): randomness, then the time; and the relay's record
key, which puts the time first."""

from __future__ import annotations

import itertools

import pytest

from tidings.delivery.msgids import TIME_BYTES, new_message_id
from tidings.store._lookup import message_id_of, record_key


def test_an_id_is_the_millisecond_then_the_random_bytes() -> None:
    mid = new_message_id(1_765_000_000.1234, lambda n: b"\xab" * n)
    assert len(mid) == 16
    assert mid[-TIME_BYTES:] == (1_765_000_000_123).to_bytes(6, "big")
    assert mid[:-TIME_BYTES] == b"\xab" * 10
    # Golden bytes: 2026-12-07T00:00:00Z with zero randomness.
    assert new_message_id(1_796_601_600.0, bytes).hex() == "00" * 10 + "01a24dccd800"


def test_the_relay_keys_later_ids_later_whatever_their_randomness() -> None:
    heads = itertools.cycle([b"\xff" * 10, b"\x00" * 10])
    ids = [new_message_id(1_765_000_000 + i / 1000, lambda n: next(heads)) for i in range(50)]
    keys = [record_key(mid) for mid in ids]
    assert keys == sorted(keys) and len(set(keys)) == 50
    assert [message_id_of(key) for key in keys] == ids
    assert len({mid[:6] for mid in ids}) == 2  # the start people see is the random part


def test_any_bytes_round_trip_through_the_record_key() -> None:
    for mid in (b"", b"abc", bytes(range(16)), bytes(range(40))):
        assert message_id_of(record_key(mid)) == mid


@pytest.mark.parametrize("now", [-0.001, float(1 << 48) / 1000])
def test_a_time_no_id_can_hold_is_refused(now: float) -> None:
    with pytest.raises(ValueError, match="time"):
        new_message_id(now, bytes)


def test_a_short_random_source_is_refused() -> None:
    with pytest.raises(ValueError, match="length"):
        new_message_id(1.0, lambda n: b"x")
