"""The content codec: golden bytes, round trips, validation, fuzzing (garbage → ContentError)."""

from __future__ import annotations

import math
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.delivery.content import (
    MAX_BODY,
    MAX_CONTENT,
    MAX_CONVERSATION,
    MAX_RECEIPT_IDS,
    MAX_TIMER,
    Content,
    ContentError,
    Message,
    Receipt,
    ReceiptKind,
    Timer,
    direct_conversation,
    direct_members,
    parse_content,
)
from tidings.errors import FrameError, RemoteProtocolError
from tidings.wire import ErrorCode

ID1 = bytes(range(16))
ID2 = bytes(range(16, 32))

# Frozen encodings (CONVENTIONS §13): a round trip alone passes a symmetric bug.
GOLDEN: list[tuple[Content, str]] = [
    (
        Message("alice:bob", 1, 1.5, b"hi"),
        # [1, 1, "alice:bob", 1, 1.5, b"hi"]
        "96 01 01 a9616c6963653a626f62 01 cb3ff8000000000000 c4026869",
    ),
    (
        Message("alice:bob", 300, 1_700_000_000.25, b""),
        "96 01 01 a9616c6963653a626f62 cd012c cb41d954fc40100000 c400",
    ),
    (
        Receipt(ReceiptKind.READ, (b"\x01" * 16,), 2.0),
        # [1, 2, 2, [bin16], 2.0]
        "95 01 02 02 91 c410" + "01" * 16 + " cb4000000000000000",
    ),
    (
        Receipt(ReceiptKind.DELIVERED, (ID1, ID2), 0.0),
        f"95 01 02 01 92 c410{ID1.hex()} c410{ID2.hex()} cb0000000000000000",
    ),
    (
        Message("alice:bob", 2, 1.5, b"hi", 3600),
        # [1, 1, "alice:bob", 2, 1.5, b"hi", 3600]: a disappearing message
        "97 01 01 a9616c6963653a626f62 02 cb3ff8000000000000 c4026869 cd0e10",
    ),
    (
        Timer("alice:bob", 3600, 2.0),
        # [1, 5, "alice:bob", 3600, 2.0]
        "95 01 05 a9616c6963653a626f62 cd0e10 cb4000000000000000",
    ),
    (
        Timer("alice:bob", 0, 2.0),  # off
        "95 01 05 a9616c6963653a626f62 00 cb4000000000000000",
    ),
]


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


@pytest.mark.parametrize(("content", "hex_bytes"), GOLDEN)
def test_golden_bytes(content: Content, hex_bytes: str) -> None:
    assert content.serialize() == bytes.fromhex(hex_bytes)
    assert parse_content(bytes.fromhex(hex_bytes)) == content


def test_int_timestamps_travel_as_floats() -> None:
    data = Message("a:b", 1, 5, b"x").serialize()
    assert data == Message("a:b", 1, 5.0, b"x").serialize()
    parsed = parse_content(data)
    assert isinstance(parsed, Message)
    assert type(parsed.sent_at) is float


def test_kinds_are_stable() -> None:
    assert int(ReceiptKind.DELIVERED) == 1
    assert int(ReceiptKind.READ) == 2
    assert Message.KIND == 1
    assert Receipt.KIND == 2
    assert Timer.KIND == 5


@pytest.mark.parametrize(
    "args",
    [
        ("a:b", -1, 1.0),
        ("a:b", MAX_TIMER + 1, 1.0),
        ("a:b", 1.5, 1.0),
        ("a:b", True, 1.0),
        ("", 10, 1.0),
        ("a:b", 10, -1.0),
    ],
)
def test_invalid_timer_cannot_be_built(args: tuple[Any, ...]) -> None:
    with pytest.raises(ContentError):
        Timer(*args)


def test_message_timer_limits() -> None:
    assert Message("a:b", 1, 1.0, b"", MAX_TIMER).expires_in == MAX_TIMER
    for bad in (-1, MAX_TIMER + 1, 2.0, None):
        with pytest.raises(ContentError):
            Message("a:b", 1, 1.0, b"", bad)  # type: ignore[arg-type]


