"""Frame codec: one frame body ↔ a :class:`Frame`, and a stream of length-prefixed frames.

On the wire (inside the Noise transport), frames form a byte stream; each frame is a 4-byte
big-endian length followed by that many bytes of MessagePack body. A frame may span several Noise
messages and a Noise message may hold several frames.

:class:`FrameDecoder` is sans-I/O: ``receive_data(data)`` then ``frames()``. It never raises for
what the peer sent except :class:`~tidings.errors.FrameError`, the documented exception, after
which the decoder is dead (sticky): the connection must be closed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import msgpack

from ..errors import FrameError
from .certs import DeviceDetails, DeviceQuery, parse_device_details, parse_device_query
from .devices import Unlink
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
    MAX_DEVICE_CERTIFICATE,
    MAX_FRAME,
    MAX_PREKEY_BUNDLE_FRAME,
    MAX_PREKEYS_UPLOAD_FRAME,
    MAX_SEND_FRAME,
    MAX_TAGS_PER_QUERY,
    MAX_TARGETS,
    ErrorCode,
)
from .multisend import AccountRefusal, MultiAccount, MultiDevice, MultiSend, MultiSent
from .prekeys import (
    KemKey,
    OneTimeKey,
    PrekeyBundle,
    PrekeyFetch,
    PrekeysLow,
    PrekeysStored,
    PrekeysUpload,
    RequestFailed,
    SignedKey,
)
from .push import PushQuery, PushRegister, PushStatus, PushUnregister
from .sealed import (
    SealedSend,
    SealedSent,
    SenderCert,
    SenderCertRequest,
    SetAccessKey,
    TagQuery,
    TagStatus,
    parse_sealed_send,
    parse_sealed_sent,
    parse_tag_query,
    parse_tag_status,
)
from .sealed_multi import (
    SealedMultiSend,
    SealedMultiSent,
    parse_sealed_multi_send,
    parse_sealed_multi_sent,
)

#: Size limit of each frame type's body.
FRAME_LIMITS: dict[FrameType, int] = {t: MAX_CONTROL_FRAME for t in FrameType}
FRAME_LIMITS[FrameType.SEND] = MAX_SEND_FRAME
FRAME_LIMITS[FrameType.DELIVER] = MAX_DELIVER_FRAME
FRAME_LIMITS[FrameType.DEVICES] = MAX_CONTROL_FRAME + 16 * MAX_TARGETS
FRAME_LIMITS[FrameType.PREKEYS_UPLOAD] = MAX_PREKEYS_UPLOAD_FRAME
FRAME_LIMITS[FrameType.PREKEY_BUNDLE] = MAX_PREKEY_BUNDLE_FRAME
# A MULTI_SEND of 1,000 devices is ~140 KB besides its shared part; its answer, at worst 1,000
# refused accounts with 64 device ids each, ~620 KB: both within the largest frame.
FRAME_LIMITS[FrameType.MULTI_SEND] = MAX_SEND_FRAME
FRAME_LIMITS[FrameType.MULTI_SENT] = MAX_SEND_FRAME
# A sealed send carries a payload per device, as SEND.
FRAME_LIMITS[FrameType.SEALED_SEND] = MAX_SEND_FRAME
# The sealed multi-send is MULTI_SEND's size plus 18 bytes per account (its access key).
FRAME_LIMITS[FrameType.SEALED_MULTI_SEND] = MAX_SEND_FRAME
FRAME_LIMITS[FrameType.SEALED_MULTI_SENT] = MAX_SEND_FRAME
# A tag is 18 bytes on the wire (20 with its state): 256 of them are ~5 KB.
FRAME_LIMITS[FrameType.TAG_QUERY] = MAX_CONTROL_FRAME + 20 * MAX_TAGS_PER_QUERY
FRAME_LIMITS[FrameType.TAG_STATUS] = MAX_CONTROL_FRAME + 20 * MAX_TAGS_PER_QUERY
FRAME_LIMITS[FrameType.DEVICE_DETAILS] = MAX_CONTROL_FRAME + MAX_TARGETS * (
    MAX_DEVICE_CERTIFICATE + 32
)


_T = TypeVar("_T")


def _builder(cls: type[_T]) -> Callable[..., _T]:
    """``cls(*fields)`` for :func:`parse`: same checks, same result, less time.

    CPython's frozen dataclass ``__init__`` sets each field with ``object.__setattr__``, about
    150 ns a field: more than checking it (for DELIVER, half the cost of parsing it). Here a
    mutable twin of ``cls`` (same base and slots, so the same memory layout) is filled with
    plain assignments, becomes a ``cls`` by assigning ``__class__`` (Python allows it between
    classes of one layout), and is then validated by ``cls.__post_init__``, as construction
    would. What it returns is an ordinary ``cls``: tests/wire/test_codec.py checks equality,
    hashing, immutability and pickling of parsed frames.
    """
    twin: Any = dataclasses.make_dataclass(
        f"_Mutable{cls.__name__}",
        [f.name for f in dataclasses.fields(cls)],  # type: ignore[arg-type]
        bases=cls.__bases__,
        namespace={"TYPE": getattr(cls, "TYPE", None)},
        slots=True,
    )
    if twin.__slots__ != getattr(cls, "__slots__", None):
        raise RuntimeError(f"{cls.__name__} and its twin differ in layout")
    post_init: Callable[[Any], None] | None = getattr(cls, "__post_init__", None)

    def build(*values: Any) -> _T:
        obj = twin(*values)
        obj.__class__ = cls
        if post_init is not None:
            post_init(obj)
        return obj  # type: ignore[no-any-return]

    return build


_target = _builder(Target)
_new_send = _builder(Send)
_new_devices = _builder(Devices)
_new_refused = _builder(Refused)


_one_time_key = _builder(OneTimeKey)
_signed_key = _builder(SignedKey)
_kem_key = _builder(KemKey)
_new_upload = _builder(PrekeysUpload)
_new_bundle = _builder(PrekeyBundle)


def _array(value: Any, size: int, what: str) -> list[Any]:
    if type(value) is not list or len(value) != size:
        raise TypeError(f"{what} must be an array of {size}")
    return value


def _signed(value: Any) -> SignedKey:
    return _signed_key(*_array(value, 3, "a signed prekey"))


def _one_time(value: Any) -> OneTimeKey:
    return _one_time_key(*_array(value, 2, "a one-time prekey"))


def _kem(value: Any) -> KemKey:
    return _kem_key(*_array(value, 4, "a KEM prekey"))


def _list(value: Any, what: str) -> list[Any]:
    if type(value) is not list:
        raise TypeError(f"{what} must be an array")
    return value


def _upload(request_id: Any, identity: Any, signed: Any, one_time: Any, kem: Any) -> Frame:
    return _new_upload(
        request_id,
        identity,
        _signed(signed),
        tuple(_one_time(k) for k in _list(one_time, "one_time")),
        tuple(_kem(k) for k in _list(kem, "kem_prekeys")),
    )


def _bundle(
    request_id: Any,
    account: Any,
    device_id: Any,
    identity: Any,
    signed: Any,
    one_time: Any,
    kem: Any,
) -> Frame:
    one = None if one_time is None else _one_time(one_time)
    return _new_bundle(request_id, account, device_id, identity, _signed(signed), one, _kem(kem))


def _refs(value: Any) -> tuple[tuple[str, int], ...]:
    if type(value) is not list:
        raise TypeError("a device list must be an array")
    return tuple((r[0], r[1]) if type(r) is list and len(r) == 2 else r for r in value)


def _send(message_id: Any, recipient: Any, targets: Any) -> Send:
    if type(targets) is not list:
        raise TypeError("targets must be an array")
    parsed = []
    for t in targets:
        if type(t) is not list or len(t) != 3:
            raise TypeError("a target is [account, device_id, payload]")
        parsed.append(_target(t[0], t[1], t[2]))
    return _new_send(message_id, recipient, tuple(parsed))


def _devices(request_id: Any, account: Any, ids: Any) -> Devices:
    if type(ids) is not list:
        raise TypeError("device_ids must be an array")
    return _new_devices(request_id, account, tuple(ids))


def _refused(
    message_id: Any, code: Any, reason: Any, missing: Any, stale: Any, retry_after: Any
) -> Refused:
    return _new_refused(message_id, code, reason, _refs(missing), _refs(stale), retry_after)


_multi_device = _builder(MultiDevice)
_multi_account = _builder(MultiAccount)
_new_multi_send = _builder(MultiSend)
_account_refusal = _builder(AccountRefusal)
_new_multi_sent = _builder(MultiSent)


def _multi_send(request_id: Any, message_id: Any, shared: Any, recipients: Any) -> MultiSend:
    parsed = []
    for entry in _list(recipients, "recipients"):
        account, devices = _array(entry, 2, "a recipient account")
        parts = tuple(
            _multi_device(*_array(d, 2, "a recipient device")) for d in _list(devices, "devices")
        )
        parsed.append(_multi_account(account, parts))
    return _new_multi_send(request_id, message_id, shared, tuple(parsed))


def _multi_sent(
    request_id: Any,
    message_id: Any,
    code: Any,
    stored_at: Any,
    duplicate: Any,
    reason: Any,
    retry_after: Any,
    refusals: Any,
) -> MultiSent:
    parsed = []
    for r in _list(refusals, "refusals"):
        account, code_no, missing, stale = _array(r, 4, "a refusal")
        parsed.append(
            _account_refusal(
                account, code_no, tuple(_list(missing, "missing")), tuple(_list(stale, "stale"))
            )
        )
    return _new_multi_sent(
        request_id, message_id, code, stored_at, duplicate, reason, retry_after, tuple(parsed)
    )


# Frames whose fields are all MessagePack scalars are built from the list as it is.
_BUILDERS: dict[FrameType, Callable[..., Frame]] = {
    FrameType.HELLO: _builder(Hello),
    FrameType.REGISTER: _builder(Register),
    FrameType.LINK_CODE_REQUEST: _builder(LinkCodeRequest),
    FrameType.GET_DEVICES: _builder(GetDevices),
    FrameType.SEND: _send,
    FrameType.ACK: _builder(Ack),
    FrameType.PREKEYS_UPLOAD: _upload,
    FrameType.PREKEY_FETCH: _builder(PrekeyFetch),
    FrameType.PUSH_REGISTER: _builder(PushRegister),
    FrameType.PUSH_UNREGISTER: _builder(PushUnregister),
    FrameType.PUSH_QUERY: _builder(PushQuery),
    FrameType.UNLINK: _builder(Unlink),
    FrameType.WELCOME: _builder(Welcome),
    FrameType.REGISTERED: _builder(Registered),
    FrameType.LINK_CODE: _builder(LinkCode),
    FrameType.DEVICES: _devices,
    FrameType.SENT: _builder(Sent),
    FrameType.REFUSED: _refused,
    FrameType.DELIVER: _builder(Deliver),
    FrameType.ERROR: _builder(Error),
    FrameType.PREKEY_BUNDLE: _bundle,
    FrameType.REQUEST_FAILED: _builder(RequestFailed),
    FrameType.PREKEYS_LOW: _builder(PrekeysLow),
    FrameType.PREKEYS_STORED: _builder(PrekeysStored),
    FrameType.PUSH_STATUS: _builder(PushStatus),
    FrameType.PING: _builder(Ping),
    FrameType.PONG: _builder(Pong),
    FrameType.MULTI_SEND: _multi_send,
    FrameType.MULTI_SENT: _multi_sent,
    FrameType.DEVICE_QUERY: parse_device_query,
    FrameType.DEVICE_DETAILS: parse_device_details,
    FrameType.SENDER_CERT_REQUEST: _builder(SenderCertRequest),
    FrameType.SET_ACCESS_KEY: _builder(SetAccessKey),
    FrameType.SEALED_SEND: parse_sealed_send,
    FrameType.TAG_QUERY: parse_tag_query,
    FrameType.SENDER_CERT: _builder(SenderCert),
    FrameType.SEALED_SENT: parse_sealed_sent,
    FrameType.TAG_STATUS: parse_tag_status,
    FrameType.SEALED_MULTI_SEND: parse_sealed_multi_send,
    FrameType.SEALED_MULTI_SENT: parse_sealed_multi_sent,
}

_CLASSES: tuple[type[Frame], ...] = (
    Hello,
    Register,
    LinkCodeRequest,
    GetDevices,
    Send,
    Ack,
    PrekeysUpload,
    PrekeyFetch,
    PushRegister,
    PushUnregister,
    PushQuery,
    Unlink,
    Welcome,
    Registered,
    LinkCode,
    Devices,
    Sent,
    Refused,
    Deliver,
    Error,
    PrekeyBundle,
    RequestFailed,
    PrekeysLow,
    PrekeysStored,
    PushStatus,
    Ping,
    Pong,
    MultiSend,
    MultiSent,
    DeviceQuery,
    DeviceDetails,
    SenderCertRequest,
    SetAccessKey,
    SealedSend,
    TagQuery,
    SenderCert,
    SealedSent,
    TagStatus,
    SealedMultiSend,
    SealedMultiSent,
)

# What parse() needs per type number, in one plain-int lookup (constructing the FrameType enum
# costs more than decoding a small frame): (size limit, field count, builder). The field count
# is exact, with no optional trailing fields: every dataclass field is on the wire.
_SPECS: dict[int, tuple[int, int, Callable[..., Frame]]] = {
    int(cls.TYPE): (
        FRAME_LIMITS[cls.TYPE],
        len(dataclasses.fields(cls)),  # type: ignore[arg-type]  # each frame is a dataclass
        _BUILDERS[cls.TYPE],
    )
    for cls in _CLASSES
}
assert len(_SPECS) == len(FrameType)

_unpackb = msgpack.unpackb


def parse(body: bytes) -> Frame:
    """Parse one frame body.

    Raises:
        FrameError: the body is not a valid frame (code MALFORMED_FRAME, FRAME_TOO_LARGE or
            INVALID_FIELD). Nothing else, whatever the bytes.
    """
    size = len(body)
    if size > MAX_FRAME:
        raise FrameError(ErrorCode.FRAME_TOO_LARGE, "frame over the largest frame size")
    try:
        # msgpack >= 1.0 defaults, which tests/wire pin: raw=False (str is decoded UTF-8, bin
        # stays bytes), use_list=True, strict_map_key=True. Passing them as keywords would
        # double the cost of decoding a small frame. Trailing bytes raise ExtraData.
        obj = _unpackb(body)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise FrameError(ErrorCode.MALFORMED_FRAME, "undecodable frame body") from exc
    if type(obj) is not list or not obj or type(obj[0]) is not int:
        raise FrameError(ErrorCode.MALFORMED_FRAME, "a frame is an array [type, ...]")
    type_no: int = obj[0]
    spec = _SPECS.get(type_no)
    if spec is None:
        raise FrameError(ErrorCode.MALFORMED_FRAME, f"unknown frame type {type_no}")
    limit, arity, build = spec
    if size > limit:
        name = FrameType(type_no).name
        raise FrameError(ErrorCode.FRAME_TOO_LARGE, f"{name} frame too large", type_no)
    if len(obj) != arity + 1:
        name = FrameType(type_no).name
        raise FrameError(ErrorCode.MALFORMED_FRAME, f"{name} has wrong field count", type_no)
    try:
        return build(*obj[1:])
    except FrameError:
        raise
    except (TypeError, ValueError, IndexError, AttributeError) as exc:
        name = FrameType(type_no).name
        raise FrameError(ErrorCode.MALFORMED_FRAME, f"bad {name} fields", type_no) from exc


def encode(frame: Frame) -> bytes:
    """A frame as it goes into the stream: 4-byte big-endian length, then the body."""
    body = frame.serialize()
    return len(body).to_bytes(LENGTH_PREFIX, "big") + body


class FrameDecoder:
    """Splits a byte stream into frames.

    Call order: ``receive_data(data)`` any number of times, then ``frames()`` to drain what is
    complete. A length prefix over the limit (:data:`MAX_FRAME`, or ``max_frame``) is refused at
    once, before any of the body is buffered, so a peer cannot make us hold more than the limit
    plus 4 bytes.

    Args:
        max_frame: the largest body accepted (at most :data:`MAX_FRAME`).
        lifted_by: with a type, ``max_frame`` holds until a frame of that type was decoded, and
            :data:`MAX_FRAME` after it, from the very next frame of the same data on. A relay
            decodes with ``(MAX_PRE_AUTH_FRAME, FrameType.HELLO)``: big frames only after HELLO.
    """

    __slots__ = ("_buf", "_dead", "_frames", "_lifted_by", "_limit")

    def __init__(self, max_frame: int = MAX_FRAME, lifted_by: FrameType | None = None) -> None:
        if not 0 < max_frame <= MAX_FRAME:
            raise ValueError(f"max_frame must be in 1 … {MAX_FRAME}")
        self._buf = bytearray()
        self._frames: list[Frame] = []
        self._dead: FrameError | None = None
        self._limit = max_frame
        self._lifted_by = lifted_by if max_frame < MAX_FRAME else None

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
                if size > self._limit:
                    reason = f"length prefix over the limit ({self._limit})"
                    raise FrameError(ErrorCode.FRAME_TOO_LARGE, reason)
                end = pos + LENGTH_PREFIX + size
                if len(buf) < end:
                    break
                frame = parse(bytes(buf[pos + LENGTH_PREFIX : end]))
                self._frames.append(frame)
                pos = end
                if frame.TYPE is self._lifted_by:
                    self._limit, self._lifted_by = MAX_FRAME, None
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

    def lift(self) -> None:
        """Accept frames up to :data:`MAX_FRAME` from now on, as ``lifted_by`` would (a relay's
        unidentified session, which never sends HELLO)."""
        self._limit, self._lifted_by = MAX_FRAME, None

    @property
    def max_frame(self) -> int:
        """The largest frame body accepted now."""
        return self._limit
