"""A device's home directory: owner only, made by registration, checked by everything after.

A home holds the device's secrets: ``client.db`` (the identity's private keys, the ratchet
sessions, every message's text), SQLite's ``client.db-wal`` and ``client.db-shm`` beside it,
and the lock file ``client.lock`` (:mod:`tidings.client.lock`).

Invariants:

- The home is 0700 and every regular file in it 0600, whatever the umask
  (:mod:`tidings.filemodes`, shared with the relay's data directory). ``client.db`` is created
  0600 before SQLite opens it, and SQLite gives the files it creates later (``-wal``, ``-shm``,
  a ``-journal``) the database's mode.
- A home left wider by an older version (0755, 0644) is tightened when it is next opened, and
  ONE warning says what changed. A mode that cannot be changed (another owner) is warned about
  and left.
- Opening a device (:func:`prepare_home` without ``create``) creates nothing: a home with no
  ``client.db`` is a :class:`~tidings.errors.ConfigError` that says to register first.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import ConfigError
from ..filemodes import DIR_MODE, FILE_MODE, ModeChange, create_file, make_dir, reason, set_mode

__all__ = ["DB_NAME", "prepare_db_file", "prepare_home"]

log = logging.getLogger("tidings.client")

#: The database file inside a device's home.
DB_NAME = "client.db"


def prepare_home(home: Path, *, create: bool = False) -> Path:
    """Make ``home`` owner-only and return the path of its store (``client.db``).

    Args:
        home: the device's directory.
        create: registration: create the home and an empty ``client.db`` (0600) if missing.
            Without it the home must hold a ``client.db`` already, and nothing is created.

    Raises:
        ConfigError: ``home`` is not a directory, cannot be created, or (without ``create``)
            holds no ``client.db``.
    """
    db = home / DB_NAME
    if create:
        try:
            created = make_dir(home)
        except OSError as exc:
            raise ConfigError(f"cannot create the device home {home}: {reason(exc)}") from exc
    else:
        created = False
    if home.exists() and not home.is_dir():
        raise ConfigError(f"{home} is not a directory: choose a device home with --home")
    if not create and not db.is_file():
        raise ConfigError(
            f"{home} holds no registered device: run `tidings register ACCOUNT --server URL "
            f"--home {home}` first"
        )
    if not created:
        _tighten(home)
    if create:
        prepare_db_file(db)
    return db


def prepare_db_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists, before SQLite opens it (SQLite then
    gives its ``-wal`` and ``-shm`` the same mode).

    Raises:
        ConfigError: it cannot be created.
    """
    try:
        create_file(path)
    except OSError as exc:
        raise ConfigError(f"cannot create the device's store {path}: {reason(exc)}") from exc


def _tighten(home: Path) -> None:
    """Give ``home`` 0700 and each regular file in it 0600; one warning for all that changed."""
    changes: list[ModeChange] = []
    for path, mode in [(home, DIR_MODE), *((f, FILE_MODE) for f in _files(home))]:
        try:
            change = set_mode(path, mode)
        except OSError as exc:
            log.warning("! %s is not mode %o and cannot be made so: %s", path, mode, reason(exc))
            continue
        if change is not None:
            changes.append(change)
    if changes:
        what = ", ".join(
            f"{'the home' if c.path == home else c.path.name} {c.old:o} -> {c.new:o}"
            for c in changes
        )
        log.warning(
            "! device home %s was open to other users (made by an older version?); now "
            "owner only: %s",
            home,
            what,
        )


def _files(home: Path) -> list[Path]:
    """The regular files directly in ``home`` (not symlinks: a link's target is not ours to
    change)."""
    try:
        entries = sorted(home.iterdir())
    except OSError:
        return []
    return [p for p in entries if p.is_file() and not p.is_symlink()]
