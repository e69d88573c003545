"""Fixed frames of every type, their frozen bytes, and the rules of each field.

``GOLDEN`` pins the wire format (CONVENTIONS §13): each body was computed once and frozen here.
A change of encoding, field order or type numbers fails ``test_golden``. Never regenerate these
to make a test pass: a difference is a wire-format change, and needs a new protocol version.
"""

from __future__ import annotations

from typing import Literal

from tidings.wire import (
    AccountRefusal,
    Ack,
    Deliver,
    DeviceDetail,
    DeviceDetails,
    DeviceQuery,
    Devices,
    Error,
    Frame,
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
    SealedDevice,
    SealedMultiAccount,
    SealedMultiSend,
    SealedMultiSent,
    SealedSend,
    SealedSent,
    Send,
    SenderCert,
    SenderCertRequest,
    Sent,
    SetAccessKey,
    SignedKey,
    TagQuery,
    TagStatus,
    Target,
    Unlink,
    Welcome,
)

MID = bytes(range(16))  #: a message id: 00 01 … 0f
TAG = bytes(range(0x60, 0x70))  #: a sealed send's tag: 60 61 … 6f
AK = bytes(range(0x70, 0x80))  #: an unidentified-access key: 70 71 … 7f
CODE = bytes(range(0x10, 0x20))  #: a link code: 10 11 … 1f
IK = b"\x05" + bytes(range(32))  #: an identity key with libsignal's type byte: 05 00 01 … 1f
EC_A = bytes(range(0x20, 0x40))  #: an X25519 public key: 20 21 … 3f
EC_B = bytes(range(0x40, 0x60))  #: another: 40 41 … 5f
SIG = bytes(range(0x80, 0xC0))  #: a signature: 80 81 … bf
KEM = bytes(1568)  #: an ML-KEM-1024 public key's length, all zero (the relay never checks one)
SPK = SignedKey(1, EC_A, SIG)
OTK = OneTimeKey(2, EC_B)
KEM_KEY = KemKey(3, KEM, SIG, True)
P256 = b"\x04" + bytes(range(64))  #: a push key's form: 04 00 01 … 3f (the relay never checks)
AUTH = bytes(range(0xC0, 0xD0))  #: a push authentication secret: c0 c1 … cf
CERT = bytes(range(0x30, 0x40))  #: a device certificate (opaque to the relay): 30 31 … 3f

