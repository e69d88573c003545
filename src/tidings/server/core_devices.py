"""The device rules of the relay's connection core: UNLINK (docs/protocol.md §6.26). A part of
:class:`~tidings.server.core.RelayCore`.

A device removes a device of its own account (itself too). The store removes it in one durable
write (``Store.remove_device``: the device, its queue, prekeys, push subscription and link
codes); then the core answers DEVICES with the account's devices after it, tells the account's
other live sessions (an unsolicited DEVICES), and has the removed device's live session closed
(UNKNOWN_DEVICE). Refusals are REQUEST_FAILED and change nothing; the connection stays.
"""

from __future__ import annotations

from ..errors import IntegrityError, Rule, StoreError, StoreUnavailable
from ..store import Device, DeviceRef
from ..wire import Devices, ErrorCode, Unlink
from .core_actions import (
    AnnounceDevices,
    EvictDevice,
    Failure,
    ListDevices,
    RemoveDevice,
    StoreTrouble,
)
from .core_base import CoreBase

__all__ = ["DeviceRules"]

#: What each store rule refuses an UNLINK with.
_REFUSALS = {
    Rule.UNKNOWN_DEVICE: (ErrorCode.UNKNOWN_DEVICE, "no such device of this account"),
    Rule.LAST_DEVICE: (ErrorCode.LAST_DEVICE, "the account's only device cannot be unlinked"),
}


class DeviceRules(CoreBase):
    """The UNLINK handler (a part of :class:`~tidings.server.core.RelayCore`)."""

    __slots__ = ()

    def _handle_unlink(self, frame: Unlink) -> None:
        assert self.device is not None
        account = self.device.account
        request_id = frame.request_id
        retry_after = self.limits.link_code(account, self.mono)  # the same budget as linking
        if retry_after > 0:
            reason = "device change rate limit"
            self.request_failed(request_id, ErrorCode.RATE_LIMITED, reason, retry_after)
            return
        gone = DeviceRef(account, frame.device_id)

        def removed(_: None) -> None:
            self._log(f"= unlinked {gone}")
            self._ask(ListDevices(account), listed, block=True)

        def listed(devices: list[Device]) -> None:
            ids = tuple(d.ref.device_id for d in devices)
            self._send(Devices(request_id, account, ids))
            self._actions.append(AnnounceDevices(account, ids))
            self._actions.append(EvictDevice(gone))

        def refused(exc: Exception) -> None:
            if isinstance(exc, IntegrityError) and exc.rule in _REFUSALS:
                code, reason = _REFUSALS[exc.rule]
                self.request_failed(request_id, code, reason)
            elif isinstance(exc, StoreUnavailable):
                self._actions.append(StoreTrouble(exc))
                code = ErrorCode.STORE_UNAVAILABLE
                self.request_failed(request_id, code, "store unavailable", self.store_retry_after)
            elif isinstance(exc, StoreError):
                self._actions.append(Failure("! store failed an unlink", exc))
                self.request_failed(request_id, ErrorCode.INTERNAL, "store failure; retry")
            else:
                raise exc

        self._ask(RemoveDevice(gone), removed, refused, block=True)
