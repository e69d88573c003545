"""parse() and FrameDecoder: valid and invalid input, each fed whole, bytewise and with trailing
bytes (see ``streams.py``), and the decoder's error contract."""

from __future__ import annotations

import dataclasses
import pickle

import msgpack
import pytest

from tidings.errors import FrameError
from tidings.wire import (
    MAX_FRAME,
    Ack,
    Deliver,
    ErrorCode,
    Frame,
    FrameDecoder,
    FrameType,
    Hello,
    Ping,
    Send,
    encode,
    parse,
)

from .samples import FIELD_KINDS, GOLDEN, SAMPLES, VALID_WIRE, WRONG_WIRE, Kind, to_python
from .streams import MODES, Mode, decode_error, decode_ok, pack, prefixed

MALFORMED = ErrorCode.MALFORMED_FRAME
INVALID = ErrorCode.INVALID_FIELD
GOOD = Ack(5)  #: a valid frame sent before each bad one: it must still be delivered

# ---------------------------------------------------------------- valid streams


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("frame", [f for _, f, _ in GOLDEN], ids=[n for n, _, _ in GOLDEN])
def test_each_frame_decodes(frame: Frame, mode: Mode) -> None:
    assert decode_ok(encode(frame), mode) == [frame]


@pytest.mark.parametrize("mode", MODES)
def test_many_frames_decode_in_order(mode: Mode) -> None:
    frames = [f for _, f, _ in GOLDEN] * 3
    assert decode_ok(b"".join(encode(f) for f in frames), mode) == frames


@pytest.mark.parametrize("mode", MODES)
def test_an_empty_stream_decodes_to_nothing(mode: Mode) -> None:
    assert decode_ok(b"", mode) == []


def test_frames_drains() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(encode(Ping(1)) + encode(Ping(2)))
    assert decoder.frames() == [Ping(1), Ping(2)]
    assert decoder.frames() == []


def test_an_incomplete_frame_waits_for_its_last_byte() -> None:
    stream = encode(SAMPLES[FrameType.DELIVER])
    decoder = FrameDecoder()
    decoder.receive_data(stream[:3])  # not even the whole length prefix
    decoder.receive_data(stream[3:-1])
    assert decoder.frames() == []
    assert decoder.buffered == len(stream) - 1
    decoder.receive_data(stream[-1:])
    assert decoder.frames() == [SAMPLES[FrameType.DELIVER]]
    assert decoder.buffered == 0


def test_parse_accepts_any_buffer() -> None:
    body = SAMPLES[FrameType.DELIVER].serialize()
    assert parse(bytes(bytearray(body))) == SAMPLES[FrameType.DELIVER]


@pytest.mark.parametrize("frame", [f for _, f, _ in GOLDEN], ids=[n for n, _, _ in GOLDEN])
def test_parsed_frames_are_ordinary_frozen_frames(frame: Frame) -> None:
    # parse() builds frames through a mutable twin class (codec._builder): the result must be
    # indistinguishable from a constructed frame.
    parsed = parse(frame.serialize())
    assert type(parsed) is type(frame)
    assert parsed == frame and hash(parsed) == hash(frame)
    assert repr(parsed) == repr(frame)
    assert dataclasses.replace(parsed) == frame  # type: ignore[type-var]
    assert pickle.loads(pickle.dumps(parsed)) == frame
    field = dataclasses.fields(parsed)[0].name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(parsed, field, 0)


