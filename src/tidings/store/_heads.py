"""A write-through cache of the per-device counters of the ``devices`` table.

Every send needs the device set of two accounts and the ``last_seq`` and ``depth`` of each of
their devices; reading them back costs a ``SELECT`` per send (2.5-7 µs measured, a quarter of the
SQL of a send). The store's thread owns this cache and keeps it equal to what the database holds
within the current transaction.

Invariants (the SQL is always written too; the cache only saves the reads):

* Only the store's thread touches it.
* An operation updates an entry only as its last step, after all its SQL succeeded, so a
  savepoint rolled back never leaves a value behind. The set-based path
  (:mod:`tidings.store._bulk`) updates entries as it decides each operation of a segment, before
  writing them; if the segment is rolled back, the group committer clears the cache.
* The group committer :meth:`~HeadCache.clear`\\ s it whenever a transaction fails, so it never
  holds a value that was rolled back with a batch.
* Whatever adds devices or rewrites counters in bulk (linking, expiry) invalidates the account.
* It is emptied on every open: another process may have changed the file in between.
"""

from __future__ import annotations

import sqlite3

from tidings.store.base import DeviceRef

#: Accounts whose counters are kept; beyond it the oldest entry goes. At ~0.5 KiB an account
#: that is ~50 MiB, and a miss costs one indexed SELECT.
MAX_ACCOUNTS = 100_000

#: Contact pairs kept (positive answers only: a contact is never forgotten). At ~150 B a pair
#: that is ~30 MiB; a miss costs one indexed SELECT.
MAX_CONTACTS = 200_000

#: ``[last_seq, depth, strangers]`` of each device of one account, by device id.
Heads = dict[DeviceRef, list[int]]

_HEADS_OF = (
    "SELECT device_id, last_seq, depth, strangers FROM devices WHERE account = ? ORDER BY device_id"
)
_IS_CONTACT = "SELECT 1 FROM contacts WHERE account = ? AND contact = ?"


class HeadCache:
    """The counters of recently used accounts, loaded on first use."""

    def __init__(self, max_accounts: int = MAX_ACCOUNTS) -> None:
        """Create an empty cache holding at most ``max_accounts`` accounts."""
        self._max_accounts = max_accounts
        self._accounts: dict[str, Heads] = {}
        self._contacts: set[tuple[str, str]] = set()

    def get(self, conn: sqlite3.Connection, account: str) -> Heads | None:
        """The account's devices and counters, or ``None`` if it has no devices.

        The returned lists are the cache's own: change them only after the SQL succeeded.
        """
        heads = self._accounts.get(account)
        if heads is not None:
            return heads
        rows = conn.execute(_HEADS_OF, (account,)).fetchall()
        if not rows:
            return None  # unknown accounts are not cached: they are rare and may appear
        if len(self._accounts) >= self._max_accounts:
            del self._accounts[next(iter(self._accounts))]
        heads = self._accounts[account] = {
            DeviceRef(account, device_id): [last_seq, depth, strangers]
            for device_id, last_seq, depth, strangers in rows
        }
        return heads

    def shrink(self, device: DeviceRef, by: int, strangers: int = 0) -> None:
        """``by`` items left the device's inbox, ``strangers`` of them from strangers (call
        after the ``UPDATE`` succeeded)."""
        heads = self._accounts.get(device.account)
        head = None if heads is None else heads.get(device)
        if head is not None:
            head[1] -= by
            head[2] -= strangers

    def is_contact(self, conn: sqlite3.Connection, account: str, contact: str) -> bool:
        """Whether ``account`` ever sent to ``contact`` (the ``contacts`` table)."""
        if (account, contact) in self._contacts:
            return True
        if conn.execute(_IS_CONTACT, (account, contact)).fetchone() is None:
            return False
        self.add_contact(account, contact)
        return True

    def knows_contact(self, account: str, contact: str) -> bool:
        """Whether the pair is cached (so it need not be written again)."""
        return (account, contact) in self._contacts

    def add_contact(self, account: str, contact: str) -> None:
        """The pair is in the database (call after the ``INSERT`` succeeded)."""
        if len(self._contacts) >= MAX_CONTACTS:
            self._contacts.clear()  # rare; refilled by one SELECT per pair
        self._contacts.add((account, contact))

    def invalidate(self, account: str) -> None:
        """Forget the account; the next :meth:`get` reads it again. Safe at any time."""
        self._accounts.pop(account, None)

    def clear(self) -> None:
        """Forget everything. Safe at any time."""
        self._accounts.clear()
        self._contacts.clear()
