"""Schema migrations of the SQLite store: numbered SQL files applied in order.

Each file ``migrations/NNNN_name.sql`` brings the schema from version ``NNNN - 1`` to ``NNNN``.
The version lives in ``PRAGMA user_version`` (0 for an empty database). Each file runs in one
transaction together with the version bump, so a failed migration leaves the database at the
previous version. A file must not contain transaction control (``BEGIN``, ``COMMIT``).

A database whose version is newer than the newest file is refused with
:class:`~tidings.errors.MigrationError`: older code must not write a schema it does not know.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from tidings.errors import MigrationError

_FILE_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step.

    Attributes:
        version: the schema version after this step (1 for the first).
        name: what the step does, from its file name.
        sql: the statements, without transaction control.
    """

    version: int
    name: str
    sql: str


def load_migrations(folder: str = "migrations") -> tuple[Migration, ...]:
    """The packaged migrations in ``folder`` of ``tidings.store``, by version (the SQLite
    store's by default; the PostgreSQL store's are in ``pg_migrations``).

    Raises:
        MigrationError: the files are not numbered 1, 2, 3… without gaps (a packaging bug).
    """
    found = []
    for entry in resources.files("tidings.store").joinpath(folder).iterdir():
        match = _FILE_NAME.fullmatch(entry.name)
        if match is not None:
            sql = entry.read_text(encoding="utf-8")
            found.append(Migration(int(match[1]), match[2], sql))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration files are not numbered 1..n: {versions}")
    return tuple(found)


def schema_version(conn: sqlite3.Connection) -> int:
    """The database's schema version (``PRAGMA user_version``)."""
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] | None = None) -> int:
    """Bring the database to the newest version; return it.

    Args:
        conn: a connection in autocommit mode (``isolation_level=None``), outside a transaction.
        migrations: the steps, by version; the packaged ones by default.

    Raises:
        MigrationError: the database is newer than the code, or a step failed (that step is
            rolled back; the steps before it stay applied).
    """
    steps = load_migrations() if migrations is None else tuple(migrations)
    latest = steps[-1].version if steps else 0
    current = schema_version(conn)
    if current > latest:
        raise MigrationError(
            f"database schema version {current} is newer than this code knows ({latest})"
        )
    for step in steps:
        if step.version > current:
            _apply(conn, step)
    return latest


def _apply(conn: sqlite3.Connection, step: Migration) -> None:
    # The trailing ";" closes a last statement written without one; empty statements are no-ops.
    script = f"BEGIN IMMEDIATE;\n{step.sql}\n;\nPRAGMA user_version = {step.version:d};\nCOMMIT;"
    try:
        conn.executescript(script)
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise MigrationError(f"migration {step.version:04d}_{step.name} failed: {exc}") from exc