# The parts of the prekey frames, as bytes: bin8 (c4 LEN) for keys, bin16 (c5 0620) for KEM.
_IK_HEX = "c42105" + bytes(range(32)).hex()
_SPK_HEX = "9301" + "c420" + EC_A.hex() + "c440" + SIG.hex()  # [1, EC_A, SIG]
_OTK_HEX = "9202" + "c420" + EC_B.hex()  # [2, EC_B]
_KEM_HEX = "9403" + "c50620" + "00" * 1568 + "c440" + SIG.hex() + "c3"  # [3, KEM, SIG, true]

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
        "PREKEYS_UPLOAD",
        PrekeysUpload(9, IK, SPK, (OTK,), (KEM_KEY,)),
        "960709" + _IK_HEX + _SPK_HEX + "91" + _OTK_HEX + "91" + _KEM_HEX,
    ),
    ("PREKEY_FETCH", PrekeyFetch(10, "bob", 2), "94080aa3626f6202"),
    (
        "WELCOME",
        Welcome("alice", 1, 1700000000.5, 2592000.0, 65536, 10000, 10042),
        "9814a5616c69636501cb41d954fc40200000cb4143c68000000000ce00010000cd2710cd273a",
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
        "DELIVER missed notice",  # protocol §8: the message for this device expired unfetched
        Deliver(1236, 2, "alice", 1, MID, 1702592000.5, 1705184000.5, b""),
        "991acd04d402a5616c69636501c410000102030405060708090a0b0c0d0e0fcb41d95edf80200000cb41d968"
        "c2c0200000c400",
    ),
    (
        "ERROR",
        Error(3, 5, "frame not allowed now"),
        "941b0305b56672616d65206e6f7420616c6c6f776564206e6f77",
    ),
    (
        "PREKEY_BUNDLE",
        PrekeyBundle(10, "bob", 2, IK, SPK, OTK, KEM_KEY),
        "981c0aa3626f6202" + _IK_HEX + _SPK_HEX + _OTK_HEX + _KEM_HEX,
    ),
    (
        "PREKEY_BUNDLE without a one-time prekey",
        PrekeyBundle(10, "bob", 2, IK, SPK, None, KEM_KEY),
        "981c0aa3626f6202" + _IK_HEX + _SPK_HEX + "c0" + _KEM_HEX,
    ),
    (
        "REQUEST_FAILED",
        RequestFailed(10, 11, "prekey fetch rate limit", 100.0),
        "951d0a0bb77072656b65792066657463682072617465206c696d6974cb4059000000000000",
    ),
    ("PREKEYS_LOW", PrekeysLow(3, 0), "931e0300"),
    ("PREKEYS_STORED", PrekeysStored(9, 1, 1), "941f090101"),
    (
        "PUSH_REGISTER",
        PushRegister(1, "https://p.example/s", P256, AUTH),
        "950901b368747470733a2f2f702e6578616d706c652f73c441" + P256.hex() + "c410" + AUTH.hex(),
    ),
    ("PUSH_UNREGISTER", PushUnregister(2), "920a02"),
    ("PUSH_QUERY", PushQuery(3), "920b03"),
    (
        "PUSH_STATUS",
        PushStatus(3, P256, 1, "https://p.example/s"),
        "952003c441" + P256.hex() + "01b368747470733a2f2f702e6578616d706c652f73",
    ),
    ("UNLINK", Unlink(4, 2), "930c0402"),
    (
        "MULTI_SEND",
        MultiSend(
            7,
            MID,
            b"shared",
            (
                MultiAccount("bob", (MultiDevice(1, b"p1"), MultiDevice(2, b"p2"))),
                MultiAccount("carol", (MultiDevice(1, b""),)),
            ),
        ),
        "950d07c410000102030405060708090a0b0c0d0e0fc4067368617265649292a3626f62929201c40270319202"
        "c402703292a56361726f6c919201c400",
    ),
    (
        "MULTI_SENT",
        MultiSent(7, MID, 0, 1700000000.5, False, "", 0.0, ()),
        "992107c410000102030405060708090a0b0c0d0e0f00cb41d954fc40200000c2a0cb000000000000000090",
    ),
    (
        "MULTI_SENT refused for an account",
        MultiSent(
            7,
            MID,
            27,
            0.0,
            False,
            "device set is not current",
            0.0,
            (AccountRefusal("bob", 9, (3,), (2,)),),
        ),
        "992107c410000102030405060708090a0b0c0d0e0f1bcb0000000000000000c2b964657669636520736574"
        "206973206e6f742063757272656e74cb00000000000000009194a3626f620991039102",
    ),
    ("PING", Ping(1), "922801"),
    ("PONG", Pong(1), "922901"),
    (
        "DEVICE_QUERY",
        DeviceQuery(5, "alice", (2, CERT)),
        "940e05a5616c6963659202c410" + CERT.hex(),
    ),
    ("DEVICE_QUERY without a certificate", DeviceQuery(6, "bob"), "940e06a3626f62c0"),
    (
        "DEVICE_DETAILS",
        DeviceDetails(
            5,
            "alice",
            (DeviceDetail(1, 1700000000.0, True, b""), DeviceDetail(2, 0.0, False, CERT)),
        ),
        "942205a5616c696365929401cb41d954fc40000000c3c4009402cb0000000000000000c2c410" + CERT.hex(),
    ),
    ("SENDER_CERT_REQUEST", SenderCertRequest(7), "920f07"),
    ("SET_ACCESS_KEY", SetAccessKey(8, AK), "931008c410" + AK.hex()),
    (
        "SEALED_SEND",
        SealedSend(TAG, "bob", AK, (SealedDevice(1, b"\x11sealed"), SealedDevice(2, b""))),
        "9511c410" + TAG.hex() + "a3626f62c410" + AK.hex() + "929201c407117365616c65649202c400",
    ),
    ("TAG_QUERY", TagQuery(9, (TAG, bytes(16))), "93120992c410" + TAG.hex() + "c410" + "00" * 16),
    (
        "SENDER_CERT",
        SenderCert(7, b"\x0a\x03cert", 1700086400.0),
        "942307c4060a0363657274cb41d95550a0000000",
    ),
    (
        "SEALED_SENT",
        SealedSent(TAG, "bob", 0, 1700000000.0, False, "", 0.0),
        "9a24c410" + TAG.hex() + "a3626f6200cb41d954fc40000000c2a0cb00000000000000009090",
    ),
    (
        "SEALED_SENT refused",
        SealedSent(TAG, "bob", 9, 0.0, False, "device set is not current", 0.0, (3,), (2,)),
        "9a24c410"
        + TAG.hex()
        + "a3626f6209cb0000000000000000c2b964657669636520736574206973206e6f74"
        "2063757272656e74cb000000000000000091039102",
    ),
    (
        "TAG_STATUS",
        TagStatus(9, ((TAG, 3), (bytes(16), 0))),
        "9325099292c410" + TAG.hex() + "0392c410" + "00" * 16 + "00",
    ),
    (
        "SEALED_MULTI_SEND",
        SealedMultiSend(
            TAG,
            b"shared",
            (
                SealedMultiAccount("bob", AK, (MultiDevice(1, b"p1"), MultiDevice(2, b"p2"))),
                SealedMultiAccount("carol", AK, (MultiDevice(1, b""),)),
            ),
        ),
        "9413c410"
        + TAG.hex()
        + "c40673686172656492"
        + "93a3626f62c410"
        + AK.hex()
        + "929201c40270319202c4027032"
        + "93a56361726f6cc410"
        + AK.hex()
        + "919201c400",
    ),
    (
        "SEALED_MULTI_SENT",
        SealedMultiSent(TAG, 0, 1700000000.5, False, "", 0.0, ()),
        "9826c410" + TAG.hex() + "00cb41d954fc40200000c2a0cb000000000000000090",
    ),
    (
        "SEALED_MULTI_SENT refused for two accounts",
        SealedMultiSent(
            TAG,
            27,
            0.0,
            False,
            "access denied",
            0.0,
            (AccountRefusal("bob", 31), AccountRefusal("carol", 9, (3,), (2,))),
        ),
        "9826c410"
        + TAG.hex()
        + "1bcb0000000000000000c2ad6163636573732064656e696564cb0000000000000000"
        + "9294a3626f621f909094a56361726f6c0991039102",
    ),
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
    "identity_key",
    "signed_prekey",
    "one_time_prekeys",
    "kem_prekeys",
    "one_time_prekey_or_nil",
    "kem_prekey",
    "push_endpoint",
    "push_key",
    "push_auth",
    "push_state",
    "push_endpoint_or_empty",
    "device_id",
    "shared",
    "recipients",
    "refusals",
    "certify_or_nil",
    "device_details",
    "tag",
    "access_key",
    "sealed_devices",
    "tags",
    "sender_certificate",
    "tag_states",
    "sealed_recipients",
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
    FrameType.PREKEYS_UPLOAD: (
        "uint",
        "identity_key",
        "signed_prekey",
        "one_time_prekeys",
        "kem_prekeys",
    ),
    FrameType.PREKEY_FETCH: ("uint", "account", "uint"),
    FrameType.WELCOME: ("account", "uint", "time", "time", "uint", "uint", "uint"),
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
    FrameType.PREKEY_BUNDLE: (
        "uint",
        "account",
        "uint",
        "identity_key",
        "signed_prekey",
        "one_time_prekey_or_nil",
        "kem_prekey",
    ),
    FrameType.REQUEST_FAILED: ("uint", "uint", "reason", "time"),
    FrameType.PREKEYS_LOW: ("uint", "uint"),
    FrameType.PREKEYS_STORED: ("uint", "uint", "uint"),
    FrameType.PUSH_REGISTER: ("uint", "push_endpoint", "push_key", "push_auth"),
    FrameType.PUSH_UNREGISTER: ("uint",),
    FrameType.PUSH_QUERY: ("uint",),
    FrameType.UNLINK: ("uint", "device_id"),
    FrameType.PUSH_STATUS: ("uint", "push_key", "push_state", "push_endpoint_or_empty"),
    FrameType.MULTI_SEND: ("uint", "message_id", "shared", "recipients"),
    FrameType.MULTI_SENT: (
        "uint",
        "message_id",
        "uint",
        "time",
        "bool",
        "reason",
        "time",
        "refusals",
    ),
    FrameType.PING: ("uint",),
    FrameType.PONG: ("uint",),
    FrameType.DEVICE_QUERY: ("uint", "account", "certify_or_nil"),
    FrameType.DEVICE_DETAILS: ("uint", "account", "device_details"),
    FrameType.SENDER_CERT_REQUEST: ("uint",),
    FrameType.SET_ACCESS_KEY: ("uint", "access_key"),
    FrameType.SEALED_SEND: ("tag", "account", "access_key", "sealed_devices"),
    FrameType.TAG_QUERY: ("uint", "tags"),
    FrameType.SENDER_CERT: ("uint", "sender_certificate", "time"),
    FrameType.SEALED_SENT: (
        "tag",
        "account",
        "uint",
        "time",
        "bool",
        "reason",
        "time",
        "device_ids",
        "device_ids",
    ),
    FrameType.TAG_STATUS: ("uint", "tag_states"),
    FrameType.SEALED_MULTI_SEND: ("tag", "shared", "sealed_recipients"),
    FrameType.SEALED_MULTI_SENT: ("tag", "uint", "time", "bool", "reason", "time", "refusals"),
}

