"""The group committer: batches, savepoints, failed commits, lifecycle, stats."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from tidings.errors import IntegrityError, StoreError
from tidings.store import StoreStats
from tidings.store._groupcommit import GroupCommitter
from tidings.store._stats import RECENT_BATCHES, record_commit

_SCHEMA = """
CREATE TABLE parent (id INTEGER PRIMARY KEY);
CREATE TABLE t (
    x INTEGER PRIMARY KEY,
    parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED
);
INSERT INTO parent VALUES (1);
"""


def connect() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(_SCHEMA)
    conn.execute("PRAGMA foreign_keys = ON")  # a bad parent fails at COMMIT, not before
    return conn


@pytest.fixture
async def committer() -> AsyncIterator[GroupCommitter]:
    gc = GroupCommitter(connect, max_batch=64, stats=StoreStats())
    await gc.start()
    yield gc
    await gc.stop()


def insert(x: int, parent: int = 1) -> Callable[[sqlite3.Connection], int]:
    def run(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t VALUES (?, ?)", (x, parent))
        return x

    return run


def rows(conn: sqlite3.Connection) -> list[int]:
    return [row[0] for row in conn.execute("SELECT x FROM t ORDER BY x")]


async def held_batch(
    gc: GroupCommitter, ops: Sequence[Callable[[sqlite3.Connection], object]]
) -> list[object]:
    """Run ``ops`` as ONE batch: hold the thread in an op until all of them are queued."""
    started, gate = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection) -> None:
        started.set()
        gate.wait()

    holder = asyncio.ensure_future(gc.run(hold, write=False))
    await asyncio.to_thread(started.wait)
    tasks = [asyncio.ensure_future(gc.run(op, write=True)) for op in ops]

    async def release() -> None:  # runs after every task above has queued its op
        gate.set()

    await asyncio.gather(holder, release())
    return list(await asyncio.gather(*tasks, return_exceptions=True))


async def test_one_batch_one_commit(committer: GroupCommitter) -> None:
    stats = committer._stats
    results = await held_batch(committer, [insert(n) for n in range(10)])
    assert results == list(range(10))
    assert (stats.commits, stats.committed_ops, stats.last_batch_size) == (1, 10, 10)
    assert await committer.run(rows, write=False) == list(range(10))
    assert stats.commits == 1  # reads alone commit nothing


async def test_a_failing_op_undoes_only_itself(committer: GroupCommitter) -> None:
    def refuse(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES (100, 1)")
        raise IntegrityError("refused")

    ops = [insert(1), insert(1), refuse, insert(2)]
    results = await held_batch(committer, ops)
    assert results[0] == 1 and results[3] == 2
    assert isinstance(results[1], IntegrityError) and isinstance(results[2], IntegrityError)
    assert isinstance(results[1].__cause__, sqlite3.IntegrityError)
    assert await committer.run(rows, write=False) == [1, 2]


async def test_a_failed_commit_fails_the_whole_batch() -> None:
    gc = GroupCommitter(connect, max_batch=64, stats=StoreStats())
    await gc.start()
    results = await held_batch(gc, [insert(1), insert(2, parent=9), insert(3)])
    assert all(isinstance(result, StoreError) for result in results)
    assert await gc.run(rows, write=False) == []
    assert gc._stats.commits == 0
    assert await gc.run(insert(4), write=True) == 4  # and the store goes on
    await gc.stop()


async def test_a_bug_in_an_op_reaches_its_caller(committer: GroupCommitter) -> None:
    def broken(conn: sqlite3.Connection) -> None:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await committer.run(broken, write=True)


async def test_lifecycle() -> None:
    gc = GroupCommitter(connect, max_batch=4, stats=StoreStats())
    with pytest.raises(StoreError, match="not open"):
        await gc.run(rows, write=False)
    await gc.start()
    with pytest.raises(StoreError, match="already open"):
        await gc.start()
    await gc.stop()
    with pytest.raises(StoreError, match="not open"):
        await gc.run(rows, write=False)
    with pytest.raises(ValueError):
        GroupCommitter(connect, max_batch=0, stats=StoreStats())


async def test_a_failed_open_is_reported() -> None:
    def cannot_connect() -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    gc = GroupCommitter(cannot_connect, max_batch=4, stats=StoreStats())
    with pytest.raises(StoreError, match="unable to open"):
        await gc.start()
    with pytest.raises(StoreError, match="not open"):
        await gc.run(rows, write=False)


def test_recent_batch_sizes_are_bounded() -> None:
    stats = StoreStats()
    for n in range(RECENT_BATCHES + 5):
        record_commit(stats, n, 0.5)
    assert len(stats.batch_sizes) == RECENT_BATCHES
    assert stats.batch_sizes[-1] == stats.last_batch_size == RECENT_BATCHES + 4
    assert stats.commits == RECENT_BATCHES + 5


async def test_after_a_shared_batch_a_write_waits_for_company() -> None:
    stats = StoreStats()
    gc = GroupCommitter(connect, max_batch=2, stats=stats, commit_window=60.0)
    await gc.start()
    try:
        await held_batch(gc, [insert(1), insert(2)])  # two callers: a shared batch
        first = asyncio.ensure_future(gc.run(insert(3), write=True))
        await asyncio.sleep(0)  # first is queued, and the thread is waiting for company
        async with asyncio.timeout(30):  # a guard: without company it would wait 60 s
            assert list(await asyncio.gather(first, gc.run(insert(4), write=True))) == [3, 4]
        assert stats.batch_sizes == [2, 2]  # 3 and 4 shared one commit
    finally:
        await gc.stop()


async def test_a_lone_writer_never_waits() -> None:
    stats = StoreStats()
    gc = GroupCommitter(connect, max_batch=64, stats=stats, commit_window=60.0)
    await gc.start()
    try:
        async with asyncio.timeout(30):  # a guard: each wait would take 60 s
            for n in range(5):
                assert await gc.run(insert(n), write=True) == n
        assert stats.batch_sizes == [1] * 5
    finally:
        await gc.stop()