def test_parsed_send_targets_are_targets() -> None:
    parsed = parse(SAMPLES[FrameType.SEND].serialize())
    assert isinstance(parsed, Send)
    assert [type(t).__name__ for t in parsed.targets] == ["Target", "Target"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.targets[0].device_id = 9  # type: ignore[misc]


# ---------------------------------------------------------------- invalid bodies

_ACK = Ack(1234).serialize()
_DELIVER = SAMPLES[FrameType.DELIVER].serialize()

#: (id, body, expected code). Each is refused by parse() and, after a valid frame, by the decoder.
BAD_BODIES: list[tuple[str, bytes, ErrorCode]] = [
    ("empty body", b"", MALFORMED),
    ("trailing zero byte", _ACK + b"\x00", MALFORMED),
    ("trailing second frame", _ACK + _ACK, MALFORMED),
    ("truncated body", _DELIVER[:-1], MALFORMED),
    ("reserved byte 0xc1", b"\xc1", MALFORMED),
    ("a map", msgpack.packb({"type": 6, "seq": 1}), MALFORMED),
    ("an integer", b"\x06", MALFORMED),
    ("a string", msgpack.packb("ack"), MALFORMED),
    ("an empty array", b"\x90", MALFORMED),
    ("type as a string", pack("6", 1), MALFORMED),
    ("type as a bool", pack(True, 1), MALFORMED),
    ("type as a float", pack(6.0, 1), MALFORMED),
    ("type as bytes", pack(b"\x06", 1), MALFORMED),
    ("type nil", pack(None, 1), MALFORMED),
    ("negative type", pack(-6, 1), MALFORMED),
    ("unknown type 0", pack(0, 1), MALFORMED),
    ("unknown type 7", pack(7, 1), MALFORMED),
    ("unknown type 19", pack(19, 1), MALFORMED),
    ("unknown type 28", pack(28, 1), MALFORMED),
    ("unknown type 42", pack(42, 1), MALFORMED),
    ("unknown type 2^40", pack(2**40, 1), MALFORMED),
    ("invalid UTF-8 in a str", b"\x93\x04\x08\xa3b\xffb", MALFORMED),
    ("a map with an integer key", pack(40, {1: 2}), MALFORMED),
    ("an ext value", b"\x92\x28\xd4\x05\x00", INVALID),
    (
        "a msgpack timestamp for a time",
        # SENT [24, message_id, <timestamp ext -1>, false]
        b"\x94\x18" + msgpack.packb(bytes(16)) + b"\xd6\xff\x00\x00\x00\x01\xc2",
        INVALID,
    ),
    ("nesting 5000 deep", b"\x92\x28" + b"\x91" * 5000 + b"\x00", MALFORMED),
    ("an array claiming 2^32-1 elements", b"\xdd\xff\xff\xff\xff\x06", MALFORMED),
    ("a bin claiming 2^32-1 bytes", b"\x92\x28\xc6\xff\xff\xff\xff", MALFORMED),
]


@pytest.mark.parametrize(
    ("body", "code"), [(b, c) for _, b, c in BAD_BODIES], ids=[i for i, _, _ in BAD_BODIES]
)
def test_parse_refuses(body: bytes, code: ErrorCode) -> None:
    with pytest.raises(FrameError) as info:
        parse(body)
    assert info.value.code == code


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("body", "code"), [(b, c) for _, b, c in BAD_BODIES], ids=[i for i, _, _ in BAD_BODIES]
)
def test_decoder_refuses_after_a_good_frame(body: bytes, code: ErrorCode, mode: Mode) -> None:
    frames, error = decode_error(encode(GOOD) + prefixed(body), mode)
    assert frames == [GOOD]
    assert error.code == code


def test_trailing_bytes_are_refused_by_msgpack_itself() -> None:
    # The rule "a body is exactly one MessagePack object" rests on unpackb raising ExtraData:
    # check that it does, and that parse() turns it into FrameError.
    with pytest.raises(msgpack.ExtraData):
        msgpack.unpackb(_ACK + b"\x00")
    with pytest.raises(FrameError) as info:
        parse(_ACK + b"\x00")
    assert isinstance(info.value.__cause__, msgpack.ExtraData)
    assert info.value.reason == "undecodable frame body"


def test_msgpack_defaults_are_what_parse_relies_on() -> None:
    # parse() calls unpackb(body) without options (they cost as much as the decoding): the
    # defaults must stay raw=False, use_list=True, strict_map_key=True.
    assert msgpack.unpackb(b"\x92\xa1a\xc4\x01b") == ["a", b"b"]
    with pytest.raises(ValueError):
        msgpack.unpackb(b"\x81\x01\x02")


