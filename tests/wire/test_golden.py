"""Known-answer tests of the wire format: every frame type against its frozen bytes.

A round trip alone passes a symmetric bug (an encoder and decoder that agree on the wrong
thing); these fail on any change of the bytes themselves (CONVENTIONS §13).
"""

from __future__ import annotations

import pytest

from tidings.wire import Frame, FrameDecoder, FrameType, encode, parse

from .samples import GOLDEN, SAMPLES

IDS = [name for name, _, _ in GOLDEN]


def test_every_frame_type_has_a_golden_sample() -> None:
    assert set(SAMPLES) == set(FrameType)


@pytest.mark.parametrize(("frame", "hex_body"), [(f, h) for _, f, h in GOLDEN], ids=IDS)
def test_serialize_gives_the_frozen_bytes(frame: Frame, hex_body: str) -> None:
    assert frame.serialize().hex() == hex_body


@pytest.mark.parametrize(("frame", "hex_body"), [(f, h) for _, f, h in GOLDEN], ids=IDS)
def test_parse_of_the_frozen_bytes_gives_the_frame(frame: Frame, hex_body: str) -> None:
    parsed = parse(bytes.fromhex(hex_body))
    assert parsed == frame
    assert type(parsed) is type(frame)


@pytest.mark.parametrize(("frame", "hex_body"), [(f, h) for _, f, h in GOLDEN], ids=IDS)
def test_encode_prefixes_the_body_with_its_big_endian_length(frame: Frame, hex_body: str) -> None:
    body = bytes.fromhex(hex_body)
    assert encode(frame) == len(body).to_bytes(4, "big") + body


def test_first_body_bytes_are_an_array_header_and_the_type_number() -> None:
    # Every frame is a fixarray (0x90 | field count + 1) whose first element is the type number
    # as a positive fixint: docs/protocol.md "Framing".
    for frame_type, frame in SAMPLES.items():
        body = frame.serialize()
        assert body[0] == 0x90 | (len(frame.fields()) + 1)
        assert body[1] == frame_type


def test_a_stream_of_every_golden_frame_decodes_in_order() -> None:
    stream = b"".join(
        len(bytes.fromhex(h)).to_bytes(4, "big") + bytes.fromhex(h) for *_, h in GOLDEN
    )
    decoder = FrameDecoder()
    decoder.receive_data(stream)
    assert decoder.frames() == [f for _, f, _ in GOLDEN]
    assert decoder.buffered == 0


def test_frame_type_numbers_are_stable() -> None:
    assert {t.name: int(t) for t in FrameType} == {
        "HELLO": 1,
        "REGISTER": 2,
        "LINK_CODE_REQUEST": 3,
        "GET_DEVICES": 4,
        "SEND": 5,
        "ACK": 6,
        "PREKEYS_UPLOAD": 7,
        "PREKEY_FETCH": 8,
        "PUSH_REGISTER": 9,
        "PUSH_UNREGISTER": 10,
        "PUSH_QUERY": 11,
        "UNLINK": 12,
        "MULTI_SEND": 13,
        "WELCOME": 20,
        "REGISTERED": 21,
        "LINK_CODE": 22,
        "DEVICES": 23,
        "SENT": 24,
        "REFUSED": 25,
        "DELIVER": 26,
        "ERROR": 27,
        "PREKEY_BUNDLE": 28,
        "REQUEST_FAILED": 29,
        "PREKEYS_LOW": 30,
        "PREKEYS_STORED": 31,
        "PUSH_STATUS": 32,
        "MULTI_SENT": 33,
        "PING": 40,
        "PONG": 41,
        "DEVICE_QUERY": 14,
        "DEVICE_DETAILS": 34,
        "SENDER_CERT_REQUEST": 15,
        "SET_ACCESS_KEY": 16,
        "SEALED_SEND": 17,
        "TAG_QUERY": 18,
        "SENDER_CERT": 35,
        "SEALED_SENT": 36,
        "TAG_STATUS": 37,
        "SEALED_MULTI_SEND": 19,
        "SEALED_MULTI_SENT": 38,
    }
