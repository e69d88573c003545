"""Group content (kinds 8-12): golden bytes, round trips, refusals."""

from __future__ import annotations

import msgpack
import pytest

from tidings.delivery import ContentError, parse_content
from tidings.delivery.content import Content
from tidings.delivery.content_groups import (
    GroupChange,
    GroupKeyRequest,
    GroupMessage,
    GroupSync,
    SenderKey,
    group_conversation,
    group_of_conversation,
)
from tidings.delivery.groups import GroupLog, OpKind

G = bytes(range(16))
MID = b"\x22" * 16
OP = GroupLog(G).author("alice", OpKind.CREATE, b"\x01" * 16, ["bob"], "team")

GOLDEN: list[tuple[Content, str]] = [
    (
        GroupChange(G, (OP,)),
        "940108c410000102030405060708090a0b0c0d0e0f91c43797c410000102030405060708090a0b0c0d0e0f"
        "c4100101010101010101010101010101010101a5616c6963650191a3626f62a47465616d",
    ),
    (SenderKey(G, b"\x33" * 4), "940109c410000102030405060708090a0b0c0d0e0fc40433333333"),
    (
        GroupMessage(G, MID, b"ct"),
        "95010ac410000102030405060708090a0b0c0d0e0fc41022222222222222222222222222222222c4026374",
    ),
    (
        GroupKeyRequest(G, 2, (MID,)),
        "95010bc410000102030405060708090a0b0c0d0e0f0291c41022222222222222222222222222222222",
    ),
    (
        # [1, 12, device_id 2, group_id, [the CREATE's 55 bytes], distribution 33333333]
        GroupSync(2, G, (OP,), b"\x33" * 4),
        "96010c02c410000102030405060708090a0b0c0d0e0f91c43797c410000102030405060708090a0b0c0d0e0f"
        "c4100101010101010101010101010101010101a5616c6963650191a3626f62a47465616dc40433333333",
    ),
]


@pytest.mark.parametrize(("content", "hex_bytes"), GOLDEN)
def test_golden_bytes(content: Content, hex_bytes: str) -> None:
    assert content.serialize() == bytes.fromhex(hex_bytes)
    assert parse_content(bytes.fromhex(hex_bytes)) == content


@pytest.mark.parametrize(
    "fields",
    [
        [8, G[:15], [OP.serialize()]],  # short group id
        [8, G, []],  # no change
        [8, G, [b"junk"]],  # not a change
        [8, b"\x09" * 16, [OP.serialize()]],  # a change of another group
        [8, G, [OP.serialize(), OP.serialize()]],  # twice
        [9, G, b""],  # empty distribution
        [9, G, b"x" * 2000],
        [10, G, MID[:4], b"ct"],
        [10, G, MID, b""],
        [11, G, 0, [MID]],
        [11, G, 1, []],
        [11, G, 1, [MID, MID]],
        [11, G, 1, MID],
        [9, G],  # wrong arity
        [12, 0, G, [OP.serialize()], b"k"],  # no device 0
        [12, 2, G, [], b"k"],  # no change
        [12, 2, G, [OP.serialize()], b""],  # no key
        [12, 2, b"\x09" * 16, [OP.serialize()], b"k"],  # a change of another group
        [12, 2, G, [b"junk"], b"k"],
        [12, 2, G, [OP.serialize()]],  # wrong arity
    ],
)
def test_bad_group_content_is_refused(fields: list[object]) -> None:
    with pytest.raises(ContentError):
        parse_content(msgpack.packb([1, *fields], use_bin_type=True))


def test_group_conversation_ids() -> None:
    conv = group_conversation(G)
    assert conv == "group:000102030405060708090a0b0c0d0e0f"
    assert group_of_conversation(conv) == G
    for other in ("alice:bob", "group:00", "group:" + "G" * 32, conv.upper(), "group:" + "A" * 32):
        assert group_of_conversation(other) is None
