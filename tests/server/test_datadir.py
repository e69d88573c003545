"""The relay's data directory: modes whatever the umask, the atomic key file, one-line errors."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mounts import tmpfs
from tests.store.helpers import make_account
from tidings.errors import StartupError
from tidings.server.datadir import (
    KEY_TEMP_PREFIX,
    SENDER_CERT_KEY_FILE,
    load_or_create_key,
    load_or_create_sender_cert_key,
    prepare_data_dir,
    prepare_db_file,
)
from tidings.store import SQLiteStore


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask: every mode below must come from an explicit chmod."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_the_directory_is_0700_and_the_key_0600_whatever_the_umask(
    tmp_path: Path, open_umask: None
) -> None:
    data = tmp_path / "data"
    prepare_data_dir(data)
    key = load_or_create_key(data / "server.key")
    assert len(key) == 32
    assert mode(data) == 0o700
    assert mode(data / "server.key") == 0o600
    assert load_or_create_key(data / "server.key") == key
    assert sorted(p.name for p in data.iterdir()) == ["server.key"]  # no temporary left


def test_the_sender_certificate_key_is_0600_and_kept(tmp_path: Path, open_umask: None) -> None:
    data = tmp_path / "data"
    prepare_data_dir(data)
    seed = load_or_create_sender_cert_key(data / SENDER_CERT_KEY_FILE)
    assert len(seed) == 32 and mode(data / "sender-cert.key") == 0o600
    assert load_or_create_sender_cert_key(data / SENDER_CERT_KEY_FILE) == seed
    assert sorted(p.name for p in data.iterdir()) == ["sender-cert.key"]


def test_an_existing_directory_and_key_are_tightened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    (data / "server.key").write_bytes(b"k" * 32)
    os.chmod(data / "server.key", 0o644)
    prepare_data_dir(data)
    assert load_or_create_key(data / "server.key") == b"k" * 32
    assert (mode(data), mode(data / "server.key")) == (0o700, 0o600)


async def test_the_database_and_its_wal_and_shm_are_0600(tmp_path: Path, open_umask: None) -> None:
    data = tmp_path / "data"
    prepare_data_dir(data)
    db = data / "relay.db"
    prepare_db_file(db)
    assert mode(db) == 0o600
    store = SQLiteStore(db)
    await store.open()
    try:
        await make_account(store, "alice")
        # Created by SQLite after the database: the WAL and the shared-memory index.
        assert mode(data / "relay.db-wal") == 0o600
        assert mode(data / "relay.db-shm") == 0o600
    finally:
        await store.close()


def test_an_existing_loose_database_is_tightened_with_its_companions(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    for name in ("relay.db", "relay.db-wal", "relay.db-shm"):
        (tmp_path / name).write_bytes(b"")
        os.chmod(tmp_path / name, 0o644)
    prepare_db_file(db)
    assert {mode(tmp_path / n) for n in ("relay.db", "relay.db-wal", "relay.db-shm")} == {0o600}


@pytest.mark.parametrize("size", [0, 5, 33])
def test_a_short_or_long_key_says_what_to_do(tmp_path: Path, size: int) -> None:
    path = tmp_path / "server.key"
    path.write_bytes(b"x" * size)
    with pytest.raises(StartupError) as caught:
        load_or_create_key(path)
    message = str(caught.value)
    assert message.startswith(f"{path} is {size} bytes, not a 32-byte key: restore it")
    assert "delete it to give this relay a new identity" in message
    assert "\n" not in message
    assert path.read_bytes() == b"x" * size  # never overwritten


def test_a_temporary_key_left_by_a_crash_is_removed(tmp_path: Path) -> None:
    stale = tmp_path / f"{KEY_TEMP_PREFIX}abc123"
    stale.write_bytes(b"")
    key = load_or_create_key(tmp_path / "server.key")
    assert not stale.exists()
    assert (tmp_path / "server.key").read_bytes() == key


def test_a_key_that_appears_meanwhile_is_not_replaced(tmp_path: Path) -> None:
    """Two relays starting at once on one directory: the second keeps the first one's key."""
    path = tmp_path / "server.key"
    theirs = b"t" * 32

    def rng(n: int) -> bytes:
        if not path.exists():
            path.write_bytes(theirs)  # the other relay links its key while we generate ours
        return os.urandom(n)

    assert load_or_create_key(path, rng) == theirs
    assert path.read_bytes() == theirs


def test_a_read_only_data_directory_is_one_line(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", 64, read_only=True) as ro:
        with pytest.raises(StartupError) as caught:
            prepare_data_dir(ro / "data")
        assert str(caught.value).startswith(f"cannot create the data directory {ro / 'data'}: ")
        assert "read-only file system" in str(caught.value)
        with pytest.raises(StartupError) as caught:
            prepare_data_dir(ro)  # exists, but cannot be written
        assert str(caught.value).startswith(f"the data directory {ro} is not writable")


def test_a_data_directory_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StartupError, match="cannot create the data directory"):
        prepare_data_dir(tmp_path / "file" / "data")
    with pytest.raises(StartupError, match="is not a directory"):
        prepare_data_dir(tmp_path / "file")