_U63 = 2**63 - 1
_U32 = 2**32 - 1  # the largest key id
_MAX_TIME = 1e12 - 1  # the largest whole second below the 1e12 bound

#: Values each kind of field accepts, as they come off the wire (lists for arrays). A frame
#: with the sample's field replaced by one of them must parse and equal the frame built from it.
VALID_WIRE: dict[Kind, list[object]] = {
    "uint": [0, 1, 127, 128, 2**32, _U63],
    "account": ["a", "0", "_", "-", "a" * 32, "bob_2-x"],
    "time": [0, 0.0, 1, 1.5, 1700000000.123456, _MAX_TIME, 999_999_999_999],
    "message_id": [bytes(16), b"\xff" * 16],
    "payload": [b"", b"\x00", bytes(1000)],
    "link_code": [b"", CODE, bytes(64)],
    "link_code_or_nil": [None, b"", bytes(64)],
    "device_name": ["", "phone", "x" * 64, "é" * 32, "📱" * 16],
    "reason": ["", "x" * 256, "é" * 128],
    "bool": [True, False],
    "deliver_kind": [0, 1, 2, 3],
    "targets": [
        [["bob", 1, b""]],
        [["bob", i, b"x"] for i in range(32)],
        [["bob", 1, b""], ["bob", 2, b""], ["alice", 1, b""]],
    ],
    "device_ids": [[], [0], list(range(32)), [_U63]],
    "refs": [[], [["bob", 1]], [["bob", 1], ["alice", _U63]]],
    "identity_key": [bytes(32), IK, b"\xff" * 33],
    "signed_prekey": [[0, bytes(32), bytes(64)], [_U32, EC_A, SIG]],
    "one_time_prekeys": [[], [[0, EC_A]], [[i, EC_B] for i in range(100)]],
    "kem_prekeys": [
        [],
        [[0, KEM, SIG, False]],
        [[1, KEM, SIG, False], [2, KEM, SIG, True], [_U32, KEM, SIG, False]],
    ],
    "one_time_prekey_or_nil": [None, [0, EC_A], [_U32, EC_B]],
    "kem_prekey": [[0, KEM, SIG, False], [_U32, b"\xff" * 1568, SIG, True]],
    "push_endpoint": ["h", "https://p.example/s", "x" * 1024, "é" * 512],
    "push_key": [P256, bytes(65)],
    "push_auth": [AUTH, bytes(16)],
    "push_state": [0, 1, 2],
    "push_endpoint_or_empty": ["", "https://p.example/s", "x" * 1024],
    "device_id": [1, 2, 2**32, _U63],
    "shared": [b"", b"x", bytes(64 * 1024 - 128)],
    "recipients": [
        [["bob", [[1, b""]]]],
        [["bob", [[i, bytes(128)] for i in range(32)]]],
        [[f"a{i}", [[1, b"p"], [2, b"q"]]] for i in range(500)],  # 1,000 devices
        [["bob", [[1, b"x"], [2, b""]]], ["alice", [[_U63, b""]]]],
    ],
    "refusals": [
        [],
        [["bob", 9, [1], [2, 3]]],
        [["bob", 8, [], []], ["carol", 10, [], []]],
        [["bob", 9, list(range(32)), []]],
    ],
    "certify_or_nil": [None, [1, b"x"], [_U63, bytes(256)]],
    "tag": [bytes(16), TAG],
    "access_key": [bytes(16), b"\xff" * 16],
    "sealed_devices": [[[1, b""]], [[i, b"x"] for i in range(32)], [[_U63, bytes(64 * 1024)]]],
    "tags": [[TAG], [bytes(16)] * 256],
    "sender_certificate": [b"x", bytes(512)],
    "tag_states": [[], [[TAG, 0]], [[TAG, s] for s in (0, 1, 2, 3)]],
    "sealed_recipients": [
        [["bob", AK, [[1, b""]]]],
        [["bob", AK, [[i, bytes(128)] for i in range(32)]]],
        [[f"a{i}", AK, [[1, b"p"], [2, b"q"]]] for i in range(500)],  # 1,000 devices
        [["bob", bytes(16), [[1, b"x"], [2, b""]]], ["alice", AK, [[_U63, b""]]]],
    ],
    "device_details": [
        [],
        [[1, 0, False, b""]],
        [[i, 3600.0 * i, i % 2 == 0, bytes(256)] for i in range(1, 33)],
    ],
}