def test_unknown_type_names_the_number() -> None:
    with pytest.raises(FrameError) as info:
        parse(pack(42, 1))
    assert info.value.reason == "unknown frame type 42"
    assert info.value.frame_type is None


# ---------------------------------------------------------------- field counts


def _arity_cases() -> list[tuple[str, bytes]]:
    cases = []
    for frame_type, frame in SAMPLES.items():
        fields = frame.fields()
        cases.append((f"{frame_type.name} one short", pack(int(frame_type), *fields[:-1])))
        cases.append((f"{frame_type.name} one extra", pack(int(frame_type), *fields, 0)))
        cases.append((f"{frame_type.name} no fields", pack(int(frame_type))))
    return cases


ARITY_CASES = _arity_cases()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("body", [b for _, b in ARITY_CASES], ids=[i for i, _ in ARITY_CASES])
def test_wrong_field_count_is_refused(body: bytes, mode: Mode) -> None:
    with pytest.raises(FrameError) as info:
        parse(body)
    assert info.value.code == MALFORMED
    assert info.value.frame_type == body[1]
    assert info.value.reason.endswith("has wrong field count")
    frames, error = decode_error(encode(GOOD) + prefixed(body), mode)
    assert (frames, error.code, error.frame_type) == ([GOOD], MALFORMED, body[1])


def test_optional_fields_are_still_on_the_wire() -> None:
    # REGISTER's link_code and REFUSED's lists have Python defaults, not wire defaults.
    register = SAMPLES[FrameType.REGISTER]
    assert register.fields()[-1] is None
    with pytest.raises(FrameError):
        parse(pack(int(FrameType.REGISTER), *register.fields()[:-1]))


# ---------------------------------------------------------------- field types and ranges


def _substituted(frame_type: FrameType, index: int, value: object) -> bytes:
    fields = SAMPLES[frame_type].fields()
    fields[index] = value
    return pack(int(frame_type), *fields)


def _field_cases(table: dict[Kind, list[object]]) -> list[tuple[str, FrameType, int, object]]:
    cases = []
    for frame_type, kinds in FIELD_KINDS.items():
        for index, kind in enumerate(kinds):
            for n, value in enumerate(table[kind]):
                cases.append((f"{frame_type.name}[{index}]-{kind}-{n}", frame_type, index, value))
    return cases


WRONG_CASES = _field_cases(WRONG_WIRE)
VALID_CASES = _field_cases(VALID_WIRE)


@pytest.mark.parametrize(
    ("frame_type", "index", "value"), [c[1:] for c in WRONG_CASES], ids=[c[0] for c in WRONG_CASES]
)
def test_a_wrong_field_value_is_refused(frame_type: FrameType, index: int, value: object) -> None:
    body = _substituted(frame_type, index, value)
    with pytest.raises(FrameError) as info:
        parse(body)
    assert info.value.code in (MALFORMED, INVALID)
    assert info.value.frame_type == frame_type
    for mode in MODES:
        frames, error = decode_error(encode(GOOD) + prefixed(body), mode)
        assert (frames, error.code, error.frame_type) == ([GOOD], info.value.code, frame_type)


@pytest.mark.parametrize(
    ("frame_type", "index", "value"), [c[1:] for c in VALID_CASES], ids=[c[0] for c in VALID_CASES]
)
def test_a_valid_field_value_is_accepted(frame_type: FrameType, index: int, value: object) -> None:
    body = _substituted(frame_type, index, value)
    fields = SAMPLES[frame_type].fields()
    fields[index] = value
    kinds = FIELD_KINDS[frame_type]
    expected = type(SAMPLES[frame_type])(
        *(to_python(k, v) for k, v in zip(kinds, fields, strict=True))
    )
    assert parse(body) == expected
    assert expected.serialize() == body  # the encoder writes what a peer would
    for mode in MODES:
        assert decode_ok(prefixed(body), mode) == [expected]


