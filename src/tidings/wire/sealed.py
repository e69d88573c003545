"""The sealed-sender frames (docs/protocol.md §6.32–6.38, §14).

An *authenticated* session (HELLO) asks for its sender certificate (SENDER_CERT_REQUEST) and
registers its account's unidentified-access key (SET_ACCESS_KEY); both are answered SENDER_CERT
(a fresh certificate: the device's sealed-sender credentials after the request). An
*unidentified* session (Noise NK) sends SEALED_SEND, authorised by the recipient's access key,
answered SEALED_SENT; any session asks about its tags (TAG_QUERY → TAG_STATUS).

Wire forms::

    SENDER_CERT_REQUEST  [15, request_id]
    SET_ACCESS_KEY       [16, request_id, access_key: bin(16)]
    SEALED_SEND          [17, tag: bin(16), recipient, access_key: bin(16),
                              [[device_id, payload], ...]]
    TAG_QUERY            [18, request_id, [tag, ...]]
    SENDER_CERT          [35, request_id, certificate: bin, expires_at]
    SEALED_SENT          [36, tag, recipient, code, stored_at, duplicate, reason, retry_after,
                              missing: [device_id, ...], stale: [device_id, ...]]
    TAG_STATUS           [37, request_id, [[tag, state], ...]]

Invariant: like every frame, an invalid one cannot be constructed (``FrameError``
``INVALID_FIELD``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, ClassVar

from .frames import (
    Frame,
    FrameType,
    _check_bytes,
    _check_str,
    _check_time,
    _check_uint,
    _invalid,
    check_account,
)
from .limits import (
    ACCESS_KEY_LEN,
    MAX_PAYLOAD,
    MAX_REASON,
    MAX_SENDER_CERTIFICATE,
    MAX_TAGS_PER_QUERY,
    MAX_TARGETS,
    TAG_LEN,
)

__all__ = [
    "SealedDevice",
    "SealedSend",
    "SealedSent",
    "SenderCert",
    "SenderCertRequest",
    "SetAccessKey",
    "TagQuery",
    "TagState",
    "TagStatus",
]

_U63 = (1 << 63) - 1


def _check_exact(frame_type: FrameType, name: str, value: object, length: int) -> None:
    if type(value) is not bytes or len(value) != length:
        raise _invalid(frame_type, f"{name} must be {length} bytes")


def _check_ids(frame_type: FrameType, name: str, ids: object) -> None:
    if type(ids) is not tuple or len(ids) > MAX_TARGETS:
        raise _invalid(frame_type, f"{name}: at most {MAX_TARGETS} device ids")
    for d in ids:
        _check_uint(frame_type, "device_id", d)


class TagState(enum.IntEnum):
    """What the relay knows of a tag (TAG_STATUS)."""

    UNKNOWN = 0  #: never stored, or forgotten (tag states are kept for a while: §14)
    QUEUED = 1  #: at least one device's copy waits in its queue
    DELIVERED = 2  #: every device acknowledged its copy
    EXPIRED = 3  #: at least one device's copy expired unfetched (the sender's ✗)


@dataclass(frozen=True, slots=True)
class SenderCertRequest(Frame):
    """Ask for a sender certificate for this device (authenticated sessions only)."""

    TYPE: ClassVar[FrameType] = FrameType.SENDER_CERT_REQUEST
    request_id: int

    def __post_init__(self) -> None:
        _check_uint(self.TYPE, "request_id", self.request_id)

    def fields(self) -> list[Any]:
        return [self.request_id]


@dataclass(frozen=True, slots=True)
class SetAccessKey(Frame):
    """Register this account's unidentified-access key (replacing the one stored)."""

    TYPE: ClassVar[FrameType] = FrameType.SET_ACCESS_KEY
    request_id: int
    access_key: bytes

    def __post_init__(self) -> None:
        _check_uint(self.TYPE, "request_id", self.request_id)
        _check_exact(self.TYPE, "access_key", self.access_key, ACCESS_KEY_LEN)

    def fields(self) -> list[Any]:
        return [self.request_id, self.access_key]


