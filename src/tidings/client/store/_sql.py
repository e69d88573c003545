"""The SQLite file under the client store: transactions, migrations, rows, shared write steps.

:class:`Database` is the base of :class:`~tidings.client.store.ClientStore`: it owns the
connection and the steps that several features take inside their one transaction (queue an
outbox entry, move a status, record a trace point). The features are mixins on top of it.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from tidings.delivery import ContentKind, Status, advance
from tidings.errors import IntegrityError, MigrationError, StoreError, StoreUnavailable
from tidings.refs import DeviceRef
from tidings.store.sqlite_errors import SQLITE_BUSY, UNAVAILABLE_CODES, unavailable_state

from ..migrations import MIGRATIONS
from ._writeset import WriteSet
from .records import SCHEMA_VERSION, Direction, OutboxItem, OutboxRequest, StoredMessage

if TYPE_CHECKING:
    from ._crypto import CryptoWrites

#: A trace point name: ``name``, ``name:account.N`` (per device) or ``name:CODE`` (an error code
#: name, e.g. ``refused:QUEUE_FULL``).
_POINT = re.compile(r"[a-z_]{1,32}(:([a-z0-9_-]{1,32}\.[0-9]{1,19}|[A-Z][A-Z0-9_]{0,31}))?")

#: The ``messages`` columns in :class:`StoredMessage` order (see :func:`message_from_row`).
MSG_COLS = (
    "message_id, sender_account, sender_device, conversation, counter, body, sent_at, direction,"
    " recipient, received_at, stored_at, failed_code, failed_reason, read_at, shown, seen_at,"
    " expires_in, expires_at"
)

#: The SQLite errors after which this store cannot write now (:mod:`tidings.store.sqlite_errors`):
#: the disk is full, an I/O error, a read-only or damaged file, one that cannot be opened. Not
#: BUSY, unlike the relay's: the device lock keeps other writers away, so a busy store is a
#: reader (``tidings trace``) holding it a moment, and the next try succeeds.
UNAVAILABLE = UNAVAILABLE_CODES - {SQLITE_BUSY}

#: The display position of the next message shown.
NEXT_SHOWN = "(SELECT COALESCE(MAX(shown), 0) + 1 FROM messages)"


def statements(script: str) -> Iterator[str]:
    """The SQL statements of a migration script, without its ``--`` comment lines."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    stmt = ""
    for line in lines:
        stmt += line + "\n"
        if sqlite3.complete_statement(stmt):
            yield stmt
            stmt = ""


def message_from_row(row: Sequence[Any]) -> StoredMessage:
    """A :class:`StoredMessage` from the :data:`MSG_COLS` of a ``messages`` row."""
    mid, acct, dev, conv, counter, body, sent_at, direction, *rest = row
    return StoredMessage(
        mid, DeviceRef(acct, dev), conv, counter, body, sent_at, Direction(direction), *rest
    )


def outbox_item_from_row(row: Sequence[Any]) -> OutboxItem:
    """An :class:`OutboxItem` from a whole ``outbox`` row (``SELECT *``)."""
    position, mid, recipient, kind, content, created_at, attempts, next_at = row
    return OutboxItem(
        position, mid, recipient, ContentKind(kind), content, created_at, attempts, next_at
    )