def test_bool_is_not_an_integer_anywhere() -> None:
    # True == 1 and isinstance(True, int) in Python: every integer field must still refuse it.
    checked = 0
    for frame_type, kinds in FIELD_KINDS.items():
        for index, kind in enumerate(kinds):
            if kind in ("uint", "deliver_kind", "device_id"):
                for value in (True, False):
                    with pytest.raises(FrameError):
                        parse(_substituted(frame_type, index, value))
                checked += 1
    assert checked == 51  # the integer fields of the 40 frame types, DELIVER kind included


def test_float_kind_is_refused_on_the_wire() -> None:
    # Regression: DELIVER accepted kind 1.0 (and True), since 1.0 in (0, 1).
    body = _substituted(FrameType.DELIVER, 1, 1.0)
    with pytest.raises(FrameError) as info:
        parse(body)
    assert info.value.code == INVALID


def test_integers_in_non_canonical_encodings_are_accepted() -> None:
    # Decoders accept any valid MessagePack encoding of a value (here 5 as a uint64).
    assert parse(b"\x92\x06\xcf" + (5).to_bytes(8, "big")) == Ack(5)
    assert parse(b"\xdc\x00\x02\x06\x05") == Ack(5)  # array 16


def test_time_fields_keep_their_integer_or_float_type() -> None:
    frame = Deliver(1, 0, "a", 1, bytes(16), 5, 6.0, b"")
    parsed = parse(frame.serialize())
    assert isinstance(parsed, Deliver)
    assert type(parsed.enqueued_at) is int and type(parsed.expires_at) is float


# ---------------------------------------------------------------- decoder errors


@pytest.mark.parametrize("mode", MODES)
def test_decoder_error_is_sticky(mode: Mode) -> None:
    decoder = FrameDecoder()
    stream = encode(Ping(1)) + prefixed(b"\xc1") + encode(Ping(2))
    chunks = [stream] if mode != "bytewise" else [stream[i : i + 1] for i in range(len(stream))]
    with pytest.raises(FrameError) as first:
        for chunk in chunks:
            decoder.receive_data(chunk)
    assert decoder.frames() == [Ping(1)]  # decoded before the bad frame
    assert decoder.buffered == 0  # nothing after the error is kept
    for later in (encode(Ping(3)), b"", b"\x00"):
        with pytest.raises(FrameError) as again:
            decoder.receive_data(later)
        assert again.value is first.value
    assert decoder.frames() == []
    assert decoder.buffered == 0


def test_decoder_error_names_the_frame_type() -> None:
    decoder = FrameDecoder()
    with pytest.raises(FrameError) as info:
        decoder.receive_data(prefixed(pack(int(FrameType.HELLO), 1, -1)))
    assert (info.value.code, info.value.frame_type) == (INVALID, FrameType.HELLO)
    assert "cursor" in info.value.reason


def test_frames_before_the_bad_one_in_the_same_chunk_survive() -> None:
    decoder = FrameDecoder()
    good = [Hello(1, 0), Ping(1), Ping(2)]
    with pytest.raises(FrameError):
        decoder.receive_data(b"".join(encode(f) for f in good) + prefixed(b"") + encode(Ping(3)))
    assert decoder.frames() == good


@pytest.mark.parametrize("mode", MODES)
def test_a_zero_length_frame_is_refused(mode: Mode) -> None:
    _, error = decode_error(b"\x00\x00\x00\x00", mode)
    assert error.code == MALFORMED


def test_a_length_prefix_over_max_frame_fails_before_its_body() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(encode(Ping(1)))
    with pytest.raises(FrameError) as info:
        decoder.receive_data((MAX_FRAME + 1).to_bytes(4, "big"))
    assert info.value.code == ErrorCode.FRAME_TOO_LARGE
    assert decoder.frames() == [Ping(1)]
    assert decoder.buffered == 0
