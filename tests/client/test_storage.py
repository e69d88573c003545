"""The device's store on a full disk: SQLite's own SQLITE_FULL (``PRAGMA max_page_count`` caps the
file, so the real error path runs without a real disk) becomes ``StoreUnavailable``; the client
reports ONE ``StorageFailed``, stops without a reconnect loop or a traceback, acks nothing it
could not commit, and ``send()`` raises. The real-disk, real-process version is
tests/cli/test_full_disk.py. Nothing sleeps: the tests wait on client events.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import TIMEOUT, ClientLab, RelayLab, is_received, is_status
from tidings.client import Connected, Disconnected, StorageFailed
from tidings.client.store import ClientStore, Identity
from tidings.delivery import Message, Status
from tidings.errors import StoreError, StoreUnavailable
from tidings.store import DeviceRef

CONV = "alice:bob"
BOB1 = DeviceRef("bob", 1)
#: More than the free pages a store has: needs new pages (overflow pages of a 4 KiB page size).
BIG = "x" * 30_000


def cap(store: ClientStore) -> None:
    """Let the file grow no further: the next write that needs a new page is SQLITE_FULL."""
    db = store._db  # the test reaches in: a real disk would be slower and root-only
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    (free,) = db.execute("PRAGMA freelist_count").fetchone()
    assert free < 5, "the store has room to spare: the test would not fill it"
    db.execute(f"PRAGMA max_page_count = {pages}")


def uncap(store: ClientStore) -> None:
    store._db.execute("PRAGMA max_page_count = 1073741823")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClientStore]:
    with ClientStore(tmp_path / "client.db") as s:
        s.save_identity(Identity(bytes(range(32)), "alice", 1, "laptop", "ws://relay:1"))
        yield s


# ------------------------------------------------------------------------------ the store


def test_a_full_store_raises_store_unavailable_and_keeps_nothing(store: ClientStore) -> None:
    heard: list[StoreUnavailable] = []
    store.on_unavailable = heard.append
    store.compose(b"a" * 16, "bob", CONV, b"fits", 1.0)
    cap(store)
    with pytest.raises(StoreUnavailable) as info:
        store.compose(b"b" * 16, "bob", CONV, BIG.encode(), 2.0)
    assert info.value.state == "full"
    assert str(info.value) == (
        f"the device's store {store.path} cannot be written: its disk is full"
    )
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    assert heard == [info.value]  # the hook hears of it before the caller does
    content = Message(CONV, 1, 3.0, BIG.encode())
    with pytest.raises(StoreUnavailable):
        store.commit_incoming(9, BOB1, b"c" * 16, content, 4.0)
    # Nothing of either was kept.
    assert [p.message_id for p in store.pending()] == [b"a" * 16]
    assert store.cursor() == 0 and not store.has_message(BOB1, b"c" * 16)
    assert len(heard) == 2
    uncap(store)  # space is back: the same writes go through
    store.compose(b"b" * 16, "bob", CONV, BIG.encode(), 2.0)
    assert store.commit_incoming(9, BOB1, b"c" * 16, content, 4.0)
    assert [m.counter for m in store.messages(CONV) if m.sender.account == "alice"] == [1, 2]


def test_a_store_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable) as info:
        ClientStore(tmp_path / "no-such-dir" / "client.db")
    assert info.value.state.startswith("error: ")
    assert "unable to open database file" in str(info.value)


def test_a_busy_store_is_a_plain_store_error(store: ClientStore, tmp_path: Path) -> None:
    """Another connection holding the write lock is worth retrying, not stopping for."""
    heard: list[StoreUnavailable] = []
    store.on_unavailable = heard.append
    store._db.execute("PRAGMA busy_timeout = 0")
    other = sqlite3.connect(tmp_path / "client.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError) as info:
            store.compose(b"a" * 16, "bob", CONV, b"hi", 1.0)
        assert not isinstance(info.value, StoreUnavailable) and heard == []
        other.execute("ROLLBACK")
    finally:
        other.close()


# ------------------------------------------------------------------------------ the client


async def test_a_full_store_stops_the_client_once_and_acks_nothing_uncommitted(
    relays: RelayLab, clients: ClientLab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await relays.start()
    alice, bob = await clients.new("alice"), await clients.new("bob")
    before = await alice.client.send("bob", "stored before the disk filled")
    await bob.until(is_received(before))
    await alice.until(is_status(before, Status.DELIVERED))

    cap(bob.client.store)
    lost = await alice.client.send("bob", BIG)
    await alice.until(is_status(lost, Status.SENT))  # the relay has it
    failed = await bob.until(lambda e: isinstance(e, StorageFailed))
    assert isinstance(failed, StorageFailed) and failed.state == "full"
    assert str(bob.client.store.path) in failed.message and "free space" in failed.message
    closed = await bob.until(lambda e: isinstance(e, Disconnected))
    assert isinstance(closed, Disconnected) and closed.fatal
    task = bob.client._session._task  # the connection loop: it ends instead of reconnecting
    assert task is not None
    async with asyncio.timeout(TIMEOUT):
        await asyncio.shield(task)
    after = bob.seen[bob.seen.index(failed) :]
    assert [type(e) for e in after] == [StorageFailed, Disconnected]
    assert not any(isinstance(e, Connected) for e in after)
    with pytest.raises(StoreUnavailable, match="its disk is full"):
        await bob.client.send("alice", "hi")
    # No traceback, no error log: the event is the report.
    assert [
        r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR
    ] == []

    await bob.client.close()
    bob = await clients.start(bob.home)  # space is back (a new connection has no cap)
    assert await bob.until(is_received(lost))  # not acked before: the relay kept it (G1)
    await alice.until(is_status(lost, Status.DELIVERED))
    assert [m.message_id for m in bob.client.store.messages(CONV)] == [before, lost]


async def test_a_send_that_cannot_be_stored_raises_and_queues_nothing(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    alice = await clients.new("alice")
    cap(alice.client.store)
    with pytest.raises(StoreUnavailable) as info:
        await alice.client.send("bob", BIG)
    assert info.value.state == "full" and "the device stopped" in str(info.value)
    assert alice.client.store.messages(CONV) == [] and alice.client.store.pending() == []
    failed = await alice.until(lambda e: isinstance(e, StorageFailed))
    assert alice.client.storage_failed == failed
    uncap(alice.client.store)
    with pytest.raises(StoreUnavailable):  # stopped: even a send that would fit now
        await alice.client.send("bob", "small")
