"""The prekey frames: upload, fetch and bundle of X3DH/PQXDH prekeys, and their answers.

The relay stores prekeys and hands them out; it never looks inside them. Key material is opaque
bytes of fixed sizes (:mod:`tidings.wire.limits`): the relay checks sizes and shapes, and the
fetching device checks the signatures (``tidings.e2e.prekeys``). See docs/protocol.md §6.16–6.21.

Wire forms (MessagePack arrays)::

    signed prekey    [key_id, public(32), signature(64)]
    one-time prekey  [key_id, public(32)]
    KEM prekey       [key_id, public(1568), signature(64), last_resort]

Invariants: like every frame, an invalid one cannot be constructed (``FrameError``
``INVALID_FIELD``); within one upload a key id appears at most once per kind, and at most one KEM
prekey is the last-resort one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .frames import (
    Frame,
    FrameType,
    _check_str,
    _check_time,
    _check_uint,
    _invalid,
    check_account,
)
from .limits import (
    KEM_PUBLIC_KEY_LEN,
    MAX_IDENTITY_KEY,
    MAX_KEY_ID,
    MAX_PREKEYS_PER_UPLOAD,
    MAX_REASON,
    PREKEY_PUBLIC_LEN,
    PREKEY_SIGNATURE_LEN,
)

__all__ = [
    "KemKey",
    "OneTimeKey",
    "PrekeyBundle",
    "PrekeyFetch",
    "PrekeysLow",
    "PrekeysStored",
    "PrekeysUpload",
    "RequestFailed",
    "SignedKey",
]


@dataclass(frozen=True, slots=True)
class OneTimeKey:
    """An unsigned one-time X25519 prekey (X3DH ``OPK``): handed out once."""

    key_id: int
    public: bytes


@dataclass(frozen=True, slots=True)
class SignedKey:
    """The signed X25519 prekey (X3DH ``SPK``), signed by the device's identity key."""

    key_id: int
    public: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class KemKey:
    """A signed ML-KEM-1024 prekey (PQXDH ``PQOPK``, or the reusable last-resort ``PQSPK``)."""

    key_id: int
    public: bytes
    signature: bytes
    last_resort: bool


def _check_key_id(frame_type: FrameType, value: object) -> None:
    if type(value) is not int or not 0 <= value <= MAX_KEY_ID:
        raise _invalid(frame_type, "key_id must be an integer in 0..2^32-1")


def _check_len(frame_type: FrameType, name: str, value: object, length: int) -> None:
    if type(value) is not bytes or len(value) != length:
        raise _invalid(frame_type, f"{name} must be {length} bytes")


def _check_identity(frame_type: FrameType, value: object) -> None:
    if type(value) is not bytes or not PREKEY_PUBLIC_LEN <= len(value) <= MAX_IDENTITY_KEY:
        raise _invalid(
            frame_type, f"identity_key must be {PREKEY_PUBLIC_LEN}..{MAX_IDENTITY_KEY} bytes"
        )


def _check_one_time(frame_type: FrameType, key: object) -> None:
    if type(key) is not OneTimeKey:
        raise _invalid(frame_type, "a one-time prekey must be a OneTimeKey")
    _check_key_id(frame_type, key.key_id)
    _check_len(frame_type, "one-time prekey", key.public, PREKEY_PUBLIC_LEN)


def _check_signed(frame_type: FrameType, key: object) -> None:
    if type(key) is not SignedKey:
        raise _invalid(frame_type, "signed_prekey must be a SignedKey")
    _check_key_id(frame_type, key.key_id)
    _check_len(frame_type, "signed prekey", key.public, PREKEY_PUBLIC_LEN)
    _check_len(frame_type, "signature", key.signature, PREKEY_SIGNATURE_LEN)


def _check_kem(frame_type: FrameType, key: object) -> None:
    if type(key) is not KemKey:
        raise _invalid(frame_type, "a KEM prekey must be a KemKey")
    _check_key_id(frame_type, key.key_id)
    _check_len(frame_type, "kem prekey", key.public, KEM_PUBLIC_KEY_LEN)
    _check_len(frame_type, "signature", key.signature, PREKEY_SIGNATURE_LEN)
    if type(key.last_resort) is not bool:
        raise _invalid(frame_type, "last_resort must be a boolean")


def _check_batch(frame_type: FrameType, name: str, keys: object) -> None:
    if type(keys) is not tuple or len(keys) > MAX_PREKEYS_PER_UPLOAD:
        raise _invalid(frame_type, f"{name} holds at most {MAX_PREKEYS_PER_UPLOAD} prekeys")


# ---------------------------------------------------------------- client → server


