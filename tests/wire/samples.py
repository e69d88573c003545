"""Fixed frames of every type, their frozen bytes, and the rules of each field.

``GOLDEN`` pins the wire format (CONVENTIONS §13): each body was computed once and frozen here.
A change of encoding, field order or type numbers fails ``test_golden``. Never regenerate these
to make a test pass: a difference is a wire-format change, and needs a new protocol version.
"""

from __future__ import annotations

from typing import Literal

from tidings.wire import (
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

MID = bytes(range(16))  #: a message id: 00 01 … 0f
CODE = bytes(range(0x10, 0x20))  #: a link code: 10 11 … 1f

#: (name, frame, body as hex). At least one per frame type; the first of each type is its
#: canonical sample (``SAMPLES``).
GOLDEN: list[tuple[str, Frame, str]] = [
    ("HELLO", Hello(1, 41), "93010129"),
    (
        "REGISTER",
        Register(1, "alice", "alice's laptop", None),
        "950201a5616c696365ae616c6963652773206c6170746f70c0",
    ),
    (
        "REGISTER with link code",
        Register(1, "alice", "phone", CODE),
        "950201a5616c696365a570686f6e65c410101112131415161718191a1b1c1d1e1f",
    ),
    ("LINK_CODE_REQUEST", LinkCodeRequest(7), "920307"),
    ("GET_DEVICES", GetDevices(8, "bob"), "930408a3626f62"),
    (
        "SEND",
        Send(
            MID,
            "bob",
            (
                Target("bob", 1, b"ciphertext for bob/1"),
                Target("alice", 2, b"ciphertext for alice/2"),
            ),
        ),
        "9405c410000102030405060708090a0b0c0d0e0fa3626f629293a3626f6201c4146369706865727465787420"
        "666f7220626f622f3193a5616c69636502c4166369706865727465787420666f7220616c6963652f32",
    ),
    ("ACK", Ack(1234), "9206cd04d2"),
    (
        "WELCOME",
        Welcome("alice", 1, 1700000000.5, 2592000.0, 65536),
        "9614a5616c69636501cb41d954fc40200000cb4143c68000000000ce00010000",
    ),
    ("REGISTERED", Registered("alice", 1), "9315a5616c69636501"),
    (
        "LINK_CODE",
        LinkCode(7, CODE, 1700000600.0),
        "941607c410101112131415161718191a1b1c1d1e1fcb41d954fcd6000000",
    ),
    ("DEVICES", Devices(8, "bob", (1, 2, 5)), "941708a3626f6293010205"),
    (
        "SENT",
        Sent(MID, 1700000000.25, False),
        "9418c410000102030405060708090a0b0c0d0e0fcb41d954fc40100000c2",
    ),
    (
        "REFUSED",
        Refused(MID, 9, "device set is not current", (("bob", 3),), (("bob", 2),), 0.0),
        "9719c410000102030405060708090a0b0c0d0e0f09b964657669636520736574206973206e6f74206375727"
        "2656e749192a3626f62039192a3626f6202cb0000000000000000",
    ),
    (
        "DELIVER",
        Deliver(1234, 0, "alice", 1, MID, 1700000000.25, 1702592000.25, b"ciphertext"),
        "991acd04d200a5616c69636501c410000102030405060708090a0b0c0d0e0fcb41d954fc40100000cb41d95e"
        "df80100000c40a63697068657274657874",
    ),
    (
        "DELIVER expired notice",
        Deliver(1235, 1, "bob", 1, MID, 1702592000.5, 1702592000.5, b""),
        "991acd04d301a3626f6201c410000102030405060708090a0b0c0d0e0fcb41d95edf80200000cb41d95edf80"
        "200000c400",
    ),
    (
        "ERROR",
        Error(3, 5, "frame not allowed now"),
        "941b0305b56672616d65206e6f7420616c6c6f776564206e6f77",
    ),
    ("PING", Ping(1), "922801"),
    ("PONG", Pong(1), "922901"),
]

#: One sample frame per type.
SAMPLES: dict[FrameType, Frame] = {}
for _name, _frame, _hex in GOLDEN:
    SAMPLES.setdefault(_frame.TYPE, _frame)

Kind = Literal[
    "uint",
    "account",
    "time",
    "message_id",
    "payload",
    "link_code",
    "link_code_or_nil",
    "device_name",
    "reason",
    "bool",
    "deliver_kind",
    "targets",
    "device_ids",
    "refs",
]

#: The rule of every field, in wire order: the spec the field tests run against (and the field
#: tables of docs/protocol.md).
FIELD_KINDS: dict[FrameType, tuple[Kind, ...]] = {
    FrameType.HELLO: ("uint", "uint"),
    FrameType.REGISTER: ("uint", "account", "device_name", "link_code_or_nil"),
    FrameType.LINK_CODE_REQUEST: ("uint",),
    FrameType.GET_DEVICES: ("uint", "account"),
    FrameType.SEND: ("message_id", "account", "targets"),
    FrameType.ACK: ("uint",),
    FrameType.WELCOME: ("account", "uint", "time", "time", "uint"),
    FrameType.REGISTERED: ("account", "uint"),
    FrameType.LINK_CODE: ("uint", "link_code", "time"),
    FrameType.DEVICES: ("uint", "account", "device_ids"),
    FrameType.SENT: ("message_id", "time", "bool"),
    FrameType.REFUSED: ("message_id", "uint", "reason", "refs", "refs", "time"),
    FrameType.DELIVER: (
        "uint",
        "deliver_kind",
        "account",
        "uint",
        "message_id",
        "time",
        "time",
        "payload",
    ),
    FrameType.ERROR: ("uint", "uint", "reason"),
    FrameType.PING: ("uint",),
    FrameType.PONG: ("uint",),
}
