"""Small real file systems for the tests of full disks and read-only data directories.

A tmpfs of a few hundred KiB is full after a few writes, so SQLite's real ``SQLITE_FULL`` path
runs (not a mock). Mounting needs root; without it (or without ``mount``) the test is skipped.
Every mount is undone when the ``with`` block ends, whatever happened.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs(path: Path, size_kib: int, *, read_only: bool = False) -> Iterator[Path]:
    """Mount a tmpfs of ``size_kib`` KiB on ``path`` (created) for the ``with`` block."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size_kib}k,mode=0755" + (",ro" if read_only else "")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def fill(directory: Path, name: str = "filler") -> Path:
    """Write a file in ``directory`` until its file system is full; return the file."""
    filler = directory / name
    chunk = b"\0" * 4096
    with filler.open("wb", buffering=0) as f:
        for _ in range(1 << 20):  # bounded: 4 GiB, far more than any test file system
            try:
                f.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    return filler