_NAN = float("nan")
_INF = float("inf")

#: Values each kind of field must refuse on the wire. True and 1.0 are there for every integer:
#: ``True`` is an ``int`` in Python, and msgpack would happily carry either.
WRONG_WIRE: dict[Kind, list[object]] = {
    "uint": [True, False, 1.0, 0.0, -1, 2**63, 2**64 - 1, "1", b"\x01", None, [1], {"a": 1}],
    "account": [
        b"alice",
        1,
        True,
        None,
        "",
        "Alice",
        "a" * 33,
        "al ice",
        "alicé",
        "ali.ce",
        "alice\n",
        ["alice"],
    ],
    "time": [True, "1.0", b"1", None, -1, -0.5, 1e12, 10**12, _NAN, _INF, -_INF, [1.0]],
    "message_id": ["0123456789abcdef", bytes(15), bytes(17), b"", None, 1, [bytes(16)]],
    "payload": ["text", 1, None, True, [b""], bytes(64 * 1024 + 1)],
    "link_code": ["code", None, 1, bytes(65), [b""]],
    "link_code_or_nil": ["code", 1, False, bytes(65), [b""]],
    "device_name": [b"phone", 1, None, "x" * 65, "é" * 33, ["phone"]],
    "reason": [b"reason", 1, None, "x" * 257, "é" * 129],
    "bool": [0, 1, 1.0, None, "true", b"\x01"],
    "deliver_kind": [True, False, 1.0, 0.0, 4, -1, None, "0", b"\x00"],
    "targets": [
        [],
        None,
        "bob",
        {"bob": 1},
        [None],
        [["bob", 1]],
        [["bob", 1, b"", 0]],
        [["bob", 1, b""], ["bob", 1, b"x"]],  # a device named twice
        [["bob", i, b""] for i in range(33)],
        [["Bob", 1, b""]],
        [[b"bob", 1, b""]],
        [["bob", True, b""]],
        [["bob", 1.0, b""]],
        [["bob", -1, b""]],
        [["bob", 1, "text"]],
        [["bob", 1, bytes(64 * 1024 + 1)]],
    ],
    "device_ids": [None, "1", {}, [True], [1.0], [-1], ["1"], [[1]], list(range(33))],
    "refs": [
        None,
        "bob",
        [None],
        [["bob"]],
        [["bob", 1, 2]],
        [["bob", True]],
        [["bob", 1.0]],
        [["Bob", 1]],
        [[b"bob", 1]],
        [["bob", -1]],
        [{"bob": 1}],
        [["b", i] for i in range(33)],
    ],
    "identity_key": ["x" * 32, bytes(31), bytes(34), b"", None, 1, [IK]],
    "signed_prekey": [
        None,
        [],
        bytes(96),
        [1, EC_A],
        [1, EC_A, SIG, 0],
        [-1, EC_A, SIG],
        [_U32 + 1, EC_A, SIG],
        [True, EC_A, SIG],
        [1.0, EC_A, SIG],
        [1, bytes(31), SIG],
        [1, bytes(33), SIG],
        [1, EC_A, bytes(63)],
        [1, EC_A, bytes(65)],
        [1, "x" * 32, SIG],
        [1, EC_A, None],
    ],
    "one_time_prekeys": [
        None,
        "x",
        [None],
        [[1]],
        [[1, EC_A, 0]],
        [[1, EC_A], [1, EC_B]],  # an id named twice
        [[i, EC_A] for i in range(101)],
        [[1, bytes(31)]],
        [[_U32 + 1, EC_A]],
        [[True, EC_A]],
        [[1, "x" * 32]],
    ],
    "kem_prekeys": [
        None,
        [None],
        [[1, KEM, SIG]],
        [[1, KEM, SIG, 0]],
        [[1, KEM, SIG, 1]],
        [[1, bytes(1567), SIG, False]],
        [[1, bytes(1569), SIG, False]],
        [[1, KEM, bytes(63), False]],
        [[_U32 + 1, KEM, SIG, False]],
        [[1, KEM, SIG, False], [1, KEM, SIG, True]],  # an id named twice
        [[1, KEM, SIG, True], [2, KEM, SIG, True]],  # two last-resort keys
        [[i, KEM, SIG, False] for i in range(101)],
    ],
    "one_time_prekey_or_nil": [
        [],
        [1],
        [1, bytes(31)],
        [1, EC_A, 0],
        "x",
        False,
        [True, EC_A],
        EC_A,
    ],
    "kem_prekey": [
        None,
        [],
        [1, KEM, SIG],
        [1, KEM, SIG, 0],
        [1, bytes(1567), SIG, True],
        [-1, KEM, SIG, True],
        [1, KEM, bytes(65), True],
        [1, "x", SIG, True],
    ],
    "push_endpoint": ["", b"https://p", None, 1, "x" * 1025, "é" * 513, ["https://p"]],
    "push_key": ["x" * 65, bytes(64), bytes(66), b"", None, 1, [P256]],
    "push_auth": ["x" * 16, bytes(15), bytes(17), None, 1],
    "push_state": [True, False, 1.0, 3, -1, None, "1"],
    "push_endpoint_or_empty": [b"", None, 1, "x" * 1025],
    "device_id": [0, True, False, 1.0, -1, 2**63, None, "1"],
    "shared": ["text", None, 1, [b""], bytes(64 * 1024 - 127)],
    "recipients": [
        [],
        None,
        "bob",
        [None],
        [["bob"]],
        [["bob", []]],  # an account without devices
        [["bob", [[1, b""]], 0]],
        [["bob", [[1, b""]]], ["bob", [[2, b""]]]],  # an account named twice
        [["bob", [[1, b""], [1, b"x"]]]],  # a device named twice
        [["bob", [[i, b""] for i in range(33)]]],
        [[f"a{i}", [[1, b""], [2, b""]]] for i in range(501)],  # 1,002 devices
        [["Bob", [[1, b""]]]],
        [["bob", [[True, b""]]]],
        [["bob", [[-1, b""]]]],
        [["bob", [[1, "text"]]]],
        [["bob", [[1, bytes(129)]]]],
        [["bob", [[1]]]],
    ],
    "refusals": [
        None,
        [None],
        [["bob", 9, [1]]],
        [["Bob", 9, [], []]],
        [["bob", -1, [], []]],
        [["bob", 9, [True], []]],
        [["bob", 9, [], list(range(33))]],
        [["bob", 9, None, []]],
    ],
    "certify_or_nil": [
        [],
        [1],
        [0, b"x"],
        [1, b""],
        [1, bytes(257)],
        [True, b"x"],
        [1, "x"],
        [1, b"x", 0],
        b"x",
        False,
    ],
    "tag": [bytes(15), bytes(17), b"", "x" * 16, None, 1],
    "access_key": [bytes(15), bytes(17), b"", "x" * 16, None],
    "sealed_devices": [
        [],
        None,
        [None],
        [[1]],
        [[1, b"", 0]],
        [[1, b""], [1, b"x"]],  # a device named twice
        [[i, b""] for i in range(33)],
        [[True, b""]],
        [[-1, b""]],
        [[1, "text"]],
        [[1, bytes(64 * 1024 + 1)]],
    ],
    "tags": [[], None, [bytes(15)], [None], [bytes(16)] * 257, "x"],
    "sender_certificate": [b"", bytes(513), "x", None],
    "tag_states": [None, [None], [[TAG]], [[TAG, 4]], [[TAG, -1]], [[TAG, True]], [[bytes(15), 0]]],
    "sealed_recipients": [
        [],
        None,
        "bob",
        [None],
        [["bob", AK]],
        [["bob", [[1, b""]]]],  # no access key
        [["bob", AK, []]],  # an account without devices
        [["bob", AK, [[1, b""]], 0]],
        [["bob", bytes(15), [[1, b""]]]],
        [["bob", bytes(17), [[1, b""]]]],
        [["bob", "x" * 16, [[1, b""]]]],
        [["bob", AK, [[1, b""]]], ["bob", AK, [[2, b""]]]],  # an account named twice
        [["bob", AK, [[1, b""], [1, b"x"]]]],  # a device named twice
        [["bob", AK, [[i, b""] for i in range(33)]]],
        [[f"a{i}", AK, [[1, b""], [2, b""]]] for i in range(501)],  # 1,002 devices
        [["Bob", AK, [[1, b""]]]],
        [["bob", AK, [[True, b""]]]],
        [["bob", AK, [[-1, b""]]]],
        [["bob", AK, [[1, "text"]]]],
        [["bob", AK, [[1, bytes(129)]]]],
        [["bob", AK, [[1]]]],
    ],
    "device_details": [
        None,
        [None],
        [[1, 0, False]],
        [[1, 0, False, b"", 0]],
        [[1, -1, False, b""]],
        [[1, 0, 0, b""]],
        [[1, 0, False, None]],
        [[1, 0, False, bytes(257)]],
        [[True, 0, False, b""]],
        [[i, 0, False, b""] for i in range(33)],
    ],
}


