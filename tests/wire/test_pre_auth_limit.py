"""MAX_PRE_AUTH_FRAME fits every frame legal before HELLO, and the decoder's lifted limit."""

from __future__ import annotations

import pytest

from tidings.errors import FrameError
from tidings.wire import (
    MAX_CONTROL_FRAME,
    MAX_FRAME,
    MAX_PRE_AUTH_FRAME,
    ErrorCode,
    FrameDecoder,
    FrameType,
    Hello,
    Ping,
    Register,
    encode,
)
from tidings.wire.frames import Error
from tidings.wire.limits import MAX_ACCOUNT_NAME, MAX_DEVICE_NAME, MAX_LINK_CODE, MAX_REASON

UINT_MAX = 2**63 - 1


def body_len(frame: object) -> int:
    return len(encode(frame)) - 4  # type: ignore[arg-type]


def test_the_largest_frames_legal_before_hello_fit() -> None:
    register = Register(
        UINT_MAX, "a" * MAX_ACCOUNT_NAME, "é" * (MAX_DEVICE_NAME // 2), b"\xff" * 64
    )
    assert len(register.link_code or b"") == MAX_LINK_CODE
    error = Error(UINT_MAX, UINT_MAX, "é" * (MAX_REASON // 2))
    sizes = [body_len(register), body_len(Hello(UINT_MAX, UINT_MAX)), body_len(Ping(UINT_MAX))]
    assert max(sizes) == body_len(register) == 177  # the number limits.py states
    assert body_len(error) == 279
    assert max(*sizes, body_len(error)) <= MAX_PRE_AUTH_FRAME < MAX_CONTROL_FRAME


def test_the_limit_holds_until_the_lifting_frame_then_max_frame() -> None:
    decoder = FrameDecoder(MAX_PRE_AUTH_FRAME, lifted_by=FrameType.HELLO)
    decoder.receive_data(encode(Ping(1)))
    assert decoder.max_frame == MAX_PRE_AUTH_FRAME
    # HELLO and a long prefix in the same data: the prefix is judged by the lifted limit
    decoder.receive_data(encode(Hello(1, 0)) + (MAX_FRAME).to_bytes(4, "big"))
    assert decoder.max_frame == MAX_FRAME and decoder.buffered == 4
    assert decoder.frames() == [Ping(1), Hello(1, 0)]


def test_a_prefix_over_the_limit_is_refused_before_its_body() -> None:
    decoder = FrameDecoder(MAX_PRE_AUTH_FRAME, lifted_by=FrameType.HELLO)
    with pytest.raises(FrameError) as info:
        decoder.receive_data((MAX_PRE_AUTH_FRAME + 1).to_bytes(4, "big"))
    assert info.value.code == ErrorCode.FRAME_TOO_LARGE
    assert decoder.buffered == 0


@pytest.mark.parametrize("limit", [0, -1, MAX_FRAME + 1])
def test_the_limit_must_be_within_max_frame(limit: int) -> None:
    with pytest.raises(ValueError):
        FrameDecoder(limit)
