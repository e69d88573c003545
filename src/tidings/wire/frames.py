"""The frames of the tidings protocol: frozen dataclasses that validate on construction.

A frame's body is a MessagePack array ``[type, field1, field2, …]`` (see ``docs/protocol.md``).
``serialize()`` gives that body; ``parse(body)`` in :mod:`tidings.wire.codec` turns it back into a
frame or raises :class:`~tidings.errors.FrameError`. An invalid frame cannot be constructed: a
field out of range raises ``FrameError`` with code ``INVALID_FIELD``.

Frame types are numbered: 1–19 client→server, 20–39 server→client, 40+ either way.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import msgpack

from ..errors import FrameError
from .limits import (
    MAX_ACCOUNT_NAME,
    MAX_CONTROL_FRAME,
    MAX_DEVICE_NAME,
    MAX_LINK_CODE,
    MAX_PAYLOAD,
    MAX_REASON,
    MAX_SEND_FRAME,
    MAX_TARGETS,
    MESSAGE_ID_LEN,
    ErrorCode,
)

_account_match = re.compile(rf"[a-z0-9_-]{{1,{MAX_ACCOUNT_NAME}}}").fullmatch
_ACCOUNT_RULE = "account names are 1-32 of a-z, 0-9, _ and -"
# Valid account names seen lately. A connection names the same few accounts again and again,
# and a set lookup costs a fifth of the regex. Only valid names enter; bounded by clearing.
_known_accounts: set[str] = set()
_KNOWN_ACCOUNTS_MAX = 4096
_U63 = (1 << 63) - 1
_TIME_TYPES = (int, float)

# One packer for every frame: ``msgpack.packb`` builds a new Packer per call, which costs more
# than packing a small frame. Safe to share: ``pack`` runs in C under the GIL and calls back no
# Python code for the built-in types frames hold. ``autoreset`` makes it return each body.
_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack


class FrameType(enum.IntEnum):
    """Frame type numbers (stable: never renumber)."""

    HELLO = 1
    REGISTER = 2
    LINK_CODE_REQUEST = 3
    GET_DEVICES = 4
    SEND = 5
    ACK = 6
    PREKEYS_UPLOAD = 7
    PREKEY_FETCH = 8
    PUSH_REGISTER = 9
    PUSH_UNREGISTER = 10
    PUSH_QUERY = 11
    UNLINK = 12
    MULTI_SEND = 13
    WELCOME = 20
    REGISTERED = 21
    LINK_CODE = 22
    DEVICES = 23
    SENT = 24
    REFUSED = 25
    DELIVER = 26
    ERROR = 27
    PREKEY_BUNDLE = 28
    REQUEST_FAILED = 29
    PREKEYS_LOW = 30
    PREKEYS_STORED = 31
    PUSH_STATUS = 32
    MULTI_SENT = 33
    PING = 40
    PONG = 41
    DEVICE_QUERY = 14
    DEVICE_DETAILS = 34
    SENDER_CERT_REQUEST = 15
    SET_ACCESS_KEY = 16
    SEALED_SEND = 17
    TAG_QUERY = 18
    SENDER_CERT = 35
    SEALED_SENT = 36
    TAG_STATUS = 37
    SEALED_MULTI_SEND = 19
    SEALED_MULTI_SENT = 38


def _invalid(frame_type: FrameType, reason: str) -> FrameError:
    return FrameError(ErrorCode.INVALID_FIELD, reason, int(frame_type))


# The checks below are the field rules of docs/protocol.md §5. The hot frames (SEND, ACK,
# DELIVER) inline the same rules in their ``__post_init__``: a call costs more than a check.


def _account_ok(name: object) -> bool:
    """Whether ``name`` is a valid account name (``[a-z0-9_-]{1,32}``)."""
    if type(name) is str:  # exactly str: a subclass could redefine hashing and equality
        if name in _known_accounts:
            return True
        if _account_match(name) is None:
            return False
        if len(_known_accounts) >= _KNOWN_ACCOUNTS_MAX:
            _known_accounts.clear()
        _known_accounts.add(name)
        return True
    return isinstance(name, str) and _account_match(name) is not None


def check_account(name: str, frame_type: FrameType = FrameType.SEND) -> None:
    """Raise FrameError unless ``name`` is a valid account name (``[a-z0-9_-]{1,32}``)."""
    if not _account_ok(name):
        raise _invalid(frame_type, _ACCOUNT_RULE)


def _check_uint(frame_type: FrameType, name: str, value: object) -> None:
    # ``type(...) is int`` also refuses bool, which is an int subclass.
    if type(value) is not int or not 0 <= value <= _U63:
        raise _invalid(frame_type, f"{name} must be an integer in 0..2^63-1")


def _check_time(frame_type: FrameType, name: str, value: object) -> None:
    if type(value) not in _TIME_TYPES or not 0 <= value < 1e12:  # type: ignore[operator]
        raise _invalid(frame_type, f"{name} must be a timestamp in seconds")


def _check_message_id(frame_type: FrameType, value: object) -> None:
    if type(value) is not bytes or len(value) != MESSAGE_ID_LEN:
        raise _invalid(frame_type, f"message_id must be {MESSAGE_ID_LEN} bytes")


def _check_str(frame_type: FrameType, name: str, value: object, limit: int) -> None:
    try:
        ok = type(value) is str and len(value.encode()) <= limit
    except UnicodeEncodeError:  # lone surrogates: not UTF-8, so not sendable
        ok = False
    if not ok:
        raise _invalid(frame_type, f"{name} must be a string of at most {limit} bytes")


def _check_bytes(frame_type: FrameType, name: str, value: object, limit: int) -> None:
    if type(value) is not bytes or len(value) > limit:
        raise _invalid(frame_type, f"{name} must be at most {limit} bytes")


def _check_size(frame: Frame, limit: int) -> None:
    """Refuse a frame whose fields are valid but whose body would exceed its type's limit: the
    peer would refuse it with FRAME_TOO_LARGE and close, and a retry would fail the same way."""
    if len(frame.serialize()) > limit:
        raise FrameError(
            ErrorCode.FRAME_TOO_LARGE,
            f"{frame.TYPE.name} frame over {limit} bytes",
            int(frame.TYPE),
        )


class Frame:
    """Base of all frames. Subclasses are frozen dataclasses with a ``TYPE``."""

    __slots__ = ()
    TYPE: ClassVar[FrameType]
    # TYPE as a plain int: msgpack packs an IntEnum member through a slower path.
    _type_no: ClassVar[int]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._type_no = int(cls.TYPE)

    def fields(self) -> list[Any]:
        """The frame's fields in wire order (after the type number)."""
        raise NotImplementedError  # every concrete frame overrides this

    def serialize(self) -> bytes:
        """The frame body: a MessagePack array ``[type, *fields]``."""
        return _pack([self._type_no, *self.fields()])