@dataclass(frozen=True, slots=True)
class PrekeysUpload(Frame):
    """Publish this device's identity key and signed prekey, and add one-time prekeys.

    The signed prekey replaces the stored one; the one-time and KEM prekeys are added to the
    stored ones (a KEM prekey with ``last_resort`` replaces the stored last-resort key). Answered
    by PREKEYS_STORED, or REQUEST_FAILED (e.g. INVALID_FIELD: the identity key changed).
    """

    TYPE: ClassVar[FrameType] = FrameType.PREKEYS_UPLOAD
    request_id: int
    identity_key: bytes
    signed_prekey: SignedKey
    one_time: tuple[OneTimeKey, ...]
    kem_prekeys: tuple[KemKey, ...]

    def __post_init__(self) -> None:
        t = self.TYPE
        _check_uint(t, "request_id", self.request_id)
        _check_identity(t, self.identity_key)
        _check_signed(t, self.signed_prekey)
        _check_batch(t, "one_time", self.one_time)
        for key in self.one_time:
            _check_one_time(t, key)
        _check_batch(t, "kem_prekeys", self.kem_prekeys)
        for kem in self.kem_prekeys:
            _check_kem(t, kem)
        if len({k.key_id for k in self.one_time}) != len(self.one_time):
            raise _invalid(t, "a one-time prekey id is named twice")
        if len({k.key_id for k in self.kem_prekeys}) != len(self.kem_prekeys):
            raise _invalid(t, "a KEM prekey id is named twice")
        if sum(k.last_resort for k in self.kem_prekeys) > 1:
            raise _invalid(t, "at most one last-resort KEM prekey")
        # The limits bound the frame: 100 KEM and 100 one-time prekeys fit its size limit.

    def fields(self) -> list[Any]:
        s = self.signed_prekey
        return [
            self.request_id,
            self.identity_key,
            [s.key_id, s.public, s.signature],
            [[k.key_id, k.public] for k in self.one_time],
            [[k.key_id, k.public, k.signature, k.last_resort] for k in self.kem_prekeys],
        ]


@dataclass(frozen=True, slots=True)
class PrekeyFetch(Frame):
    """Ask for a prekey bundle of one device, to start a session with it.

    Answered by PREKEY_BUNDLE or REQUEST_FAILED (RATE_LIMITED, NO_SUCH_ACCOUNT, NO_PREKEYS).
    """

    TYPE: ClassVar[FrameType] = FrameType.PREKEY_FETCH
    request_id: int
    account: str
    device_id: int

    def __post_init__(self) -> None:
        _check_uint(self.TYPE, "request_id", self.request_id)
        check_account(self.account, self.TYPE)
        _check_uint(self.TYPE, "device_id", self.device_id)

    def fields(self) -> list[Any]:
        return [self.request_id, self.account, self.device_id]


# ---------------------------------------------------------------- server → client


@dataclass(frozen=True, slots=True)
class PrekeyBundle(Frame):
    """A device's prekey bundle. ``one_time`` was taken for this fetch alone (``None``: none
    were left); ``kem_prekey`` is a one-time KEM prekey, or the last-resort one."""

    TYPE: ClassVar[FrameType] = FrameType.PREKEY_BUNDLE
    request_id: int
    account: str
    device_id: int
    identity_key: bytes
    signed_prekey: SignedKey
    one_time: OneTimeKey | None
    kem_prekey: KemKey

    def __post_init__(self) -> None:
        t = self.TYPE
        _check_uint(t, "request_id", self.request_id)
        check_account(self.account, t)
        _check_uint(t, "device_id", self.device_id)
        _check_identity(t, self.identity_key)
        _check_signed(t, self.signed_prekey)
        if self.one_time is not None:
            _check_one_time(t, self.one_time)
        _check_kem(t, self.kem_prekey)

    def fields(self) -> list[Any]:
        s, o, k = self.signed_prekey, self.one_time, self.kem_prekey
        return [
            self.request_id,
            self.account,
            self.device_id,
            self.identity_key,
            [s.key_id, s.public, s.signature],
            None if o is None else [o.key_id, o.public],
            [k.key_id, k.public, k.signature, k.last_resort],
        ]


@dataclass(frozen=True, slots=True)
class RequestFailed(Frame):
    """A request (PREKEYS_UPLOAD, PREKEY_FETCH) was refused; nothing changed. The connection
    stays open. ``retry_after`` (seconds) is set for RATE_LIMITED, else 0."""

    TYPE: ClassVar[FrameType] = FrameType.REQUEST_FAILED
    request_id: int
    code: int
    reason: str
    retry_after: float = 0.0

    def __post_init__(self) -> None:
        _check_uint(self.TYPE, "request_id", self.request_id)
        _check_uint(self.TYPE, "code", self.code)
        _check_str(self.TYPE, "reason", self.reason, MAX_REASON)
        _check_time(self.TYPE, "retry_after", self.retry_after)

    def fields(self) -> list[Any]:
        return [self.request_id, self.code, self.reason, self.retry_after]


@dataclass(frozen=True, slots=True)
class PrekeysLow(Frame):
    """The relay holds few one-time prekeys of this device: upload more (PREKEYS_UPLOAD)."""

    TYPE: ClassVar[FrameType] = FrameType.PREKEYS_LOW
    one_time_left: int
    kem_left: int

    def __post_init__(self) -> None:
        _check_uint(self.TYPE, "one_time_left", self.one_time_left)
        _check_uint(self.TYPE, "kem_left", self.kem_left)

    def fields(self) -> list[Any]:
        return [self.one_time_left, self.kem_left]


@dataclass(frozen=True, slots=True)
class PrekeysStored(Frame):
    """The upload is durably stored; the relay now holds these many one-time prekeys."""

    TYPE: ClassVar[FrameType] = FrameType.PREKEYS_STORED
    request_id: int
    one_time_count: int
    kem_count: int

    def __post_init__(self) -> None:
        _check_uint(self.TYPE, "request_id", self.request_id)
        _check_uint(self.TYPE, "one_time_count", self.one_time_count)
        _check_uint(self.TYPE, "kem_count", self.kem_count)

    def fields(self) -> list[Any]:
        return [self.request_id, self.one_time_count, self.kem_count]
