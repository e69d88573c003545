"""Group commit: one thread owns the SQLite connection and runs every operation on it.

Callers, coroutines on any event loop, enqueue an operation and await a future. The thread takes
every operation waiting (up to ``max_batch``) and runs the batch in ONE transaction, each write
inside its own ``SAVEPOINT`` so that a failing or refused write undoes only itself — except runs
of consecutive writes that carry a ``bulk`` value, which the optional bulk runner executes
set-based (if it raises, the transaction is rolled back and the whole batch runs again with one
savepoint per write, see :meth:`GroupCommitter._run_all`). It then
commits once, so a batch costs one fsync (DESIGN §5), and only after the ``COMMIT`` returned does
it resolve the futures, grouped per event loop with ``call_soon_threadsafe``. No caller ever sees
a result that was not committed; if the commit fails, every operation of the batch fails.

Invariants:

* Operations run one at a time, in the order they were enqueued; each sees the ones before it.
* A batch of reads only runs without a transaction and counts no commit.
* With a bulk runner, a batch may run twice (the first run rolled back): operations must be
  functions of the database (the store's are).
* After :meth:`GroupCommitter.stop` began, new operations are refused with ``StoreError``;
  the ones enqueued before it still run.
* SQLite errors that mean "cannot write now" (disk full, I/O error, read-only, locked: see
  :data:`UNAVAILABLE_CODES`) reach callers as :class:`~tidings.errors.StoreUnavailable` and set
  ``stats.unavailable``; a later commit that changed something (or a :meth:`probe`) clears it.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from tidings.errors import IntegrityError, StoreError, StoreUnavailable
from tidings.store._stats import record_commit
from tidings.store.base import StoreStats
from tidings.store.sqlite_errors import UNAVAILABLE_CODES as UNAVAILABLE_CODES
from tidings.store.sqlite_errors import unavailable_state as _unavailable_state

T = TypeVar("T")

#: What an operation is: a synchronous function of the connection, run on the store's thread.
Operation = Callable[[sqlite3.Connection], T]


class Rollback(Exception):
    """Raised by a write operation to undo its changes and still answer ``value``.

    A refused send (device mismatch, full queue) is an answer, not an error, but whatever the
    operation wrote before deciding must go.
    """

    def __init__(self, value: object) -> None:
        super().__init__(value)
        self.value = value


@dataclass(slots=True)
class _Job:
    run: Callable[[sqlite3.Connection], object] | None  #: ``None``: stop after this batch
    write: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    bulk: object = None  #: the same operation, for the set-based runner (``None``: none)


_Outcome = tuple[bool, object]  #: (succeeded, result or exception)

#: Runs a segment of consecutive bulk writes set-based: ``(conn, [job.bulk, …])`` → outcomes.
BulkRunner = Callable[[sqlite3.Connection, list[object]], list[_Outcome]]


class GroupCommitter:
    """The store's thread and its queue of operations.

    Call order: :meth:`start` once, then :meth:`run` any number of times from any event loop,
    then :meth:`stop`.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        max_batch: int,
        stats: StoreStats,
        on_abort: Callable[[], None] = lambda: None,
        bulk: BulkRunner | None = None,
        after_commit: Callable[[sqlite3.Connection], float | None] | None = None,
    ) -> None:
        """Prepare, without starting the thread.

        Args:
            connect: opens the connection (and migrates); runs on the store's thread.
            max_batch: the most operations one transaction holds.
            stats: counters to update after each commit.
            on_abort: called on the store's thread when a whole transaction, or a segment run
                by ``bulk``, was rolled back (to drop caches of what it wrote).
            bulk: runs a segment of consecutive write operations that carry a ``bulk`` value,
                set-based. If it raises, the transaction is rolled back and the batch runs again
                op by op (see ``_run_all``): with ``bulk``, every operation must give the same
                answer when it runs again on the same database.
            after_commit: called on the store's thread after a batch that wrote, once its
                futures were settled (off the callers' path), e.g. to checkpoint the WAL. It
                returns ``None``, or in how many seconds it wants to be called again if no
                batch comes first (it put its work off).
        """
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._connect = connect
        self._max_batch = max_batch
        self._stats = stats
        self._on_abort = on_abort
        self._bulk = bulk
        self._after_commit = after_commit
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()  # makes "accepting?" and "enqueue" one step
        self._accepting = False

    async def start(self) -> None:
        """Start the thread and open the connection on it.

        Raises:
            StoreError: the database cannot be opened or migrated (``MigrationError`` included).
        """
        with self._lock:
            if self._accepting:
                raise StoreError("store is already open")
            self._accepting = True
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[None] = loop.create_future()
        thread = threading.Thread(target=self._main, args=(loop, opened), name="tidings-store")
        thread.daemon = True  # a process that exits without close() must not hang on it
        thread.start()
        await opened  # on failure the thread stopped accepting and refused what was queued

    async def run(self, operation: Operation[T], *, write: bool, bulk: object = None) -> T:
        """Run ``operation`` on the store's thread; return after its batch committed.

        A write with a ``bulk`` value may instead be run by the committer's bulk runner, with
        its neighbours, as that value; ``operation`` must give the same answer.

        Cancelling the caller does not cancel the operation: it may still be committed.

        Raises:
            StoreError: the store is not open, or the operation or its commit failed.
            IntegrityError: the operation broke a rule of the store; nothing it did is kept.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            if not self._accepting:
                raise StoreError("store is not open")
            self._queue.put(_Job(operation, write, loop, future, bulk if write else None))
        return cast(T, await future)

    async def stop(self) -> None:
        """Run what is queued, close the connection and end the thread. Idempotent."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            if not self._accepting:
                return
            self._accepting = False
            self._queue.put(_Job(None, False, loop, future))
        await future

    async def probe(self) -> None:
        """Commit one tiny write that changes nothing (see :func:`_probe`); on success
        ``stats.unavailable`` is cleared.

        Raises:
            StoreUnavailable: the store still cannot write.
        """
        await self.run(_probe, write=True)

    # -- on the store's thread -----------------------------------------------------------

    def _main(self, loop: asyncio.AbstractEventLoop, opened: asyncio.Future[None]) -> None:
        try:
            conn = self._connect()
        except Exception as exc:
            error = _translate(exc)
            self._refuse_queued(error)  # first, so that start() raises with nothing accepted
            _settle_threadsafe(loop, [(opened, (False, error))])
            return
        _settle_threadsafe(loop, [(opened, (True, None))])
        try:
            self._serve(conn)
        except BaseException as exc:  # a bug here: refuse what is queued, then fail loudly
            self._refuse_queued(StoreError(f"store thread failed: {exc!r}"))
            raise
        finally:
            conn.close()

    def _housekeep(self, conn: sqlite3.Connection) -> float | None:
        if self._after_commit is None:
            return None
        try:
            return self._after_commit(conn)
        except sqlite3.Error:
            return None  # housekeeping: tried again after the next batch that writes

    def _serve(self, conn: sqlite3.Connection) -> None:
        due: float | None = None  # seconds until housekeeping put off wants to run
        while True:
            try:
                first = self._queue.get(timeout=due)
            except queue.Empty:
                due = self._housekeep(conn)
                continue
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            jobs = [job for job in batch if job.run is not None]
            try:
                outcomes = self._execute(conn, jobs)
            except Exception as exc:  # e.g. the ROLLBACK after a failed COMMIT failed too
                self._on_abort()
                outcomes = [(False, _failed_batch(exc)) for _ in jobs]
            for ok, value in outcomes:
                if not ok and isinstance(value, StoreUnavailable):
                    self._stats.unavailable = value.state
            _settle_all(jobs, outcomes)
            if len(jobs) < len(batch):
                # stop() accepts nothing after its own job, so the stop job ends the batch.
                conn.close()
                stops = [job for job in batch if job.run is None]
                _settle_all(stops, [(True, None)] * len(stops))
                return
            if any(job.write for job in jobs):
                due = self._housekeep(conn)

    def _refuse_queued(self, error: Exception) -> None:
        with self._lock:
            self._accepting = False
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            _settle_all([job], [(job.run is None, None if job.run is None else error)])

    def _execute(self, conn: sqlite3.Connection, jobs: list[_Job]) -> list[_Outcome]:
        writes = sum(job.write for job in jobs)
        if not writes:
            return [_call(conn, job) for job in jobs]
        try:
            changes = conn.total_changes
            conn.execute("BEGIN IMMEDIATE")
            try:
                outcomes = self._run_all(conn, jobs, self._bulk)
            except _Redo:
                # Nothing of the batch is kept; run all of it again, one savepoint per write.
                self._on_abort()
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                outcomes = self._run_all(conn, jobs, None)
            started = time.perf_counter()
            conn.execute("COMMIT")
            record_commit(self._stats, writes, time.perf_counter() - started)
            # A commit that changed nothing proves nothing: SQLite commits an empty transaction
            # on a full disk. One that wrote pages (or the probe's one page) does.
            if conn.total_changes != changes or any(job.run is _probe for job in jobs):
                self._stats.unavailable = None
        except sqlite3.Error as exc:
            self._on_abort()
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return [(False, _failed_batch(exc)) for _ in jobs]
        return outcomes

    def _run_all(
        self, conn: sqlite3.Connection, jobs: list[_Job], bulk: BulkRunner | None
    ) -> list[_Outcome]:
        """Run the batch's operations in order inside the open transaction.

        With ``bulk``, each run of consecutive jobs that carry a ``bulk`` value (a *segment*)
        is handed to it, without a savepoint: the runner decides refusals before writing and
        writes nothing for them, so its outcomes are the per-operation path's. If it raises
        (a failed statement, a duplicate it cannot place, a bug), :class:`_Redo` is raised:
        the caller rolls the whole transaction back and runs the batch again without ``bulk``.
        That is cheaper than a savepoint around every segment (which copies every page the
        segment touches), and it is why operations must give the same answer when run again.
        """
        if bulk is None:
            return [
                _call_in_savepoint(conn, job) if job.write else _call(conn, job) for job in jobs
            ]
        outcomes: list[_Outcome] = []
        segment: list[_Job] = []
        for job in jobs:
            if job.bulk is not None:
                segment.append(job)
                continue
            if segment:
                outcomes.extend(_run_segment(conn, bulk, segment))
                segment = []
            outcomes.append(_call_in_savepoint(conn, job) if job.write else _call(conn, job))
        if segment:
            outcomes.extend(_run_segment(conn, bulk, segment))
        return outcomes