# ---------------------------------------------------------------- client → server


@dataclass(frozen=True, slots=True)
class Hello(Frame):
    """Start a session as a registered device (authenticated by the Noise handshake).

    ``cursor`` is the highest seq the device has durably stored; the server streams items above it.
    """

    TYPE: ClassVar[FrameType] = FrameType.HELLO
    version: int
    cursor: int

    def __post_init__(self) -> None:
        _check_uint(self.TYPE, "version", self.version)
        _check_uint(self.TYPE, "cursor", self.cursor)

    def fields(self) -> list[Any]:
        return [self.version, self.cursor]


@dataclass(frozen=True, slots=True)
class Register(Frame):
    """Register this connection's Noise key as a new device.

    Without ``link_code`` it creates the account (device 1). With one, it adds a device to an
    existing account; the code was issued to an existing device of that account (LINK_CODE).
    """

    TYPE: ClassVar[FrameType] = FrameType.REGISTER
    version: int
    account: str
    device_name: str
    link_code: bytes | None = None

    def __post_init__(self) -> None:
        _check_uint(self.TYPE, "version", self.version)
        check_account(self.account, self.TYPE)
        _check_str(self.TYPE, "device_name", self.device_name, MAX_DEVICE_NAME)
        if self.link_code is not None:
            _check_bytes(self.TYPE, "link_code", self.link_code, MAX_LINK_CODE)

    def fields(self) -> list[Any]:
        return [self.version, self.account, self.device_name, self.link_code]


@dataclass(frozen=True, slots=True)
class LinkCodeRequest(Frame):
    """Ask for a one-use code that lets a new device join this device's account."""

    TYPE: ClassVar[FrameType] = FrameType.LINK_CODE_REQUEST
    request_id: int

    def __post_init__(self) -> None:
        _check_uint(self.TYPE, "request_id", self.request_id)

    def fields(self) -> list[Any]:
        return [self.request_id]


@dataclass(frozen=True, slots=True)
class GetDevices(Frame):
    """Ask for the current device ids of ``account``."""

    TYPE: ClassVar[FrameType] = FrameType.GET_DEVICES
    request_id: int
    account: str

    def __post_init__(self) -> None:
        _check_uint(self.TYPE, "request_id", self.request_id)
        check_account(self.account, self.TYPE)

    def fields(self) -> list[Any]:
        return [self.request_id, self.account]


