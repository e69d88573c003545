"""The one path for submits and acks of the batching stores — SQLite's
(``tidings.store._inbox_writes``) and PostgreSQL's (``tidings.store._pg_inbox``): a batch answers
as the same operations one by one would.

Each test runs its operations as ONE batch (the store's thread, or task, is held by a read until
all of them are queued), so they form one segment of submits and acks.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from tests import pgdb
from tests.store.conftest import PgDatabases
from tests.store.helpers import NOW, make_account, message_id, send
from tidings.errors import IntegrityError, StoreError
from tidings.store import (
    DeviceMismatch,
    DeviceRef,
    PostgresStore,
    QueueFull,
    SQLiteStore,
    Stored,
    _inbox_writes,
    _pg_inbox,
)

Batched = SQLiteStore | PostgresStore


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, pg_databases: PgDatabases
) -> AsyncIterator[Batched]:
    backend: Batched
    if request.param == "sqlite":
        backend = SQLiteStore(tmp_path / "s.db")
    else:
        backend = PostgresStore(await pg_databases.shared_url())
    await backend.open()
    if isinstance(backend, PostgresStore):
        await pgdb.truncate(backend.url)
    yield backend
    await backend.close()


async def one_batch(
    store: Batched, calls: list[Callable[[], Awaitable[object]]], *, commits: int = 1
) -> list[object]:
    """Run ``calls`` as one batch, in order; their results (or exceptions)."""
    if isinstance(store, PostgresStore):
        pg_started, pg_gate = asyncio.Event(), asyncio.Event()

        async def pg_hold(conn: object) -> None:
            pg_started.set()
            await pg_gate.wait()

        holder = asyncio.ensure_future(store._committer.run(pg_hold, write=False))
        await pg_started.wait()
        gate_set = pg_gate.set
    else:
        started, gate = threading.Event(), threading.Event()

        def hold(conn: sqlite3.Connection) -> None:
            started.set()
            gate.wait()

        holder = asyncio.ensure_future(store._committer.run(hold, write=False))
        await asyncio.to_thread(started.wait)
        gate_set = gate.set
    tasks = [asyncio.ensure_future(call()) for call in calls]
    # Counted while the committer is held: once released, its thread may commit the batch
    # before this coroutine resumes (reading the counter after it was a flaky race).
    before = store.stats.commits

    async def release() -> None:  # runs after every task above has queued its operation
        gate_set()

    await asyncio.gather(holder, release())
    results = list(await asyncio.gather(*tasks, return_exceptions=True))
    assert store.stats.commits == before + commits
    return results


def seqs(result: object) -> list[int]:
    assert isinstance(result, Stored) and not result.duplicate, result
    return [item.seq for _, item in result.items]


async def test_acks_and_submits_of_one_device_keep_their_order(store: Batched) -> None:
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")

    def sub(n: int) -> Callable[[], Awaitable[object]]:
        return lambda: store.submit(send(alice, "bob", [bob], mid=message_id(n)))

    def ack(up_to: int) -> Callable[[], Awaitable[object]]:
        return lambda: store.ack(bob, up_to)

    results = await one_batch(
        store, [sub(1), sub(2), sub(3), ack(1), ack(0), ack(2), sub(4), ack(4), ack(9)]
    )
    assert [seqs(r) for r in results[:3]] == [[1], [2], [3]]
    assert results[3:6] == [1, 0, 1]
    assert seqs(results[6]) == [4]
    assert results[7:] == [2, 0]
    assert (await store.last_seq(bob), await store.queue_depth(bob)) == (4, 0)
    assert await store.fetch(bob, 0, 10) == []
    assert await store.total_queued() == 0


async def test_an_ack_earlier_in_the_batch_makes_room(store: Batched) -> None:
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")
    for n in range(2):
        await store.submit(send(alice, "bob", [bob], mid=message_id(n), max_queue=2))
    results = await one_batch(
        store,
        [
            lambda: store.submit(send(alice, "bob", [bob], mid=message_id(10), max_queue=2)),
            lambda: store.ack(bob, 1),
            lambda: store.submit(send(alice, "bob", [bob], mid=message_id(10), max_queue=2)),
            lambda: store.submit(send(alice, "bob", [bob], mid=message_id(11), max_queue=2)),
        ],
    )
    assert results[0] == QueueFull(device=bob, limit=2)
    assert results[1] == 1
    assert seqs(results[2]) == [3]
    assert results[3] == QueueFull(device=bob, limit=2)
    assert (await store.last_seq(bob), await store.queue_depth(bob)) == (3, 2)


async def test_duplicates_inside_the_batch_and_of_earlier_commits(store: Batched) -> None:
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")
    first = await store.submit(send(alice, "bob", [bob], mid=message_id(1), now=NOW - 5))
    assert seqs(first) == [1]

    def sub(n: int, targets: list[DeviceRef]) -> Callable[[], Awaitable[object]]:
        return lambda: store.submit(send(alice, "bob", targets, mid=message_id(n)))

    # message 1 was committed before; a wrong target set does not hide that it is a duplicate.
    results = await one_batch(
        store, [sub(2, [bob]), sub(1, [bob]), sub(3, [bob]), sub(3, [bob]), sub(1, [])]
    )
    assert seqs(results[0]) == [2]
    assert results[1] == Stored(items=(), stored_at=NOW - 5, duplicate=True)
    assert seqs(results[2]) == [3]
    assert results[3] == Stored(items=(), stored_at=NOW, duplicate=True)
    assert results[4] == Stored(items=(), stored_at=NOW - 5, duplicate=True)
    assert (await store.last_seq(bob), await store.queue_depth(bob)) == (3, 3)
    results = await one_batch(store, [sub(5, [bob]), sub(5, [bob]), sub(6, []), sub(5, [])])
    assert seqs(results[0]) == [4]
    assert results[1] == results[3] == Stored(items=(), stored_at=NOW, duplicate=True)
    assert results[2] == DeviceMismatch(missing=(bob,), stale=()), "refused: not recorded"
    assert seqs(await store.submit(send(alice, "bob", [bob], mid=message_id(6)))) == [5]
    assert (await store.last_seq(bob), await store.queue_depth(bob)) == (5, 5)


async def test_a_batch_of_one_is_a_segment_too(store: Batched) -> None:
    alice = await make_account(store, "alice", 2)
    (bob,) = await make_account(store, "bob")
    sub = send(alice[0], "bob", [bob, alice[1]], mid=message_id(1))
    stored = await store.submit(sub)
    assert seqs(stored) == [1, 1]
    assert await store.submit(sub) == Stored(items=(), stored_at=NOW, duplicate=True)
    assert await store.submit(send(alice[0], "bob", [bob], mid=message_id(2), max_queue=1)) == (
        QueueFull(device=bob, limit=1)
    )
    assert await store.ack(bob, 5) == 1
    assert await store.ack(DeviceRef("nobody", 1), 5) == 0
    assert (await store.last_seq(bob), await store.queue_depth(bob)) == (1, 0)


async def test_refusals_in_a_batch_store_nothing(store: Batched) -> None:
    alice = await make_account(store, "alice", 2)
    (bob,) = await make_account(store, "bob")
    ghost, gone = DeviceRef("bob", 7), DeviceRef("alice", 9)
    results = await one_batch(
        store,
        [
            lambda: store.submit(send(alice[0], "bob", [bob, gone], mid=message_id(1))),
            lambda: store.submit(send(alice[0], "bob", [bob, alice[1], ghost], mid=message_id(2))),
            lambda: store.submit(send(alice[0], "bob", [bob, bob, alice[1]], mid=message_id(3))),
            lambda: store.submit(send(alice[0], "nobody", [], mid=message_id(4))),
            lambda: store.submit(send(alice[0], "bob", [bob, alice[1]], mid=message_id(1))),
            lambda: store.submit(send(alice[0], "bob", [alice[1], bob], mid=message_id(5))),
        ],
    )
    # Some own copies (here a stale one) ask for all of them.
    assert results[0] == DeviceMismatch(missing=(alice[1],), stale=(gone,))
    assert results[1] == DeviceMismatch(missing=(), stale=(ghost,))
    assert isinstance(results[2], IntegrityError)
    assert results[3] == DeviceMismatch(missing=(), stale=())
    assert seqs(results[4]) == [1, 1]  # message 1 was refused before: not a duplicate
    assert seqs(results[5]) == [2, 2]
    assert [(await store.last_seq(ref), await store.queue_depth(ref)) for ref in alice] == [
        (0, 0),
        (2, 2),
    ]
    assert await store.total_queued() == 4


async def test_a_segment_that_fails_fails_its_whole_batch(
    store: Batched, monkeypatch: pytest.MonkeyPatch
) -> None:
    if isinstance(store, PostgresStore):
        return await _pg_segment_fails_its_whole_batch(store, monkeypatch)
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")
    await store.submit(send(alice, "bob", [bob], mid=message_id(0)))
    finish = _inbox_writes._Segment.finish
    failures: list[None] = []

    def failing_finish(self: _inbox_writes._Segment) -> None:
        finish(self)  # everything written, then a failure: all of it must go
        failures.append(None)
        raise sqlite3.OperationalError("injected")

    monkeypatch.setattr(_inbox_writes._Segment, "finish", failing_finish)
    results = await one_batch(
        store,
        [
            lambda: store.submit(send(alice, "bob", [bob], mid=message_id(1))),
            lambda: store.create_account("carol", b"c" * 32, "carol", NOW),
            lambda: store.ack(bob, 1),
        ],
        commits=0,
    )
    assert failures == [None]
    assert all(isinstance(r, StoreError) for r in results), results
    assert isinstance(results[0], StoreError)
    assert isinstance(results[0].__cause__, sqlite3.OperationalError)
    monkeypatch.undo()
    assert (await store.last_seq(bob), await store.queue_depth(bob)) == (1, 1)
    assert await store.devices("carol") == []
    # nothing of the failed batch is remembered: the next one starts from the database
    assert seqs(await store.submit(send(alice, "bob", [bob], mid=message_id(1)))) == [2]


async def test_other_operations_between_segments(store: Batched) -> None:
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")
    await store.submit(send(alice, "bob", [bob], mid=message_id(1)))
    results = await one_batch(
        store,
        [
            lambda: store.submit(send(alice, "bob", [bob], mid=message_id(2))),
            lambda: store.create_account("carol", b"c" * 32, "carol", NOW),
            lambda: store.create_account("carol", b"d" * 32, "carol", NOW),
            lambda: store.submit(send(alice, "bob", [bob], mid=message_id(1))),  # duplicate
            lambda: store.devices("carol"),
            lambda: store.ack(bob, 2),
        ],
    )
    assert seqs(results[0]) == [2]
    created = results[1]
    assert isinstance(results[2], IntegrityError)
    assert results[3] == Stored(items=(), stored_at=NOW, duplicate=True)
    assert results[4] == [created]
    assert results[5] == 2
    assert await store.devices("carol") == [created]
    assert (await store.last_seq(bob), await store.queue_depth(bob)) == (2, 0)


async def _pg_segment_fails_its_whole_batch(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    (alice,) = await make_account(store, "alice")
    (bob,) = await make_account(store, "bob")
    await store.submit(send(alice, "bob", [bob], mid=message_id(0)))
    write = _pg_inbox._Segment.write
    failures: list[None] = []

    async def failing_write(self: _pg_inbox._Segment, conn: asyncpg.Connection) -> None:
        await write(self, conn)  # everything written, then a failure: all of it must go
        failures.append(None)
        raise asyncpg.exceptions.DataError("injected")

    monkeypatch.setattr(_pg_inbox._Segment, "write", failing_write)
    results = await one_batch(
        store,
        [
            lambda: store.submit(send(alice, "bob", [bob], mid=message_id(1))),
            lambda: store.create_account("carol", b"c" * 32, "carol", NOW),
            lambda: store.ack(bob, 1),
        ],
        commits=0,
    )
    assert failures == [None]  # the first segment failed: nothing after it ran
    assert all(isinstance(r, StoreError) for r in results), results
    assert isinstance(results[0], StoreError)
    assert isinstance(results[0].__cause__, asyncpg.exceptions.DataError)
    monkeypatch.undo()
    assert (await store.last_seq(bob), await store.queue_depth(bob)) == (1, 1)
    assert await store.devices("carol") == []
    assert seqs(await store.submit(send(alice, "bob", [bob], mid=message_id(1)))) == [2]
