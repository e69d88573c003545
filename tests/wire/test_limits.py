"""The named limits: each frame type's size limit, the length prefix, and the field limits.

A limit is tested on both sides: at the limit accepted, one over refused.
"""

from __future__ import annotations

import msgpack
import pytest

from tidings.errors import FrameError
from tidings.wire import (
    FRAME_LIMITS,
    MAX_ACCOUNT_NAME,
    MAX_CONTROL_FRAME,
    MAX_DELIVER_FRAME,
    MAX_DEVICE_CERTIFICATE,
    MAX_DEVICE_NAME,
    MAX_FRAME,
    MAX_MULTI_PART,
    MAX_MULTI_RECIPIENTS,
    MAX_MULTI_SHARED,
    MAX_PAYLOAD,
    MAX_PREKEY_BUNDLE_FRAME,
    MAX_PREKEYS_PER_UPLOAD,
    MAX_PREKEYS_UPLOAD_FRAME,
    MAX_PUSH_ENDPOINT,
    MAX_SEND_FRAME,
    MAX_TARGETS,
    MESSAGE_ID_LEN,
    PROLOGUE,
    PROTOCOL_VERSION,
    AccountRefusal,
    Ack,
    Deliver,
    DeviceDetail,
    DeviceDetails,
    DeviceQuery,
    Devices,
    Error,
    ErrorCode,
    Frame,
    FrameDecoder,
    FrameType,
    GetDevices,
    Hello,
    KemKey,
    LinkCode,
    LinkCodeRequest,
    MultiAccount,
    MultiDevice,
    MultiSend,
    MultiSent,
    OneTimeKey,
    Ping,
    Pong,
    PrekeyBundle,
    PrekeyFetch,
    PrekeysLow,
    PrekeysStored,
    PrekeysUpload,
    PushQuery,
    PushRegister,
    PushStatus,
    PushUnregister,
    Refused,
    Register,
    Registered,
    RequestFailed,
    Send,
    Sent,
    SignedKey,
    Target,
    Unlink,
    Welcome,
    encode,
    parse,
)
from tidings.wire.limits import (
    KEM_PUBLIC_KEY_LEN,
    LENGTH_PREFIX,
    MAX_KEY_ID,
    MAX_LINK_CODE,
    MAX_REASON,
)

from .samples import MID
from .streams import MODES, Mode, decode_error, decode_ok, pack, prefixed

TOO_LARGE = ErrorCode.FRAME_TOO_LARGE
U63 = 2**63 - 1
MAX_TIME = 1e12 - 0.5  # a float just below the 1e12 bound


def test_limit_values_are_stable() -> None:
    # These are part of the protocol (docs/protocol.md, "Limits"): peers size buffers by them.
    assert (PROTOCOL_VERSION, PROLOGUE, LENGTH_PREFIX) == (2, b"tidings/1", 4)
    assert (MESSAGE_ID_LEN, MAX_ACCOUNT_NAME, MAX_DEVICE_NAME) == (16, 32, 64)
    assert (MAX_LINK_CODE, MAX_REASON, MAX_TARGETS) == (64, 256, 32)
    assert MAX_PAYLOAD == 65_536
    assert MAX_SEND_FRAME == MAX_FRAME == 1_048_576
    assert MAX_DELIVER_FRAME == 66_048
    assert MAX_CONTROL_FRAME == 2_048
    assert (MAX_PREKEYS_UPLOAD_FRAME, MAX_PREKEY_BUNDLE_FRAME) == (196_608, 4_096)
    assert MAX_PREKEYS_PER_UPLOAD == 100
    assert max(FRAME_LIMITS.values()) == MAX_FRAME
    limits = dict(FRAME_LIMITS)
    assert limits == {
        t: {
            FrameType.SEND: MAX_SEND_FRAME,
            FrameType.DELIVER: MAX_DELIVER_FRAME,
            FrameType.DEVICES: 2_560,
            FrameType.PREKEYS_UPLOAD: 196_608,
            FrameType.PREKEY_BUNDLE: 4_096,
            FrameType.MULTI_SEND: MAX_SEND_FRAME,
            FrameType.MULTI_SENT: MAX_SEND_FRAME,
            FrameType.DEVICE_DETAILS: 11_264,
            FrameType.SEALED_SEND: MAX_SEND_FRAME,
            FrameType.TAG_QUERY: 7168,
            FrameType.TAG_STATUS: 7168,
            FrameType.SEALED_MULTI_SEND: MAX_SEND_FRAME,
            FrameType.SEALED_MULTI_SENT: MAX_SEND_FRAME,
        }.get(t, MAX_CONTROL_FRAME)
        for t in FrameType
    }


