"""WAL frames by table: where a SQLite store's disk bytes go (bench/README.md, issue 10).

Usage: ``python bench/wal_tables.py DIR [FIRST]``. ``DIR`` holds pairs ``N.db`` + ``N.db-wal``:
copies of a store's database and its WAL taken just before a checkpoint (on the store's thread,
so the pair is consistent; e.g. a copy of ``src/`` whose ``SQLiteStore._maybe_checkpoint``
copies both files first, run by ``relay_bench.py`` through ``PYTHONPATH``). ``FIRST`` skips the
pairs named before it (the registrations before the measured phase).

For each pair it reads the WAL's frames (page number; a commit frame ends a transaction) and
names the b-tree each page belongs to with SQLite's ``dbstat`` on the copy (pages free at that
moment: ``?free``, i.e. freed and reused within the interval). Printed per table: frames in the
WAL (each is a page of WAL written at a commit's fsync), frames per commit, and distinct pages
(what the checkpoint copies into the database file once).
"""

from __future__ import annotations

import collections
import shutil
import sqlite3
import struct
import sys
import tempfile
from pathlib import Path


def frames(wal: Path) -> tuple[list[int], int]:
    """The page number of every valid frame of ``wal``, and how many commits they make."""
    data = wal.read_bytes()
    if len(data) < 32:
        return [], 0
    _, _, page_size, _, salt1, salt2, _, _ = struct.unpack(">8I", data[:32])
    pages, commits, offset = [], 0, 32
    while offset + 24 + page_size <= len(data):
        page, commit, frame_salt1, frame_salt2 = struct.unpack(">4I", data[offset : offset + 16])
        if (frame_salt1, frame_salt2) != (salt1, salt2):
            break  # a frame left from before the WAL was last reset
        pages.append(page)
        commits += commit != 0
        offset += 24 + page_size
    return pages, commits


def owners(db: Path, wal: Path) -> dict[int, str]:
    """Page number → the table or index that owns it, read on a copy (never the original)."""
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(db, Path(tmp) / "x.db")
        shutil.copy(wal, Path(tmp) / "x.db-wal")
        conn = sqlite3.connect(Path(tmp) / "x.db")
        try:
            return {page: name for name, page in conn.execute("SELECT name, pageno FROM dbstat")}
        finally:
            conn.close()


def main(folder: Path, first: str = "") -> None:
    written: collections.Counter[str] = collections.Counter()
    distinct: collections.Counter[str] = collections.Counter()
    commits = 0
    for db in sorted(folder.glob("*.db")):
        wal = db.with_name(db.name + "-wal")
        if db.name < first or not wal.exists():
            continue
        pages, n = frames(wal)
        if not pages:
            continue
        owner = owners(db, wal)
        written.update(owner.get(page, "?free") for page in pages)
        distinct.update(owner.get(page, "?free") for page in set(pages))
        commits += n
    print(f"{'table':<28} {'frames':>8} {'/commit':>8} {'distinct':>9}")
    for name, n in written.most_common():
        print(f"{name:<28} {n:>8} {n / max(commits, 1):>8.2f} {distinct[name]:>9}")
    total = sum(written.values())
    print(f"{'total':<28} {total:>8} {total / max(commits, 1):>8.2f} {sum(distinct.values()):>9}")
    print(f"commits {commits}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), *sys.argv[2:3])
