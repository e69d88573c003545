"""Group commit: one thread owns the SQLite connection and runs every operation on it.

Callers, coroutines on any event loop, enqueue an operation and await a future. The thread takes
every operation waiting (up to ``max_batch``) and runs the batch in ONE transaction: each write
inside its own ``SAVEPOINT``, so that a failing write undoes only itself — except the operations
queued with :meth:`GroupCommitter.run_batched` (the store's submits and acks), which the batch
runner executes set-based, each run of consecutive ones (a *segment*) at once, without a
savepoint: it decides every operation before it writes, so a refusal writes nothing. It then
commits once, so a batch costs one fsync (DESIGN §5), and only after the ``COMMIT`` returned does
it resolve the futures, grouped per event loop with ``call_soon_threadsafe``. No caller ever sees
a result that was not committed; if a statement of a segment or the commit fails, every
operation of the batch fails and nothing of it is kept.

Invariants:

* Operations run one at a time, in the order they were enqueued; each sees the ones before it.
* A batch of reads only runs without a transaction and counts no commit.
* Every operation runs once.
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


@dataclass(slots=True)
class _Job:
    run: Callable[[sqlite3.Connection], object] | None  #: ``None``: ``batched``, or a stop
    write: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    batched: object = None  #: an operation for the batch runner
    stop: bool = False  #: close the connection after this batch


_Outcome = tuple[bool, object]  #: (succeeded, result or exception)

#: Runs a segment of consecutive batched writes set-based: ``(conn, [value, …])`` → outcomes, in
#: order. It raises (``sqlite3.Error``) only when a statement failed: the batch then fails whole.
BatchRunner = Callable[[sqlite3.Connection, list[object]], list[_Outcome]]


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
        batch: BatchRunner | None = None,
        commit_window: float = 0.0,
        probe: Operation[None] | None = None,
        after_commit: Callable[[sqlite3.Connection], float | None] | None = None,
    ) -> None:
        """Prepare, without starting the thread.

        Args:
            connect: opens the connection (and migrates); runs on the store's thread.
            max_batch: the most operations one transaction holds.
            stats: counters to update after each commit.
            batch: runs a segment of consecutive operations queued by :meth:`run_batched`.
            commit_window: after a batch of more than one operation (several callers are
                writing), how long the next batch that writes waits for more operations
                before it commits, in seconds (``0``: never). A lone caller never waits: its
                batches hold one operation.
            probe: the write of :meth:`probe` (default: :func:`_probe`, one page).
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
        self._batch = batch
        self._window = commit_window
        self._probe = _probe if probe is None else probe
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

    async def run(self, operation: Operation[T], *, write: bool) -> T:
        """Run ``operation`` on the store's thread; return after its batch committed.

        Cancelling the caller does not cancel the operation: it may still be committed.

        Raises:
            StoreError: the store is not open, or the operation or its commit failed.
            IntegrityError: the operation broke a rule of the store; nothing it did is kept.
        """
        return cast(T, await self._enqueue(operation, write, None))

    async def run_batched(self, value: object) -> Any:
        """Have the batch runner run the write ``value`` with its neighbours in the batch;
        return its answer after the batch committed. Raises like :meth:`run`."""
        if self._batch is None:
            raise StoreError("this store has no batch runner")
        return await self._enqueue(None, True, value)

    async def _enqueue(
        self, operation: Operation[object] | None, write: bool, batched: object
    ) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            if not self._accepting:
                raise StoreError("store is not open")
            self._queue.put(_Job(operation, write, loop, future, batched))
        return await future

    async def stop(self) -> None:
        """Run what is queued, close the connection and end the thread. Idempotent."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            if not self._accepting:
                return
            self._accepting = False
            self._queue.put(_Job(None, False, loop, future, stop=True))
        await future

    async def probe(self) -> None:
        """Commit a write that changes nothing (see :func:`_probe`); on success
        ``stats.unavailable`` is cleared.

        Raises:
            StoreUnavailable: the store still cannot write.
        """
        await self.run(self._probe, write=True)

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
        shared = False  # whether the last batch held more than one operation
        while True:
            try:
                first = self._queue.get(timeout=due)
            except queue.Empty:
                due = self._housekeep(conn)
                continue
            batch = self._gather(first, shared)
            shared = len(batch) > 1
            jobs = [job for job in batch if not job.stop]
            try:
                outcomes = self._execute(conn, jobs)
            except Exception as exc:  # e.g. the ROLLBACK after a failed COMMIT failed too
                outcomes = [(False, _failed_batch(exc)) for _ in jobs]
            for ok, value in outcomes:
                if not ok and isinstance(value, StoreUnavailable):
                    self._stats.unavailable = value.state
            _settle_all(jobs, outcomes)
            if len(jobs) < len(batch):
                # stop() accepts nothing after its own job, so the stop job ends the batch.
                conn.close()
                stops = [job for job in batch if job.stop]
                _settle_all(stops, [(True, None)] * len(stops))
                return
            if any(job.write for job in jobs):
                due = self._housekeep(conn)

    def _gather(self, first: _Job, shared: bool) -> list[_Job]:
        """``first`` and what else is queued, up to ``max_batch``; after a batch of several
        operations, a batch with a write also waits up to ``commit_window`` for more."""
        batch = [first]
        deadline = None
        if shared and self._window > 0 and first.write and not first.stop:
            deadline = time.monotonic() + self._window
        while len(batch) < self._max_batch:
            try:
                if deadline is None:
                    job = self._queue.get_nowait()
                else:
                    job = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                break
            batch.append(job)
            if job.stop:
                break  # stop() accepts nothing after its own job
        return batch

    def _refuse_queued(self, error: Exception) -> None:
        with self._lock:
            self._accepting = False
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            _settle_all([job], [(job.stop, None if job.stop else error)])

    def _execute(self, conn: sqlite3.Connection, jobs: list[_Job]) -> list[_Outcome]:
        writes = sum(job.write for job in jobs)
        if not writes:
            return [_call(conn, job) for job in jobs]
        try:
            changes = conn.total_changes
            conn.execute("BEGIN IMMEDIATE")
            outcomes = self._run_all(conn, jobs)
            started = time.perf_counter()
            conn.execute("COMMIT")
            record_commit(self._stats, writes, time.perf_counter() - started)
            # A commit that changed nothing proves nothing: SQLite commits an empty transaction
            # on a full disk. One that wrote pages (or the probe's one page) does.
            if conn.total_changes != changes or any(job.run is self._probe for job in jobs):
                self._stats.unavailable = None
        except Exception as exc:  # a failed statement of a segment or COMMIT, or a bug
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return [(False, _failed_batch(exc)) for _ in jobs]
        return outcomes

    def _run_all(self, conn: sqlite3.Connection, jobs: list[_Job]) -> list[_Outcome]:
        """Run the batch's operations in order inside the open transaction: each run of
        consecutive batched jobs (a *segment*) by the batch runner, the others one by one (a
        write in its own savepoint). A segment's exception propagates (the batch fails)."""
        outcomes: list[_Outcome] = []
        segment: list[object] = []
        for job in jobs:
            if job.run is None:
                segment.append(job.batched)
                continue
            if segment:
                assert self._batch is not None
                outcomes.extend(self._batch(conn, segment))
                segment = []
            outcomes.append(_call_in_savepoint(conn, job) if job.write else _call(conn, job))
        if segment:
            assert self._batch is not None
            outcomes.extend(self._batch(conn, segment))
        return outcomes


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
