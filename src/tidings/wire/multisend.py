"""The multi-recipient send and its answer (docs/protocol.md §6.27–6.28).

MULTI_SEND carries ONE shared ciphertext (a sealed-sender v2 or sender-key group payload) and,
per recipient device, a small *part* (a sealed v2 per-recipient header). The relay stores the
shared ciphertext once and one small inbox item per device that refers to it; the device is
delivered ``part || shared`` as an ordinary DELIVER payload (kind 0) — for sealed v2 with
``part = 0x22 || C_i || AT_i`` that is libsignal's received message, so a recipient cannot tell
a multi-send from a one-to-one send.

Recipients are grouped by account; each account's list must name every current device of that
account (the sender's own account: every other device), the rule SEND applies to its
recipient (Signal's 409/410). The relay answers MULTI_SENT: code 0 (✓, committed for every
device, G1), or a refusal; a refusal because of some accounts (code ``RECIPIENTS_REFUSED``)
lists each of them with its own code and, for ``DEVICE_MISMATCH``, the device ids to add and to
drop. A refused multi-send stores nothing (all or nothing, as Signal's multi-recipient 409).

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
    _check_message_id,
    _check_str,
    _check_time,
    _check_uint,
    _invalid,
    check_account,
)
from .limits import (
    MAX_MULTI_PART,
    MAX_MULTI_RECIPIENTS,
    MAX_MULTI_SHARED,
    MAX_REASON,
    MAX_TARGETS,
)

__all__ = ["AccountRefusal", "MultiAccount", "MultiDevice", "MultiSend", "MultiSent"]

_U63 = (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class MultiDevice:
    """One recipient device of a MULTI_SEND and its part (at most ``MAX_MULTI_PART`` bytes)."""

    device_id: int
    part: bytes


@dataclass(frozen=True, slots=True)
class MultiAccount:
    """The recipient devices of one account (each named once, at most ``MAX_TARGETS``)."""

    account: str
    devices: tuple[MultiDevice, ...]


@dataclass(frozen=True, slots=True)
class MultiSend(Frame):
    """Send one message to many devices: ``shared`` once, a part per device.

    Answered by MULTI_SENT naming ``request_id``. Retries reuse ``message_id`` (the idempotency
    key with the sending device, as SEND's): a retry stores nothing twice.
    """

    TYPE: ClassVar[FrameType] = FrameType.MULTI_SEND
    request_id: int
    message_id: bytes
    shared: bytes
    recipients: tuple[MultiAccount, ...]

    def __post_init__(self) -> None:
        _check_uint(self.TYPE, "request_id", self.request_id)
        _check_message_id(self.TYPE, self.message_id)
        _check_bytes(self.TYPE, "shared", self.shared, MAX_MULTI_SHARED)
        recipients = self.recipients
        if type(recipients) is not tuple or not recipients:
            raise _invalid(self.TYPE, "a multi-send names at least one account")
        accounts: set[str] = set()
        total = 0
        for entry in recipients:
            if type(entry) is not MultiAccount:
                raise _invalid(self.TYPE, "recipients must be MultiAccount values")
            if not _account_ok(entry.account):
                check_account(entry.account, self.TYPE)
            if entry.account in accounts:
                raise _invalid(self.TYPE, "an account is named twice")
            accounts.add(entry.account)
            total += self._check_devices(entry.devices)
        if total > MAX_MULTI_RECIPIENTS:
            raise _invalid(self.TYPE, f"a multi-send has at most {MAX_MULTI_RECIPIENTS} devices")

    def _check_devices(self, devices: object) -> int:
        if type(devices) is not tuple or not 1 <= len(devices) <= MAX_TARGETS:
            raise _invalid(self.TYPE, f"an account lists 1..{MAX_TARGETS} devices")
        seen: set[int] = set()
        for d in devices:
            if type(d) is not MultiDevice:
                raise _invalid(self.TYPE, "devices must be MultiDevice values")
            if type(d.device_id) is not int or not 0 <= d.device_id <= _U63:
                raise _invalid(self.TYPE, "device_id must be an integer in 0..2^63-1")
            if type(d.part) is not bytes or len(d.part) > MAX_MULTI_PART:
                raise _invalid(self.TYPE, f"part must be at most {MAX_MULTI_PART} bytes")
            if d.device_id in seen:
                raise _invalid(self.TYPE, "a device is named twice")
            seen.add(d.device_id)
        return len(devices)

    def fields(self) -> list[Any]:
        return [
            self.request_id,
            self.message_id,
            self.shared,
            [
                [entry.account, [[d.device_id, d.part] for d in entry.devices]]
                for entry in self.recipients
            ],
        ]


@dataclass(frozen=True, slots=True)
class AccountRefusal:
    """Why one recipient account refused a multi-send.

    ``code``: ``NO_SUCH_ACCOUNT``, ``DEVICE_MISMATCH`` (``missing``: current device ids the
    send has no part for; ``stale``: ids it names that do not exist) or ``QUEUE_FULL``
    (``stale`` empty, ``missing`` empty; the reason names the device).
    """

    account: str
    code: int
    missing: tuple[int, ...] = ()
    stale: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class MultiSent(Frame):
    """The answer to MULTI_SEND ``request_id``.

    ``code`` 0: ✓, durably stored for every device (G1); ``stored_at`` is the commit's time and
    ``duplicate`` says it was stored before. Any other code: nothing was stored; the message
    stays in the sender's outbox; ``retry_after`` (seconds) for limits; ``refusals`` lists the
    accounts that refused it when ``code`` is ``RECIPIENTS_REFUSED``.
    """

    TYPE: ClassVar[FrameType] = FrameType.MULTI_SENT
    request_id: int
    message_id: bytes
    code: int
    stored_at: float
    duplicate: bool
    reason: str
    retry_after: float
    refusals: tuple[AccountRefusal, ...]

    def __post_init__(self) -> None:
        _check_uint(self.TYPE, "request_id", self.request_id)
        _check_message_id(self.TYPE, self.message_id)
        _check_uint(self.TYPE, "code", self.code)
        _check_time(self.TYPE, "stored_at", self.stored_at)
        if type(self.duplicate) is not bool:
            raise _invalid(self.TYPE, "duplicate must be a boolean")
        _check_str(self.TYPE, "reason", self.reason, MAX_REASON)
        _check_time(self.TYPE, "retry_after", self.retry_after)
        refusals = self.refusals
        # Every refused account was named by the send: at most one per recipient device.
        if type(refusals) is not tuple or len(refusals) > MAX_MULTI_RECIPIENTS:
            raise _invalid(self.TYPE, f"at most {MAX_MULTI_RECIPIENTS} refusals")
        for r in refusals:
            if type(r) is not AccountRefusal:
                raise _invalid(self.TYPE, "refusals must be AccountRefusal values")
            check_account(r.account, self.TYPE)
            _check_uint(self.TYPE, "code", r.code)
            for ids in (r.missing, r.stale):
                if type(ids) is not tuple or len(ids) > MAX_TARGETS:
                    raise _invalid(self.TYPE, f"at most {MAX_TARGETS} device ids")
                for d in ids:
                    _check_uint(self.TYPE, "device_id", d)

    def fields(self) -> list[Any]:
        return [
            self.request_id,
            self.message_id,
            self.code,
            self.stored_at,
            self.duplicate,
            self.reason,
            self.retry_after,
            [[r.account, r.code, list(r.missing), list(r.stale)] for r in self.refusals],
        ]