def test_content_error_is_a_remote_protocol_error_with_malformed_code() -> None:
    with pytest.raises(ContentError) as info:
        parse_content(b"")
    assert isinstance(info.value, RemoteProtocolError)
    assert info.value.code == ErrorCode.MALFORMED_FRAME


@pytest.mark.parametrize(
    "args",
    [
        ("", 1, 0.0, b""),  # empty conversation
        ("a" * (MAX_CONVERSATION + 1), 1, 0.0, b""),
        ("é" * (MAX_CONVERSATION // 2 + 1), 1, 0.0, b""),  # limit is in bytes
        ("a:b\x1b[2J", 1, 0.0, b""),  # terminal escape
        ("a:\ud800", 1, 0.0, b""),  # lone surrogate
        (b"a:b", 1, 0.0, b""),
        ("a:b", 0, 0.0, b""),  # counters start at 1
        ("a:b", -1, 0.0, b""),
        ("a:b", 1 << 63, 0.0, b""),
        ("a:b", True, 0.0, b""),
        ("a:b", 1.0, 0.0, b""),
        ("a:b", 1, -1.0, b""),
        ("a:b", 1, math.nan, b""),
        ("a:b", 1, math.inf, b""),
        ("a:b", 1, 1e12, b""),
        ("a:b", 1, "0", b""),
        ("a:b", 1, 0.0, "text"),
        ("a:b", 1, 0.0, bytearray(b"x")),
        ("a:b", 1, 0.0, b"x" * (MAX_BODY + 1)),
    ],
)
def test_invalid_message_cannot_be_built(args: tuple[Any, ...]) -> None:
    with pytest.raises(ContentError):
        Message(*args)


def test_limits_are_inclusive() -> None:
    biggest = Message("a" * MAX_CONVERSATION, (1 << 63) - 1, 1e12 - 1, b"x" * MAX_BODY)
    assert len(biggest.serialize()) <= MAX_CONTENT
    assert parse_content(biggest.serialize()) == biggest
    ids = tuple(i.to_bytes(16, "big") for i in range(MAX_RECEIPT_IDS))
    receipt = Receipt(ReceiptKind.DELIVERED, ids, 1.0)
    assert parse_content(receipt.serialize()) == receipt


@pytest.mark.parametrize(
    "args",
    [
        (1, (ID1,), 0.0),  # a plain int, not a ReceiptKind
        (ReceiptKind.READ, (), 0.0),
        (ReceiptKind.READ, [ID1], 0.0),
        (ReceiptKind.READ, (ID1, ID1), 0.0),
        (ReceiptKind.READ, (ID1[:15],), 0.0),
        (ReceiptKind.READ, (ID1 + b"\x00",), 0.0),
        (ReceiptKind.READ, ("x" * 16,), 0.0),
        (ReceiptKind.READ, tuple(i.to_bytes(16, "big") for i in range(MAX_RECEIPT_IDS + 1)), 0.0),
        (ReceiptKind.READ, (ID1,), -0.5),
    ],
)
def test_invalid_receipt_cannot_be_built(args: tuple[Any, ...]) -> None:
    with pytest.raises(ContentError):
        Receipt(*args)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never-used msgpack byte
        pack([1, 1, "a:b", 1, 1.0, b"x"]) + b"\x00",  # trailing bytes
        pack([1, 1, "a:b", 1, 1.0, b"x"])[:-1],  # truncated
        pack({"v": 1}),
        pack(1),
        pack([]),
        pack([1]),
        pack(["1", 1, "a:b", 1, 1.0, b"x"]),
        pack([2, 1, "a:b", 1, 1.0, b"x"]),  # a newer version
        pack([0, 1, "a:b", 1, 1.0, b"x"]),
        pack([1, 3, "a:b", 1, 1.0, b"x"]),  # unknown kind
        pack([1, True, "a:b", 1, 1.0, b"x"]),
        pack([1, 1, "a:b", 1, 1.0]),  # missing field
        pack([1, 1, "a:b", 1, 1.0, b"x", None]),  # extra field
        pack([1, 1, "a:b", 1, 1.0, b"x", 0]),  # expires_in 0 is left out, never sent
        pack([1, 1, "a:b", 1, 1.0, b"x", 10, 1]),
        pack([1, 5, "a:b", 10]),  # a timer without set_at
        pack([1, 5, "a:b", 10, 1.0, 1]),
        pack([1, 5, "a:b", -10, 1.0]),
        pack([1, 5, "a:b", MAX_TIMER + 1, 1.0]),
        pack([1, 1, "a:b", 1, 1.0, "x"]),  # str body
        pack([1, 1, b"a:b", 1, 1.0, b"x"]),  # bin conversation
        pack([1, 1, "a:b", 0, 1.0, b"x"]),
        pack([1, 2, 3, [ID1], 1.0]),  # unknown receipt kind
        pack([1, 2, 1.0, [ID1], 1.0]),
        pack([1, 2, 1, ID1, 1.0]),  # ids not an array
        pack([1, 2, 1, [], 1.0]),
        pack([1, 2, 1, [ID1, ID1], 1.0]),
        pack([1, 2, 1, [[ID1]], 1.0]),  # unhashable id
        pack([1, 2, 1, [ID1], None]),
        b"\xa2\xff\xfe",  # invalid UTF-8 string
        b"\x91" * 100_000,  # deep nesting
        b"\xc4" + b"\x00" * (MAX_CONTENT + 1),  # over the size limit
    ],
)
def test_parse_refuses(data: bytes) -> None:
    with pytest.raises(ContentError):
        parse_content(data)