@dataclass(frozen=True, slots=True)
class Target:
    """One payload of a SEND, for one device."""

    account: str
    device_id: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Send(Frame):
    """Send one message: one payload per device of ``recipient`` and per other own device.

    Answered by SENT (✓, durably stored) or REFUSED. Retries reuse ``message_id``.
    """

    TYPE: ClassVar[FrameType] = FrameType.SEND
    message_id: bytes
    recipient: str
    targets: tuple[Target, ...]

    def __post_init__(self) -> None:
        _check_message_id(self.TYPE, self.message_id)
        if not _account_ok(self.recipient):
            raise _invalid(self.TYPE, _ACCOUNT_RULE)
        targets = self.targets
        if type(targets) is not tuple or not 1 <= len(targets) <= MAX_TARGETS:
            raise _invalid(self.TYPE, f"a send has 1..{MAX_TARGETS} targets")
        seen = set()
        total = 0
        for t in targets:
            # The rules of check_account, _check_uint and _check_bytes, inlined (hot path).
            if type(t) is not Target:
                raise _invalid(self.TYPE, "targets must be Target values")
            account, device_id, payload = t.account, t.device_id, t.payload
            if not _account_ok(account):
                raise _invalid(self.TYPE, _ACCOUNT_RULE)
            if type(device_id) is not int or not 0 <= device_id <= _U63:
                raise _invalid(self.TYPE, "device_id must be an integer in 0..2^63-1")
            if type(payload) is not bytes or len(payload) > MAX_PAYLOAD:
                raise _invalid(self.TYPE, f"payload must be at most {MAX_PAYLOAD} bytes")
            key = (account, device_id)
            if key in seen:
                raise _invalid(self.TYPE, "a device is named twice")
            seen.add(key)
            total += len(payload)
        # Framing is under 64 bytes per target and for the header, so only a send whose
        # payloads come near the limit needs packing to be measured.
        if total + 64 * (len(targets) + 1) > MAX_SEND_FRAME:
            _check_size(self, MAX_SEND_FRAME)

    def fields(self) -> list[Any]:
        return [
            self.message_id,
            self.recipient,
            [[t.account, t.device_id, t.payload] for t in self.targets],
        ]


@dataclass(frozen=True, slots=True)
class Ack(Frame):
    """Cumulative ack: the device has durably stored every item with ``seq <= self.seq``."""

    TYPE: ClassVar[FrameType] = FrameType.ACK
    seq: int

    def __post_init__(self) -> None:
        # _check_uint inlined: one ACK per burst of deliveries.
        if type(self.seq) is not int or not 0 <= self.seq <= _U63:
            raise _invalid(self.TYPE, "seq must be an integer in 0..2^63-1")

    def fields(self) -> list[Any]:
        return [self.seq]


# ---------------------------------------------------------------- server → client


@dataclass(frozen=True, slots=True)
class Welcome(Frame):
    """The session is open. ``server_time`` lets clients show honest times; ``retention`` is in
    seconds; ``max_payload`` is the server's payload limit (≤ the wire limit). ``backlog`` is
    how many items wait for the device beyond its HELLO cursor, up to seq ``backlog_upto``:
    the catch-up a client can show progress of ("3,120 / 10,000")."""

    TYPE: ClassVar[FrameType] = FrameType.WELCOME
    account: str
    device_id: int
    server_time: float
    retention: float
    max_payload: int
    backlog: int
    backlog_upto: int

    def __post_init__(self) -> None:
        check_account(self.account, self.TYPE)
        _check_uint(self.TYPE, "device_id", self.device_id)
        _check_time(self.TYPE, "server_time", self.server_time)
        _check_time(self.TYPE, "retention", self.retention)
        _check_uint(self.TYPE, "max_payload", self.max_payload)
        _check_uint(self.TYPE, "backlog", self.backlog)
        _check_uint(self.TYPE, "backlog_upto", self.backlog_upto)

    def fields(self) -> list[Any]:
        return [
            self.account,
            self.device_id,
            self.server_time,
            self.retention,
            self.max_payload,
            self.backlog,
            self.backlog_upto,
        ]


