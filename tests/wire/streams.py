"""Feeding a :class:`FrameDecoder` the three ways every parser test uses (CONVENTIONS §10).

* ``whole``: the stream in one ``receive_data`` call;
* ``bytewise``: one byte per call;
* ``trailing``: the stream in one call followed by most of one more frame (a PING missing its
  last byte), which must stay buffered and then complete when its last byte arrives.

:func:`decode` returns the frames and the error; the assertions on the trailing frame are made
there, so that every test checks them.
"""

from __future__ import annotations

from typing import Literal

import msgpack

from tidings.errors import FrameError
from tidings.wire import Frame, FrameDecoder, Ping, encode

Mode = Literal["whole", "bytewise", "trailing"]
MODES: tuple[Mode, ...] = ("whole", "bytewise", "trailing")

NEXT_FRAME = Ping(424242)
PARTIAL = encode(NEXT_FRAME)[:-1]  #: the next frame, one byte short


def prefixed(body: bytes) -> bytes:
    """``body`` as it travels in the stream: 4-byte big-endian length, then the body."""
    return len(body).to_bytes(4, "big") + body


def pack(*values: object) -> bytes:
    """A MessagePack body as a peer could send it (bin for bytes, str for str)."""
    return msgpack.packb(list(values), use_bin_type=True)


def decode(stream: bytes, mode: Mode) -> tuple[list[Frame], FrameError | None]:
    """Feed ``stream`` to a new decoder in ``mode``; return the frames and the error, if any.

    In ``trailing`` mode a stream that decodes cleanly must leave exactly the partial next frame
    buffered, and that frame must arrive once its last byte does.
    """
    decoder = FrameDecoder()
    try:
        if mode == "whole":
            decoder.receive_data(stream)
        elif mode == "bytewise":
            for i in range(len(stream)):
                decoder.receive_data(stream[i : i + 1])
        else:
            decoder.receive_data(stream + PARTIAL)
    except FrameError as exc:
        return decoder.frames(), exc
    frames = decoder.frames()
    if mode == "trailing":
        assert decoder.buffered == len(PARTIAL)
        decoder.receive_data(encode(NEXT_FRAME)[-1:])
        assert decoder.frames() == [NEXT_FRAME]
    assert decoder.buffered == 0
    return frames, None


def decode_ok(stream: bytes, mode: Mode) -> list[Frame]:
    """The frames of a stream that must decode without error."""
    frames, error = decode(stream, mode)
    assert error is None, repr(error)
    return frames


def decode_error(stream: bytes, mode: Mode) -> tuple[list[Frame], FrameError]:
    """The frames before the error, and the error, of a stream that must fail."""
    frames, error = decode(stream, mode)
    assert error is not None, f"accepted: {frames!r}"
    return frames, error
