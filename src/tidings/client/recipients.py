"""Which devices a send goes to: what this client knows of each account's devices.

The outbox's SEND frames name every device of the recipient account and, for messages, of this
account (sent-message sync); the relay answers a wrong set with DEVICE_MISMATCH naming the
missing and stale devices, which :meth:`Recipients.on_mismatch` applies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..delivery import ContentKind
from ..refs import DeviceRef
from ..wire import Refused
from .store import OutboxItem

__all__ = ["NO_OWN_COPIES", "Recipients"]

log = logging.getLogger("tidings.client")

#: Content sent to another account without copies for this account's other devices (group
#: content goes to the own account as a send of its own: one copy, not one per member).
NO_OWN_COPIES = frozenset(
    {
        ContentKind.RECEIPT,
        ContentKind.RETRY_REQUEST,
        ContentKind.GROUP_CHANGE,
        ContentKind.SENDER_KEY,
        ContentKind.GROUP_MESSAGE,
        ContentKind.GROUP_KEY_REQUEST,
        ContentKind.GROUP_SYNC,
        ContentKind.PROFILE_KEY,  # our own devices get the key in a send of their own
    }
)


class Recipients:
    """The known devices of each account (see :meth:`known_devices`) and the send targets.

    Args:
        me: this device.
    """

    def __init__(self, me: DeviceRef) -> None:
        self.me = me
        #: The known devices of each account (see :meth:`known_devices`).
        self.devices: dict[str, tuple[int, ...]] = {}
        #: The relay wants own copies of every send (an older relay: see :meth:`targets_of`).
        self._own_copies_always = False
        #: Called with this account's devices a device-set diff added (a device linked while
        #: this one was away: it gets the account's groups, :mod:`.group_sync`).
        self.on_own_added: Callable[[list[DeviceRef]], None] | None = None

    def on_disconnect(self) -> None:
        """The next connection may be to an upgraded relay."""
        self._own_copies_always = False

    def targets_of(self, item: OutboxItem) -> list[DeviceRef]:
        """Every device of the recipient, and, for content the own devices use (messages and
        resends: sent-message sync), every other device of this account. Receipts and retry
        requests go to the other account only (the relay takes a copy for every own device or
        for none): the own devices have no use for them, and an offline one would fill its
        queue with them until it blocked every send of the account.

        A relay older than that rule refuses such a send with DEVICE_MISMATCH naming own
        devices as missing (the newer one never does); from then on, for the rest of the
        connection, every send carries own copies again."""
        own = self.me.account
        targets = [DeviceRef(item.recipient, d) for d in self.known_devices(item.recipient)]
        copies = item.kind not in NO_OWN_COPIES or self._own_copies_always
        if item.recipient != own and copies:
            targets += [DeviceRef(own, d) for d in self.known_devices(own)]
        return [t for t in targets if t != self.me]

    def on_mismatch(self, frame: Refused, item: OutboxItem | None) -> None:
        """DEVICE_MISMATCH for ``item``: apply the relay's device diff."""
        self._note_old_relay(frame, item)
        self._apply_device_diff(frame)

    def _note_old_relay(self, frame: Refused, item: OutboxItem | None) -> None:
        """A send without own copies refused for missing own devices: an older relay."""
        if item is None or item.kind not in NO_OWN_COPIES or self._own_copies_always:
            return
        if any(account == self.me.account for account, _ in frame.missing):
            log.info("= this relay wants own copies of receipts too")
            self._own_copies_always = True

    def known_devices(self, account: str) -> tuple[int, ...]:
        """The devices of ``account`` as far as this client knows. Unknown accounts are
        guessed to have device 1 (own account: only this device); a wrong guess costs one
        DEVICE_MISMATCH answer, which names the real set."""
        known = self.devices.get(account)
        if known is not None:
            return known
        return (self.me.device_id,) if account == self.me.account else (1,)

    def _apply_device_diff(self, frame: Refused) -> None:
        changed: dict[str, set[int]] = {}
        for account, device_id in frame.missing:
            cur = changed.setdefault(account, set(self.known_devices(account)))
            cur.add(device_id)
        for account, device_id in frame.stale:
            cur = changed.setdefault(account, set(self.known_devices(account)))
            cur.discard(device_id)
        own_before = set(self.known_devices(self.me.account))
        for account, ids in changed.items():
            self.devices[account] = tuple(sorted(ids))
        added = sorted(set(changed.get(self.me.account, ())) - own_before)
        if added and self.on_own_added is not None:
            self.on_own_added([DeviceRef(self.me.account, d) for d in added])