@dataclass(frozen=True, slots=True)
class Registered(Frame):
    """The device is registered; send HELLO next."""

    TYPE: ClassVar[FrameType] = FrameType.REGISTERED
    account: str
    device_id: int

    def __post_init__(self) -> None:
        check_account(self.account, self.TYPE)
        _check_uint(self.TYPE, "device_id", self.device_id)

    def fields(self) -> list[Any]:
        return [self.account, self.device_id]


@dataclass(frozen=True, slots=True)
class LinkCode(Frame):
    """A one-use code for linking a new device to this account, valid until ``expires_at``."""

    TYPE: ClassVar[FrameType] = FrameType.LINK_CODE
    request_id: int
    code: bytes
    expires_at: float

    def __post_init__(self) -> None:
        _check_uint(self.TYPE, "request_id", self.request_id)
        _check_bytes(self.TYPE, "code", self.code, MAX_LINK_CODE)
        _check_time(self.TYPE, "expires_at", self.expires_at)

    def fields(self) -> list[Any]:
        return [self.request_id, self.code, self.expires_at]


@dataclass(frozen=True, slots=True)
class Devices(Frame):
    """The current device ids of ``account`` (empty: no such account)."""

    TYPE: ClassVar[FrameType] = FrameType.DEVICES
    request_id: int
    account: str
    device_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        _check_uint(self.TYPE, "request_id", self.request_id)
        check_account(self.account, self.TYPE)
        if type(self.device_ids) is not tuple or len(self.device_ids) > MAX_TARGETS:
            raise _invalid(self.TYPE, f"at most {MAX_TARGETS} device ids")
        for d in self.device_ids:
            _check_uint(self.TYPE, "device_id", d)

    def fields(self) -> list[Any]:
        return [self.request_id, self.account, list(self.device_ids)]


@dataclass(frozen=True, slots=True)
class Sent(Frame):
    """✓: the message is durably stored for every target device (G1)."""

    TYPE: ClassVar[FrameType] = FrameType.SENT
    message_id: bytes
    stored_at: float
    duplicate: bool = False

    def __post_init__(self) -> None:
        _check_message_id(self.TYPE, self.message_id)
        _check_time(self.TYPE, "stored_at", self.stored_at)
        if type(self.duplicate) is not bool:
            raise _invalid(self.TYPE, "duplicate must be a boolean")

    def fields(self) -> list[Any]:
        return [self.message_id, self.stored_at, self.duplicate]


@dataclass(frozen=True, slots=True)
class Refused(Frame):
    """The send was not stored; the message stays in the sender's outbox.

    ``missing``/``stale`` are set for DEVICE_MISMATCH; ``retry_after`` (seconds) for limits.
    """

    TYPE: ClassVar[FrameType] = FrameType.REFUSED
    message_id: bytes
    code: int
    reason: str
    missing: tuple[tuple[str, int], ...] = ()
    stale: tuple[tuple[str, int], ...] = ()
    retry_after: float = 0.0

    def __post_init__(self) -> None:
        _check_message_id(self.TYPE, self.message_id)
        _check_uint(self.TYPE, "code", self.code)
        _check_str(self.TYPE, "reason", self.reason, MAX_REASON)
        for refs in (self.missing, self.stale):
            if type(refs) is not tuple or len(refs) > MAX_TARGETS:
                raise _invalid(self.TYPE, f"at most {MAX_TARGETS} devices")
            for ref in refs:
                if type(ref) is not tuple or len(ref) != 2:
                    raise _invalid(self.TYPE, "a device is [account, device_id]")
                check_account(ref[0], self.TYPE)
                _check_uint(self.TYPE, "device_id", ref[1])
        _check_time(self.TYPE, "retry_after", self.retry_after)
        # 16 devices or fewer always fit (about 45 bytes each); more may not: measure.
        if len(self.missing) + len(self.stale) > 16:
            _check_size(self, MAX_CONTROL_FRAME)

    def fields(self) -> list[Any]:
        return [
            self.message_id,
            self.code,
            self.reason,
            [list(r) for r in self.missing],
            [list(r) for r in self.stale],
            self.retry_after,
        ]


