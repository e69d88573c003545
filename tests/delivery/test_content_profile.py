"""PROFILE_KEY content (kind 13): golden bytes, round trip, refusals, the order of keys."""

from __future__ import annotations

import msgpack
import pytest

from tidings.delivery import ContentError, ContentKind, parse_content
from tidings.delivery.content_profile import ProfileKey

KEY = bytes(range(32))
# [1, 13, key, generation 0, created_at 1700000000.5, device 1]
GOLDEN = (
    "96010dc420000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "00cb41d954fc4020000001"
)


def test_golden_bytes() -> None:
    content = ProfileKey(KEY, 0, 1700000000.5, 1)
    assert int(ContentKind.PROFILE_KEY) == 13
    assert content.serialize() == bytes.fromhex(GOLDEN)
    assert parse_content(bytes.fromhex(GOLDEN)) == content


@pytest.mark.parametrize(
    "fields",
    [
        [KEY[:31], 0, 1.0, 1],  # short key
        [KEY + b"x", 0, 1.0, 1],
        ["k" * 32, 0, 1.0, 1],
        [KEY, -1, 1.0, 1],  # no negative generation
        [KEY, 0, -1.0, 1],
        [KEY, 0, 1.0, 0],  # no device 0
        [KEY, 0, 1.0],  # wrong arity
        [KEY, 0, 1.0, 1, 2],
    ],
)
def test_bad_profile_keys_are_refused(fields: list[object]) -> None:
    data = msgpack.packb([1, 13, *fields], use_bin_type=True)
    with pytest.raises(ContentError):
        parse_content(data)


def test_the_rank_orders_keys_the_same_everywhere() -> None:
    old = ProfileKey(KEY, 0, 100.0, 2)
    same_time_lower_device = ProfileKey(b"\x01" * 32, 0, 100.0, 1)
    later = ProfileKey(b"\x02" * 32, 0, 50.0, 3)
    rotated = ProfileKey(b"\x03" * 32, 1, 900.0, 3)
    ranked = sorted([old, same_time_lower_device, later, rotated], key=lambda k: k.rank)
    assert ranked == [rotated, later, same_time_lower_device, old]
