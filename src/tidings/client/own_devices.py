"""The client's calls about an account's own devices and the relay's services for them.

Linking (a one-use code), the device lists, unlinking, history for a new device, device names
told to the account's other devices, and Web Push registration. :class:`OwnDevices` is a part of
:class:`~tidings.client.Client` (its base class): the methods use the client's session, outbox,
store and event stream, declared here for the type checker.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..delivery import ContentError, ContentKind, DeviceInfo
from ..delivery.content_history import History
from ..delivery.msgids import new_message_id
from ..errors import ConnectionBroken, RefusedError, StoreError, StoreUnavailable
from ..refs import DeviceRef
from ..wire import (
    DeviceDetails,
    DeviceQuery,
    Devices,
    GetDevices,
    LinkCode,
    LinkCodeRequest,
    PushQuery,
    PushRegister,
    PushStatus,
    PushUnregister,
    Unlink,
    check_account,
)
from .certs import INVALID, check_certificate, issue_link_code
from .events import ClientEvent, DeviceCertification, DevicesChanged
from .history import MAX_HISTORY_MESSAGES, history_parts
from .keysync import KeySync
from .outbox import Outbox
from .session import Session
from .store import ClientStore, DeviceMark, Identity, OutboxRequest

__all__ = ["THIS_DEVICE", "DeviceView", "OwnDevices"]

log = logging.getLogger("tidings.client")

#: The mark of the device that lists its own account: it needs no certificate to trust itself.
THIS_DEVICE = "this device"


@dataclass(frozen=True, slots=True)
class DeviceView:
    """One device as ``tidings devices`` shows it: the relay's last seen (coarse, ``None``:
    not recorded) and whether it is connected now, and what this device concluded of its
    certificate."""

    device: DeviceRef
    last_seen: float | None
    online: bool
    mark: DeviceMark


class OwnDevices:
    """The own-device calls of :class:`~tidings.client.Client` (see the module docstring)."""

    me: DeviceRef
    store: ClientStore
    _session: Session
    _outbox: Outbox
    _keysync: KeySync
    _clock: Callable[[], float]

    if TYPE_CHECKING:  # defined by Client

        @property
        def identity(self) -> Identity: ...

        def _emit(self, event: ClientEvent) -> None: ...

        def _end_batch(self) -> None: ...

        def identity_key_raw(self) -> bytes: ...

        def _sync_groups(self, devices: list[DeviceRef]) -> None: ...

        def _share_profile_key_own(self, own_devices: tuple[int, ...]) -> None: ...

    async def link_code(self) -> tuple[bytes, float]:
        """Ask the server for a one-use code that lets a new device join this account.

        Waits for the session if there is none yet (call :meth:`start` first).

        Raises:
            RelayUnreachable: not connected, and the next connection attempt failed.
            ConnectionBroken: the connection was lost before the answer.
            RefusedError: the relay refused (e.g. ``RATE_LIMITED``).
        """
        frame = await self._session.request(lambda rid: LinkCodeRequest(rid))
        assert isinstance(frame, LinkCode)
        # The code shown carries a secret the relay never sees (protocol §6.31).
        return issue_link_code(self.store, frame.code, frame.expires_at), frame.expires_at

    async def devices(self, account: str) -> tuple[int, ...]:
        """The current device ids of ``account`` (empty: no such account).

        Raises: as :meth:`link_code`.
        """
        check_account(account)
        frame = await self._session.request(lambda rid: GetDevices(rid, account))
        assert isinstance(frame, Devices)
        self._outbox.devices[account] = frame.device_ids
        return frame.device_ids

    async def device_details(self, account: str) -> list[DeviceView]:
        """The devices of ``account`` as the relay lists them (DEVICE_QUERY: last seen,
        connected now, certificate), each certificate checked against the identity keys this
        device pinned (protocol §6.31). A mark that changed is stored and reported
        (:class:`DeviceCertification`; an invalid certificate is refused and flagged).

        Raises: as :meth:`link_code` (``RefusedError`` ``RATE_LIMITED``: another account's).
        """
        check_account(account)
        frame = await self._session.request(lambda rid: DeviceQuery(rid, account))
        assert isinstance(frame, DeviceDetails)
        return self._check_details(frame)

    async def publish_certificates(self) -> int:
        """Store at the relay the certificates this device signed for new own devices that the
        relay does not have yet (after a restart too); returns how many went.

        Raises: as :meth:`link_code` (``RefusedError`` ``UNKNOWN_DEVICE``: the device is gone).
        """
        sent = 0
        for device_id, cert in self.store.unpublished_certificates():
            frame = await self._session.request(_certify(self.me.account, device_id, cert))
            assert isinstance(frame, DeviceDetails)
            self.store.certificate_published(device_id, cert)
            sent += 1
        return sent

    async def _publish(self) -> None:
        """Publish the certificates this device signed; what fails goes at the next connect."""
        try:
            await self.publish_certificates()
        except (RefusedError, ConnectionBroken, StoreError) as exc:
            log.info("! certificates not published yet: %s", exc)

    async def _fetch_and_check(self, lane: str, devices: list[DeviceRef]) -> None:
        """Build the sessions; then check the certificates of a known account that has a new
        device (protocol §6.31: a new device of a contact, or of this account). A first
        contact's devices are checked when the user lists them (it would spend the lookup
        budget of every first send)."""
        accounts = {d.account for d in devices}
        known = {a for a in accounts if a == self.me.account or self.store.pinned_identities(a)}
        await self._keysync.fetch_bundles(lane, devices)
        for account in sorted(known):
            try:
                await self.device_details(account)
            except (RefusedError, ConnectionBroken, StoreError) as exc:
                log.info("! certificates of %s not checked: %s", account, exc)

    def _check_details(self, frame: DeviceDetails) -> list[DeviceView]:
        account, now = frame.account, self._clock()
        known = {d: key for d, (key, _) in self.store.pinned_identities(account).items()}
        if account == self.me.account:
            known[self.me.device_id] = self.identity_key_raw()
        before = self.store.device_marks(account)
        views = []
        for d in frame.devices:
            ref = DeviceRef(account, d.device_id)
            mark = check_certificate(ref, d.certificate, known, now)
            old = before.get(d.device_id)
            if ref == self.me:
                mark = replace(mark, status=THIS_DEVICE)
            elif (
                account == self.me.account
                and old is not None
                and old.status == INVALID
                and not d.certificate
                and old.identity_key == mark.identity_key
            ):
                mark = old  # this device flagged it when its link proof failed: kept
            if old is None or (old.status, old.issuer, old.reason, old.identity_key) != (
                mark.status,
                mark.issuer,
                mark.reason,
                mark.identity_key,
            ):
                self.store.set_device_mark(mark)
                if ref != self.me:
                    self._emit(DeviceCertification(ref, mark.status, mark.issuer, mark.reason))
            views.append(DeviceView(ref, d.last_seen or None, d.online, mark))
        return views

    async def send_history(self, device_id: int, limit: int = MAX_HISTORY_MESSAGES) -> History:
        """Send the newest ``limit`` messages of every conversation (disappearing ones left
        out) to device ``device_id`` of this account — a new one — end-to-end encrypted through
        the relay, in parts that wait in the outbox like messages (a restart resumes them).
        The device imports each message once. Returns the last part (``parts``, ``archive_id``).

        Raises:
            FrameError, ContentError: not a device id, or ``limit`` out of 1..MAX_HISTORY_MESSAGES.
            StoreUnavailable: the store cannot write (nothing was queued).
        """
        if device_id == self.me.device_id or not 1 <= device_id <= (1 << 63) - 1:
            raise ContentError("send history to another device of this account")
        if not 1 <= limit <= MAX_HISTORY_MESSAGES:
            raise ContentError(f"limit must be 1..{MAX_HISTORY_MESSAGES}")
        self._end_batch()
        parts = history_parts(device_id, os.urandom(16), self.store.history_entries(limit))
        now = self._clock()
        requests = [
            OutboxRequest(
                new_message_id(now, os.urandom),
                self.me.account,
                p.serialize(),
                ContentKind.HISTORY,
                now,
            )
            for p in parts
        ]
        self.store.queue_receipts(requests)  # exempt from MAX_OUTBOX, as receipts are
        try:
            self._outbox.add_queued(r.message_id for r in requests)
        except StoreUnavailable:
            pass  # they are queued (committed above); the client stops (StorageFailed)
        return parts[-1]

    async def unlink(self, device_id: int) -> tuple[int, ...]:
        """Remove device ``device_id`` of this account for good (protocol §6.26): the relay
        refuses it from then on and drops what waited for it; contacts learn it is stale on
        their next send. This device itself may be named (leaving the account). Returns the
        account's devices after it.

        Raises:
            FrameError: ``device_id`` is not a device id (1 or more).
            RefusedError: ``UNKNOWN_DEVICE`` (no such device), ``LAST_DEVICE`` (the account's
                only one), ``RATE_LIMITED``.
            RelayUnreachable, ConnectionBroken: as :meth:`link_code`.
        """
        request = Unlink(1, device_id)  # checked now, before the session is asked
        frame = await self._session.request(lambda rid: Unlink(rid, request.device_id))
        assert isinstance(frame, Devices)
        self._outbox.devices[self.me.account] = frame.device_ids
        return frame.device_ids

    async def push_register(self, endpoint: str, p256dh: bytes, auth: bytes) -> PushStatus:
        """Register this device's Web Push subscription with the relay (protocol §6.22): the
        relay wakes the device through it while it is not connected.

        Raises: as :meth:`link_code` (``RefusedError`` ``PUSH_REFUSED``: an endpoint the relay
            will not call); ``FrameError``: not a subscription (key or secret lengths).
        """
        PushRegister(0, endpoint, p256dh, auth)  # checked before it becomes a request
        frame = await self._session.request(lambda rid: PushRegister(rid, endpoint, p256dh, auth))
        assert isinstance(frame, PushStatus)
        return frame

    async def push_unregister(self) -> PushStatus:
        """Drop this device's push subscription at the relay. Raises: as :meth:`link_code`."""
        frame = await self._session.request(lambda rid: PushUnregister(rid))
        assert isinstance(frame, PushStatus)
        return frame

    async def push_status(self) -> PushStatus:
        """The relay's VAPID key and this device's subscription. Raises: as :meth:`link_code`."""
        frame = await self._session.request(lambda rid: PushQuery(rid))
        assert isinstance(frame, PushStatus)
        return frame

    def _tell_name(self, own_devices: tuple[int, ...]) -> None:
        """Tell this account's other devices this device's name, once per device set that
        has a device not told yet (the relay keeps no names)."""
        others = [d for d in own_devices if d != self.me.device_id]
        told = self.store.names_told()
        if not others or all(d in told for d in others):
            return
        now = self._clock()
        content = DeviceInfo(self.identity.device_name[:64], self.store.link_proof()).serialize()
        request = OutboxRequest(
            new_message_id(now, os.urandom), self.me.account, content, ContentKind.DEVICE_INFO, now
        )
        try:
            self.store.queue_device_info(request, own_devices)
            self._outbox.add_queued([request.message_id])
        except StoreUnavailable:
            pass  # the client stops (StorageFailed)

    def _on_devices(self, frame: Devices) -> None:
        """A device was linked to this account while the session was open (protocol §6.10):
        the next sends include it, and the user hears of it (a linked device nobody expected
        is how an account is taken over)."""
        before = self._outbox.devices.get(frame.account, ())
        self._outbox.devices[frame.account] = frame.device_ids
        if frame.account == self.me.account:
            self._tell_name(frame.device_ids)
            self._share_profile_key_own(frame.device_ids)
            known = before or (self.me.device_id,)
            new = [DeviceRef(self.me.account, d) for d in frame.device_ids if d not in known]
            if new:
                self._sync_groups(new)  # a device linked late gets the account's groups
        if frame.account == self.me.account and before:
            added = tuple(d for d in frame.device_ids if d not in before)
            removed = tuple(d for d in before if d not in frame.device_ids)
            if added or removed:
                self._emit(DevicesChanged(frame.account, added, removed, self._clock()))


def _certify(account: str, device_id: int, cert: bytes) -> Callable[[int], DeviceQuery]:
    """The DEVICE_QUERY that stores ``cert`` for own device ``device_id``, per request id."""
    return lambda rid: DeviceQuery(rid, account, (device_id, cert))