def test_error_codes_are_stable() -> None:
    assert [(c.name, int(c)) for c in ErrorCode] == [
        ("MALFORMED_FRAME", 1),
        ("FRAME_TOO_LARGE", 2),
        ("UNEXPECTED_FRAME", 3),
        ("UNSUPPORTED_VERSION", 4),
        ("UNKNOWN_DEVICE", 5),
        ("ACCOUNT_EXISTS", 6),
        ("INVALID_LINK_CODE", 7),
        ("NO_SUCH_ACCOUNT", 8),
        ("DEVICE_MISMATCH", 9),
        ("QUEUE_FULL", 10),
        ("RATE_LIMITED", 11),
        ("PAYLOAD_TOO_LARGE", 12),
        ("INVALID_ACK", 13),
        ("KEEPALIVE_TIMEOUT", 14),
        ("SHUTTING_DOWN", 15),
        ("INTERNAL", 16),
        ("KEY_ALREADY_REGISTERED", 17),
        ("INVALID_FIELD", 18),
        ("HANDSHAKE_FAILED", 19),
        ("NO_PREKEYS", 20),
        ("STORE_UNAVAILABLE", 21),
        ("AUTH_TIMEOUT", 22),
        ("TOO_MANY_CONNECTIONS", 23),
        ("PUSH_REFUSED", 24),
        ("TOO_MANY_DEVICES", 25),
        ("LAST_DEVICE", 26),
        ("RECIPIENTS_REFUSED", 27),
        ("NOT_OWN_DEVICE", 30),
        ("ACCESS_DENIED", 31),
    ]


# ---------------------------------------------------------------- frame size limits


def padded_body(frame_type: int, size: int) -> bytes:
    """A body of exactly ``size`` bytes: ``[frame_type, <bin padding>]`` (wrong field count, so it
    is refused whatever its size, but only the size check may call it too large)."""
    for n in range(max(0, size - 8), size + 1):
        body = pack(frame_type, b"\x00" * n)
        if len(body) == size:
            return body
    raise AssertionError(f"no padding gives {size} bytes")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("frame_type", list(FrameType), ids=[t.name for t in FrameType])
def test_a_frame_one_byte_over_its_limit_is_too_large(frame_type: FrameType, mode: Mode) -> None:
    limit = FRAME_LIMITS[frame_type]
    body = padded_body(frame_type, limit + 1)
    with pytest.raises(FrameError) as info:
        parse(body)
    assert info.value.code == TOO_LARGE
    if limit < MAX_FRAME:
        assert info.value.frame_type == frame_type
        assert info.value.reason == f"{frame_type.name} frame too large"
    _, error = decode_error(prefixed(body), mode)
    assert error.code == TOO_LARGE


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("frame_type", list(FrameType), ids=[t.name for t in FrameType])
def test_a_frame_at_its_limit_is_not_too_large(frame_type: FrameType, mode: Mode) -> None:
    # The padded body is refused for its fields: the size check let it through.
    body = padded_body(frame_type, FRAME_LIMITS[frame_type])
    with pytest.raises(FrameError) as info:
        parse(body)
    assert info.value.code in (ErrorCode.MALFORMED_FRAME, ErrorCode.INVALID_FIELD)
    _, error = decode_error(prefixed(body), mode)
    assert error.code == info.value.code


def test_parse_refuses_a_body_over_max_frame_before_decoding_it() -> None:
    with pytest.raises(FrameError) as info:
        parse(b"\xc1" * (MAX_FRAME + 1))  # undecodable, but refused for its size first
    assert (info.value.code, info.value.frame_type) == (TOO_LARGE, None)


