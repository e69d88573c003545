"""The client's calls about blocking contacts and giving out the profile key (sealed sender,
docs/protocol.md §14.1). :class:`Blocking` is a part of :class:`~tidings.client.Client` (its
base class); the decisions live in :class:`~tidings.client.sealed_keys.SealedKeys`.

Blocking a contact drops what it sends from then on (sealed or not: it is decrypted, so the
session stays in step, and not shown) and rotates the account's profile key: the new key goes
to every other contact that had ours and to this account's other devices, never to the
blocked one, and the relay gets the new access key, so the blocked contact's sealed sends are
refused (ACCESS_DENIED). Unblocking lets its messages through again; it gets our current key
the next time we send it anything. The blocked list is this device's (not synced to the
account's other devices).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import StoreUnavailable
from ..refs import DeviceRef
from ..wire import check_account
from .outbox import Outbox
from .sealed_keys import SealedKeys
from .store import ClientStore

__all__ = ["Blocking"]

log = logging.getLogger("tidings.client")


class Blocking:
    """The blocking calls of :class:`~tidings.client.Client` (see the module docstring)."""

    me: DeviceRef
    store: ClientStore
    sealed_keys: SealedKeys
    _outbox: Outbox
    _clock: Callable[[], float]

    if TYPE_CHECKING:  # defined by Client

        def _end_batch(self) -> None: ...

    async def block(self, account: str) -> bool:
        """Block ``account``: its messages are dropped from now on, and the profile key is
        rotated (the new one goes to the other contacts and own devices, the relay gets its
        access key). Durable on return. Returns ``False`` if it was blocked already.

        Raises:
            FrameError: ``account`` is not a valid account name.
            ValueError: ``account`` is this device's own.
            StoreUnavailable: the store cannot write (nothing changed).
        """
        check_account(account)
        self._end_batch()
        if account in self.sealed_keys.blocked:
            return False
        own = self._outbox.devices.get(self.me.account, ())
        self._hand_over(self.sealed_keys.block(account, self._clock(), own))
        return True

    async def unblock(self, account: str) -> bool:
        """Unblock ``account``. Returns ``False`` if it was not blocked.

        Raises:
            FrameError: ``account`` is not a valid account name.
            StoreUnavailable: the store cannot write.
        """
        check_account(account)
        self._end_batch()
        return self.sealed_keys.unblock(account)

    def blocked(self) -> list[str]:
        """The blocked contacts, sorted."""
        return sorted(self.sealed_keys.blocked)

    def _share_profile_key(self, to: str) -> None:
        """Before anything goes to ``to``: give it our profile key if it does not hold it."""
        self._hand_over(self.sealed_keys.share_with(to, self._clock()))

    def _share_profile_key_own(self, own_devices: tuple[int, ...]) -> None:
        """Give our profile key to the own devices that do not hold it."""
        try:
            self._hand_over(self.sealed_keys.share_with_own(own_devices, self._clock()))
        except StoreUnavailable:
            pass  # the client stops (StorageFailed)

    def _hand_over(self, ids: list[bytes]) -> None:
        if ids:
            try:
                self._outbox.add_queued(ids)
            except StoreUnavailable:
                pass  # queued (committed); the client stops (StorageFailed)
