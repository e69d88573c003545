"""The sealed multi-recipient send and its answer (docs/protocol.md §6.39–6.40, §14.3).

SEALED_MULTI_SEND is MULTI_SEND (§6.27) without a sender: sent on an *unidentified* session
(Noise NK), it carries ONE shared ciphertext (the sealed-sender v2 ``E || ciphertext``) and,
per recipient device, its part (``0x22 || C_i || AT_i``); each recipient account is authorised
by its own unidentified-access key. The relay stores the shared body once and, per device, a
kind-3 item (no sender, the tag as its message id) delivered as ``part || shared``. The
16-byte random ``tag`` is the idempotency key (with each recipient account) and what the sender
later asks about (TAG_QUERY). Answered SEALED_MULTI_SENT: ✓ after the commit, or a refusal —
all or nothing — whose per-account refusals are MULTI_SENT's (``ACCESS_DENIED`` for an account
whose key is wrong, missing, or that does not exist: one code, so nothing can be probed).

Wire forms::

    SEALED_MULTI_SEND  [19, tag: bin(16), shared: bin,
                            [[account, access_key: bin(16), [[device_id, part], ...]], ...]]
    SEALED_MULTI_SENT  [38, tag, code, stored_at, duplicate, reason, retry_after,
                            [[account, code, missing, stale], ...]]

Invariant: like every frame, an invalid one cannot be constructed (``FrameError``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .frames import (
    Frame,
    FrameType,
    _account_ok,
    _check_bytes,
    _check_str,
    _check_time,
    _check_uint,
    _invalid,
    check_account,
)
from .limits import (
    ACCESS_KEY_LEN,
    MAX_MULTI_PART,
    MAX_MULTI_RECIPIENTS,
    MAX_MULTI_SHARED,
    MAX_REASON,
    MAX_TARGETS,
    TAG_LEN,
)
from .multisend import AccountRefusal, MultiDevice

__all__ = ["SealedMultiAccount", "SealedMultiSend", "SealedMultiSent"]

_U63 = (1 << 63) - 1


def _check_exact(frame_type: FrameType, name: str, value: object, length: int) -> None:
    if type(value) is not bytes or len(value) != length:
        raise _invalid(frame_type, f"{name} must be {length} bytes")


@dataclass(frozen=True, slots=True)
class SealedMultiAccount:
    """One recipient account of a SEALED_MULTI_SEND: its access key and its devices' parts
    (each device named once, 1..``MAX_TARGETS``)."""

    account: str
    access_key: bytes
    devices: tuple[MultiDevice, ...]


@dataclass(frozen=True, slots=True)
class SealedMultiSend(Frame):
    """Send one sealed message to many accounts' devices: ``shared`` once, a part per device.

    Legal only on an unidentified session. Answered by SEALED_MULTI_SENT naming ``tag``; a
    retry reuses ``tag`` and stores nothing twice.
    """

    TYPE: ClassVar[FrameType] = FrameType.SEALED_MULTI_SEND
    tag: bytes
    shared: bytes
    recipients: tuple[SealedMultiAccount, ...]

    def __post_init__(self) -> None:
        t = self.TYPE
        _check_exact(t, "tag", self.tag, TAG_LEN)
        _check_bytes(t, "shared", self.shared, MAX_MULTI_SHARED)
        recipients = self.recipients
        if type(recipients) is not tuple or not recipients:
            raise _invalid(t, "a sealed multi-send names at least one account")
        accounts: set[str] = set()
        total = 0
        for entry in recipients:
            if type(entry) is not SealedMultiAccount:
                raise _invalid(t, "recipients must be SealedMultiAccount values")
            if not _account_ok(entry.account):
                check_account(entry.account, t)
            if entry.account in accounts:
                raise _invalid(t, "an account is named twice")
            accounts.add(entry.account)
            _check_exact(t, "access_key", entry.access_key, ACCESS_KEY_LEN)
            total += self._check_devices(entry.devices)
        if total > MAX_MULTI_RECIPIENTS:
            raise _invalid(t, f"a sealed multi-send has at most {MAX_MULTI_RECIPIENTS} devices")

    def _check_devices(self, devices: object) -> int:
        t = self.TYPE
        if type(devices) is not tuple or not 1 <= len(devices) <= MAX_TARGETS:
            raise _invalid(t, f"an account lists 1..{MAX_TARGETS} devices")
        seen: set[int] = set()
        for d in devices:
            if type(d) is not MultiDevice:
                raise _invalid(t, "devices must be MultiDevice values")
            if type(d.device_id) is not int or not 0 <= d.device_id <= _U63:
                raise _invalid(t, "device_id must be an integer in 0..2^63-1")
            if type(d.part) is not bytes or len(d.part) > MAX_MULTI_PART:
                raise _invalid(t, f"part must be at most {MAX_MULTI_PART} bytes")
            if d.device_id in seen:
                raise _invalid(t, "a device is named twice")
            seen.add(d.device_id)
        return len(devices)

    def fields(self) -> list[Any]:
        return [
            self.tag,
            self.shared,
            [
                [e.account, e.access_key, [[d.device_id, d.part] for d in e.devices]]
                for e in self.recipients
            ],
        ]


@dataclass(frozen=True, slots=True)
class SealedMultiSent(Frame):
    """The answer to SEALED_MULTI_SEND ``tag``.

    ``code`` 0: ✓, committed for every device of every account (G1); ``duplicate``: stored
    before. Any other code: nothing was stored; ``retry_after`` for limits; ``refusals`` the
    accounts that refused it (code ``RECIPIENTS_REFUSED``): ``ACCESS_DENIED``,
    ``DEVICE_MISMATCH`` (``missing``/``stale``) or ``QUEUE_FULL``.
    """

    TYPE: ClassVar[FrameType] = FrameType.SEALED_MULTI_SENT
    tag: bytes
    code: int
    stored_at: float
    duplicate: bool
    reason: str
    retry_after: float
    refusals: tuple[AccountRefusal, ...]

    def __post_init__(self) -> None:
        t = self.TYPE
        _check_exact(t, "tag", self.tag, TAG_LEN)
        _check_uint(t, "code", self.code)
        _check_time(t, "stored_at", self.stored_at)
        if type(self.duplicate) is not bool:
            raise _invalid(t, "duplicate must be a boolean")
        _check_str(t, "reason", self.reason, MAX_REASON)
        _check_time(t, "retry_after", self.retry_after)
        refusals = self.refusals
        if type(refusals) is not tuple or len(refusals) > MAX_MULTI_RECIPIENTS:
            raise _invalid(t, f"at most {MAX_MULTI_RECIPIENTS} refusals")
        for r in refusals:
            if type(r) is not AccountRefusal:
                raise _invalid(t, "refusals must be AccountRefusal values")
            check_account(r.account, t)
            _check_uint(t, "code", r.code)
            for ids in (r.missing, r.stale):
                if type(ids) is not tuple or len(ids) > MAX_TARGETS:
                    raise _invalid(t, f"at most {MAX_TARGETS} device ids")
                for d in ids:
                    _check_uint(t, "device_id", d)

    def fields(self) -> list[Any]:
        return [
            self.tag,
            self.code,
            self.stored_at,
            self.duplicate,
            self.reason,
            self.retry_after,
            [[r.account, r.code, list(r.missing), list(r.stale)] for r in self.refusals],
        ]


def _list(value: Any, what: str) -> list[Any]:
    if type(value) is not list:
        raise TypeError(f"{what} must be an array")
    return value


def _array(value: Any, n: int, what: str) -> list[Any]:
    if type(value) is not list or len(value) != n:
        raise TypeError(f"{what} is an array of {n}")
    return value


def parse_sealed_multi_send(tag: Any, shared: Any, recipients: Any) -> SealedMultiSend:
    """SEALED_MULTI_SEND from its wire fields (for the codec)."""
    parsed = []
    for entry in _list(recipients, "recipients"):
        account, access_key, devices = _array(entry, 3, "a recipient account")
        parts = tuple(
            MultiDevice(*_array(d, 2, "a recipient device")) for d in _list(devices, "devices")
        )
        parsed.append(SealedMultiAccount(account, access_key, parts))
    return SealedMultiSend(tag, shared, tuple(parsed))


def parse_sealed_multi_sent(
    tag: Any,
    code: Any,
    stored_at: Any,
    duplicate: Any,
    reason: Any,
    retry_after: Any,
    refusals: Any,
) -> SealedMultiSent:
    """SEALED_MULTI_SENT from its wire fields (for the codec)."""
    parsed = []
    for r in _list(refusals, "refusals"):
        account, code_no, missing, stale = _array(r, 4, "a refusal")
        parsed.append(
            AccountRefusal(
                account, code_no, tuple(_list(missing, "missing")), tuple(_list(stale, "stale"))
            )
        )
    return SealedMultiSent(tag, code, stored_at, duplicate, reason, retry_after, tuple(parsed))