def test_direct_conversation() -> None:
    assert direct_conversation("bob", "alice") == "alice:bob"
    assert direct_conversation("alice", "bob") == "alice:bob"
    assert direct_conversation("alice", "alice") == "alice:alice"
    assert direct_members("alice:bob") == ("alice", "bob")
    with pytest.raises(FrameError):
        direct_conversation("Alice", "bob")
    with pytest.raises(FrameError):
        direct_conversation("a:b", "c")


@pytest.mark.parametrize("conversation", ["bob:alice", "alice", "alice:bob:carol", ":", "A:b"])
def test_direct_members_refuses_non_direct_ids(conversation: str) -> None:
    with pytest.raises(ContentError):
        direct_members(conversation)


# ------------------------------------------------------------ properties and fuzzing

conversations = st.text(
    st.characters(exclude_categories=["Cc", "Cs"]), min_size=1, max_size=40
).filter(lambda s: len(s.encode()) <= MAX_CONVERSATION)
times = st.floats(min_value=0, max_value=1e12, exclude_max=True)
messages = st.builds(
    Message,
    conversations,
    st.integers(1, (1 << 63) - 1),
    times,
    st.binary(max_size=64),
    st.integers(0, MAX_TIMER),
)
timers = st.builds(Timer, conversations, st.integers(0, MAX_TIMER), times)
receipts = st.builds(
    Receipt,
    st.sampled_from(ReceiptKind),
    st.lists(st.binary(min_size=16, max_size=16), min_size=1, max_size=8, unique=True).map(tuple),
    times,
)


@given(st.one_of(messages, receipts, timers))
def test_round_trip(content: Content) -> None:
    assert parse_content(content.serialize()) == content


def check_garbage(data: bytes) -> None:
    """Garbage parses to valid content or raises ContentError, nothing else."""
    try:
        content = parse_content(data)
    except ContentError:
        return
    assert parse_content(content.serialize()) == content


@given(st.binary(max_size=256))
def test_fuzz_random_bytes(data: bytes) -> None:
    check_garbage(data)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(1 << 63), (1 << 64) - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=4),
    max_leaves=12,
)


@given(st.integers(0, 2), st.integers(0, 6), st.lists(msgpack_values, max_size=6))
def test_fuzz_well_formed_msgpack(version: int, kind: int, fields: list[Any]) -> None:
    check_garbage(pack([version, kind, *fields]))


@given(st.one_of(messages, receipts, timers), st.data())
def test_fuzz_mutated_valid_content(content: Content, data: st.DataObject) -> None:
    raw = bytearray(content.serialize())
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(st.integers(0, 255))
    check_garbage(bytes(raw[: data.draw(st.integers(0, len(raw)))]))
