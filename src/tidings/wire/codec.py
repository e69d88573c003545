"""Frame codec: one frame body ↔ a :class:`Frame`, and a stream of length-prefixed frames.

On the wire (inside the Noise transport), frames form a byte stream; each frame is a 4-byte
big-endian length followed by that many bytes of MessagePack body. A frame may span several Noise
messages and a Noise message may hold several frames.

:class:`FrameDecoder` is sans-I/O: ``receive_data(data)`` then ``frames()``. It never raises for
what the peer sent except :class:`~tidings.errors.FrameError`, the documented exception, after
which the decoder is dead (sticky): the connection must be closed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from ..errors import FrameError
from .frames import (
    Ack,
    Deliver,
    Devices,
    Error,
    Frame,
    FrameType,
    GetDevices,
    Hello,
    LinkCode,
    LinkCodeRequest,
    Ping,
    Pong,
    Refused,
    Register,
    Registered,
    Send,
    Sent,
    Target,
    Welcome,
)
from .limits import (
    LENGTH_PREFIX,
    MAX_CONTROL_FRAME,
    MAX_DELIVER_FRAME,
    MAX_FRAME,
    MAX_SEND_FRAME,
    MAX_TARGETS,
    ErrorCode,
)

#: Size limit of each frame type's body.
FRAME_LIMITS: dict[FrameType, int] = {t: MAX_CONTROL_FRAME for t in FrameType}
FRAME_LIMITS[FrameType.SEND] = MAX_SEND_FRAME
FRAME_LIMITS[FrameType.DELIVER] = MAX_DELIVER_FRAME
FRAME_LIMITS[FrameType.DEVICES] = MAX_CONTROL_FRAME + 16 * MAX_TARGETS


def _refs(value: Any) -> tuple[tuple[str, int], ...]:
    if type(value) is not list:
        raise TypeError("a device list must be an array")
    return tuple((r[0], r[1]) if type(r) is list and len(r) == 2 else r for r in value)


def _send(f: list[Any]) -> Send:
    message_id, recipient, targets = f
    if type(targets) is not list:
        raise TypeError("targets must be an array")
    parsed = []
    for t in targets:
        if type(t) is not list or len(t) != 3:
            raise TypeError("a target is [account, device_id, payload]")
        parsed.append(Target(t[0], t[1], t[2]))
    return Send(message_id, recipient, tuple(parsed))


def _devices(f: list[Any]) -> Devices:
    request_id, account, ids = f
    if type(ids) is not list:
        raise TypeError("device_ids must be an array")
    return Devices(request_id, account, tuple(ids))


def _refused(f: list[Any]) -> Refused:
    message_id, code, reason, missing, stale, retry_after = f
    return Refused(message_id, code, reason, _refs(missing), _refs(stale), retry_after)


_BUILDERS: dict[int, Callable[[list[Any]], Frame]] = {
    FrameType.HELLO: lambda f: Hello(*f),
    FrameType.REGISTER: lambda f: Register(*f),
    FrameType.LINK_CODE_REQUEST: lambda f: LinkCodeRequest(*f),
    FrameType.GET_DEVICES: lambda f: GetDevices(*f),
    FrameType.SEND: _send,
    FrameType.ACK: lambda f: Ack(*f),
    FrameType.WELCOME: lambda f: Welcome(*f),
    FrameType.REGISTERED: lambda f: Registered(*f),
    FrameType.LINK_CODE: lambda f: LinkCode(*f),
    FrameType.DEVICES: _devices,
    FrameType.SENT: lambda f: Sent(*f),
    FrameType.REFUSED: _refused,
    FrameType.DELIVER: lambda f: Deliver(*f),
    FrameType.ERROR: lambda f: Error(*f),
    FrameType.PING: lambda f: Ping(*f),
    FrameType.PONG: lambda f: Pong(*f),
}

#: Field count of each frame type (after the type number); exact, no optional trailing fields.
_ARITY = {
    FrameType.HELLO: 2,
    FrameType.REGISTER: 4,
    FrameType.LINK_CODE_REQUEST: 1,
    FrameType.GET_DEVICES: 2,
    FrameType.SEND: 3,
    FrameType.ACK: 1,
    FrameType.WELCOME: 5,
    FrameType.REGISTERED: 2,
    FrameType.LINK_CODE: 3,
    FrameType.DEVICES: 3,
    FrameType.SENT: 3,
    FrameType.REFUSED: 6,
    FrameType.DELIVER: 8,
    FrameType.ERROR: 3,
    FrameType.PING: 1,
    FrameType.PONG: 1,
}


def parse(body: bytes) -> Frame:
    """Parse one frame body.

    Raises:
        FrameError: the body is not a valid frame (code MALFORMED_FRAME, FRAME_TOO_LARGE or
            INVALID_FIELD). Nothing else, whatever the bytes.
    """
    if len(body) > MAX_FRAME:
        raise FrameError(ErrorCode.FRAME_TOO_LARGE, "frame over the largest frame size")
    try:
        obj = msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise FrameError(ErrorCode.MALFORMED_FRAME, "undecodable frame body") from exc
    if type(obj) is not list or not obj or type(obj[0]) is not int:
        raise FrameError(ErrorCode.MALFORMED_FRAME, "a frame is an array [type, ...]")
    type_no = obj[0]
    builder = _BUILDERS.get(type_no)
    if builder is None:
        raise FrameError(ErrorCode.MALFORMED_FRAME, f"unknown frame type {type_no}")
    ftype = FrameType(type_no)
    if len(body) > FRAME_LIMITS[ftype]:
        raise FrameError(ErrorCode.FRAME_TOO_LARGE, f"{ftype.name} frame too large", type_no)
    if len(obj) - 1 != _ARITY[ftype]:
        raise FrameError(ErrorCode.MALFORMED_FRAME, f"{ftype.name} has wrong field count", type_no)
    try:
        return builder(obj[1:])
    except FrameError:
        raise
    except (TypeError, ValueError, IndexError, AttributeError) as exc:
        raise FrameError(ErrorCode.MALFORMED_FRAME, f"bad {ftype.name} fields", type_no) from exc


def encode(frame: Frame) -> bytes:
    """A frame as it goes into the stream: 4-byte big-endian length, then the body."""
    body = frame.serialize()
    return len(body).to_bytes(LENGTH_PREFIX, "big") + body


class FrameDecoder:
    """Splits a byte stream into frames.

    Call order: ``receive_data(data)`` any number of times, then ``frames()`` to drain what is
    complete. A length prefix over :data:`MAX_FRAME` is refused at once, before any of the body
    is buffered, so a peer cannot make us hold more than ``MAX_FRAME + 4`` bytes.
    """

    __slots__ = ("_buf", "_dead", "_frames")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._frames: list[Frame] = []
        self._dead: FrameError | None = None

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the stream.

        Raises:
            FrameError: the stream holds an invalid frame. The decoder stays failed: every later
                call raises the same error. Frames decoded before the bad one are still
                returned by :meth:`frames`.
        """
        if self._dead is not None:
            raise self._dead
        buf = self._buf
        buf += data
        pos = 0
        try:
            while len(buf) - pos >= LENGTH_PREFIX:
                size = int.from_bytes(buf[pos : pos + LENGTH_PREFIX], "big")
                if size > MAX_FRAME:
                    raise FrameError(ErrorCode.FRAME_TOO_LARGE, "length prefix over the limit")
                end = pos + LENGTH_PREFIX + size
                if len(buf) < end:
                    break
                self._frames.append(parse(bytes(buf[pos + LENGTH_PREFIX : end])))
                pos = end
        except FrameError as exc:
            self._dead = exc
            del buf[:]
            raise
        del buf[:pos]

    def frames(self) -> list[Frame]:
        """Return and forget the frames decoded so far."""
        out, self._frames = self._frames, []
        return out

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf)
