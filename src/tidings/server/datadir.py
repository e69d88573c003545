"""The relay's data directory: its modes, its key file, and the one-line errors about both.

Invariants:

- The directory is 0700, ``relay.db``, ``server.key``, ``push.key`` and ``sender-cert.key``
  0600 whatever the umask:
  each mode is set with ``chmod`` (:mod:`tidings.filemodes`, shared with the device home). The
  database file is created before SQLite opens it, and SQLite gives its ``-wal`` and ``-shm``
  files the database's mode, so they are 0600 too.
- ``server.key`` is written atomically: a temporary file in the same directory (0600) is written
  and fsynced, then hard-linked to its name (``link`` never replaces a file: two relays starting
  at once agree on one key), then the directory is fsynced. A crash at any point leaves either no
  key or the whole key, and at most a temporary file, which the next start removes.
- Every problem is a :class:`~tidings.errors.StartupError` of one line naming the path and what
  to do about it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import StartupError
from ..filemodes import DIR_MODE, FILE_MODE, SQLITE_COMPANIONS, fsync_dir, set_mode
from ..filemodes import reason as _why
from ..noise import generate_keypair
from ..push.webpush import PushKeys

__all__ = [
    "DB_FILE",
    "DIR_MODE",
    "FILE_MODE",
    "KEY_FILE",
    "KEY_LEN",
    "PUSH_KEY_FILE",
    "SENDER_CERT_KEY_FILE",
    "load_or_create_key",
    "load_or_create_push_key",
    "load_or_create_sender_cert_key",
    "prepare_data_dir",
    "prepare_db_file",
]

log = logging.getLogger("tidings.server")

#: File names inside the data directory.
KEY_FILE = "server.key"
#: The relay's VAPID private key (RFC 8292: a P-256 scalar, 32 bytes), owner-only like the other.
PUSH_KEY_FILE = "push.key"
#: The seed of the key that signs sender certificates (sealed sender, 32 bytes), owner-only.
SENDER_CERT_KEY_FILE = "sender-cert.key"
DB_FILE = "relay.db"
#: Length of the server's Noise static private key (X25519, RFC 7748 §5).
KEY_LEN = 32
#: Name prefix of the temporary file a key is written to before it gets its name.
KEY_TEMP_PREFIX = ".server.key."
_FLAG = "--data-dir"


def prepare_data_dir(path: Path) -> None:
    """Create the data directory (0700) or tighten an existing one; check that it is writable.

    Raises:
        StartupError: it cannot be created, is not a directory, or cannot be written.
    """
    if path.exists() and not path.is_dir():
        raise StartupError(f"{path} is not a directory: choose a data directory with {_FLAG}")
    try:
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(
            f"cannot create the data directory {path}: {_why(exc)}: create it writable for "
            f"this user, or choose another with {_FLAG}"
        ) from exc
    _set_mode(path, DIR_MODE, "data directory")
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".writable.")
    except OSError as exc:
        raise StartupError(
            f"the data directory {path} is not writable ({_why(exc)}): fix its permissions or "
            f"its mount, or choose another with {_FLAG}"
        ) from exc
    os.close(fd)
    os.unlink(probe)


def prepare_db_file(path: Path) -> None:
    """Create the database file with mode 0600 before SQLite opens it (SQLite then creates its
    ``-wal`` and ``-shm`` with the same mode); tighten an existing one and its companions.

    Raises:
        StartupError: the file cannot be created or opened.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        raise StartupError(
            f"cannot open the database {path}: {_why(exc)}: fix its permissions, or choose "
            f"another data directory with {_FLAG}"
        ) from exc
    os.close(fd)
    for name in (path, *(path.with_name(path.name + s) for s in SQLITE_COMPANIONS)):
        if name.exists():
            _set_mode(name, FILE_MODE, "database file")


def load_or_create_key(path: Path, rng: Callable[[int], bytes] = os.urandom) -> bytes:
    """The server's Noise static private key: read it, or create it (atomically, mode 0600).

    Raises:
        StartupError: the file exists but is not a 32-byte key, or cannot be read or written.
    """
    key = _read_key(path)
    if key is None:
        private, _ = generate_keypair(rng)
        key = _write_key(path, private)
    _remove_temporaries(path)
    return key


def load_or_create_push_key(path: Path, rng: Callable[[int], bytes] = os.urandom) -> bytes:
    """The relay's VAPID private key (a P-256 scalar): read it, or create it (atomically, mode
    0600, as :func:`load_or_create_key`). Devices' push subscriptions are made for its public
    key: a new key makes every push service refuse the relay until the devices register again.

    Raises:
        StartupError: the file exists but is not a 32-byte key, or cannot be read or written.
    """
    key = _read_key(path)
    if key is None:
        key = _write_key(path, PushKeys.generate(rng).private_bytes())
    _remove_temporaries(path)
    return key


def load_or_create_sender_cert_key(path: Path, rng: Callable[[int], bytes] = os.urandom) -> bytes:
    """The seed of the relay's sender-certificate key: read it, or create it (atomically, mode
    0600, as :func:`load_or_create_key`). A new one only changes the server certificate the
    relay hands out with each sender certificate: clients pin the relay's static key, not it.

    Raises:
        StartupError: the file exists but is not a 32-byte key, or cannot be read or written.
    """
    key = _read_key(path)
    if key is None:
        key = _write_key(path, rng(KEY_LEN))
    _remove_temporaries(path)
    return key


def _read_key(path: Path) -> bytes | None:
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StartupError(f"cannot read the server key {path}: {_why(exc)}") from exc
    if len(key) != KEY_LEN:
        raise StartupError(
            f"{path} is {len(key)} bytes, not a {KEY_LEN}-byte key: restore it from a backup, or "
            "delete it to give this relay a new identity (clients that pinned the old key will "
            "refuse the new one until they are told to accept it)"
        )
    _set_mode(path, FILE_MODE, "server key")
    return key


def _write_key(path: Path, private: bytes) -> bytes:
    """Write ``private`` to ``path`` atomically; return the key that is there afterwards (ours,
    or another process's that got there first)."""
    try:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=KEY_TEMP_PREFIX)
    except OSError as exc:
        raise StartupError(f"cannot write the server key in {path.parent}: {_why(exc)}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), FILE_MODE)
            f.write(private)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(temp, path)
        except (FileExistsError, FileNotFoundError):
            # Another relay on this directory was first (and may have removed our temporary
            # file as a leftover): use its key.
            pass
    except OSError as exc:
        raise StartupError(f"cannot write the server key {path}: {_why(exc)}") from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temp)
    fsync_dir(path.parent)
    key = _read_key(path)
    assert key is not None  # linked above, by us or by the other process
    if key == private:
        log.info("= created the server key %s", path)
    return key


def _remove_temporaries(path: Path) -> None:
    """Remove the temporary key files a crash left behind (never the key itself)."""
    for stale in path.parent.glob(KEY_TEMP_PREFIX + "*"):
        with contextlib.suppress(OSError):
            stale.unlink()


def _set_mode(path: Path, mode: int, what: str) -> None:
    """Give ``path`` exactly ``mode``, logging a change; an owner may not be able to (warn)."""
    try:
        change = set_mode(path, mode)
    except OSError as exc:
        log.warning("! %s %s is not mode %o: %s", what, path, mode, _why(exc))
        return
    if change is not None:
        log.info("= %s %s: mode %o -> %o", what, path, change.old, change.new)
