"""The ``store`` fixture of the store tests: every test runs on each backend.

The PostgreSQL backend runs in one database created for the session (on first use) and dropped
at its end; every test starts from empty tables (``TRUNCATE``), which is much faster than a
database per test. Without a reachable server its tests skip, saying why (``tests/pgdb.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests import pgdb
from tidings.store import MemoryStore, PostgresStore, SQLiteStore, Store


class PgDatabases:
    """The session's PostgreSQL databases: created on first use, dropped at the end."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.shared: str | None = None

    async def shared_url(self) -> str:
        if self.shared is None:
            self.shared = await pgdb.create_database("tidings_store")
            self.names.append(self.shared)
        return pgdb.url_of(self.shared)


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PgDatabases]:
    databases = PgDatabases()
    yield databases
    for name in databases.names:
        pgdb.drop_database_sync(name)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, pg_databases: PgDatabases
) -> AsyncIterator[Store]:
    backend: Store
    if request.param == "memory":
        backend = MemoryStore()
    elif request.param == "sqlite":
        backend = SQLiteStore(tmp_path / "s.db")
    else:
        url = await pg_databases.shared_url()
        backend = PostgresStore(url)
    await backend.open()
    if isinstance(backend, PostgresStore):
        await pgdb.truncate(backend.url)
    yield backend
    await backend.close()