class _Redo(Exception):
    """A segment failed: roll the transaction back and run the batch again, op by op."""


def _run_segment(conn: sqlite3.Connection, bulk: BulkRunner, segment: list[_Job]) -> list[_Outcome]:
    try:
        return bulk(conn, [job.bulk for job in segment])
    except Exception as exc:
        raise _Redo from exc


def _call(conn: sqlite3.Connection, job: _Job) -> _Outcome:
    assert job.run is not None
    try:
        return True, job.run(conn)
    except Exception as exc:
        return False, _translate(exc)


def _call_in_savepoint(conn: sqlite3.Connection, job: _Job) -> _Outcome:
    assert job.run is not None
    conn.execute("SAVEPOINT op")
    try:
        value = job.run(conn)
    except Rollback as refusal:
        outcome: _Outcome = (True, refusal.value)
    except Exception as exc:
        if isinstance(exc, sqlite3.Error) and not conn.in_transaction:
            # SQLite rolled the whole transaction back (disk full, I/O error): the savepoint is
            # gone and the batch fails as a whole, with this cause, which is what happened.
            raise
        outcome = (False, _translate(exc))
    else:
        conn.execute("RELEASE op")
        return True, value
    conn.execute("ROLLBACK TO op")
    conn.execute("RELEASE op")
    return outcome