@dataclass(frozen=True, slots=True)
class Deliver(Frame):
    """One inbox item. ``kind`` 0 = message (opaque payload), 1 = expired notice (``sender`` names
    the device whose copy of ``message_id`` expired unfetched; payload empty), 2 = a message for
    this device expired before it fetched it (``sender`` names the device that sent it; payload
    empty), 3 = a sealed message (sealed sender, docs/protocol.md §14.2: ``sender_account``
    empty, ``sender_device`` 0, ``message_id`` the sender's tag, payload the sealed bytes)."""

    TYPE: ClassVar[FrameType] = FrameType.DELIVER
    seq: int
    kind: int
    sender_account: str
    sender_device: int
    message_id: bytes
    enqueued_at: float
    expires_at: float
    payload: bytes

    def __post_init__(self) -> None:
        # The rules of the _check_* helpers, inlined: DELIVER is the hottest frame.
        seq, kind, enqueued_at, expires_at = self.seq, self.kind, self.enqueued_at, self.expires_at
        if type(seq) is not int or not 0 <= seq <= _U63:
            raise _invalid(self.TYPE, "seq must be an integer in 0..2^63-1")
        if type(kind) is not int or not 0 <= kind <= 3:
            reason = "kind must be 0 (message), 1 (expired), 2 (expired here) or 3 (sealed)"
            raise _invalid(self.TYPE, reason)
        if not (_account_ok(self.sender_account) or (kind == 3 and self.sender_account == "")):
            raise _invalid(self.TYPE, _ACCOUNT_RULE)
        if type(self.sender_device) is not int or not 0 <= self.sender_device <= _U63:
            raise _invalid(self.TYPE, "sender_device must be an integer in 0..2^63-1")
        if type(self.message_id) is not bytes or len(self.message_id) != MESSAGE_ID_LEN:
            raise _invalid(self.TYPE, f"message_id must be {MESSAGE_ID_LEN} bytes")
        if type(enqueued_at) not in _TIME_TYPES or not 0 <= enqueued_at < 1e12:
            raise _invalid(self.TYPE, "enqueued_at must be a timestamp in seconds")
        if type(expires_at) not in _TIME_TYPES or not 0 <= expires_at < 1e12:
            raise _invalid(self.TYPE, "expires_at must be a timestamp in seconds")
        if type(self.payload) is not bytes or len(self.payload) > MAX_PAYLOAD:
            raise _invalid(self.TYPE, f"payload must be at most {MAX_PAYLOAD} bytes")

    def fields(self) -> list[Any]:
        return [
            self.seq,
            self.kind,
            self.sender_account,
            self.sender_device,
            self.message_id,
            self.enqueued_at,
            self.expires_at,
            self.payload,
        ]


@dataclass(frozen=True, slots=True)
class Error(Frame):
    """A connection-level error; the sender closes the connection after it."""

    TYPE: ClassVar[FrameType] = FrameType.ERROR
    code: int
    frame_type: int
    reason: str

    def __post_init__(self) -> None:
        _check_uint(self.TYPE, "code", self.code)
        _check_uint(self.TYPE, "frame_type", self.frame_type)
        _check_str(self.TYPE, "reason", self.reason, MAX_REASON)

    def fields(self) -> list[Any]:
        return [self.code, self.frame_type, self.reason]


# ---------------------------------------------------------------- either way


@dataclass(frozen=True, slots=True)
class Ping(Frame):
    """Keepalive probe; the peer answers PONG with the same nonce."""

    TYPE: ClassVar[FrameType] = FrameType.PING
    nonce: int

    def __post_init__(self) -> None:
        _check_uint(self.TYPE, "nonce", self.nonce)

    def fields(self) -> list[Any]:
        return [self.nonce]


@dataclass(frozen=True, slots=True)
class Pong(Frame):
    """Answer to PING."""

    TYPE: ClassVar[FrameType] = FrameType.PONG
    nonce: int

    def __post_init__(self) -> None:
        _check_uint(self.TYPE, "nonce", self.nonce)

    def fields(self) -> list[Any]:
        return [self.nonce]


CLIENT_FRAMES = frozenset(
    {
        FrameType.HELLO,
        FrameType.REGISTER,
        FrameType.LINK_CODE_REQUEST,
        FrameType.GET_DEVICES,
        FrameType.SEND,
        FrameType.ACK,
        FrameType.PREKEYS_UPLOAD,
        FrameType.PREKEY_FETCH,
        FrameType.PUSH_REGISTER,
        FrameType.PUSH_UNREGISTER,
        FrameType.PUSH_QUERY,
        FrameType.UNLINK,
        FrameType.MULTI_SEND,
        FrameType.DEVICE_QUERY,
        FrameType.SENDER_CERT_REQUEST,
        FrameType.SET_ACCESS_KEY,
        FrameType.SEALED_SEND,
        FrameType.TAG_QUERY,
        FrameType.SEALED_MULTI_SEND,
        FrameType.PING,
        FrameType.PONG,
    }
)
SERVER_FRAMES = frozenset(set(FrameType) - CLIENT_FRAMES | {FrameType.PING, FrameType.PONG})