@dataclass(frozen=True, slots=True)
class SealedDevice:
    """One recipient device of a SEALED_SEND and its sealed payload."""

    device_id: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class SealedSend(Frame):
    """A sealed send to every device of ``recipient``, authorised by its access key.

    ``tag`` is 16 random bytes chosen by the sender: the idempotency key with ``recipient``
    (a retry reuses it) and the name it later asks about (TAG_QUERY). Answered SEALED_SENT.
    """

    TYPE: ClassVar[FrameType] = FrameType.SEALED_SEND
    tag: bytes
    recipient: str
    access_key: bytes
    devices: tuple[SealedDevice, ...]

    def __post_init__(self) -> None:
        t = self.TYPE
        _check_exact(t, "tag", self.tag, TAG_LEN)
        check_account(self.recipient, t)
        _check_exact(t, "access_key", self.access_key, ACCESS_KEY_LEN)
        devices = self.devices
        if type(devices) is not tuple or not 1 <= len(devices) <= MAX_TARGETS:
            raise _invalid(t, f"a sealed send names 1..{MAX_TARGETS} devices")
        seen: set[int] = set()
        for d in devices:
            if type(d) is not SealedDevice:
                raise _invalid(t, "devices must be SealedDevice values")
            if type(d.device_id) is not int or not 0 <= d.device_id <= _U63:
                raise _invalid(t, "device_id must be an integer in 0..2^63-1")
            _check_bytes(t, "payload", d.payload, MAX_PAYLOAD)
            if d.device_id in seen:
                raise _invalid(t, "a device is named twice")
            seen.add(d.device_id)

    def fields(self) -> list[Any]:
        return [
            self.tag,
            self.recipient,
            self.access_key,
            [[d.device_id, d.payload] for d in self.devices],
        ]


@dataclass(frozen=True, slots=True)
class TagQuery(Frame):
    """Ask what became of sealed sends, by their tags (any session)."""

    TYPE: ClassVar[FrameType] = FrameType.TAG_QUERY
    request_id: int
    tags: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _check_uint(self.TYPE, "request_id", self.request_id)
        if type(self.tags) is not tuple or not 1 <= len(self.tags) <= MAX_TAGS_PER_QUERY:
            raise _invalid(self.TYPE, f"a tag query names 1..{MAX_TAGS_PER_QUERY} tags")
        for tag in self.tags:
            _check_exact(self.TYPE, "tag", tag, TAG_LEN)

    def fields(self) -> list[Any]:
        return [self.request_id, list(self.tags)]


@dataclass(frozen=True, slots=True)
class SenderCert(Frame):
    """A sender certificate for this device (``tidings.e2e.certificates``), valid until
    ``expires_at``: the answer to SENDER_CERT_REQUEST and to SET_ACCESS_KEY."""

    TYPE: ClassVar[FrameType] = FrameType.SENDER_CERT
    request_id: int
    certificate: bytes
    expires_at: float

    def __post_init__(self) -> None:
        _check_uint(self.TYPE, "request_id", self.request_id)
        _check_bytes(self.TYPE, "certificate", self.certificate, MAX_SENDER_CERTIFICATE)
        if not self.certificate:
            raise _invalid(self.TYPE, "a certificate is not empty")
        _check_time(self.TYPE, "expires_at", self.expires_at)

    def fields(self) -> list[Any]:
        return [self.request_id, self.certificate, self.expires_at]


