"""A device home is owner only whatever the umask: the home 0700, every file in it 0600 — also
the files SQLite creates only once something is written (``-wal``, ``-shm``) and the lock file;
an old wide home is tightened with one warning; a home without a store gets nothing created.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ClientLab, RelayLab, is_received, is_status
from tidings.client import Client
from tidings.client.home import DB_NAME, prepare_home
from tidings.client.store import ClientStore
from tidings.delivery import Status
from tidings.errors import ConfigError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes(home: Path) -> dict[str, int]:
    """The mode of the home (``"."``) and of each entry in it."""
    return {".": mode(home), **{p.name: mode(p) for p in sorted(home.iterdir())}}


@pytest.fixture(params=[0o022, 0o000], ids=["umask-022", "umask-000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """A usual umask, and the most permissive one: every mode must come from an explicit
    chmod (or from SQLite copying the database's mode), never from the umask."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o000, 0o277], ids=["022", "000", "277"])
def test_a_new_store_and_the_files_sqlite_adds_on_writes_are_0600(
    tmp_path: Path, mask: int
) -> None:
    """0o277 even takes the owner's write bit away from what open/mkdir create."""
    old = os.umask(mask)
    try:
        _new_store_files_are_owner_only(tmp_path)
    finally:
        os.umask(old)


def _new_store_files_are_owner_only(tmp_path: Path) -> None:
    home = tmp_path / "parent" / "home"
    db = prepare_home(home, create=True)
    assert modes(home) == {".": 0o700, DB_NAME: 0o600}
    with ClientStore(db) as store:
        store.add_trace(b"m" * 16, "composed", 1.0)  # a write: the WAL gets frames
        names = {p.name for p in home.iterdir()}
        assert {f"{DB_NAME}-wal", f"{DB_NAME}-shm"} <= names  # created only now, by SQLite
        assert modes(home) == {".": 0o700, **dict.fromkeys(names, 0o600)}


async def test_a_registered_device_in_use_is_owner_only(
    relays: RelayLab, clients: ClientLab, umask: int
) -> None:
    await relays.start()
    alice, bob = await clients.new("alice"), await clients.new("bob")
    mid = await alice.client.send("bob", "hello")
    await bob.until(is_received(mid))
    await alice.until(is_status(mid, Status.DELIVERED))
    for home in (alice.home, bob.home):
        found = modes(home)
        for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", "client.lock"):
            assert name in found, (home, found)
        assert found == {".": 0o700, **dict.fromkeys(set(found) - {"."}, 0o600)}, found


async def test_an_old_wide_home_is_tightened_with_one_warning(
    relays: RelayLab, clients: ClientLab, caplog: pytest.LogCaptureFixture
) -> None:
    await relays.start()
    home = await clients.register("alice")
    first = clients.open(home)
    await first.close()  # leaves client.lock too
    # As an older version left it: world-readable keys and messages.
    os.chmod(home, 0o755)
    for path in home.iterdir():
        os.chmod(path, 0o644)
    assert {DB_NAME, "client.lock"} <= {p.name for p in home.iterdir()}
    caplog.set_level(logging.INFO, "tidings")
    client = clients.open(home)
    found = modes(home)
    assert found == {".": 0o700, **dict.fromkeys(set(found) - {"."}, 0o600)}, found
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    text = warnings[0].getMessage()
    assert str(home) in text
    assert "the home 755 -> 700" in text
    assert f"{DB_NAME} 644 -> 600" in text and "client.lock 644 -> 600" in text
    await client.close()
    caplog.clear()
    again = clients.open(home)  # nothing left to change: no warning
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    await again.close()


def test_a_home_without_a_store_gets_nothing_created(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for home in (empty, tmp_path / "missing"):
        with pytest.raises(ConfigError, match=r"holds no registered device: run `tidings register"):
            Client(home)
        with pytest.raises(ConfigError, match="first"):
            prepare_home(home)
    assert list(empty.iterdir()) == []
    assert not (tmp_path / "missing").exists()


def test_a_home_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("not a directory")
    for create in (False, True):
        with pytest.raises(ConfigError, match="is not a directory"):
            prepare_home(home, create=create)


def test_a_symlink_in_the_home_is_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("someone else's file")
    os.chmod(elsewhere, 0o644)
    home = tmp_path / "home"
    prepare_home(home, create=True)
    (home / "link").symlink_to(elsewhere)
    prepare_home(home)
    assert mode(elsewhere) == 0o644
