"""The client's local store: one SQLite file per device (DESIGN §6).

Invariants:

* Every write method is ONE transaction (``BEGIN IMMEDIATE`` … ``COMMIT``) and returns only after
  the commit. With WAL and ``synchronous=FULL`` the commit is fsync'ed: what a method wrote
  survives ``kill -9`` and power loss. A method that raises has changed nothing.
* Inside a batch (:meth:`ClientStore.begin_batch` … :meth:`ClientStore.commit_batch`) each write
  method is a savepoint of the batch's one transaction instead: still all or nothing, but durable
  only at the batch's commit. The client batches the frames of one turn of its event loop and
  lets nothing that depends on them out (ack, event, frame) before that commit.
* End-to-end writes (session records, pins, used prekeys, seen base keys) are a
  :class:`CryptoWrites` handed to the write method that stores what they produced
  (``commit_incoming(..., crypto=)``, ``save_sealed``, ``save_crypto``): applied in that
  transaction, never parked for a later one. A transaction that carried them and failed, or a
  rolled-back batch, runs the :meth:`ClientStore.on_rollback` hooks (the session cache reloads).
* Rows rewritten by every message of a batch — the cursor, session records, ordering state —
  are kept in the transaction's write set (:mod:`._writeset`) and written once before its COMMIT;
  reads see them first.
* :meth:`ClientStore.compose` allocates the conversation counter, queues the content and records
  the message in one transaction: a crash can neither reuse nor skip a counter (G2, G4).
* :meth:`ClientStore.commit_incoming` stores a message, advances the cursor, queues its delivered
  receipt and saves the ordering state together, or does none of it (G1, G3, G5).
* A message is stored once per ``(sender account, sender device, message id)`` (G3).
* Statuses only move forward (:func:`tidings.delivery.status.advance`).
* The schema is the numbered migrations of :mod:`tidings.client.migrations`, tracked with
  ``PRAGMA user_version``; a newer file than this code knows raises :class:`MigrationError`.
* ``sqlite3`` errors never escape: they become :class:`IntegrityError`, :class:`StoreUnavailable`
  (the disk is full, an I/O error, a read-only, damaged or unopenable file: see
  ``_sql.UNAVAILABLE``; :attr:`ClientStore.on_unavailable` hears of each first) or
  :class:`StoreError`.

The API is synchronous: the client is low-volume and calls it from its event loop thread (one
connection, used from the thread that opened it).

The methods live by feature: the outbox in :mod:`._outbox`, the incoming side in
:mod:`._incoming`, disappearing messages in :mod:`._timers`, history for a new device in
:mod:`._history`, device names in :mod:`._names`, sealed sender's keys and blocking in
:mod:`._profiles`, the SQLite plumbing in
:mod:`._sql`; this module assembles them and adds identity, statuses, the trace and history.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence

from tidings.delivery import Status, rollup
from tidings.errors import StoreError
from tidings.refs import DeviceRef

from ._crypto import Crypto
from ._groups import Groups
from ._marks import DeviceMarks
from ._outbox import Outbox
from ._profiles import Profiles
from ._sealed import SealedTags
from ._sql import MSG_COLS, message_from_row
from .records import ConversationSummary, DeviceStatus, Identity, StoredMessage, TraceEntry

#: Characters of a search: a few words, not a document.
MAX_QUERY = 256


def fts_query(text: str) -> str:
    """``text`` as an FTS5 query of its words, each a quoted phrase (so no word is read as
    FTS5 syntax), all required, the last also as a prefix.

    Raises:
        ValueError: no word, or longer than :data:`MAX_QUERY`.
    """
    if len(text) > MAX_QUERY:
        raise ValueError(f"a search is at most {MAX_QUERY} characters")
    words = text.split()
    if not words:
        raise ValueError("give at least one word to search for")
    quoted = ['"' + w.replace('"', '""') + '"' for w in words]
    return " ".join(quoted) + "*"


__all__ = ["ClientStore"]


class ClientStore(Outbox, DeviceMarks, Profiles, Groups, Crypto, SealedTags):
    """The client's durable state (see the module docstring). Also a context manager.

    Args:
        path: the database file; created and migrated as needed.

    Raises:
        MigrationError: the file's schema is newer than this code, or a migration failed.
        StoreUnavailable: the file cannot be opened or written (disk full, I/O error, …).
        StoreError: the file cannot be opened otherwise.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        try:
            self._db = sqlite3.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        try:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA busy_timeout = 5000")
        except sqlite3.Error as exc:
            self._db.close()
            raise self._error(exc) from exc
        try:
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        """Close the store. Everything written is already durable (an open batch is
        committed first)."""
        if self.in_batch:
            try:
                self.commit_batch()
            except StoreError:
                pass  # nothing of it is kept; nothing of it was acked or reported
        self._db.close()

    def __enter__(self) -> ClientStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------ identity

    def get_identity(self) -> Identity | None:
        """This device's identity, or ``None`` before registration."""
        rows = self._read(
            "SELECT noise_private_key, account, device_id, device_name, server_url, server_key,"
            " read_receipts FROM identity"
        )
        if not rows:
            return None
        key, account, device_id, name, url, server_key, read_receipts = rows[0]
        others = tuple(u for (u,) in self._read("SELECT url FROM relay_urls ORDER BY position"))
        return Identity(key, account, device_id, name, url, server_key, bool(read_receipts), others)

    def save_identity(self, identity: Identity) -> None:
        """Save (or replace) this device's identity. One transaction."""
        i = identity
        self._me_cache = None
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO identity VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
                (
                    *(i.noise_private_key, i.account, i.device_id, i.device_name, i.server_url),
                    *(i.server_key, int(i.read_receipts)),
                ),
            )
            _write_alternates(db, i.alternate_urls)

    def set_relay_urls(self, urls: Sequence[str]) -> None:
        """Replace the relay's URLs (preferred first; the caller checked each). One transaction.

        Raises:
            StoreError: no identity saved yet, or no URL.
        """
        if not urls:
            raise StoreError("a relay needs at least one URL")
        with self._tx() as db:
            if not db.execute("UPDATE identity SET server_url = ?", (urls[0],)).rowcount:
                raise StoreError("no identity saved yet")
            _write_alternates(db, urls[1:])

    def set_server_key(self, key: bytes | None) -> None:
        """Pin the server's static public key (``None`` unpins). One transaction."""
        self._update_identity("server_key", key)

    def set_read_receipts(self, enabled: bool) -> None:
        """Turn sending read receipts on or off. One transaction."""
        self._update_identity("read_receipts", int(enabled))

    # ------------------------------------------------------------ statuses and trace

    def update_status(
        self, message_id: bytes, device: DeviceRef, status: Status, at: float
    ) -> bool:
        """Move a message's status at ``device`` by :func:`advance`. One transaction.

        Returns:
            Whether it moved (False: a duplicate, or it would go backwards).
        """
        with self._tx() as db:
            return self._advance(db, message_id, device, status, at)

    def statuses(self, message_id: bytes) -> dict[DeviceRef, DeviceStatus]:
        """The message's status at each device recorded so far."""
        rows = self._read(
            "SELECT account, device_id, status, at FROM statuses WHERE message_id = ?"
            " ORDER BY account, device_id",
            message_id,
        )
        return {DeviceRef(a, d): DeviceStatus(Status(s), at) for a, d, s, at in rows}

    def message_status(self, message_id: bytes) -> Status | None:
        """The roll-up status of a sent message (:func:`rollup` over the recipient's
        devices), or ``None`` if no sent message has this id."""
        rows = self._read(
            "SELECT recipient, stored_at, failed_code FROM messages"
            " WHERE message_id = ? AND recipient IS NOT NULL",
            message_id,
        )
        if not rows:
            return None
        recipient, stored_at, failed_code = rows[0]
        if failed_code is not None:
            return Status.FAILED
        group = recipient.startswith("group:")  # a group message: every other account's
        me = self.get_identity()
        at_devices = {
            d: s.status
            for d, s in self.statuses(message_id).items()
            if d.account == recipient or (group and me is not None and d.account != me.account)
        }
        return rollup(at_devices, sent=stored_at is not None)

    def add_trace(
        self, message_id: bytes, point: str, at: float, detail: str | None = None
    ) -> None:
        """Record a trace point (see :class:`TracePoint`). One transaction.

        Raises:
            IntegrityError: ``point`` is not a point name (``name`` or ``name:account.N``).
        """
        with self._tx() as db:
            self._trace(db, message_id, point, at, detail)

    def add_traces(
        self, message_id: bytes, points: Sequence[tuple[str, float, str | None]]
    ) -> None:
        """Record several trace points ``(point, at, detail)``, in ONE transaction.

        Raises:
            IntegrityError: a ``point`` is not a point name; none of them is recorded.
        """
        with self._tx() as db:
            for point, at, detail in points:
                self._trace(db, message_id, point, at, detail)

    def trace(self, message_id: bytes) -> list[TraceEntry]:
        """The message's trace, by time (then by recording order)."""
        rows = self._read(
            "SELECT point, at, detail FROM trace WHERE message_id = ? ORDER BY at, id", message_id
        )
        return [TraceEntry(*r) for r in rows]

    # ------------------------------------------------------------ history

    def message(self, message_id: bytes) -> StoredMessage | None:
        """A stored message by id (a sent one first, if ids collide across senders)."""
        rows = self._read(
            f"SELECT {MSG_COLS} FROM messages WHERE message_id = ?"
            " ORDER BY direction DESC, id LIMIT 1",
            message_id,
        )
        return message_from_row(rows[0]) if rows else None

    def message_ids_starting(self, prefix: str, limit: int = 10) -> list[bytes]:
        """The ids (16 bytes) of stored or traced messages whose hex form starts with
        ``prefix``, in id order, at most ``limit``.

        Args:
            prefix: 1 to 32 lower-case hex digits.

        Raises:
            ValueError: ``prefix`` is not that.
        """
        if not 0 < len(prefix) <= 32 or prefix.strip("0123456789abcdef"):
            raise ValueError(f"not a hex prefix: {prefix!r}")
        low, high = bytes.fromhex(prefix.ljust(32, "0")), bytes.fromhex(prefix.ljust(32, "f"))
        rows = self._read(
            "SELECT message_id FROM messages WHERE message_id BETWEEN ?1 AND ?2"
            " UNION SELECT message_id FROM trace WHERE message_id BETWEEN ?1 AND ?2"
            " ORDER BY 1 LIMIT ?3",
            low,
            high,
            limit,
        )
        return [bytes(r[0]) for r in rows]

    def messages(
        self, conversation: str, limit: int = 50, before: int | None = None
    ) -> list[StoredMessage]:
        """The last ``limit`` shown messages of ``conversation``, in display order; with
        ``before`` (a message's ``shown``), the last ones displayed before it (older pages)."""
        rows = self._read(
            f"SELECT {MSG_COLS} FROM messages WHERE conversation = ? AND shown IS NOT NULL"
            " AND shown < ? ORDER BY shown DESC LIMIT ?",
            conversation,
            (1 << 62) if before is None else before,
            limit,
        )
        return [message_from_row(r) for r in reversed(rows)]

    def search(
        self, text: str, limit: int = 50, conversation: str | None = None
    ) -> list[StoredMessage]:
        """The shown messages whose body holds every word of ``text`` (the last one also as
        a prefix: "clim" finds "climbing"), most recent first; case and accents ignored.

        Raises:
            ValueError: ``text`` has no word, or is longer than :data:`MAX_QUERY`.
        """
        query = fts_query(text)
        where = " AND conversation = ?" if conversation is not None else ""
        params = [query] if conversation is None else [query, conversation]
        rows = self._read(
            f"SELECT {MSG_COLS} FROM messages WHERE id IN"
            " (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?)"
            f"{where} AND shown IS NOT NULL ORDER BY shown DESC LIMIT ?",
            *params,
            limit,
        )
        return [message_from_row(r) for r in rows]

    def conversations(self) -> list[ConversationSummary]:
        """Every conversation with a shown message, most recently active first. Unread are
        the received messages not read; what this account's other devices sent never is."""
        rows = self._read(
            "SELECT conversation, COUNT(*),"
            " SUM(direction = 0 AND recipient IS NULL AND read_at IS NULL),"
            " MAX(COALESCE(received_at, sent_at)) FROM messages WHERE shown IS NOT NULL"
            " GROUP BY conversation ORDER BY MAX(shown) DESC"
        )
        return [ConversationSummary(*r) for r in rows]

    def _update_identity(self, column: str, value: object) -> None:
        with self._tx() as db:
            if not db.execute(f"UPDATE identity SET {column} = ?", (value,)).rowcount:
                raise StoreError("no identity saved yet")


def _write_alternates(db: sqlite3.Connection, urls: Sequence[str]) -> None:
    """Replace the relay's other URLs with ``urls``, in order (inside the caller's transaction)."""
    db.execute("DELETE FROM relay_urls")
    db.executemany(
        "INSERT INTO relay_urls (position, url) VALUES (?, ?)", list(enumerate(urls, start=1))
    )
