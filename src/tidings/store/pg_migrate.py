"""Schema migrations of the PostgreSQL store: numbered SQL files applied in order.

Each file ``pg_migrations/NNNN_name.sql`` brings the schema from version ``NNNN - 1`` to
``NNNN`` (loaded by :func:`tidings.store.migrate.load_migrations`, like the SQLite store's).
The version lives in the one row of ``tidings_schema`` (no table: version 0, an empty
database). Each file runs in one transaction together with the version bump, so a failed
migration leaves the database at the previous version; PostgreSQL's DDL is transactional.

Several relay nodes may start at once on one database: every step takes the transaction-level
advisory lock :data:`MIGRATION_LOCK` and re-reads the version under it, so each step is applied
by exactly one node and the others see it done.

A database whose version is newer than the newest file is refused with
:class:`~tidings.errors.MigrationError`: older code must not write a schema it does not know.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from tidings.errors import MigrationError
from tidings.store.migrate import Migration, load_migrations

#: The advisory lock key (``pg_advisory_xact_lock``) that serialises migrations between nodes:
#: an arbitrary 64-bit constant ("tidings" + 1), distinct from the expiry sweep's
#: (:data:`tidings.store._pg_queue.EXPIRY_LOCK`).
MIGRATION_LOCK = 0x7469_6469_6E67_7301

#: The folder of ``tidings.store`` that holds the PostgreSQL migrations.
FOLDER = "pg_migrations"

_CREATE_VERSION = (
    "CREATE TABLE IF NOT EXISTS tidings_schema"
    " (id integer PRIMARY KEY CHECK (id = 1), version integer NOT NULL)"
)
_READ_VERSION = "SELECT version FROM tidings_schema WHERE id = 1"
_SET_VERSION = (
    "INSERT INTO tidings_schema (id, version) VALUES (1, $1)"
    " ON CONFLICT (id) DO UPDATE SET version = excluded.version"
)
_HAS_VERSION = "SELECT to_regclass('tidings_schema') IS NOT NULL"


async def schema_version(conn: asyncpg.Connection) -> int:
    """The database's schema version (0 for a database without one)."""
    if not await conn.fetchval(_HAS_VERSION):
        return 0
    version = await conn.fetchval(_READ_VERSION)
    return 0 if version is None else int(version)


async def migrate(conn: asyncpg.Connection, migrations: Sequence[Migration] | None = None) -> int:
    """Bring the database to the newest version; return it.

    Args:
        conn: a connection outside a transaction.
        migrations: the steps, by version; the packaged ones by default.

    Raises:
        MigrationError: the database is newer than the code, or a step failed (that step is
            rolled back; the steps before it stay applied).
    """
    steps = load_migrations(FOLDER) if migrations is None else tuple(migrations)
    latest = steps[-1].version if steps else 0
    await _check_not_newer(conn, latest)
    for step in steps:
        await _apply(conn, step, latest)
    return latest


async def _check_not_newer(conn: asyncpg.Connection, latest: int) -> None:
    current = await schema_version(conn)
    if current > latest:
        raise MigrationError(
            f"database schema version {current} is newer than this code knows ({latest})"
        )


async def _apply(conn: asyncpg.Connection, step: Migration, latest: int) -> None:
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(_CREATE_VERSION)
            current = int(await conn.fetchval(_READ_VERSION) or 0)
            if current > latest:  # another node of a newer version migrated meanwhile
                raise MigrationError(
                    f"database schema version {current} is newer than this code knows ({latest})"
                )
            if current >= step.version:
                return  # applied before, or by another node while this one waited
            await conn.execute(step.sql)  # no arguments: the simple protocol, many statements
            await conn.execute(_SET_VERSION, step.version)
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"migration {step.version:04d}_{step.name} failed: {exc}") from exc