class Database:
    """The connection (``_db`` and ``path``, set by the subclass) and what every feature
    builds on.

    Transactions: a write method runs in :meth:`_tx`, its own ``BEGIN IMMEDIATE`` … ``COMMIT``
    or, inside a batch, a savepoint of the batch's transaction. Each has a :class:`WriteSet`
    (the cursor, session records, ordering state: rows rewritten often, written once before
    the COMMIT) and may carry the :class:`~._crypto.CryptoWrites` of what it stores: they are
    part of that transaction and of no other. When a transaction that carried crypto writes
    fails, or a batch is rolled back, the :meth:`on_rollback` hooks run (the session cache
    forgets what the disk does not hold).
    """

    _db: sqlite3.Connection
    path: str
    #: The open batch: ``None`` (none), ``False`` (open, nothing written yet) or ``True`` (its
    #: transaction began). See :meth:`begin_batch`.
    _batch: bool | None = None
    #: The open batch's write set (what its released savepoints wrote).
    _batch_ws: WriteSet | None = None
    #: The write set of the transaction or savepoint running now.
    _ws: WriteSet | None = None
    #: See :meth:`on_rollback`.
    _rollback_hooks: tuple[Callable[[], None], ...] = ()
    #: Called with every :class:`StoreUnavailable` before it is raised, whoever called the store
    #: (the client stops on the first, even if the caller only logs it).
    on_unavailable: Callable[[StoreUnavailable], None] | None = None

    def on_rollback(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` whenever crypto writes are dropped: a transaction that carried them
        failed, or a batch was rolled back (e.g. ``DeviceCrypto.reload``)."""
        self._rollback_hooks = (*self._rollback_hooks, hook)

    def _rolled_back(self) -> None:
        for hook in self._rollback_hooks:
            hook()

    def _error(self, exc: sqlite3.Error) -> StoreError:
        """Our exception for a SQLite one (raise it ``from exc``)."""
        if isinstance(exc, sqlite3.IntegrityError):
            return IntegrityError(str(exc))
        state = unavailable_state(exc, UNAVAILABLE, os.path.dirname(self.path) or ".")
        if state is None:
            return StoreError(str(exc))
        if state == "full":
            text = f"the device's store {self.path} cannot be written: its disk is full"
        else:
            text = f"the device's store {self.path} cannot be used: {exc}"
        error = StoreUnavailable(state, text)
        if self.on_unavailable is not None:
            self.on_unavailable(error)
        return error

    @contextlib.contextmanager
    def _tx(self, crypto: CryptoWrites | None = None) -> Iterator[sqlite3.Connection]:
        """One write method's transaction: its own ``BEGIN IMMEDIATE`` … ``COMMIT``, or, inside
        a batch (:meth:`begin_batch`), a savepoint of the batch's transaction: its writes are
        undone if it raises, and durable only when the batch commits.

        Args:
            crypto: the end-to-end writes that produced what this transaction stores (the
                session state a decryption advanced, …): applied in it, after its body.
        """
        if self._batch is not None:
            with self._savepoint(crypto) as db:
                yield db
            return
        db = self._db
        ws = self._ws = WriteSet()
        try:
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                    if crypto is not None:
                        self._apply_crypto(db, crypto)
                    ws.apply(db)
                except BaseException:
                    db.rollback()
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):  # e.g. the store is closed
                    if db.in_transaction:
                        db.rollback()
                raise self._error(exc) from exc
        except BaseException:
            if crypto is not None:
                self._rolled_back()
            raise
        finally:
            self._ws = None

    @contextlib.contextmanager
    def _savepoint(self, crypto: CryptoWrites | None) -> Iterator[sqlite3.Connection]:
        db = self._db
        ws = self._ws = WriteSet()
        try:
            try:
                if not self._batch:
                    db.execute("BEGIN IMMEDIATE")  # the batch's transaction, at its first write
                    self._batch = True
                elif not db.in_transaction:
                    # SQLite rolled the whole transaction back (it does on some I/O errors): the
                    # batch's earlier writes are gone, so nothing more may join it.
                    raise StoreError("the batch's transaction was rolled back")
                db.execute("SAVEPOINT tx")
                try:
                    yield db
                    if crypto is not None:
                        self._apply_crypto(db, crypto)
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK TO tx")
                        db.execute("RELEASE tx")
                    raise
                db.execute("RELEASE tx")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    if db.in_transaction:
                        db.execute("ROLLBACK TO tx")
                        db.execute("RELEASE tx")
                raise self._error(exc) from exc
        except BaseException:
            if crypto is not None:
                self._rolled_back()
            raise
        finally:
            self._ws = None
        if self._batch_ws is None:
            self._batch_ws = WriteSet()
        self._batch_ws.merge(ws)

    def _written(self) -> Iterator[WriteSet]:
        """The open write sets, newest first (the running savepoint's, then the batch's)."""
        if self._ws is not None:
            yield self._ws
        if self._batch_ws is not None:
            yield self._batch_ws

    def _pending(self) -> WriteSet:
        """The write set of the running transaction (call inside :meth:`_tx` only)."""
        assert self._ws is not None, "outside a transaction"
        return self._ws

    # ------------------------------------------------------------ batches

    @property
    def in_batch(self) -> bool:
        """Whether a batch is open (see :meth:`begin_batch`)."""
        return self._batch is not None

    def begin_batch(self) -> None:
        """Make every write method from now until :meth:`commit_batch` part of ONE transaction.

        Each method still succeeds or changes nothing (a savepoint), but none is durable before
        the batch commits: the caller must not let anything depend on them (an ack to the
        relay, an event, a frame on the wire) until then. A client batches what it does with
        the frames of one read from the network, so a catch-up of thousands of messages costs
        one fsync per burst instead of several per message. No-op if one is open.
        """
        if self._batch is None:
            self._batch = False  # open; BEGIN at the first write

    def commit_batch(self) -> None:
        """Commit the batch (one fsync): its write set, then ``COMMIT``. Raises as a write
        method does; then nothing of the batch was kept (and the rollback hooks ran)."""
        began, self._batch = self._batch, None
        ws, self._batch_ws = self._batch_ws, None
        if not began:
            return  # nothing was written
        db = self._db
        try:
            if ws is not None:
                ws.apply(db)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                if db.in_transaction:
                    db.rollback()
            self._rolled_back()
            raise self._error(exc) from exc

    def rollback_batch(self) -> None:
        """Undo the batch (nothing of it is kept; the rollback hooks run)."""
        began, self._batch = self._batch, None
        self._batch_ws = None
        if began:
            with contextlib.suppress(sqlite3.Error):
                if self._db.in_transaction:
                    self._db.rollback()
            self._rolled_back()

    def _apply_crypto(self, db: sqlite3.Connection, writes: CryptoWrites) -> None:
        raise NotImplementedError  # the Crypto mixin applies them

    def _read(self, sql: str, *params: Any) -> list[Any]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _migrate(self) -> None:
        try:
            with self._tx() as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise MigrationError(
                        f"the store's schema v{version} is newer than this client's"
                        f" v{SCHEMA_VERSION}: upgrade tidings"
                    )
                for n in range(version + 1, SCHEMA_VERSION + 1):
                    for stmt in statements(MIGRATIONS[n - 1]):
                        db.execute(stmt)
                    db.execute(f"PRAGMA user_version = {n}")
        except (MigrationError, StoreUnavailable):
            raise
        except StoreError as exc:
            raise MigrationError(f"cannot migrate the store: {exc}") from exc

    def _insert_outbox(self, db: sqlite3.Connection, r: OutboxRequest) -> OutboxItem:
        cur = db.execute(
            "INSERT INTO outbox (message_id, recipient, kind, content, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (r.message_id, r.recipient, int(r.kind), r.content, r.created_at),
        )
        assert cur.lastrowid is not None  # an INSERT into a rowid table always sets it
        return OutboxItem(
            cur.lastrowid, r.message_id, r.recipient, r.kind, r.content, r.created_at, 0, 0.0
        )

    def _advance(
        self,
        db: sqlite3.Connection,
        message_id: bytes,
        device: DeviceRef,
        status: Status,
        at: float,
    ) -> bool:
        row = db.execute(
            "SELECT status FROM statuses WHERE message_id = ? AND account = ? AND device_id = ?",
            (message_id, device.account, device.device_id),
        ).fetchone()
        if advance(Status(row[0]) if row else None, status) is None:
            return False
        db.execute(
            "INSERT OR REPLACE INTO statuses VALUES (?, ?, ?, ?, ?)",
            (message_id, device.account, device.device_id, int(status), at),
        )
        return True

    def _trace(
        self, db: sqlite3.Connection, message_id: bytes, point: str, at: float, detail: str | None
    ) -> None:
        if not _POINT.fullmatch(point):
            raise IntegrityError(f"not a trace point name: {point!r}")
        db.execute(
            "INSERT INTO trace (message_id, point, at, detail) VALUES (?, ?, ?, ?)",
            (message_id, str(point), at, detail),
        )
