"""PostgresStore specifics: migrations from every earlier version, several nodes on one database,
connection errors and recovery. (The Store contract itself is the shared suite: conftest.py.)

Every test here gets a database of its own, created on the test server and dropped after it
(``tests/pgdb.py``: skipped without a server, failed with ``TIDINGS_REQUIRE_POSTGRES=1``).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import asyncpg
import pytest

from tests import pgdb
from tests.store.helpers import NOW, RETENTION, breaks, key, make_account, message_id, send
from tidings.errors import IntegrityError, MigrationError, Rule, StoreError, StoreUnavailable
from tidings.store import DeviceRef, PostgresStore, PreKey, Stored, _pg_devices
from tidings.store._pg_commit import BatchRunner, Operation, Outcome
from tidings.store.migrate import Migration, load_migrations
from tidings.store.pg_migrate import FOLDER, migrate, schema_version

LATEST = len(load_migrations(FOLDER))

T = TypeVar("T")

_SCHEMA = (
    "SELECT table_name, column_name, data_type, is_nullable, column_default"
    " FROM information_schema.columns WHERE table_schema = 'public'"
    " ORDER BY table_name, column_name"
)
_INDEXES = "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2"


@pytest.fixture
async def url() -> AsyncIterator[str]:
    name = await pgdb.create_database("tidings_pg")
    try:
        yield pgdb.url_of(name)
    finally:
        await pgdb.drop_database(name)


async def schema_of(url: str) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(url)
    try:
        rows = [tuple(row) for row in await conn.fetch(_SCHEMA)]
        return rows + [tuple(row) for row in await conn.fetch(_INDEXES)]
    finally:
        await conn.close()


# -- migrations -------------------------------------------------------------------------------


def test_migration_files_are_numbered_without_gaps() -> None:
    migrations = load_migrations(FOLDER)
    assert [m.version for m in migrations] == list(range(1, LATEST + 1))
    assert migrations[0].name == "init"


async def test_every_earlier_version_migrates_to_the_schema_of_an_empty_database(url: str) -> None:
    """From each version 0 … LATEST-1 (0: an empty database), with data in it, ``migrate``
    reaches the very schema a fresh database gets, and keeps the data."""
    steps = load_migrations(FOLDER)
    fresh = await pgdb.create_database("tidings_fresh")
    try:
        conn = await asyncpg.connect(pgdb.url_of(fresh))
        assert await migrate(conn) == LATEST
        await conn.close()
        expected = await schema_of(pgdb.url_of(fresh))
    finally:
        await pgdb.drop_database(fresh)
    for start in range(LATEST):
        name = await pgdb.create_database(f"tidings_from{start}")
        try:
            conn = await asyncpg.connect(pgdb.url_of(name))
            try:
                assert await migrate(conn, steps[:start]) == start
                assert await schema_version(conn) == start
                if start >= 1:  # an account made at the old version must survive
                    await conn.execute("INSERT INTO accounts VALUES ('old', 2, 1.0)")
                assert await migrate(conn) == LATEST
                assert await schema_version(conn) == LATEST
                if start >= 1:
                    assert await conn.fetchval("SELECT count(*) FROM accounts") == 1
            finally:
                await conn.close()
            assert await schema_of(pgdb.url_of(name)) == expected, f"from version {start}"
        finally:
            await pgdb.drop_database(name)


async def test_open_migrates_and_a_newer_schema_is_refused(url: str) -> None:
    store = PostgresStore(url)
    await store.open()
    (alice,) = await make_account(store, "alice")
    await store.close()
    store = PostgresStore(url)
    await store.open()  # reopen: nothing to migrate, the data is there
    assert [d.ref for d in await store.devices("alice")] == [alice]
    await store.close()
    conn = await asyncpg.connect(url)
    await conn.execute("UPDATE tidings_schema SET version = $1", LATEST + 1)
    await conn.close()
    with pytest.raises(MigrationError, match="newer"):
        await PostgresStore(url).open()


async def test_a_failed_migration_is_rolled_back(url: str) -> None:
    good = Migration(1, "good", "CREATE TABLE a (x integer)")
    bad = Migration(2, "bad", "CREATE TABLE b (x integer); INSERT INTO nowhere VALUES (1);")
    conn = await asyncpg.connect(url)
    try:
        with pytest.raises(MigrationError, match="0002_bad"):
            await migrate(conn, [good, bad])
        assert await schema_version(conn) == 1
        assert await conn.fetchval("SELECT to_regclass('b')") is None
        assert await migrate(conn, [good]) == 1
    finally:
        await conn.close()


async def test_nodes_starting_together_migrate_once(url: str) -> None:
    stores = [PostgresStore(url) for _ in range(3)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        assert [await store.devices("nobody") for store in stores] == [[], [], []]
    finally:
        await asyncio.gather(*(store.close() for store in stores))


async def test_the_inbox_is_hash_partitioned_by_device(url: str) -> None:
    store = PostgresStore(url)
    await store.open()
    await store.close()
    conn = await asyncpg.connect(url)
    try:
        key_def = await conn.fetchval("SELECT pg_get_partkeydef('inbox'::regclass)")
        parts = await conn.fetchval(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'inbox'::regclass"
        )
    finally:
        await conn.close()
    assert key_def == "HASH (account, device_id)"
    assert parts == 8


# -- several nodes on one database ------------------------------------------------------------


@pytest.fixture
async def nodes(url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    a, b = PostgresStore(url), PostgresStore(url)
    await a.open()
    await b.open()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_two_nodes_submitting_to_one_device_take_unique_gapless_seqs(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = nodes
    (alice,) = await make_account(a, "alice")
    (carol,) = await make_account(a, "carol")
    bob = await make_account(a, "bob", 2)
    n = 300
    sends = [
        (a if i % 2 else b).submit(send(alice if i % 3 else carol, "bob", bob, mid=message_id(i)))
        for i in range(n)
    ]
    acks = [(b if i % 2 else a).ack(bob[1], i // 4) for i in range(n // 10)]
    results = await asyncio.gather(*sends, *acks)
    for device in bob:
        seqs = sorted(
            item.seq
            for result in results[:n]
            if isinstance(result, Stored)
            for ref, item in result.items
            if ref == device
        )
        assert seqs == list(range(1, n + 1)), device
        assert await a.last_seq(device) == await b.last_seq(device) == n
    assert a.stats.commits >= 1 and b.stats.commits >= 1
    # The counters match the rows, whatever the two nodes interleaved.
    assert await a.queue_depth(bob[0]) == len(await a.fetch(bob[0], 0, 1000)) == n
    assert await b.queue_depth(bob[1]) == len(await b.fetch(bob[1], 0, 1000))
    assert await b.total_queued() == await a.queue_depth(bob[0]) + await a.queue_depth(bob[1])


async def test_a_retry_on_two_nodes_at_once_is_stored_once(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = nodes
    (alice,) = await make_account(a, "alice")
    (bob,) = await make_account(a, "bob")
    sends = [
        node.submit(send(alice, "bob", [bob], mid=message_id(i)))
        for i in range(50)
        for node in (a, b)
    ]
    results = await asyncio.gather(*sends)
    assert all(isinstance(result, Stored) for result in results)
    fresh = [result for result in results if isinstance(result, Stored) and not result.duplicate]
    assert len(fresh) == 50
    assert await a.queue_depth(bob) == 50


async def test_one_time_prekeys_are_handed_out_once_across_nodes(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = nodes
    (bob,) = await make_account(a, "bob")
    identity = b"\x05" + bytes(32)
    signed = PreKey(1, bytes(32), bytes(64))
    one_time = [PreKey(i, bytes([i]) * 32) for i in range(1, 41)]
    kem = [PreKey(100 + i, bytes([i]) * 32, bytes(64)) for i in range(1, 31)]
    last_resort = PreKey(999, b"\x09" * 32, bytes(64), last_resort=True)
    await a.put_prekeys(bob, identity, signed, one_time, [*kem, last_resort], NOW)
    takes = [(a if i % 2 else b).take_prekey_bundle(bob, NOW) for i in range(60)]
    bundles = [bundle for bundle in await asyncio.gather(*takes) if bundle is not None]
    assert len(bundles) == 60
    ec_ids = [bundle.one_time.key_id for bundle in bundles if bundle.one_time is not None]
    kem_ids = [bundle.kem.key_id for bundle in bundles if not bundle.kem.last_resort]
    assert sorted(ec_ids) == list(range(1, 41))  # each once, all of them
    assert sorted(kem_ids) == [100 + i for i in range(1, 31)]
    assert sum(bundle.kem.last_resort for bundle in bundles) == 30
    counts = await b.prekey_counts(bob)
    assert counts is not None and (counts.one_time, counts.kem) == (0, 0)


async def test_a_link_code_adds_one_device_across_nodes(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = nodes
    (alice,) = await make_account(a, "alice")
    code = hashlib.sha256(b"code").digest()
    await a.put_link_code(alice, code, NOW + 60, NOW)
    tries = [
        node.add_device("alice", key(f"new{i}"), "x", code, NOW)
        for i, node in enumerate([a, b, a, b])
    ]
    results = await asyncio.gather(*tries, return_exceptions=True)
    assert sum(not isinstance(result, BaseException) for result in results) == 1
    assert all(isinstance(r, IntegrityError) for r in results if isinstance(r, BaseException))
    assert [d.ref.device_id for d in await b.devices("alice")] == [1, 2]


async def test_one_node_sweeps_expiry_at_a_time(nodes: tuple[PostgresStore, PostgresStore]) -> None:
    a, b = nodes
    alice = await make_account(a, "alice", 2)
    (bob,) = await make_account(a, "bob")
    for i in range(40):
        sub = send(alice[0], "bob", [bob, alice[1]], mid=message_id(i), expires_at=NOW + 10)
        assert isinstance(await a.submit(sub), Stored)
    later = NOW + RETENTION
    passes = [node.expire(NOW + 20, later, 25) for _ in range(4) for node in (a, b)]
    results = await asyncio.gather(*passes)
    expired = [item for result in results for item in result.expired]
    assert len(expired) == 80  # each copy once, whichever node swept it
    assert len({(ref, item.seq) for ref, item in expired}) == 80
    notices = [item for result in results for item in result.notices]
    assert len(notices) == 80 * 2  # to both of alice's devices, per expired copy
    assert await a.queue_depth(bob) == 40  # a MISSED notice per expired item
    assert await b.queue_depth(alice[1]) == 40 + 80


# -- connection errors and recovery -----------------------------------------------------------


async def test_an_unreachable_server_is_a_clear_error() -> None:
    store = PostgresStore("postgresql://postgres:secret@127.0.0.1:1/nodb")
    with pytest.raises(StoreUnavailable) as raised:
        await store.open()
    message = str(raised.value)
    assert "cannot connect to PostgreSQL at postgresql://postgres:***@127.0.0.1:1/nodb" in message
    assert "connection refused" in message
    assert "secret" not in message


async def test_a_missing_database_is_a_clear_error() -> None:
    store = PostgresStore(pgdb.url_of("tidings_no_such_database"))
    with pytest.raises(StoreError, match='database "tidings_no_such_database" does not exist'):
        await store.open()


async def test_a_connection_lost_while_idle_is_replaced(url: str) -> None:
    store = PostgresStore(url)
    await store.open()
    try:
        (alice,) = await make_account(store, "alice")
        (bob,) = await make_account(store, "bob")
        admin = await asyncpg.connect(url)
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        await admin.close()
        assert isinstance(await store.submit(send(alice, "bob", [bob], mid=message_id(1))), Stored)
        assert await store.queue_depth(bob) == 1
    finally:
        await store.close()


async def test_a_database_outage_is_unavailable_until_a_probe_succeeds(url: str) -> None:
    proxy = pgdb.Proxy()
    await proxy.start()
    store = PostgresStore(proxy.url(url))
    await store.open()
    try:
        (alice,) = await make_account(store, "alice")
        (bob,) = await make_account(store, "bob")
        await proxy.stop()
        with pytest.raises(StoreUnavailable):
            await store.submit(send(alice, "bob", [bob], mid=message_id(1)))
        assert store.stats.unavailable is not None and "error" in store.stats.unavailable
        with pytest.raises(StoreUnavailable):
            await store.probe()
        await proxy.start()  # the same port
        await store.probe()
        assert store.stats.unavailable is None
        assert isinstance(await store.submit(send(alice, "bob", [bob], mid=message_id(1))), Stored)
        assert await store.queue_depth(bob) == 1
    finally:
        await store.close()
        await proxy.stop()


async def test_a_connection_lost_inside_a_batch_reruns_it_on_a_new_one(url: str) -> None:
    """The server closes the connection in the middle of a batch (before its COMMIT): nothing
    of it was committed, so it runs once more, whole, on a new connection."""
    store = PostgresStore(url)
    await store.open()
    try:
        (alice,) = await make_account(store, "alice")
        (bob,) = await make_account(store, "bob")
        killed: list[int] = []

        async def kill_once(conn: asyncpg.Connection) -> None:
            if not killed:
                killed.append(await conn.fetchval("SELECT pg_backend_pid()"))
                await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

        results = await asyncio.gather(
            store._committer.run(kill_once, write=True),
            store.submit(send(alice, "bob", [bob], mid=message_id(1))),
        )
        assert len(killed) == 1 and store._committer.retries == 1
        assert isinstance(results[1], Stored) and [i.seq for _, i in results[1].items] == [1]
        assert await store.queue_depth(bob) == 1
        assert store.stats.unavailable is None
    finally:
        await store.close()


async def test_acked_sends_survive_a_new_store(url: str) -> None:
    store = PostgresStore(url)
    await store.open()
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")
    for i in range(5):
        assert isinstance(await store.submit(send(alice, "bob", [bob], mid=message_id(i))), Stored)
    await store.close()
    again = PostgresStore(url)
    await again.open()
    try:
        assert [item.seq for item in await again.fetch(bob, 0, 10)] == [1, 2, 3, 4, 5]
        assert await again.last_seq(DeviceRef("bob", 1)) == 5
    finally:
        await again.close()


def held_after_first(runner: BatchRunner, barrier: asyncio.Barrier) -> BatchRunner:
    """``runner``, whose first segment, once run, waits at ``barrier`` before it returns."""
    first = [True]

    async def held(conn: asyncpg.Connection, ops: list[object]) -> list[Outcome]:
        outcomes = await runner(conn, ops)
        if first[0]:
            first[0] = False
            async with asyncio.timeout(10):
                await barrier.wait()
        return outcomes

    return held


async def test_a_deadlock_between_nodes_runs_the_batch_again(
    nodes: tuple[PostgresStore, PostgresStore],
) -> None:
    """Two batches of two segments each lock two recipients in opposite orders (held at the
    point where each holds its first): PostgreSQL aborts one, which runs again, whole, and
    every send ends stored once with its own seq."""
    a, b = nodes
    dave, erin, frank, gina = [(await make_account(a, name))[0] for name in "defg"]
    (bob,) = await make_account(a, "bob")
    (carol,) = await make_account(a, "carol")
    both_hold_one = asyncio.Barrier(2)
    for node in (a, b):
        node._committer._batch = held_after_first(node._committer._batch, both_hold_one)
    # Each batch: [send to X] create_account [send to Y]; the account in between splits the
    # sends into two segments, so their locks are taken one segment after the other.
    plan = [
        (a, [(dave, "bob", bob), (erin, "carol", carol)], "x"),
        (b, [(frank, "carol", carol), (gina, "bob", bob)], "y"),
    ]
    calls = []
    for node, ((s1, r1, t1), (s2, r2, t2)), extra in plan:
        calls += [
            node.submit(send(s1, r1, [t1], mid=message_id(1, extra))),
            node.create_account(extra, key(extra), extra, NOW),
            node.submit(send(s2, r2, [t2], mid=message_id(2, extra))),
        ]
    results = await asyncio.gather(*calls)
    assert a._committer.retries + b._committer.retries == 1
    stored = [r for r in results if isinstance(r, Stored)]
    assert len(stored) == 4 and not any(r.duplicate for r in stored)
    for device in (bob, carol):
        assert [item.seq for item in await a.fetch(device, 0, 10)] == [1, 2]
    assert [len(await a.devices(name)) for name in "xy"] == [1, 1]


async def test_close_commits_what_was_queued_and_refuses_what_comes_after(url: str) -> None:
    store = PostgresStore(url)
    await store.open()
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")
    sends = [store.submit(send(alice, "bob", [bob], mid=message_id(i))) for i in range(20)]
    # gather starts the sends first: each queues its operation before close() queues its stop
    *results, _ = await asyncio.gather(*sends, store.close())
    assert all(isinstance(result, Stored) for result in results)
    with pytest.raises(StoreError, match="not open"):
        await store.submit(send(alice, "bob", [bob], mid=message_id(99)))
    again = PostgresStore(url)
    await again.open()
    try:
        assert await again.queue_depth(bob) == 20
    finally:
        await again.close()


# -- unlinking and the device limit across nodes ------------------------------------------------

_WAITING_ON_A_LOCK = (
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


async def while_held(
    url: str, holder: PostgresStore, held: Operation[None], other: Callable[[], Awaitable[T]]
) -> asyncio.Task[T]:
    """Run ``held`` on ``holder`` inside its transaction and keep that open until ``other()``
    (an operation on another node, started then) waits on a row lock or finished; then commit.
    ``other()``'s task."""
    ran, release = asyncio.Event(), asyncio.Event()

    async def hold(conn: asyncpg.Connection) -> None:
        await held(conn)
        ran.set()
        await release.wait()

    holding = asyncio.create_task(holder._committer.run(hold, write=True))
    await ran.wait()
    task = asyncio.ensure_future(other())
    watcher = await asyncpg.connect(url)
    try:
        async with asyncio.timeout(10):  # each look is a round trip to the database
            while not task.done() and not await watcher.fetchval(_WAITING_ON_A_LOCK):
                continue
    finally:
        await watcher.close()
    release.set()
    await holding
    return task


