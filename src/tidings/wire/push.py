"""The push frames: a device registers its Web Push subscription with the relay, drops it, or
asks how it stands; the relay answers PUSH_STATUS (docs/protocol.md §6.22–6.25, §15).

A subscription is what RFC 8030 / RFC 8291 give a receiver: the push service's endpoint URL (the
relay POSTs wake-ups there), the receiver's P-256 public key ``p256dh`` (65 bytes, uncompressed)
and its 16-byte authentication secret ``auth``. PUSH_STATUS carries the relay's VAPID public key
(RFC 8292: a subscription is made for it) and the state of this device's subscription.

Invariants: like every frame, an invalid one cannot be constructed (``FrameError``
``INVALID_FIELD``); the relay's own rules on endpoints (https, public addresses) are checked by
the relay, not here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, ClassVar

from .frames import Frame, FrameType, _check_str, _check_uint, _invalid
from .limits import MAX_PUSH_ENDPOINT, PUSH_AUTH_LEN, PUSH_KEY_LEN

__all__ = ["PushQuery", "PushRegister", "PushState", "PushStatus", "PushUnregister"]


class PushState(enum.IntEnum):
    """How a device's push subscription stands at the relay (PUSH_STATUS ``state``)."""

    NONE = 0  #: no subscription: the device is never woken
    ACTIVE = 1  #: wake-ups go to the endpoint
    #: the push service said the subscription is gone (404/410) or not ours (401/403): no
    #: wake-ups until the device registers a new one
    DEAD = 2


def _check_bin(frame_type: FrameType, name: str, value: object, length: int) -> None:
    if type(value) is not bytes or len(value) != length:
        raise _invalid(frame_type, f"{name} must be {length} bytes")


@dataclass(frozen=True, slots=True)
class PushRegister(Frame):
    """Register (or replace) this device's Web Push subscription. Answered by PUSH_STATUS, or
    REQUEST_FAILED (PUSH_REFUSED: an endpoint the relay will not call)."""

    TYPE: ClassVar[FrameType] = FrameType.PUSH_REGISTER
    request_id: int
    endpoint: str
    p256dh: bytes
    auth: bytes

    def __post_init__(self) -> None:
        _check_uint(self.TYPE, "request_id", self.request_id)
        _check_str(self.TYPE, "endpoint", self.endpoint, MAX_PUSH_ENDPOINT)
        if not self.endpoint:
            raise _invalid(self.TYPE, "endpoint must not be empty")
        _check_bin(self.TYPE, "p256dh", self.p256dh, PUSH_KEY_LEN)
        _check_bin(self.TYPE, "auth", self.auth, PUSH_AUTH_LEN)

    def fields(self) -> list[Any]:
        return [self.request_id, self.endpoint, self.p256dh, self.auth]


@dataclass(frozen=True, slots=True)
class PushUnregister(Frame):
    """Drop this device's subscription: it is never woken again. Answered by PUSH_STATUS."""

    TYPE: ClassVar[FrameType] = FrameType.PUSH_UNREGISTER
    request_id: int

    def __post_init__(self) -> None:
        _check_uint(self.TYPE, "request_id", self.request_id)

    def fields(self) -> list[Any]:
        return [self.request_id]


@dataclass(frozen=True, slots=True)
class PushQuery(Frame):
    """Ask for the relay's VAPID key and this device's subscription. Answered by PUSH_STATUS."""

    TYPE: ClassVar[FrameType] = FrameType.PUSH_QUERY
    request_id: int

    def __post_init__(self) -> None:
        _check_uint(self.TYPE, "request_id", self.request_id)

    def fields(self) -> list[Any]:
        return [self.request_id]


@dataclass(frozen=True, slots=True)
class PushStatus(Frame):
    """The relay's VAPID public key and this device's subscription: ``state`` (a
    :class:`PushState`) and ``endpoint`` (empty without one). ``request_id`` 0: unsolicited,
    after WELCOME, when the subscription is dead (register a new one)."""

    TYPE: ClassVar[FrameType] = FrameType.PUSH_STATUS
    request_id: int
    vapid_key: bytes
    state: int
    endpoint: str

    def __post_init__(self) -> None:
        _check_uint(self.TYPE, "request_id", self.request_id)
        _check_bin(self.TYPE, "vapid_key", self.vapid_key, PUSH_KEY_LEN)
        if type(self.state) is not int or self.state not in PushState._value2member_map_:
            raise _invalid(self.TYPE, "state must be 0 (none), 1 (active) or 2 (dead)")
        _check_str(self.TYPE, "endpoint", self.endpoint, MAX_PUSH_ENDPOINT)

    def fields(self) -> list[Any]:
        return [self.request_id, self.vapid_key, self.state, self.endpoint]
