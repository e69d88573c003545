"""One person with three devices (issue 13): real processes. alice writes to bob; bob.1 reads
and answers; bob.2 and bob.3 were not used. Every one of bob's devices then shows the same
conversation — the same messages, the answer as bob's own with the same status (read by alice),
the same unread count (none) — though only bob.1 read or sent anything."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_cli import Proc, Server, ok, register

pytestmark = [pytest.mark.proc, pytest.mark.slow]


def link(root: Path, url: str, first: Path, home: Path) -> None:
    (code,) = ok(root, "link-code", "--json", "--home", str(first)).json_lines()
    register(root, url, "bob", home, "--link-code", code["code"])


def view(root: Path, home: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """What the device shows: its conversations with unread counts, and the chat with alice
    (id, direction, body, status) — the same on every device of the account."""
    chats = ok(root, "conversations", "--json", "--home", str(home)).json_lines()
    lines = ok(root, "history", "alice", "--json", "--home", str(home)).json_lines()
    return (
        [(c["conversation"], c["messages"], c["unread"]) for c in chats],
        [(m["message_id"], m["direction"], m["body"], m.get("status")) for m in lines],
    )


def test_three_devices_show_the_same_conversation(tmp_path: Path, procs: list[Proc]) -> None:
    server = Server(tmp_path, tmp_path / "data", name="three")
    procs.append(server.proc)
    alice = tmp_path / "alice"
    bob1, bob2, bob3 = (tmp_path / f"bob{n}" for n in (1, 2, 3))
    register(tmp_path, server.url, "alice", alice)
    register(tmp_path, server.url, "bob", bob1)
    link(tmp_path, server.url, bob1, bob2)
    link(tmp_path, server.url, bob1, bob3)

    sent = [ok(tmp_path, "send", "bob", f"hello {n}", "--json", "--home", str(alice))
            for n in (1, 2)]  # fmt: skip
    ids = [r.json_lines()[0]["message_id"] for r in sent]
    # bob.1 reads them (read receipts to alice; the read state to bob.2 and bob.3) …
    ok(tmp_path, "listen", "--read", "--count", "2", "--json", "--home", str(bob1))
    # … and answers; alice reads the answer
    answer = ok(tmp_path, "send", "alice", "hi", "--json", "--home", str(bob1)).json_lines()
    reply = answer[0]["message_id"]
    ok(tmp_path, "listen", "--read", "--count", "1", "--json", "--home", str(alice))

    def caught_up(proc: Proc, home: Path) -> None:
        """Until ``home`` has the read receipt of the answer (which came last)."""
        proc.wait_for(
            lambda line: (
                line.get("event") == "status"
                and line["message_id"] == reply
                and line["status"] == "read"
            )
        )

    for home in (bob1, bob2, bob3):
        listen = Proc(tmp_path, f"{home.name}-listen", ["listen", "--json", "--home", str(home)])
        procs.append(listen)
        caught_up(listen, home)
        if home is not bob1:
            got = {
                line["message_id"]: line for line in listen.lines if line.get("event") == "message"
            }
            assert set(got) == {*ids, reply}
            assert got[reply]["direction"] == "out" and got[reply]["from"] == "bob.1"
            read = {m for line in listen.lines if line.get("event") == "read-elsewhere"
                    for m in line["message_ids"]}  # fmt: skip
            assert read == set(ids)  # read on bob.1: read here too
        assert listen.signal(signal.SIGINT) == 0

    views = [view(tmp_path, home) for home in (bob1, bob2, bob3)]
    chats, messages = views[0]
    assert chats == [("alice:bob", 3, 0)]
    assert messages == [
        (ids[0], "in", "hello 1", None),
        (ids[1], "in", "hello 2", None),
        (reply, "out", "hi", "read"),
    ]
    assert views[1] == views[0] and views[2] == views[0]
