"""The write-through cache of per-device counters used by the SQLite store's hot path."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from tidings.store import DeviceRef
from tidings.store._heads import HeadCache
from tidings.store.migrate import migrate


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn)
    for account, devices in (("a", 2), ("b", 1), ("c", 1)):
        for n in range(1, devices + 1):
            conn.execute(
                "INSERT INTO devices (account, device_id, noise_key, created_at, last_seq, depth)"
                " VALUES (?, ?, ?, 0, ?, ?)",
                (account, n, f"{account}{n}".encode(), 10 * n, n),
            )
    yield conn
    conn.close()


def test_get_loads_an_account_once(conn: sqlite3.Connection) -> None:
    cache = HeadCache()
    heads = cache.get(conn, "a")
    assert heads == {DeviceRef("a", 1): [10, 1, 0], DeviceRef("a", 2): [20, 2, 0]}
    conn.execute("UPDATE devices SET depth = 99")  # behind the cache's back: not seen
    assert cache.get(conn, "a") is heads
    cache.invalidate("a")
    assert cache.get(conn, "a") == {DeviceRef("a", 1): [10, 99, 0], DeviceRef("a", 2): [20, 99, 0]}


def test_an_unknown_account_is_not_cached(conn: sqlite3.Connection) -> None:
    cache = HeadCache()
    assert cache.get(conn, "nobody") is None
    conn.execute(
        "INSERT INTO devices (account, device_id, noise_key, created_at)"
        " VALUES ('nobody', 1, x'00', 0)"
    )
    assert cache.get(conn, "nobody") == {DeviceRef("nobody", 1): [0, 0, 0]}


def test_shrink_and_clear(conn: sqlite3.Connection) -> None:
    cache = HeadCache()
    cache.shrink(DeviceRef("a", 1), 1)  # not cached: nothing to do
    heads = cache.get(conn, "a")
    assert heads is not None
    cache.shrink(DeviceRef("a", 2), 2)
    cache.shrink(DeviceRef("a", 9), 1)  # not a device of the account: ignored
    assert heads[DeviceRef("a", 2)] == [20, 0, 0]
    cache.clear()
    assert cache.get(conn, "a") == {DeviceRef("a", 1): [10, 1, 0], DeviceRef("a", 2): [20, 2, 0]}


def test_the_oldest_account_goes_beyond_the_bound(conn: sqlite3.Connection) -> None:
    cache = HeadCache(max_accounts=2)
    first = cache.get(conn, "a")
    cache.get(conn, "b")
    cache.get(conn, "c")
    assert cache.get(conn, "a") is not first  # evicted, then loaded again
