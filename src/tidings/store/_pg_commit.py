"""Group commit on PostgreSQL: one task owns the store's connection and runs every operation.

The asyncio twin of :mod:`tidings.store._groupcommit`. Callers enqueue an operation (a coroutine
function of the connection) and await a future. The task takes every operation waiting (up to
``max_batch``) and runs the batch in ONE transaction: each operation inside its own savepoint,
so a failing one undoes only itself — except the operations queued with
:meth:`PgCommitter.run_batched` (submits and acks), which the batch runner executes set-based,
each run of consecutive ones (a *segment*) at once: it decides every operation before it writes,
so a refusal writes nothing. Then one ``COMMIT``, and only after it returned are the futures
resolved: no caller ever sees a result that was not committed (G1).

Several nodes write the same database at once. Their transactions lock what they change (a
device's counter row before its inbox, see :mod:`tidings.store._pg_inbox`), so they serialise
per device; a deadlock or a unique key another node committed first fails the whole batch,
which then runs again from the start, up to :data:`MAX_ATTEMPTS` times: nothing of a failed
attempt was committed, and its futures were not settled.

Invariants:

* Operations of a batch run one at a time, in enqueue order; each sees the ones before it.
* A batch of reads only runs without a transaction and counts no commit.
* After :meth:`PgCommitter.stop` began, new operations are refused with ``StoreError``; the
  ones enqueued before it still run.
* A connection found dead before a batch's ``COMMIT`` went out is replaced and the batch runs
  once more; a lost connection otherwise fails its batch with
  :class:`~tidings.errors.StoreUnavailable` (and sets ``stats.unavailable``), and the next
  batch opens a new one. A commit (or a probe) clears it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import asyncpg

from tidings.errors import StoreError, StoreUnavailable
from tidings.store._stats import record_commit
from tidings.store.base import StoreStats
from tidings.store.pg_errors import is_lost, is_retryable, translate

T = TypeVar("T")

#: What an operation is: a coroutine function of the connection, run by the store's task.
Operation = Callable[[asyncpg.Connection], Awaitable[T]]
Outcome = tuple[bool, object]  #: (succeeded, result or exception)
#: Runs a segment of consecutive batched writes set-based: outcomes, in order. It raises only
#: when a statement failed: the batch then fails (or runs again) whole.
BatchRunner = Callable[[asyncpg.Connection, list[object]], Awaitable[list[Outcome]]]

#: How many times a batch runs before a deadlock or a lost race between nodes fails it: each
#: attempt starts from what the other node committed, so a second one almost always succeeds.
MAX_ATTEMPTS = 5


@dataclass(slots=True)
class _Job:
    run: Operation[object] | None  #: ``None``: ``batched``, or a stop
    write: bool
    future: asyncio.Future[Any]
    batched: object = None
    stop: bool = False


class PgCommitter:
    """The store's task, its connection and its queue of operations.

    Call order: :meth:`start` once, then :meth:`run` / :meth:`run_batched` any number of times
    from the event loop :meth:`start` ran on, then :meth:`stop`.
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        *,
        max_batch: int,
        stats: StoreStats,
        batch: BatchRunner,
        probe: Operation[None],
        commit_window: float = 0.0,
    ) -> None:
        """Prepare, without connecting.

        Args:
            connect: opens a connection (the first one also migrates).
            max_batch: the most operations one transaction holds.
            stats: counters to update after each commit.
            batch: runs a segment of consecutive operations queued by :meth:`run_batched`.
            probe: the write of :meth:`probe`.
            commit_window: after a batch of several operations, how long the next batch that
                writes waits for more before it commits, in seconds (``0``: never).
        """
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._connect = connect
        self._max_batch = max_batch
        self._stats = stats
        self._batch = batch
        self._probe = probe
        self._window = commit_window
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._accepting = False
        #: How many batches ran again: after a deadlock or a lost race with another node, or
        #: on a new connection after the old one was found dead.
        self.retries = 0
        self._commit_sent = False  #: whether the running attempt's COMMIT went out

    async def start(self) -> None:
        """Connect (and migrate), then start the task.

        Raises:
            StoreError: the database cannot be reached or migrated, or the store is open.
        """
        if self._accepting:
            raise StoreError("store is already open")
        self._conn = await self._connect()
        self._accepting = True
        self._task = asyncio.ensure_future(self._serve())

    async def run(self, operation: Operation[T], *, write: bool) -> T:
        """Run ``operation`` in the store's task; return after its batch committed.

        Raises:
            StoreError: the store is not open, or the operation or its commit failed.
            IntegrityError: the operation broke a rule of the store; nothing it did is kept.
        """
        return cast(T, await self._enqueue(operation, write, None))

    async def run_batched(self, value: object) -> Any:
        """Have the batch runner run the write ``value`` with its neighbours in the batch."""
        return await self._enqueue(None, True, value)

    async def _enqueue(self, run: Operation[object] | None, write: bool, batched: object) -> Any:
        if not self._accepting:
            raise StoreError("store is not open")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(run, write, future, batched))
        return await future

    async def stop(self) -> None:
        """Run what is queued, close the connection and end the task. Idempotent."""
        if not self._accepting:
            return
        self._accepting = False
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(None, False, future, stop=True))
        await future
        if self._task is not None:
            await self._task

    async def probe(self) -> None:
        """Commit a write that changes nothing; on success ``stats.unavailable`` is cleared.

        Raises:
            StoreUnavailable: the database still cannot be written.
        """
        await self.run(self._probe, write=True)

    # -- in the store's task ---------------------------------------------------------------

    async def _serve(self) -> None:
        shared = False
        try:
            while True:
                batch = await self._gather(await self._queue.get(), shared)
                shared = len(batch) > 1
                jobs = [job for job in batch if not job.stop]
                try:
                    outcomes = await self._execute(jobs) if jobs else []
                except Exception as exc:  # a bug here: fail the batch loudly, keep serving
                    error = StoreError(f"store task failed: {exc!r}")
                    outcomes = [(False, error)] * len(jobs)
                _settle(jobs, outcomes)
                if len(jobs) < len(batch):
                    _settle([job for job in batch if job.stop], [(True, None)])
                    return
        finally:
            await self._close()
            self._refuse_queued()

    async def _gather(self, first: _Job, shared: bool) -> list[_Job]:
        batch = [first]
        if first.stop:
            return batch
        loop = asyncio.get_running_loop()
        deadline = None
        if shared and self._window > 0 and first.write:
            deadline = loop.time() + self._window
        while len(batch) < self._max_batch:
            if not self._queue.empty() or deadline is None:
                try:
                    job = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
            else:
                try:
                    async with asyncio.timeout_at(deadline):
                        job = await self._queue.get()
                except TimeoutError:
                    break
            batch.append(job)
            if job.stop:
                break  # stop() accepts nothing after its own job
        return batch

    async def _execute(self, jobs: list[_Job]) -> list[Outcome]:
        try:
            conn = await self._connection()
        except StoreError as exc:
            self._note(exc)
            return [(False, exc)] * len(jobs)
        writes = sum(job.write for job in jobs)
        if not writes:
            return await self._read(conn, jobs)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            self._commit_sent = False
            try:
                return await self._transaction(conn, jobs, writes)
            except Exception as exc:
                lost = is_lost(exc)
                await self._after_failure(exc)
                # A connection found dead before the COMMIT was sent committed nothing: the
                # batch runs once more on a new one. After it was sent, the commit may have
                # happened: the callers are told, and their retries are answered (duplicates).
                again = lost and attempt == 1 and not self._commit_sent
                if attempt < MAX_ATTEMPTS and (again or (is_retryable(exc) and not lost)):
                    self.retries += 1
                    try:
                        conn = await self._connection()
                    except StoreError as unreachable:
                        self._note(unreachable)
                        return [(False, unreachable)] * len(jobs)
                    continue
                error = _failed_batch(exc)
                self._note(error)
                return [(False, error)] * len(jobs)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _read(self, conn: asyncpg.Connection, jobs: list[_Job]) -> list[Outcome]:
        """A batch of reads, each in autocommit; on a connection found dead, once more on a
        new one (reads change nothing)."""
        outcomes = [await _call(conn, job) for job in jobs]
        failures = [value for ok, value in outcomes if not ok]
        if any(is_lost(value) for value in failures if isinstance(value, BaseException)):
            await self._close()
            try:
                conn = await self._connection()
            except StoreError as error:
                self._note(error)
                return [(False, error)] * len(jobs)
            self.retries += 1
            outcomes = [await _call(conn, job) for job in jobs]
        for ok, value in outcomes:
            if not ok and isinstance(value, BaseException):
                self._note(value)
                await self._after_failure(value)
        return outcomes

    async def _transaction(
        self, conn: asyncpg.Connection, jobs: list[_Job], writes: int
    ) -> list[Outcome]:
        transaction = conn.transaction()
        await transaction.start()
        try:
            outcomes = await self._run_all(conn, jobs)
            started = time.perf_counter()
            self._commit_sent = True
            await transaction.commit()
        except BaseException:
            if not conn.is_closed():
                with contextlib.suppress(Exception):
                    await transaction.rollback()
            raise
        record_commit(self._stats, writes, time.perf_counter() - started)
        self._stats.unavailable = None
        for ok, value in outcomes:
            if not ok and isinstance(value, StoreUnavailable):
                self._stats.unavailable = value.state
        return outcomes

    async def _run_all(self, conn: asyncpg.Connection, jobs: list[_Job]) -> list[Outcome]:
        """The batch's operations in order inside the open transaction: each segment by the
        batch runner, the others one by one, each in its own savepoint."""
        outcomes: list[Outcome] = []
        segment: list[object] = []
        for job in jobs:
            if job.run is None:
                segment.append(job.batched)
                continue
            if segment:
                outcomes.extend(await self._batch(conn, segment))
                segment = []
            outcomes.append(await _call_in_savepoint(conn, job))
        if segment:
            outcomes.extend(await self._batch(conn, segment))
        return outcomes

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = None
            self._conn = await self._connect()
        return self._conn

    async def _after_failure(self, exc: BaseException) -> None:
        if is_lost(exc):
            await self._close()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await conn.close(timeout=1.0)
            except Exception:
                conn.terminate()

    def _note(self, error: BaseException) -> None:
        if isinstance(error, StoreUnavailable):
            self._stats.unavailable = error.state

    def _refuse_queued(self) -> None:
        self._accepting = False
        while not self._queue.empty():
            job = self._queue.get_nowait()
            _settle([job], [(job.stop, None if job.stop else StoreError("store is not open"))])


async def _call(conn: asyncpg.Connection, job: _Job) -> Outcome:
    assert job.run is not None
    try:
        return True, await job.run(conn)
    except Exception as exc:
        return False, translate(exc)


async def _call_in_savepoint(conn: asyncpg.Connection, job: _Job) -> Outcome:
    assert job.run is not None
    savepoint = conn.transaction()
    await savepoint.start()
    try:
        value = await job.run(conn)
    except Exception as exc:
        if is_lost(exc):
            raise  # the transaction is gone with its connection: the batch fails whole
        await savepoint.rollback()
        return False, translate(exc)
    await savepoint.commit()
    return True, value


def _failed_batch(exc: Exception) -> StoreError:
    translated = translate(exc)
    if isinstance(translated, StoreUnavailable):
        return translated
    error = StoreError(f"transaction failed, nothing of it was stored: {exc}")
    error.__cause__ = exc
    return error


def _settle(jobs: list[_Job], outcomes: list[Outcome]) -> None:
    for job, (ok, value) in zip(jobs, outcomes, strict=True):
        if job.future.done():
            continue  # the caller was cancelled
        if ok:
            job.future.set_result(value)
        else:
            assert isinstance(value, BaseException)
            job.future.set_exception(value)