def to_python(kind: Kind, value: object) -> object:
    """A wire value of ``kind`` as the frame's constructor takes it (tuples, Target)."""
    if kind == "targets":
        assert isinstance(value, list)
        return tuple(Target(*t) for t in value)
    if kind == "recipients":
        assert isinstance(value, list)
        return tuple(
            MultiAccount(a, tuple(MultiDevice(*d) for d in devices)) for a, devices in value
        )
    if kind == "refusals":
        assert isinstance(value, list)
        return tuple(AccountRefusal(a, c, tuple(m), tuple(s)) for a, c, m, s in value)
    if kind == "device_ids":
        assert isinstance(value, list)
        return tuple(value)
    if kind == "refs":
        assert isinstance(value, list)
        return tuple(tuple(r) for r in value)
    if kind == "signed_prekey":
        assert isinstance(value, list)
        return SignedKey(*value)
    if kind == "one_time_prekeys":
        assert isinstance(value, list)
        return tuple(OneTimeKey(*k) for k in value)
    if kind == "kem_prekeys":
        assert isinstance(value, list)
        return tuple(KemKey(*k) for k in value)
    if kind == "one_time_prekey_or_nil":
        assert value is None or isinstance(value, list)
        return None if value is None else OneTimeKey(*value)
    if kind == "kem_prekey":
        assert isinstance(value, list)
        return KemKey(*value)
    if kind == "certify_or_nil":
        assert value is None or isinstance(value, list)
        return None if value is None else tuple(value)
    if kind == "sealed_devices":
        assert isinstance(value, list)
        return tuple(SealedDevice(*d) for d in value)
    if kind == "tags":
        assert isinstance(value, list)
        return tuple(value)
    if kind == "tag_states":
        assert isinstance(value, list)
        return tuple(tuple(e) for e in value)
    if kind == "device_details":
        assert isinstance(value, list)
        return tuple(DeviceDetail(*d) for d in value)
    if kind == "sealed_recipients":
        assert isinstance(value, list)
        return tuple(
            SealedMultiAccount(a, k, tuple(MultiDevice(*d) for d in devices))
            for a, k, devices in value
        )
    return value
