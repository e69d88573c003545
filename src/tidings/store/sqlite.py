"""The embedded, durable :class:`~tidings.store.base.Store`: SQLite in WAL mode, group commit.

Durability: ``journal_mode=WAL`` and ``synchronous=FULL``, so a ``COMMIT`` that returned is on
disk and survives ``kill -9`` and power loss (G1). Throughput comes from group commit (see
:mod:`tidings.store._groupcommit`): every operation runs on one thread that owns the connection,
and all the operations waiting when a transaction starts share it and its one fsync. Measured on
the reference machine: ~3.9k commits/s with one row per commit, ~68k rows/s with 100-1,000.
Submits and acks take one path, set-based (:mod:`tidings.store._inbox_writes`): the consecutive
ones of a batch are read, decided and written together, a batch of one like any other.

The database must be used by one :class:`SQLiteStore` at a time (one writer); other processes
may read it.
"""

from __future__ import annotations

import functools
import math
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from tidings.errors import StoreError
from tidings.store import (
    _inbox_writes,
    _sql_cards,
    _sql_devices,
    _sql_inbox,
    _sql_multi,
    _sql_prekeys,
    _sql_push,
    _sql_sealed,
    _sql_sealed_multi,
)
from tidings.store._expiry_order import ArrivalOrder
from tidings.store._groupcommit import GroupCommitter
from tidings.store.base import (
    Device,
    DeviceCard,
    DeviceRef,
    ExpiryResult,
    InboxItem,
    MultiSubmission,
    MultiSubmitResult,
    PreKey,
    PreKeyBundle,
    PreKeyCounts,
    PushSubscription,
    SealedMultiSubmission,
    SealedMultiSubmitResult,
    SealedSubmission,
    SealedSubmitResult,
    StoreStats,
    Submission,
    SubmitResult,
    TagState,
)
from tidings.store.migrate import migrate, schema_version

#: How long a writer waits for another process's lock before failing the batch, in ms.
BUSY_TIMEOUT_MS = 5000

#: The schema version that stopped storing device names: a database migrated across it is
#: vacuumed once.
NAMES_DROPPED = 4

#: At most one WAL checkpoint (TRUNCATE) per this many seconds, after a batch that wrote: a
#: delivered ciphertext leaves the WAL within about a second of its ack, while a busy relay
#: pays one checkpoint (a few ms: copy the WAL's pages back, fsync, truncate) per second, not
#: one per batch.
CHECKPOINT_INTERVAL = 1.0

#: The database's page size, in bytes. Every COMMIT writes each page it changed to the WAL, and
#: some of a relay's writes are scattered however the tables are laid out (a random message id
#: lands anywhere in ``sent``): a commit costs about one page per send there, so smaller pages
#: write fewer bytes per message (``bench/store_bench.py``, bench/README). A database made with
#: another size is rebuilt in this one, once, when it is opened (``VACUUM``).
PAGE_SIZE = 1024

#: SQLite's own checkpoint, in pages of WAL: a backstop only (16 MiB), so the WAL stays bounded
#: if :data:`CHECKPOINT_INTERVAL`'s cannot run. At SQLite's default (1,000 pages, 1 MiB at 1 KiB
#: pages) a busy relay checkpointed several times a second, and each copies every page changed
#: since the last one into the database file again: disk bytes the WAL had already paid for.
WAL_AUTOCHECKPOINT = 16 * 1024 * 1024 // PAGE_SIZE

#: After a batch of several operations, how long the store waits for more before it commits a
#: write (seconds). Under light load, writes from different connections arrive a fraction of a
#: millisecond apart and each would pay a COMMIT (an fsync and a few pages of WAL); 2 ms lets
#: them share one, and adds at most 2 ms to a ✓ that already crosses the network twice. A lone
#: writer (batches of one) never waits.
COMMIT_WINDOW = 0.002


