"""A device whose disk fills up, as a user sees it: real ``tidings`` processes, bob's home on a
real small tmpfs (root only, else skipped), so SQLite hits its own SQLITE_FULL.

``listen`` and ``send`` each print ONE line on stderr and exit 5 (``Exit.STORAGE``) — before this,
``listen`` printed thousands of tracebacks while reconnecting in a loop. What bob stored before the
disk filled is still there once space returns, and what he could not store was never acked: the
relay delivers it then.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mounts import fill, tmpfs
from tidings.cli.exits import Exit
from tidings.client.home import DB_NAME
from tidings.client.store import ClientStore

from .test_cli import Proc, Server, ok, one_line, register, run

pytestmark = [pytest.mark.proc, pytest.mark.slow]

#: The tmpfs for bob's home: a registered store (~0.6 MiB with its prekeys) and a little room.
DISK_KIB = 2048
#: Bodies that need many new pages; the one bob sends is the larger, so that no room a failed
#: write left allocated in the WAL can take it.
RECEIVED = "r" * 20_000
SENT = "s" * 50_000


def test_a_full_disk_is_one_line_and_exit_5_and_loses_nothing(
    tmp_path: Path, procs: list[Proc]
) -> None:
    server = Server(tmp_path, tmp_path / "data")
    procs.append(server.proc)
    alice = tmp_path / "alice"
    register(tmp_path, server.url, "alice", alice)
    with tmpfs(tmp_path / "disk", DISK_KIB) as disk:
        bob = disk / "bob"
        register(tmp_path, server.url, "bob", bob)
        listen = Proc(tmp_path, "bob-listen", ["listen", "--json", "--home", str(bob)])
        procs.append(listen)
        listen.wait_for(lambda line: line.get("event") == "connected")
        before = ok(tmp_path, "send", "bob", "before the disk filled", "--home", str(alice))
        listen.wait_for(lambda line: line.get("body") == "before the disk filled")

        filler = fill(disk)
        ok(tmp_path, "send", "bob", RECEIVED, "--home", str(alice))  # ✓: the relay has it
        assert listen.finish() == Exit.STORAGE
        line = one_line(listen.stderr())
        assert line.startswith(f"tidings: the device's store {bob / DB_NAME} cannot be written")
        assert "its disk is full" in line and "the device stopped" in line, line
        assert not [m for m in listen.lines if m.get("body") == RECEIVED]

        more = fill(disk, "filler-2")  # whatever bob's exit freed
        sent = run(tmp_path, "send", "alice", SENT, "--home", str(bob))
        assert sent.code == Exit.STORAGE, (sent.code, sent.out, sent.err)
        line = one_line(sent.err)
        assert line.startswith(f"tidings: not queued: the device's store {bob / DB_NAME}"), line
        assert "its disk is full" in line, line

        filler.unlink()
        more.unlink()
        with ClientStore(bob / DB_NAME) as store:
            bodies = [m.body.decode() for m in store.messages("alice:bob")]
        assert bodies[0] == "before the disk filled"
        assert RECEIVED not in bodies
        # Not acked while it could not be stored: the relay delivers it now.
        again = Proc(
            tmp_path, "bob-listen-2", ["listen", "--json", "--count", "1", "--home", str(bob)]
        )
        procs.append(again)
        again.wait_for(lambda line: line.get("body") == RECEIVED)
        assert again.finish() == 0
        assert again.stderr() == ""
    assert "queued" in before.out
