"""A store that cannot write: SQLite's real "database or disk is full" becomes StoreUnavailable.

Two real full disks: a tiny tmpfs (root only; the failure then comes at COMMIT, when the WAL
cannot grow) and ``PRAGMA max_page_count`` (anywhere; the failure comes at the INSERT that needs
a new page). In both, every caller gets :class:`StoreUnavailable`, nothing is half-stored,
``stats.unavailable`` says ``"full"`` until a write commits again, and :meth:`probe` tells when.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from tests.mounts import fill, tmpfs
from tests.store.helpers import make_account, message_id, send
from tidings.errors import StoreError, StoreUnavailable
from tidings.store import DeviceRef, SQLiteStore, Stored

#: Bound of the loops that write until the disk is full: far more than either disk holds.
MAX_WRITES = 2000


class CappedStore(SQLiteStore):
    """A SQLite store whose database may grow by only ``room`` pages after it is (re)opened:
    a full disk. ``room=None``: no cap."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.room: int | None = None

    def _connect(self) -> sqlite3.Connection:
        conn = super()._connect()
        if self.room is not None:
            (count,) = conn.execute("PRAGMA page_count").fetchone()
            conn.execute(f"PRAGMA max_page_count = {count + self.room:d}")
        return conn

    async def reopen_with_room(self, pages: int) -> None:
        await self.close()
        self.room = pages
        await self.open()


async def write_until_full(store: SQLiteStore, a: DeviceRef, bobs: list[DeviceRef]) -> int:
    """Submit 2 KiB sends to ``bobs`` (all of bob's devices) until one fails; return how many
    were stored."""
    for n in range(MAX_WRITES):
        sub = send(a, "bob", bobs, mid=message_id(n, "fill"), payload=b"x" * 2048)
        try:
            assert isinstance(await store.submit(sub), Stored)
        except StoreUnavailable as exc:
            assert exc.state == "full"
            assert isinstance(exc.__cause__, sqlite3.OperationalError)
            return n
    raise AssertionError("the disk never filled up")


async def test_a_full_database_is_unavailable_until_space_is_freed(tmp_path: Path) -> None:
    store = CappedStore(tmp_path / "s.db")
    await store.open()
    try:
        a, b = [*(await make_account(store, "alice")), *(await make_account(store, "bob"))]
        await store.reopen_with_room(8)
        stored = await write_until_full(store, a, [b])
        assert store.stats.unavailable == "full"
        # Reads still work, and answer what was stored.
        assert await store.last_seq(b) == stored
        # An ack deletes rows, so it frees pages: the next write commits and clears the state.
        assert await store.ack(b, stored) == stored
        assert store.stats.unavailable is None
        await store.probe()
    finally:
        await store.close()


async def test_a_batch_on_a_full_database_stores_each_send_whole_or_not_at_all(
    tmp_path: Path,
) -> None:
    store = CappedStore(tmp_path / "s.db")
    await store.open()
    try:
        alice = (await make_account(store, "alice"))[0]
        bobs = await make_account(store, "bob", devices=2)
        await store.reopen_with_room(6)
        # 40 sends of two 1 KiB payloads at once: one group commit, which runs out of pages.
        subs = [
            send(alice, "bob", bobs, mid=message_id(n, "batch"), payload=b"y" * 1024)
            for n in range(40)
        ]
        results = await asyncio.gather(*(store.submit(s) for s in subs), return_exceptions=True)
        assert all(isinstance(r, Stored | StoreUnavailable) for r in results), results
        failed = {
            s.message_id for s, r in zip(subs, results, strict=True) if not isinstance(r, Stored)
        }
        assert failed, "the database never filled up"
        assert store.stats.unavailable == "full"
        for device in bobs:
            items = await store.fetch(device, 0, 100)
            kept = {item.message_id for item in items}
            # Each stored send has both of its items; a refused one has none.
            assert kept == {s.message_id for s in subs} - failed
    finally:
        await store.close()


async def test_an_unavailable_error_is_a_store_error() -> None:
    exc = StoreUnavailable("full")
    assert isinstance(exc, StoreError)
    assert str(exc) == "store unavailable: full"


async def test_a_full_file_system_fails_the_whole_commit_and_recovers(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", 512) as disk:
        store = SQLiteStore(disk / "relay.db")
        await store.open()
        try:
            alice = (await make_account(store, "alice"))[0]
            bobs = await make_account(store, "bob", devices=2)
            filler = fill(disk)
            stored = await write_until_full(store, alice, bobs)
            assert store.stats.unavailable == "full"
            with pytest.raises(StoreUnavailable):
                await store.probe()  # a probe is a write: it fails while the disk is full
            # A batch of sends to both of bob's devices on the full disk.
            subs = [
                send(alice, "bob", bobs, mid=message_id(n, "tmpfs"), payload=b"z" * 1024)
                for n in range(20)
            ]
            results = await asyncio.gather(*(store.submit(s) for s in subs), return_exceptions=True)
            assert all(isinstance(r, StoreUnavailable) for r in results), results
            assert await store.last_seq(bobs[1]) == 0  # nothing of the batch was kept
            filler.unlink()
            await store.probe()
            assert store.stats.unavailable is None
            again = await asyncio.gather(*(store.submit(s) for s in subs))
            assert all(isinstance(r, Stored) for r in again)
            assert await store.last_seq(bobs[0]) == stored + len(subs)
            assert [i.message_id for i in await store.fetch(bobs[1], 0, 100)] == [
                s.message_id for s in subs
            ]
        finally:
            await store.close()
