"""The :class:`~tidings.store.base.Store` for operators who run several relay nodes: PostgreSQL.

Same semantics as :class:`~tidings.store.sqlite.SQLiteStore`, on a database that several
``tidings server`` processes (nodes) share, each with its own :class:`PostgresStore`:

* **Durable before ✓.** A submit returns :class:`~tidings.store.base.Stored` only after its
  transaction's ``COMMIT`` returned (PostgreSQL's own durability: WAL, ``synchronous_commit``
  as the operator set it; ``on`` by default).
* **Group commit** (:mod:`tidings.store._pg_commit`): one connection per node; the operations
  waiting when a transaction starts share it and its one commit; submits and acks are written
  set-based, one ``unnest`` statement per kind per batch (:mod:`tidings.store._pg_inbox`).
* **Several nodes.** Seqs are taken under the device's counter row lock (gapless, never
  reused); a one-time prekey is taken with ``FOR UPDATE SKIP LOCKED`` and deleted by the one
  transaction that took it; one node sweeps expiry at a time (an advisory lock); migrations are
  serialised by another advisory lock, so nodes may start together.

The store is bound to the event loop :meth:`PostgresStore.open` ran on.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from tidings.store import (
    _pg_cards,
    _pg_devices,
    _pg_inbox,
    _pg_multi,
    _pg_prekeys,
    _pg_push,
    _pg_queue,
    _pg_sealed,
    _pg_sealed_multi,
)
from tidings.store._inbox_writes import AckOp, SubmitOp
from tidings.store._pg_commit import PgCommitter
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
from tidings.store.pg_errors import connect, redact
from tidings.store.pg_migrate import migrate

#: URL schemes that select this store (``tidings server --store postgresql://…``); libpq's.
SCHEMES = ("postgresql://", "postgres://")

#: After a batch of several operations, how long the store waits for more before it commits a
#: write (seconds): as the SQLite store's (2 ms), a commit shared by the sends of a few
#: connections costs one WAL flush instead of one each.
COMMIT_WINDOW = 0.002

#: The most operations one transaction holds: a batch of 512 sends is one ``unnest`` insert of
#: a few hundred kB, a fraction of a millisecond of the database's time per row.
MAX_BATCH = 512

_PROBE = "UPDATE probe SET flipped = NOT flipped WHERE id = 1"


def is_postgres_url(store: str) -> bool:
    """Whether ``store`` (a ``--store`` value) names a PostgreSQL database."""
    return store.startswith(SCHEMES)


class PostgresStore:
    """A :class:`~tidings.store.base.Store` in a PostgreSQL database.

    Call :meth:`open` (connects, creates and migrates the schema), then the ``Store`` methods
    from tasks of the same event loop, then :meth:`close`. Every write is committed before its
    coroutine returns. :attr:`stats` counts commits (writes only) and their batch sizes.
    """

    def __init__(
        self, url: str, *, max_batch: int = MAX_BATCH, commit_window: float = COMMIT_WINDOW
    ) -> None:
        """Prepare a store on the database at ``url`` (``postgresql://user@host:port/db``);
        nothing is opened until :meth:`open`."""
        self.url = url
        self.stats = StoreStats()
        self._migrated = False
        self._committer = PgCommitter(
            self._connect,
            max_batch=max_batch,
            stats=self.stats,
            batch=_pg_inbox.run_segment,
            probe=_probe,
            commit_window=commit_window,
        )

    def __repr__(self) -> str:
        return f"PostgresStore({redact(self.url)!r})"

    async def _connect(self) -> asyncpg.Connection:
        conn = await connect(self.url)
        if not self._migrated:
            try:
                await migrate(conn)
            except BaseException:
                await conn.close()
                raise
            self._migrated = True
        return conn

    async def open(self) -> None:
        """Connect to the database, creating and migrating its schema as needed.

        Raises:
            StoreUnavailable: the database cannot be reached (the message names the URL
                without its password, and why).
            MigrationError: its schema is newer than this code, or a migration failed.
            StoreError: it refused the connection (no such database, authentication), or the
                store is already open.
        """
        await self._committer.start()

    async def close(self) -> None:
        """Commit what is queued, then close. Later calls raise :class:`StoreError`."""
        await self._committer.stop()

    async def probe(self) -> None:
        """A committed write that changes nothing the store means. See ``Store.probe``."""
        await self._committer.probe()

    async def create_account(self, account: str, noise_key: bytes, name: str, now: float) -> Device:
        """Create ``account`` with its first device (id 1). See ``Store.create_account``."""
        return await self._committer.run(
            lambda conn: _pg_devices.create_account(conn, account, noise_key, name, now),
            write=True,
        )

    async def put_link_code(
        self, device: DeviceRef, code_hash: bytes, expires_at: float, now: float
    ) -> None:
        """Store a one-use link code issued by ``device``. See ``Store.put_link_code``."""
        await self._committer.run(
            lambda conn: _pg_devices.put_link_code(conn, device, code_hash, expires_at, now),
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
            lambda conn: _pg_devices.add_device(
                conn, account, noise_key, name, code_hash, now, max_devices
            ),
            write=True,
        )

    async def remove_device(self, device: DeviceRef) -> None:
        """Remove a device for good (one node at a time per account). See
        ``Store.remove_device``."""
        await self._committer.run(lambda conn: _pg_devices.remove_device(conn, device), write=True)

    async def device_by_key(self, noise_key: bytes) -> Device | None:
        """The device registered with this Noise static key, if any."""
        return await self._committer.run(
            lambda conn: _pg_devices.device_by_key(conn, noise_key), write=False
        )

    async def devices(self, account: str) -> list[Device]:
        """The account's current devices, by id; empty if there is no such account."""
        return await self._committer.run(
            lambda conn: _pg_devices.devices(conn, account), write=False
        )

    async def submit(self, sub: Submission) -> SubmitResult:
        """Store a send atomically and durably. See ``Store.submit``."""
        result: SubmitResult = await self._committer.run_batched(SubmitOp(sub))
        return result

    async def submit_multi(self, sub: MultiSubmission) -> MultiSubmitResult:
        """Store a multi-send atomically and durably. See ``Store.submit_multi``."""
        return await self._committer.run(lambda conn: _pg_multi.submit_multi(conn, sub), write=True)

    async def submit_sealed(self, sub: SealedSubmission) -> SealedSubmitResult:
        """Store a sealed send atomically and durably. See ``Store.submit_sealed``."""
        return await self._committer.run(
            lambda conn: _pg_sealed.submit_sealed(conn, sub), write=True
        )

    async def submit_sealed_multi(self, sub: SealedMultiSubmission) -> SealedMultiSubmitResult:
        """Store a sealed multi-send atomically and durably. See ``Store.submit_sealed_multi``."""
        return await self._committer.run(
            lambda conn: _pg_sealed_multi.submit_sealed_multi(conn, sub), write=True
        )

    async def tag_states(self, tags: Sequence[bytes]) -> list[TagState]:
        """The states of sealed sends' tags. See ``Store.tag_states``."""
        return await self._committer.run(
            lambda conn: _pg_sealed.tag_states(conn, tags), write=False
        )

    async def put_certificate(self, device: DeviceRef, certificate: bytes) -> None:
        """Store a device's certificate. See ``Store.put_certificate``."""
        await self._committer.run(
            lambda conn: _pg_cards.put_certificate(conn, device, certificate), write=True
        )

    async def mark_seen(self, device: DeviceRef, at: float) -> None:
        """Record when a device was connected. See ``Store.mark_seen``."""
        await self._committer.run(lambda conn: _pg_cards.mark_seen(conn, device, at), write=True)

    async def put_access_key(self, device: DeviceRef, access_key: bytes) -> None:
        """Store an account's access key. See ``Store.put_access_key``."""
        await self._committer.run(
            lambda conn: _pg_sealed.put_access_key(conn, device, access_key), write=True
        )

    async def access_key(self, account: str) -> bytes | None:
        """An account's access key. See ``Store.access_key``."""
        key: bytes | None = await self._committer.run(
            lambda conn: _pg_sealed.access_key(conn, account), write=False
        )
        return key

    async def identity_key(self, device: DeviceRef) -> bytes | None:
        """A device's uploaded identity key. See ``Store.identity_key``."""
        key: bytes | None = await self._committer.run(
            lambda conn: _pg_sealed.identity_key(conn, device), write=False
        )
        return key

    async def device_cards(self, account: str) -> list[DeviceCard]:
        """The account's devices with their cards. See ``Store.device_cards``."""
        return await self._committer.run(
            lambda conn: _pg_cards.device_cards(conn, account), write=False
        )

    async def fetch(self, device: DeviceRef, after_seq: int, limit: int) -> list[InboxItem]:
        """Up to ``limit`` items of the device's inbox with ``seq > after_seq``, by seq."""
        return await self._committer.run(
            lambda conn: _pg_queue.fetch(conn, device, after_seq, limit), write=False
        )

    async def ack(self, device: DeviceRef, up_to_seq: int) -> int:
        """Delete the device's items with ``seq <= up_to_seq``; return how many were deleted."""
        deleted: int = await self._committer.run_batched(AckOp(device, up_to_seq))
        return deleted

    async def last_seq(self, device: DeviceRef) -> int:
        """The highest seq ever assigned to the device's inbox (0 if none)."""
        return await self._committer.run(lambda conn: _pg_queue.last_seq(conn, device), write=False)

    async def last_seqs(self, devices: Sequence[DeviceRef]) -> dict[DeviceRef, int]:
        """The highest seq ever assigned to each of ``devices`` (those that exist), in one
        read: what a relay node polls for the devices connected to it while Redis is down."""
        return await self._committer.run(
            lambda conn: _pg_queue.last_seqs(conn, devices), write=False
        )

    async def queue_depth(self, device: DeviceRef) -> int:
        """How many items the device's inbox holds."""
        return await self._committer.run(
            lambda conn: _pg_queue.queue_depth(conn, device), write=False
        )

    async def total_queued(self) -> int:
        """How many items all inboxes hold together."""
        return await self._committer.run(_pg_queue.total_queued, write=False)

    async def expire(self, now: float, notice_expires_at: float, limit: int) -> ExpiryResult:
        """Remove up to ``limit`` expired items, oldest first (nothing while another node
        sweeps). See ``Store.expire``."""
        return await self._committer.run(
            lambda conn: _pg_queue.expire(conn, now, notice_expires_at, limit), write=True
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
            lambda conn: _pg_prekeys.put_prekeys(
                conn, device, identity_key, signed_prekey, one_time, kem, now
            ),
            write=True,
        )

    async def take_prekey_bundle(
        self, device: DeviceRef, now: float, *, one_time: bool = True
    ) -> PreKeyBundle | None:
        """Take a bundle of the device's prekeys. See ``Store.take_prekey_bundle``."""
        return await self._committer.run(
            lambda conn: _pg_prekeys.take_prekey_bundle(conn, device, one_time), write=one_time
        )

    async def prekey_counts(self, device: DeviceRef) -> PreKeyCounts | None:
        """The device's one-time prekey counts. See ``Store.prekey_counts``."""
        return await self._committer.run(
            lambda conn: _pg_prekeys.prekey_counts(conn, device), write=False
        )

    async def put_push_subscription(self, sub: PushSubscription) -> None:
        """Store a device's push subscription. See ``Store.put_push_subscription``."""
        await self._committer.run(lambda conn: _pg_push.put(conn, sub), write=True)

    async def delete_push_subscription(self, device: DeviceRef) -> bool:
        """Drop a device's push subscription. See ``Store.delete_push_subscription``."""
        deleted: bool = await self._committer.run(
            lambda conn: _pg_push.delete(conn, device), write=True
        )
        return deleted

    async def push_subscriptions(self) -> list[PushSubscription]:
        """Every stored push subscription, by account and device id."""
        return await self._committer.run(_pg_push.all_subscriptions, write=False)

    async def push_subscription(self, device: DeviceRef) -> PushSubscription | None:
        """The device's stored push subscription, if any: what a relay node reads again when
        another node says it changed it (PostgreSQL only: only its nodes are several)."""
        return await self._committer.run(
            lambda conn: _pg_push.subscription(conn, device), write=False
        )


async def _probe(conn: asyncpg.Connection) -> None:
    """A write the database must commit (the probe row's flag flips): it proves that the
    server is reachable, accepts writes and flushes its WAL."""
    await conn.execute(_PROBE)