@dataclass(frozen=True, slots=True)
class SealedSent(Frame):
    """The answer to SEALED_SEND ``tag`` for ``recipient``.

    ``code`` 0: ✓, committed for every device (G1); ``duplicate``: stored before. Any other
    code: nothing was stored; ``missing``/``stale`` for DEVICE_MISMATCH, ``retry_after`` for
    limits.
    """

    TYPE: ClassVar[FrameType] = FrameType.SEALED_SENT
    tag: bytes
    recipient: str
    code: int
    stored_at: float
    duplicate: bool
    reason: str
    retry_after: float
    missing: tuple[int, ...] = ()
    stale: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        t = self.TYPE
        _check_exact(t, "tag", self.tag, TAG_LEN)
        check_account(self.recipient, t)
        _check_uint(t, "code", self.code)
        _check_time(t, "stored_at", self.stored_at)
        if type(self.duplicate) is not bool:
            raise _invalid(t, "duplicate must be a boolean")
        _check_str(t, "reason", self.reason, MAX_REASON)
        _check_time(t, "retry_after", self.retry_after)
        _check_ids(t, "missing", self.missing)
        _check_ids(t, "stale", self.stale)

    def fields(self) -> list[Any]:
        return [
            self.tag,
            self.recipient,
            self.code,
            self.stored_at,
            self.duplicate,
            self.reason,
            self.retry_after,
            list(self.missing),
            list(self.stale),
        ]


@dataclass(frozen=True, slots=True)
class TagStatus(Frame):
    """What became of each tag of TAG_QUERY ``request_id`` (a :class:`TagState` each)."""

    TYPE: ClassVar[FrameType] = FrameType.TAG_STATUS
    request_id: int
    states: tuple[tuple[bytes, int], ...]

    def __post_init__(self) -> None:
        _check_uint(self.TYPE, "request_id", self.request_id)
        if type(self.states) is not tuple or len(self.states) > MAX_TAGS_PER_QUERY:
            raise _invalid(self.TYPE, f"at most {MAX_TAGS_PER_QUERY} tags")
        for entry in self.states:
            if type(entry) is not tuple or len(entry) != 2:
                raise _invalid(self.TYPE, "a tag state is [tag, state]")
            _check_exact(self.TYPE, "tag", entry[0], TAG_LEN)
            if type(entry[1]) is not int or entry[1] not in TagState._value2member_map_:
                raise _invalid(self.TYPE, "state must be 0..3")

    def fields(self) -> list[Any]:
        return [self.request_id, [list(e) for e in self.states]]


def _list(value: Any, what: str) -> list[Any]:
    if type(value) is not list:
        raise TypeError(f"{what} must be an array")
    return value


def parse_sealed_send(tag: Any, recipient: Any, access_key: Any, devices: Any) -> SealedSend:
    """SEALED_SEND from its wire fields (for the codec)."""
    parsed = []
    for d in _list(devices, "devices"):
        if type(d) is not list or len(d) != 2:
            raise TypeError("a device is [device_id, payload]")
        parsed.append(SealedDevice(d[0], d[1]))
    return SealedSend(tag, recipient, access_key, tuple(parsed))


def parse_tag_query(request_id: Any, tags: Any) -> TagQuery:
    """TAG_QUERY from its wire fields (for the codec)."""
    return TagQuery(request_id, tuple(_list(tags, "tags")))


def parse_sealed_sent(
    tag: Any,
    recipient: Any,
    code: Any,
    stored_at: Any,
    duplicate: Any,
    reason: Any,
    retry_after: Any,
    missing: Any,
    stale: Any,
) -> SealedSent:
    """SEALED_SENT from its wire fields (for the codec)."""
    return SealedSent(
        tag,
        recipient,
        code,
        stored_at,
        duplicate,
        reason,
        retry_after,
        tuple(_list(missing, "missing")),
        tuple(_list(stale, "stale")),
    )


def parse_tag_status(request_id: Any, states: Any) -> TagStatus:
    """TAG_STATUS from its wire fields (for the codec)."""
    parsed = []
    for e in _list(states, "states"):
        if type(e) is not list or len(e) != 2:
            raise TypeError("a tag state is [tag, state]")
        parsed.append((e[0], e[1]))
    return TagStatus(request_id, tuple(parsed))
