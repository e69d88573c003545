"""Device details at the relay's connection core: DEVICE_QUERY (docs/protocol.md §6.29–6.31),
and when each device was last seen. A part of :class:`~tidings.server.core.RelayCore`.

A device asks for an account's device details; with ``certify`` it first stores a device
certificate for a device of its own account (opaque bytes: contacts check them, the relay
cannot). The answer, DEVICE_DETAILS, gives per device when it was last connected — rounded
down to :data:`LAST_SEEN_GRANULARITY`, recorded when a connection opens and when it ends —
whether it is connected now, and its certificate.
"""

from __future__ import annotations

from ..errors import IntegrityError, Rule, StoreError, StoreUnavailable
from ..store import DeviceCard, DeviceRef
from ..wire import DeviceDetail, DeviceDetails, DeviceQuery, ErrorCode
from .core_actions import Failure, MarkSeen, PutCertificate, ReadDeviceCards, StoreTrouble
from .core_base import CoreBase

__all__ = ["LAST_SEEN_GRANULARITY", "CertRules", "seen_at"]

#: Seconds to which the relay rounds a device's last-seen time down before it stores it: the
#: relay keeps one value per device, and an hour answers the user's question ("is this device
#: still in use, or forgotten in a drawer?") without keeping when, to the minute, each device
#: of each account connects — metadata a relay should not hold more precisely than it needs.
LAST_SEEN_GRANULARITY = 3600.0


def seen_at(now: float) -> float:
    """``now`` rounded down to :data:`LAST_SEEN_GRANULARITY`."""
    return now - now % LAST_SEEN_GRANULARITY


class CertRules(CoreBase):
    """The DEVICE_QUERY handler (a part of :class:`~tidings.server.core.RelayCore`)."""

    __slots__ = ()

    def _mark_seen(self, device: DeviceRef) -> None:
        """Record that ``device`` is connected now (coarse; a non-blocking write)."""
        self._ask(MarkSeen(device, seen_at(self.now)), _ignore, _ignore, block=False)

    def _handle_device_query(self, frame: DeviceQuery) -> None:
        assert self.device is not None
        own = self.device.account
        request_id, account = frame.request_id, frame.account
        if account != own:
            retry_after = self.limits.lookup(own, self.peer_ip, self.mono)
            if retry_after > 0:
                reason = "device lookup rate limit"
                self.request_failed(request_id, ErrorCode.RATE_LIMITED, reason, retry_after)
                return

        def listed(cards: list[tuple[DeviceCard, bool]]) -> None:
            details = tuple(
                DeviceDetail(c.ref.device_id, c.last_seen or 0.0, online, c.certificate or b"")
                for c, online in cards
            )
            self._send(DeviceDetails(request_id, account, details))

        def refused(exc: Exception) -> None:
            if isinstance(exc, IntegrityError) and exc.rule is Rule.UNKNOWN_DEVICE:
                self.request_failed(request_id, ErrorCode.UNKNOWN_DEVICE, "no such device")
            elif isinstance(exc, StoreUnavailable):
                self._actions.append(StoreTrouble(exc))
                code = ErrorCode.STORE_UNAVAILABLE
                self.request_failed(request_id, code, "store unavailable", self.store_retry_after)
            elif isinstance(exc, StoreError):
                self._actions.append(Failure("! store failed a certificate", exc))
                self.request_failed(request_id, ErrorCode.INTERNAL, "store failure; retry")
            else:
                raise exc

        if frame.certify is not None:
            if account != own:
                reason = "a certificate is for a device of your own account"
                self.request_failed(request_id, ErrorCode.NOT_OWN_DEVICE, reason)
                return
            device_id, certificate = frame.certify
            subject = DeviceRef(own, device_id)

            def stored(_: None) -> None:
                self._log(f"= certificate for {subject}")
                self._ask(ReadDeviceCards(account), listed, block=True)

            self._ask(PutCertificate(subject, certificate), stored, refused, block=True)
            return
        self._ask(ReadDeviceCards(account), listed, block=True)


def _ignore(_: object) -> None:
    pass
