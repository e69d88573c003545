"""Sealed sender at the client's store (v12, docs/protocol.md §14.1): this account's profile
key, the contacts' profile keys, who was given ours, and the blocked contacts.

* ``profile_key``: one row, the account's key as this device holds it, with what orders it
  among the account's keys (:class:`~tidings.delivery.content_profile.ProfileKey`) and the
  access key the relay was last given of it (``registered``).
* ``profile_key_given``: the key each contact (``device_id`` 0) and each own device was last
  given: a contact "has our current key" when its row holds it.
* ``contact_profile_keys``: each contact's key, as its last PROFILE_KEY said.
* ``blocked``: contacts whose messages are dropped on receipt.

Every write method is one transaction (a savepoint inside a batch), as everywhere in the store;
those for an incoming item move the cursor with it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence

from tidings.delivery import SenderDevice, StreamState
from tidings.delivery.content_profile import ProfileKey

from ._crypto import CryptoWrites
from ._incoming import Incoming
from .records import MessageKey, OutboxRequest

__all__ = ["CONTACT", "Profiles"]

#: The ``device_id`` of a contact account's row in ``profile_key_given``.
CONTACT = 0


class Profiles(Incoming):
    """The sealed-sender methods of :class:`~tidings.client.store.ClientStore`."""

    # ------------------------------------------------------------ this account's key

    def profile_key(self) -> ProfileKey | None:
        """This account's profile key as this device holds it (``None``: none yet)."""
        rows = self._read("SELECT key, generation, created_at, device_id FROM profile_key")
        if not rows:
            return None
        key, generation, created_at, device = rows[0]
        return ProfileKey(bytes(key), int(generation), float(created_at), int(device))

    def set_profile_key(self, key: ProfileKey) -> None:
        """Hold ``key`` as this account's (the relay's access key must be set again)."""
        with self._tx() as db:
            _put_key(db, key)

    def adopt_profile_key(
        self, seq: int, key: ProfileKey, sender_device: int, crypto: CryptoWrites | None = None
    ) -> bool:
        """An own device's PROFILE_KEY (item ``seq``): hold ``key`` if it outranks ours (or we
        have none); the sender holds it either way. One transaction with the cursor. Returns
        whether this device's key changed."""
        with self._tx(crypto) as db:
            if not self._move_cursor(db, seq):
                return False
            current = self.profile_key()
            changed = current is None or key.rank < current.rank
            if changed:
                _put_key(db, key)
            if current is None or key.rank <= current.rank:
                _given(db, self._own_account(db), [sender_device], key.key)
            return changed

    def access_key_registered(self) -> bytes | None:
        """The access key the relay was last given (SET_ACCESS_KEY answered), if any."""
        rows = self._read("SELECT registered FROM profile_key")
        return bytes(rows[0][0]) if rows and rows[0][0] is not None else None

    def set_access_key_registered(self, profile_key: bytes, access_key: bytes) -> None:
        """The relay holds ``access_key``, of ``profile_key`` (nothing if it is not ours now)."""
        with self._tx() as db:
            db.execute(
                "UPDATE profile_key SET registered = ? WHERE key = ?", (access_key, profile_key)
            )

    def sender_certificate(self) -> tuple[bytes, float] | None:
        """The sender certificate last kept and when it expires, if any (not checked here)."""
        rows = self._read("SELECT certificate, expires_at FROM sender_certificate")
        return (bytes(rows[0][0]), float(rows[0][1])) if rows else None

    def set_sender_certificate(self, certificate: bytes, expires_at: float) -> None:
        """Keep ``certificate`` (replacing the one kept)."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO sender_certificate (id, certificate, expires_at)"
                " VALUES (1, ?, ?)",
                (certificate, expires_at),
            )

    # ------------------------------------------------------------ giving it

    def profile_key_given(self, account: str) -> dict[int, bytes]:
        """The key each device of ``account`` was last given (``CONTACT``: a contact's)."""
        rows = self._read("SELECT device_id, key FROM profile_key_given WHERE account = ?", account)
        return {int(d): bytes(k) for d, k in rows}

    def contacts_given(self) -> list[str]:
        """The contacts ever given a profile key of ours, sorted."""
        rows = self._read(
            "SELECT account FROM profile_key_given WHERE device_id = ? ORDER BY account", CONTACT
        )
        return [str(a) for (a,) in rows]

    def queue_profile_key(
        self, requests: Sequence[tuple[OutboxRequest, Sequence[int]]], key: bytes
    ) -> None:
        """Queue PROFILE_KEY contents (exempt from MAX_OUTBOX, as receipts) and record that
        the named devices of each one's recipient (``CONTACT``: the contact) are given
        ``key``. One transaction."""
        with self._tx() as db:
            for request, devices in requests:
                self._insert_outbox(db, request)
                _given(db, request.recipient, devices, key)

    # ------------------------------------------------------------ contacts' keys

    def contact_profile_key(self, account: str) -> bytes | None:
        """``account``'s profile key, if it gave us one (and we did not forget it)."""
        rows = self._read("SELECT key FROM contact_profile_keys WHERE account = ?", account)
        return bytes(rows[0][0]) if rows else None

    def commit_contact_profile_key(
        self, seq: int, account: str, key: bytes, at: float, crypto: CryptoWrites | None = None
    ) -> bool:
        """A contact's PROFILE_KEY (item ``seq``). One transaction with the cursor; False for
        a duplicate ``seq``."""
        with self._tx(crypto) as db:
            if not self._move_cursor(db, seq):
                return False
            db.execute(
                "INSERT OR REPLACE INTO contact_profile_keys (account, key, at) VALUES (?, ?, ?)",
                (account, key, at),
            )
            return True

    def forget_contact_profile_key(self, account: str) -> bool:
        """Drop ``account``'s profile key (the relay refused its access key: it rotated)."""
        with self._tx() as db:
            n = db.execute("DELETE FROM contact_profile_keys WHERE account = ?", (account,))
            return n.rowcount > 0

    # ------------------------------------------------------------ blocking

    def blocked(self) -> list[str]:
        """The blocked contacts, sorted."""
        return [str(a) for (a,) in self._read("SELECT account FROM blocked ORDER BY account")]

    def block(
        self,
        account: str,
        at: float,
        new_key: ProfileKey,
        requests: Sequence[tuple[OutboxRequest, Sequence[int]]],
    ) -> bool:
        """Block ``account`` and rotate: hold ``new_key``, queue its PROFILE_KEY ``requests``
        (to the other contacts and the own devices, never to ``account``) and record them as
        given. One transaction. False (nothing changes) if it was blocked already."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM blocked WHERE account = ?", (account,)).fetchone():
                return False
            db.execute("INSERT INTO blocked (account, at) VALUES (?, ?)", (account, at))
            _put_key(db, new_key)
            for request, devices in requests:
                self._insert_outbox(db, request)
                _given(db, request.recipient, devices, new_key.key)
            return True

    def commit_dropped(
        self,
        seq: int,
        streams: Iterable[StreamState],
        surfaced: Sequence[MessageKey],
        notices: Mapping[SenderDevice, int],
        crypto: CryptoWrites | None = None,
    ) -> bool:
        """A blocked contact's item (``seq``), dropped: the cursor, the ordering ``streams`` and
        ``notices`` it moved past its counter, the held messages that ``surfaced``, and the
        session state its decryption advanced. ONE transaction; False for a duplicate."""
        with self._tx(crypto) as db:
            if not self._move_cursor(db, seq):
                return False
            self._save_streams(db, streams, notices)
            self._show(db, surfaced)
            return True

    def unblock(self, account: str) -> bool:
        """Unblock ``account`` (it gets our key again the next time we send it anything).
        One transaction. False if it was not blocked."""
        with self._tx() as db:
            return db.execute("DELETE FROM blocked WHERE account = ?", (account,)).rowcount > 0

    def _own_account(self, db: sqlite3.Connection) -> str:
        row = db.execute("SELECT account FROM identity").fetchone()
        return str(row[0]) if row else ""


def _put_key(db: sqlite3.Connection, key: ProfileKey) -> None:
    db.execute(
        "INSERT OR REPLACE INTO profile_key (id, key, generation, created_at, device_id,"
        " registered) VALUES (1, ?, ?, ?, ?, NULL)",
        (key.key, key.generation, key.created_at, key.device),
    )


def _given(db: sqlite3.Connection, account: str, devices: Iterable[int], key: bytes) -> None:
    db.executemany(
        "INSERT OR REPLACE INTO profile_key_given (account, device_id, key) VALUES (?, ?, ?)",
        [(account, d, key) for d in devices],
    )