async def test_two_nodes_unlinking_the_last_two_devices_remove_one(
    nodes: tuple[PostgresStore, PostgresStore], url: str
) -> None:
    """Node a has removed device 2 but not committed when node b removes device 1: b waits for
    a's commit, then sees one device left and refuses (without the lock each would see two and
    the account would end with none)."""
    a, b = nodes
    alice1, alice2 = await make_account(a, "alice", devices=2)

    async def unlink(conn: asyncpg.Connection) -> None:
        await _pg_devices.remove_device(conn, alice2)

    second = await while_held(url, a, unlink, lambda: b.remove_device(alice1))
    with breaks(Rule.LAST_DEVICE):
        await second
    assert [d.ref for d in await b.devices("alice")] == [alice1]
    assert await a.device_by_key(key("alice.2")) is None


async def test_two_nodes_linking_past_the_limit_add_one(
    nodes: tuple[PostgresStore, PostgresStore], url: str
) -> None:
    """Two link codes, one device short of the limit: a node's link still uncommitted makes the
    other's wait, then count it and refuse; its code stays unused."""
    a, b = nodes
    (alice,) = await make_account(a, "alice")
    codes = [hashlib.sha256(f"code{i}".encode()).digest() for i in range(2)]
    for code in codes:
        await a.put_link_code(alice, code, NOW + 60, NOW)

    async def link(conn: asyncpg.Connection) -> None:
        await _pg_devices.add_device(conn, "alice", key("a"), "a", codes[0], NOW, 2)

    second = await while_held(
        url, a, link, lambda: b.add_device("alice", key("b"), "b", codes[1], NOW, 2)
    )
    with breaks(Rule.TOO_MANY_DEVICES):
        await second
    assert [d.ref.device_id for d in await b.devices("alice")] == [1, 2]
    await a.remove_device(DeviceRef("alice", 2))  # room again: the refused code still works
    assert (await b.add_device("alice", key("b"), "b", codes[1], NOW, 2)).ref.device_id == 3
