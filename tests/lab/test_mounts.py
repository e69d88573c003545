"""The lab's tmpfs mounts (:mod:`tidings.lab.mounts`): over a directory with its files, filled,
freed, unmounted with the files kept, and swept after the lab was killed. Needs root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tidings.lab.mounts import Mounts, fill, free, lab_mounts, mounts_available, sweep_mounts

pytestmark = pytest.mark.skipif(mounts_available() is not None, reason=str(mounts_available()))

SIZE = 1024 * 1024


def _mounted(path: Path) -> bool:
    return any(point == path for _, point in lab_mounts())


def test_a_mount_over_a_directory_keeps_its_files_and_gives_them_back(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "client.db").write_bytes(b"before")
    with Mounts() as mounts:
        mounts.mount_over(home, SIZE)
        assert _mounted(home)
        assert (home / "client.db").read_bytes() == b"before"
        assert home.stat().st_mode & 0o777 == 0o700
        (home / "client.db").write_bytes(b"after")  # written on the tmpfs
    assert not _mounted(home)
    assert (home / "client.db").read_bytes() == b"after"
    assert not list(tmp_path.glob(".home.*"))  # no staging directory left


def test_fill_leaves_no_room_and_free_gives_it_back(tmp_path: Path) -> None:
    with Mounts() as mounts:
        d = mounts.mount_over(tmp_path / "d", SIZE)
        ballast = fill(d)
        assert SIZE // 2 < ballast <= SIZE
        with pytest.raises(OSError):
            (d / "more").write_bytes(b"x" * 8192)
        free(d)
        (d / "more").write_bytes(b"x" * 8192)
    assert not (tmp_path / "d" / "tdlab-ballast").exists()  # ballast is not copied back


def test_mounts_of_a_killed_lab_are_swept_with_their_files(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    orphan = tmp_path / "orphan"
    orphan.mkdir()
    source = f"tdlab{int(dead.stdout)}_1"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", source, str(orphan)], check=True)
    (orphan / "kept").write_text("from the killed run")
    mine = Mounts()
    live = mine.mount_over(tmp_path / "live", SIZE)  # this process is alive: left alone
    try:
        assert orphan in sweep_mounts()
        assert not _mounted(orphan) and _mounted(live)
        assert (orphan / "kept").read_text() == "from the killed run"
    finally:
        mine.close()
    assert not _mounted(live)
    assert os.path.isdir(live)
