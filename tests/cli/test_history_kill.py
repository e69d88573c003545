"""History for a new device with kill -9 of either side during the transfer (issue 13): real
processes. The sender is killed right after the archive is queued, the receiver right after it
imported its first part; both come back and the new device ends with every message once."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest

from tests.cli.test_cli import Proc, Server, ok, register
from tidings.client.connect import DB_NAME
from tidings.client.store import ClientStore
from tidings.delivery import Message
from tidings.refs import DeviceRef

pytestmark = [pytest.mark.proc, pytest.mark.slow]

#: Messages in bob.1's history: ~800 bytes each, so the archive has several parts.
N = 300


def fill(home: Path) -> None:
    """bob.1's store receives N messages from alice.1 (as the inbox would store them)."""
    alice = DeviceRef("alice", 1)
    with ClientStore(home / DB_NAME) as store:
        for n in range(1, N + 1):
            mid = n.to_bytes(16, "big")
            body = f"earlier {n:04d} ".encode() + b"." * 780
            content = Message("alice:bob", n, 1_700_000_000.0 + n, body)
            assert store.commit_incoming(10_000 + n, alice, mid, content, 1_700_000_500.0,
                                         surfaced=[(alice, mid)])  # fmt: skip
        store.mark_seen([n.to_bytes(16, "big") for n in range(1, N + 1)], 1_700_000_600.0)
    # they came from nowhere: the relay never queued them, so the cursor stays where it was
    db = sqlite3.connect(home / DB_NAME)
    with db:
        db.execute("UPDATE cursor SET seq = 0")
    db.close()


def history_lines(proc: Proc) -> list[dict[str, object]]:
    return [x for x in proc.lines if x.get("event") == "history"]


def wait_for_another_part(proc: Proc) -> None:
    """Until ``proc`` printed one more ``history`` line than it has now."""
    before = history_lines(proc)
    proc.wait_for(lambda line: line.get("event") == "history" and line not in before)


def history_rows(home: Path) -> list[bytes]:
    with ClientStore(home / DB_NAME) as store:
        rows = store._read("SELECT body FROM messages WHERE conversation = 'alice:bob'")
    return [bytes(r[0]) for r in rows]


def test_history_survives_kill_9_of_the_sender_and_of_the_receiver(
    tmp_path: Path, procs: list[Proc]
) -> None:
    server = Server(tmp_path, tmp_path / "data", name="history")
    procs.append(server.proc)
    bob1, bob2 = tmp_path / "bob1", tmp_path / "bob2"
    register(tmp_path, server.url, "alice", tmp_path / "alice")
    register(tmp_path, server.url, "bob", bob1)
    (code,) = ok(tmp_path, "link-code", "--json", "--home", str(bob1)).json_lines()
    register(tmp_path, server.url, "bob", bob2, "--link-code", code["code"])
    fill(bob1)

    # the sender: killed as soon as the archive is queued (durable in its outbox)
    send = Proc(tmp_path, "send-history", ["devices", "--send-history", "2", "--json",
                                            "--home", str(bob1)])  # fmt: skip
    procs.append(send)
    queued = send.wait_for(lambda line: "parts" in line)
    assert queued["parts"] >= 3
    send.kill()  # SIGKILL

    # the receiver: killed right after its first imported part
    listen = Proc(tmp_path, "bob2-listen", ["listen", "--json", "--home", str(bob2)])
    procs.append(listen)
    daemon = Proc(tmp_path, "bob1-daemon", ["daemon", "--json", "--home", str(bob1)])
    procs.append(daemon)  # bob.1 comes back: its outbox sends what is left
    first = listen.wait_for(lambda line: line.get("event") == "history")
    assert first["parts"] == queued["parts"]
    listen.kill()  # SIGKILL mid-transfer (or just after it: the parts can be fast)
    again = Proc(tmp_path, "bob2-listen-again", ["listen", "--json", "--home", str(bob2)])
    procs.append(again)
    again.wait_for(lambda line: line.get("event") == "connected")
    # what the first listen did not import comes again: one more history line per part
    while len(history_rows(bob2)) < N:
        wait_for_another_part(again)
    assert again.signal(signal.SIGINT) == 0
    assert daemon.signal(signal.SIGINT) == 0
    bodies = history_rows(bob2)
    assert len(bodies) == N == len(set(bodies))  # every message once
    assert sorted(bodies) == sorted(
        f"earlier {n:04d} ".encode() + b"." * 780 for n in range(1, N + 1)
    )