class SQLiteStore:
    """A :class:`~tidings.store.base.Store` in one SQLite file.

    Call :meth:`open` (creates and migrates the file), then the ``Store`` methods from any
    number of tasks on any event loops, then :meth:`close`. Every write is committed before
    its coroutine returns. :attr:`stats` counts commits (writes only) and their batch sizes.
    """

    def __init__(
        self, path: str | Path, *, max_batch: int = 512, commit_window: float = COMMIT_WINDOW
    ) -> None:
        """Prepare a store on ``path``; nothing is opened until :meth:`open`.

        Args:
            path: the database file (created if missing).
            max_batch: the most operations one transaction (one fsync) holds.
            commit_window: see :data:`COMMIT_WINDOW` (``0``: commit as soon as the thread is
                free).
        """
        self.path = Path(path)
        self.stats = StoreStats()
        #: flags new inbox rows for expiry (``tidings.store._expiry_order``), on the store's thread
        self._order = ArrivalOrder()
        self._committer = GroupCommitter(
            self._connect,
            max_batch=max_batch,
            stats=self.stats,
            batch=functools.partial(_inbox_writes.run_segment, order=self._order),
            commit_window=commit_window,
            probe=_probe,
            after_commit=self._maybe_checkpoint,
        )
        self._monotonic = time.monotonic
        self._checkpointed_at = -math.inf  # on the monotonic clock, on the store's thread

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, cached_statements=256)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE:d}")  # a new file: before its first page
            self._journal(conn, "wal")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT:d}")
            # Savepoint (statement) journals in memory: they only serve rollbacks within a
            # transaction, and on a file every page a write touches is copied out to it first.
            conn.execute("PRAGMA temp_store = MEMORY")
            # Deleted rows (delivered ciphertext) are overwritten with zeros, not left in free
            # pages; the WAL is truncated by the checkpoints (G6: what the relay stores after an
            # ack is only what routing needs).
            conn.execute("PRAGMA secure_delete = ON")
            before = schema_version(conn)
            migrate(conn)
            (page_size,) = conn.execute("PRAGMA page_size").fetchone()
            if page_size != PAGE_SIZE:
                # WAL mode keeps the page size: the rebuild runs in rollback-journal mode.
                self._journal(conn, "delete")
                conn.execute(f"PRAGMA page_size = {PAGE_SIZE:d}")
                conn.execute("VACUUM")  # also rewrites every page (see below)
                self._journal(conn, "wal")
            elif 0 < before < NAMES_DROPPED:
                # Rewrite every page once, so none still holds a device name (migration 0004).
                conn.execute("VACUUM")
        except BaseException:
            conn.close()
            raise
        return conn

    def _journal(self, conn: sqlite3.Connection, mode: str) -> None:
        (got,) = conn.execute(f"PRAGMA journal_mode = {mode}").fetchone()
        if got != mode:
            raise StoreError(f"cannot use {mode.upper()} mode on {self.path} (got {got})")

    def _maybe_checkpoint(self, conn: sqlite3.Connection) -> float | None:
        """After a batch that wrote: checkpoint unless one ran in the last
        :data:`CHECKPOINT_INTERVAL` (on the store's thread, after the callers were answered);
        a checkpoint put off so runs when the interval is over, or after a later batch."""
        now = self._monotonic()
        wait = self._checkpointed_at + CHECKPOINT_INTERVAL - now
        if wait > 0:
            return wait
        self._checkpointed_at = now
        checkpoint(conn)
        return None

    async def checkpoint(self) -> None:
        """Checkpoint the WAL into the database file and truncate it, now."""
        await self._committer.run(checkpoint, write=False)

    async def open(self) -> None:
        """Open the database, creating and migrating its schema as needed.

        Raises:
            MigrationError: the database's schema is newer than this code, or a migration failed.
            StoreError: the file cannot be opened as a database, or the store is already open.
        """
        await self._committer.start()

    async def close(self) -> None:
        """Commit what is queued, then close. Later calls raise :class:`StoreError`."""
        await self._committer.stop()

    async def probe(self) -> None:
        """A durable write that changes nothing (64 KiB, see ``_probe``). See ``Store.probe``."""
        await self._committer.probe()

    async def create_account(self, account: str, noise_key: bytes, name: str, now: float) -> Device:
        """Create ``account`` with its first device (id 1). See ``Store.create_account``."""
        return await self._committer.run(
            lambda conn: _sql_devices.create_account(conn, account, noise_key, name, now),
            write=True,
        )

    async def put_link_code(
        self, device: DeviceRef, code_hash: bytes, expires_at: float, now: float
    ) -> None:
        """Store a one-use link code issued by ``device``. See ``Store.put_link_code``."""
        await self._committer.run(
            lambda conn: _sql_devices.put_link_code(conn, device, code_hash, expires_at, now),
            write=True,
        )

    async def add_device(
        self,
        account: str,
        noise_key: bytes,
        name: str,
        code_hash: bytes,
        now: float,
        max_devices: int | None = None,
    ) -> Device:
        """Consume a link code and add a device. See ``Store.add_device``."""
        return await self._committer.run(
            lambda conn: _sql_devices.add_device(
                conn, account, noise_key, name, code_hash, now, max_devices
            ),
            write=True,
        )

    async def remove_device(self, device: DeviceRef) -> None:
        """Remove a device for good. See ``Store.remove_device``."""
        await self._committer.run(lambda conn: _sql_devices.remove_device(conn, device), write=True)

    async def device_by_key(self, noise_key: bytes) -> Device | None:
        """The device registered with this Noise static key, if any."""
        return await self._committer.run(
            lambda conn: _sql_devices.device_by_key(conn, noise_key), write=False
        )

    async def devices(self, account: str) -> list[Device]:
        """The account's current devices, by id; empty if there is no such account."""
        return await self._committer.run(
            lambda conn: _sql_devices.devices(conn, account), write=False
        )

    async def put_certificate(self, device: DeviceRef, certificate: bytes) -> None:
        """Store a device's certificate. See ``Store.put_certificate``."""
        await self._committer.run(
            lambda conn: _sql_cards.put_certificate(conn, device, certificate), write=True
        )

    async def mark_seen(self, device: DeviceRef, at: float) -> None:
        """Record when a device was connected. See ``Store.mark_seen``."""
        await self._committer.run(lambda conn: _sql_cards.mark_seen(conn, device, at), write=True)

    async def put_access_key(self, device: DeviceRef, access_key: bytes) -> None:
        """Store an account's access key. See ``Store.put_access_key``."""
        await self._committer.run(
            lambda conn: _sql_sealed.put_access_key(conn, device, access_key), write=True
        )

    async def access_key(self, account: str) -> bytes | None:
        """An account's access key. See ``Store.access_key``."""
        key: bytes | None = await self._committer.run(
            lambda conn: _sql_sealed.access_key(conn, account), write=False
        )
        return key

    async def identity_key(self, device: DeviceRef) -> bytes | None:
        """A device's uploaded identity key. See ``Store.identity_key``."""
        key: bytes | None = await self._committer.run(
            lambda conn: _sql_sealed.identity_key(conn, device), write=False
        )
        return key

    async def device_cards(self, account: str) -> list[DeviceCard]:
        """The account's devices with their cards. See ``Store.device_cards``."""
        return await self._committer.run(
            lambda conn: _sql_cards.device_cards(conn, account), write=False
        )

    async def submit(self, sub: Submission) -> SubmitResult:
        """Store a send atomically and durably. See ``Store.submit``."""
        result: SubmitResult = await self._committer.run_batched(_inbox_writes.SubmitOp(sub))
        return result

    async def submit_multi(self, sub: MultiSubmission) -> MultiSubmitResult:
        """Store a multi-send atomically and durably. See ``Store.submit_multi``."""
        return await self._committer.run(
            lambda conn: _sql_multi.submit_multi(conn, sub, self._order), write=True
        )

    async def submit_sealed(self, sub: SealedSubmission) -> SealedSubmitResult:
        """Store a sealed send atomically and durably. See ``Store.submit_sealed``."""
        return await self._committer.run(
            lambda conn: _sql_sealed.submit_sealed(conn, sub), write=True
        )

    async def submit_sealed_multi(self, sub: SealedMultiSubmission) -> SealedMultiSubmitResult:
        """Store a sealed multi-send atomically and durably. See ``Store.submit_sealed_multi``."""
        return await self._committer.run(
            lambda conn: _sql_sealed_multi.submit_sealed_multi(conn, sub), write=True
        )

    async def tag_states(self, tags: Sequence[bytes]) -> list[TagState]:
        """The states of sealed sends' tags. See ``Store.tag_states``."""
        return await self._committer.run(
            lambda conn: _sql_sealed.tag_states(conn, tags), write=False
        )

    async def fetch(self, device: DeviceRef, after_seq: int, limit: int) -> list[InboxItem]:
        """Up to ``limit`` items of the device's inbox with ``seq > after_seq``, by seq."""
        return await self._committer.run(
            lambda conn: _sql_inbox.fetch(conn, device, after_seq, limit), write=False
        )

    async def ack(self, device: DeviceRef, up_to_seq: int) -> int:
        """Delete the device's items with ``seq <= up_to_seq``; return how many were deleted."""
        deleted: int = await self._committer.run_batched(_inbox_writes.AckOp(device, up_to_seq))
        return deleted

    async def last_seq(self, device: DeviceRef) -> int:
        """The highest seq ever assigned to the device's inbox (0 if none)."""
        return await self._committer.run(
            lambda conn: _sql_inbox.last_seq(conn, device), write=False
        )

    async def queue_depth(self, device: DeviceRef) -> int:
        """How many items the device's inbox holds."""
        return await self._committer.run(
            lambda conn: _sql_inbox.queue_depth(conn, device), write=False
        )

    async def total_queued(self) -> int:
        """How many items all inboxes hold together."""
        return await self._committer.run(_sql_inbox.total_queued, write=False)

    async def expire(self, now: float, notice_expires_at: float, limit: int) -> ExpiryResult:
        """Remove up to ``limit`` expired items, oldest first. See ``Store.expire``."""
        return await self._committer.run(
            lambda conn: _sql_inbox.expire(conn, now, notice_expires_at, limit, self._order),
            write=True,
        )

    async def put_prekeys(
        self,
        device: DeviceRef,
        identity_key: bytes,
        signed_prekey: PreKey,
        one_time: Sequence[PreKey],
        kem: Sequence[PreKey],
        now: float,
    ) -> PreKeyCounts:
        """Store a prekey upload atomically. See ``Store.put_prekeys``."""
        return await self._committer.run(
            lambda conn: _sql_prekeys.put_prekeys(
                conn, device, identity_key, signed_prekey, one_time, kem, now
            ),
            write=True,
        )

    async def take_prekey_bundle(
        self, device: DeviceRef, now: float, *, one_time: bool = True
    ) -> PreKeyBundle | None:
        """Take a bundle of the device's prekeys. See ``Store.take_prekey_bundle``."""
        return await self._committer.run(
            lambda conn: _sql_prekeys.take_prekey_bundle(conn, device, one_time), write=one_time
        )

    async def prekey_counts(self, device: DeviceRef) -> PreKeyCounts | None:
        """The device's one-time prekey counts. See ``Store.prekey_counts``."""
        return await self._committer.run(
            lambda conn: _sql_prekeys.prekey_counts(conn, device), write=False
        )

    async def put_push_subscription(self, sub: PushSubscription) -> None:
        """Store a device's push subscription. See ``Store.put_push_subscription``."""
        await self._committer.run(lambda conn: _sql_push.put(conn, sub), write=True)

    async def delete_push_subscription(self, device: DeviceRef) -> bool:
        """Drop a device's push subscription. See ``Store.delete_push_subscription``."""
        deleted: bool = await self._committer.run(
            lambda conn: _sql_push.delete(conn, device), write=True
        )
        return deleted

    async def push_subscriptions(self) -> list[PushSubscription]:
        """Every stored push subscription, by account and device id."""
        return await self._committer.run(_sql_push.all_subscriptions, write=False)


_PROBE_READ = "SELECT substr(pad, 1, 1), length(pad) FROM probe"
_PROBE = "UPDATE probe SET pad = ?"


def _probe(conn: sqlite3.Connection) -> None:
    """A write that changes nothing the store means and rewrites 64 KiB (migration 0006): a
    one-page write can still fit in the WAL's tail that a failed batch left allocated on a full
    disk, and would prove nothing (only :meth:`SQLiteStore.probe` runs it, while the store is
    unavailable). The pad flips between zeros and ones: SQLite writes no page whose bytes stay."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    conn.execute(f"PRAGMA user_version = {int(version):d}")
    first, size = conn.execute(_PROBE_READ).fetchone()
    conn.execute(_PROBE, (bytes([first[0] ^ 1]) * size,))


def checkpoint(conn: sqlite3.Connection) -> None:
    """Copy the WAL into the database file and truncate the WAL to zero bytes (outside a
    transaction). With ``secure_delete`` the file then holds no deleted row's bytes either."""
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