def _probe(conn: sqlite3.Connection) -> None:
    """A write of one page that changes nothing: the schema version, set to itself."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    conn.execute(f"PRAGMA user_version = {int(version):d}")


def _translate(exc: Exception) -> Exception:
    """Our exception for a lower layer's (``raise … from``); our own and bugs pass through."""
    state = _unavailable_state(exc)
    if isinstance(exc, sqlite3.IntegrityError):
        error: Exception = IntegrityError(str(exc))
    elif state is not None:
        error = StoreUnavailable(state, str(exc))
    elif isinstance(exc, sqlite3.Error):
        error = StoreError(str(exc))
    else:
        return exc
    error.__cause__ = exc
    return error


def _failed_batch(exc: Exception) -> StoreError:
    message = f"transaction failed, nothing of it was stored: {exc}"
    state = _unavailable_state(exc)
    error = StoreError(message) if state is None else StoreUnavailable(state, message)
    error.__cause__ = exc
    return error


def _settle_all(jobs: list[_Job], outcomes: list[_Outcome]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], _Outcome]]] = {}
    for job, outcome in zip(jobs, outcomes, strict=True):
        by_loop.setdefault(job.loop, []).append((job.future, outcome))
    for loop, settlements in by_loop.items():
        _settle_threadsafe(loop, settlements)


def _settle_threadsafe(
    loop: asyncio.AbstractEventLoop, settlements: list[tuple[asyncio.Future[Any], _Outcome]]
) -> None:
    try:
        loop.call_soon_threadsafe(_settle, settlements)
    except RuntimeError:
        pass  # the caller's loop is closed: nobody is waiting any more


def _settle(settlements: list[tuple[asyncio.Future[Any], _Outcome]]) -> None:
    for future, (ok, value) in settlements:
        if future.done():
            continue  # the caller was cancelled
        if ok:
            future.set_result(value)
        else:
            assert isinstance(value, BaseException)
            future.set_exception(value)
