"""The device-details frames: certificates and last seen (docs/protocol.md §6.29–6.30).

DEVICE_QUERY asks for the details of an account's devices, and may first store one device
certificate for a device of the sender's own account (``certify``: ``[device_id, bytes]``).
The relay stores the certificate as opaque bytes — it cannot check it, and need not: contacts
verify it against identity keys they already hold — and answers DEVICE_DETAILS: per current
device its id, when it was last connected (coarse: see ``tidings.server.core_certs``), whether
it is connected now, and its stored certificate (empty: none). Refusals are REQUEST_FAILED:
NOT_OWN_DEVICE (a certificate for another account), UNKNOWN_DEVICE (no such device of the
account), RATE_LIMITED (another account's details, as GET_DEVICES).

Wire forms::

    DEVICE_QUERY    [14, request_id, account, certify: null | [device_id, certificate: bin]]
    DEVICE_DETAILS  [34, request_id, account, [[device_id, last_seen, online, certificate], ...]]

``last_seen`` is 0 for a device never seen since the relay began recording it.
Invariant: like every frame, an invalid one cannot be constructed (``FrameError``
``INVALID_FIELD``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .frames import (
    Frame,
    FrameType,
    _check_bytes,
    _check_time,
    _check_uint,
    _invalid,
    check_account,
)
from .limits import MAX_DEVICE_CERTIFICATE, MAX_TARGETS

__all__ = ["DeviceDetail", "DeviceDetails", "DeviceQuery"]


@dataclass(frozen=True, slots=True)
class DeviceQuery(Frame):
    """Ask for ``account``'s device details; with ``certify``, first store that certificate
    for that device of this device's own account."""

    TYPE: ClassVar[FrameType] = FrameType.DEVICE_QUERY
    request_id: int
    account: str
    certify: tuple[int, bytes] | None = None

    def __post_init__(self) -> None:
        _check_uint(self.TYPE, "request_id", self.request_id)
        check_account(self.account, self.TYPE)
        if self.certify is not None:
            if type(self.certify) is not tuple or len(self.certify) != 2:
                raise _invalid(self.TYPE, "certify is [device_id, certificate]")
            device_id, certificate = self.certify
            _check_uint(self.TYPE, "device_id", device_id)
            if device_id < 1:
                raise _invalid(self.TYPE, "device_id must be at least 1")
            _check_bytes(self.TYPE, "certificate", certificate, MAX_DEVICE_CERTIFICATE)
            if not certificate:
                raise _invalid(self.TYPE, "a certificate is not empty")

    def fields(self) -> list[Any]:
        certify = None if self.certify is None else list(self.certify)
        return [self.request_id, self.account, certify]


@dataclass(frozen=True, slots=True)
class DeviceDetail:
    """One device of a DEVICE_DETAILS answer."""

    device_id: int
    last_seen: float  #: coarse (see the module docstring); 0: not recorded
    online: bool
    certificate: bytes  #: empty: none stored


@dataclass(frozen=True, slots=True)
class DeviceDetails(Frame):
    """The details of ``account``'s current devices, by device id (empty: no such account)."""

    TYPE: ClassVar[FrameType] = FrameType.DEVICE_DETAILS
    request_id: int
    account: str
    devices: tuple[DeviceDetail, ...]

    def __post_init__(self) -> None:
        t = self.TYPE
        _check_uint(t, "request_id", self.request_id)
        check_account(self.account, t)
        if type(self.devices) is not tuple or len(self.devices) > MAX_TARGETS:
            raise _invalid(t, f"at most {MAX_TARGETS} devices")
        for d in self.devices:
            if type(d) is not DeviceDetail:
                raise _invalid(t, "devices must be DeviceDetail values")
            _check_uint(t, "device_id", d.device_id)
            _check_time(t, "last_seen", d.last_seen)
            if type(d.online) is not bool:
                raise _invalid(t, "online must be a boolean")
            _check_bytes(t, "certificate", d.certificate, MAX_DEVICE_CERTIFICATE)

    def fields(self) -> list[Any]:
        return [
            self.request_id,
            self.account,
            [[d.device_id, d.last_seen, d.online, d.certificate] for d in self.devices],
        ]


def parse_device_query(request_id: Any, account: Any, certify: Any) -> DeviceQuery:
    """DEVICE_QUERY from its wire fields (for the codec)."""
    if certify is not None:
        if type(certify) is not list or len(certify) != 2:
            raise TypeError("certify is [device_id, certificate]")
        certify = (certify[0], certify[1])
    return DeviceQuery(request_id, account, certify)


def parse_device_details(request_id: Any, account: Any, devices: Any) -> DeviceDetails:
    """DEVICE_DETAILS from its wire fields (for the codec)."""
    if type(devices) is not list:
        raise TypeError("devices must be an array")
    parsed = []
    for d in devices:
        if type(d) is not list or len(d) != 4:
            raise TypeError("a device is [device_id, last_seen, online, certificate]")
        parsed.append(DeviceDetail(d[0], d[1], d[2], d[3]))
    return DeviceDetails(request_id, account, tuple(parsed))