@pytest.mark.parametrize("prefix", [MAX_FRAME + 1, 2**31, 2**32 - 1])
def test_a_length_prefix_over_max_frame_is_refused_before_the_body(prefix: int) -> None:
    decoder = FrameDecoder()
    decoder.receive_data(prefix.to_bytes(4, "big")[:3])
    assert decoder.buffered == 3
    with pytest.raises(FrameError) as info:
        decoder.receive_data(prefix.to_bytes(4, "big")[3:])  # no byte of the body sent
    assert info.value.code == TOO_LARGE
    assert decoder.buffered == 0


def test_a_length_prefix_of_max_frame_waits_for_the_body() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(MAX_FRAME.to_bytes(4, "big") + b"\x00" * 1000)
    assert decoder.frames() == []
    assert decoder.buffered == 1004


def send_of_size(size: int) -> tuple[bytes, list[list[object]]]:
    """The body and targets of a SEND of exactly ``size`` bytes, with valid fields."""
    targets: list[list[object]] = [["bob", i, b"\x00" * 65_000] for i in range(size // 65_000)]
    base = len(pack(int(FrameType.SEND), MID, "bob", [*targets, ["bob", 999, b""]]))
    for n in range(max(0, size - base - 8), size - base + 1):
        last: list[object] = ["bob", 999, b"\x00" * n]
        body = pack(int(FrameType.SEND), MID, "bob", [*targets, last])
        if len(body) == size:
            return body, [*targets, last]
    raise AssertionError(f"no SEND of {size} bytes")


@pytest.mark.parametrize("mode", MODES)
def test_a_send_of_exactly_max_send_frame_is_accepted(mode: Mode) -> None:
    body, targets = send_of_size(MAX_SEND_FRAME)
    frame = Send(MID, "bob", tuple(Target(*t) for t in targets))  # type: ignore[arg-type]
    assert frame.serialize() == body
    assert parse(body) == frame
    assert decode_ok(prefixed(body), mode) == [frame]


def test_a_send_one_byte_over_is_refused_when_built_and_when_parsed() -> None:
    # Regression: 17 payloads of 64 KiB made a valid Send that no peer would accept; the
    # sender's outbox would retry it forever. Construction now refuses it.
    body, targets = send_of_size(MAX_SEND_FRAME + 1)
    with pytest.raises(FrameError) as info:
        Send(MID, "bob", tuple(Target(*t) for t in targets))  # type: ignore[arg-type]
    assert (info.value.code, info.value.frame_type) == (TOO_LARGE, FrameType.SEND)
    with pytest.raises(FrameError) as parsed:
        parse(body)
    assert parsed.value.code == TOO_LARGE


def refused_of_size(size: int) -> tuple[bytes, Refused]:
    """The body and frame of a REFUSED of exactly ``size`` bytes, packed without the codec."""
    refs = tuple(("a" * 32, U63 - i) for i in range(MAX_TARGETS))  # 44 bytes each
    wire_refs = [list(r) for r in refs]
    for stale in range(MAX_TARGETS + 1):
        for reason_len in range(MAX_REASON + 1):
            reason = "r" * reason_len
            body = pack(int(FrameType.REFUSED), MID, 9, reason, wire_refs, wire_refs[:stale], 0.0)
            if len(body) == size:
                return body, Refused(MID, 9, reason, refs, refs[:stale], 0.0)
    raise AssertionError(f"no REFUSED of {size} bytes")


@pytest.mark.parametrize("mode", MODES)
def test_a_refused_of_exactly_the_control_limit_is_accepted(mode: Mode) -> None:
    body, frame = refused_of_size(MAX_CONTROL_FRAME)
    assert len(frame.missing) + len(frame.stale) > 16  # so construction measured it
    assert frame.serialize() == body
    assert decode_ok(prefixed(body), mode) == [frame]


def test_a_refused_over_the_control_limit_cannot_be_built() -> None:
    # Regression: 32 missing + 32 stale devices with long names are valid fields but 3 KB.
    refs = tuple(("a" * 32, U63 - i) for i in range(MAX_TARGETS))
    with pytest.raises(FrameError) as info:
        Refused(MID, 9, "x" * MAX_REASON, refs, refs, 1.0)
    assert (info.value.code, info.value.frame_type) == (TOO_LARGE, FrameType.REFUSED)


#: The largest valid frame of each type whose fields cannot exceed its limit.
LARGEST: list[Frame] = [
    Hello(U63, U63),
    Register(U63, "a" * MAX_ACCOUNT_NAME, "é" * (MAX_DEVICE_NAME // 2), b"\xff" * MAX_LINK_CODE),
    LinkCodeRequest(U63),
    GetDevices(U63, "a" * MAX_ACCOUNT_NAME),
    Ack(U63),
    Welcome("a" * MAX_ACCOUNT_NAME, U63, MAX_TIME, MAX_TIME, U63, U63, U63),
    Registered("a" * MAX_ACCOUNT_NAME, U63),
    LinkCode(U63, b"\xff" * MAX_LINK_CODE, MAX_TIME),
    Devices(U63, "a" * MAX_ACCOUNT_NAME, (U63,) * MAX_TARGETS),
    Sent(b"\xff" * 16, MAX_TIME, True),
    Deliver(U63, 1, "a" * 32, U63, b"\xff" * 16, MAX_TIME, MAX_TIME, b"\xff" * MAX_PAYLOAD),
    Error(U63, U63, "é" * (MAX_REASON // 2)),
    Ping(U63),
    Pong(U63),
    DeviceQuery(U63, "a" * MAX_ACCOUNT_NAME, (U63, b"\xff" * MAX_DEVICE_CERTIFICATE)),
    DeviceDetails(
        U63,
        "a" * MAX_ACCOUNT_NAME,
        tuple(
            DeviceDetail(U63 - i, MAX_TIME, True, b"\xff" * MAX_DEVICE_CERTIFICATE)
            for i in range(MAX_TARGETS)
        ),
    ),
    PrekeysUpload(
        U63,
        b"\xff" * 33,
        SignedKey(MAX_KEY_ID, b"\xff" * 32, b"\xff" * 64),
        tuple(OneTimeKey(MAX_KEY_ID - i, b"\xff" * 32) for i in range(MAX_PREKEYS_PER_UPLOAD)),
        tuple(
            KemKey(MAX_KEY_ID - i, b"\xff" * KEM_PUBLIC_KEY_LEN, b"\xff" * 64, i == 0)
            for i in range(MAX_PREKEYS_PER_UPLOAD)
        ),
    ),
    PrekeyFetch(U63, "a" * MAX_ACCOUNT_NAME, U63),
    PrekeyBundle(
        U63,
        "a" * MAX_ACCOUNT_NAME,
        U63,
        b"\xff" * 33,
        SignedKey(MAX_KEY_ID, b"\xff" * 32, b"\xff" * 64),
        OneTimeKey(MAX_KEY_ID, b"\xff" * 32),
        KemKey(MAX_KEY_ID, b"\xff" * KEM_PUBLIC_KEY_LEN, b"\xff" * 64, True),
    ),
    RequestFailed(U63, U63, "é" * (MAX_REASON // 2), MAX_TIME),
    PrekeysLow(U63, U63),
    PrekeysStored(U63, U63, U63),
    PushRegister(U63, "é" * (MAX_PUSH_ENDPOINT // 2), b"\xff" * 65, b"\xff" * 16),
    PushUnregister(U63),
    PushQuery(U63),
    Unlink(U63, U63),
    PushStatus(U63, b"\xff" * 65, 2, "é" * (MAX_PUSH_ENDPOINT // 2)),
    MultiSend(
        U63,
        MID,
        b"\xff" * MAX_MULTI_SHARED,
        tuple(
            MultiAccount(
                f"{i:032d}", tuple(MultiDevice(U63 - d, b"\xff" * MAX_MULTI_PART) for d in range(2))
            )
            for i in range(MAX_MULTI_RECIPIENTS // 2)
        ),
    ),
    MultiSent(
        U63,
        MID,
        U63,
        MAX_TIME,
        True,
        "é" * (MAX_REASON // 2),
        MAX_TIME,
        tuple(
            AccountRefusal(f"{i:032d}", U63, tuple(range(U63 - 32, U63)), ())
            for i in range(MAX_MULTI_RECIPIENTS)
        ),
    ),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("frame", LARGEST, ids=[f.TYPE.name for f in LARGEST])
def test_the_largest_frame_of_each_type_fits_its_limit(frame: Frame, mode: Mode) -> None:
    assert len(frame.serialize()) <= FRAME_LIMITS[frame.TYPE]
    assert decode_ok(encode(frame), mode) == [frame]


# ---------------------------------------------------------------- field limits


def test_payload_limit() -> None:
    Deliver(1, 0, "a", 1, MID, 0, 0, bytes(MAX_PAYLOAD))
    Send(MID, "a", (Target("a", 1, bytes(MAX_PAYLOAD)),))
    for build in (
        lambda: Deliver(1, 0, "a", 1, MID, 0, 0, bytes(MAX_PAYLOAD + 1)),
        lambda: Send(MID, "a", (Target("a", 1, bytes(MAX_PAYLOAD + 1)),)),
    ):
        with pytest.raises(FrameError) as info:
            build()
        assert info.value.code == ErrorCode.INVALID_FIELD
    body = pack(int(FrameType.DELIVER), 1, 0, "a", 1, MID, 0, 0, bytes(MAX_PAYLOAD + 1))
    assert len(body) <= MAX_DELIVER_FRAME  # refused for the field, not the frame size
    with pytest.raises(FrameError) as parsed:
        parse(body)
    assert parsed.value.code == ErrorCode.INVALID_FIELD


@pytest.mark.parametrize("length", [0, 1, 15, 17, 32])
def test_message_ids_are_exactly_16_bytes(length: int) -> None:
    with pytest.raises(FrameError):
        Sent(bytes(length), 0.0)
    with pytest.raises(FrameError):
        parse(pack(int(FrameType.SENT), bytes(length), 0.0, False))
    assert parse(pack(int(FrameType.SENT), bytes(16), 0.0, False)) == Sent(bytes(16), 0.0)


def test_target_count() -> None:
    for count in (1, MAX_TARGETS):
        Send(MID, "bob", tuple(Target("bob", i, b"") for i in range(count)))
    for count in (0, MAX_TARGETS + 1):
        with pytest.raises(FrameError) as info:
            Send(MID, "bob", tuple(Target("bob", i, b"") for i in range(count)))
        assert info.value.reason == f"a send has 1..{MAX_TARGETS} targets"
        targets = [["bob", i, b""] for i in range(count)]
        with pytest.raises(FrameError):
            parse(pack(int(FrameType.SEND), MID, "bob", targets))


def test_a_device_named_twice_is_refused() -> None:
    Send(MID, "bob", (Target("bob", 1, b""), Target("alice", 1, b"")))  # same id, two accounts
    with pytest.raises(FrameError) as info:
        Send(MID, "bob", (Target("bob", 1, b"a"), Target("bob", 1, b"b")))
    assert info.value.reason == "a device is named twice"
    with pytest.raises(FrameError) as parsed:
        parse(pack(int(FrameType.SEND), MID, "bob", [["bob", 1, b"a"], ["bob", 1, b"b"]]))
    assert parsed.value.reason == "a device is named twice"


@pytest.mark.parametrize("length", [1, MAX_ACCOUNT_NAME])
def test_account_name_length_accepted(length: int) -> None:
    assert parse(pack(int(FrameType.GET_DEVICES), 1, "a" * length)) == GetDevices(1, "a" * length)


@pytest.mark.parametrize("length", [0, MAX_ACCOUNT_NAME + 1, 1000])
def test_account_name_length_refused(length: int) -> None:
    with pytest.raises(FrameError) as info:
        parse(pack(int(FrameType.GET_DEVICES), 1, "a" * length))
    assert info.value.code == ErrorCode.INVALID_FIELD


def test_device_name_and_reason_count_utf8_bytes() -> None:
    Register(1, "a", "é" * 32)  # 64 bytes
    with pytest.raises(FrameError):
        Register(1, "a", "é" * 32 + "x")  # 65 bytes in 33 characters
    Error(1, 0, "€" * 85)  # 255 bytes
    with pytest.raises(FrameError):
        Error(1, 0, "€" * 86)  # 258 bytes


def test_msgpack_limits_protect_the_decoder() -> None:
    # A length in a MessagePack header larger than the body must not allocate: unpackb bounds
    # every length by the input size.
    with pytest.raises(FrameError):
        parse(b"\x92\x28\xc6\x7f\xff\xff\xff")
    with pytest.raises(FrameError):
        parse(msgpack.packb([40, [0] * 10])[:-3])
