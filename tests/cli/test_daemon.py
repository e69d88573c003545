"""``tidings daemon`` as a user runs it: a real process serving the local API on the home's
socket, holding the device (other commands on that home are told so), stopping cleanly."""

from __future__ import annotations

import asyncio
import signal
import stat
from pathlib import Path
from typing import Any

from tidings.api.client import ApiClient
from tidings.api.server import SOCKET_NAME
from tidings.cli.exits import Exit

from .test_cli import Proc, Server, register, run


def api_calls(home: Path, *calls: tuple[str, dict[str, Any]]) -> list[Any]:
    async def go() -> list[Any]:
        api = await ApiClient.open(home)
        try:
            return [await api.call(method, **params) for method, params in calls]
        finally:
            await api.close()

    return asyncio.run(asyncio.wait_for(go(), 20))


def test_the_daemon_serves_the_api_holds_the_device_and_stops_cleanly(
    tmp_path: Path, procs: list[Proc]
) -> None:
    server = Server(tmp_path, tmp_path / "data")
    procs.append(server.proc)
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    register(tmp_path, server.url, "alice", alice)
    register(tmp_path, server.url, "bob", bob)

    daemon = Proc(tmp_path, "daemon", ["daemon", "--home", "alice", "--json"])  # relative
    procs.append(daemon)
    ready = daemon.wait_for(lambda line: line.get("event") == "daemon")
    assert ready["device"] == "alice.1" and ready["api"] == f"alice/{SOCKET_NAME}"
    daemon.wait_for(lambda line: line.get("event") == "connected")
    sock = alice / SOCKET_NAME
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600

    sent, status = api_calls(
        alice, ("send", {"to": "bob", "text": "via the daemon"}), ("status", {})
    )
    assert status["connected"] is True and status["device"] == "alice.1"
    got = run(tmp_path, "listen", "--count", "1", "--json", "--home", str(bob), timeout=20)
    assert got.code == 0, got.err
    (message,) = [line for line in got.json_lines() if line["event"] == "message"]
    assert message["message_id"] == sent["message_id"] and message["body"] == "via the daemon"

    # The store's readers work beside the daemon: history, conversations (and trace, below).
    history = run(tmp_path, "history", "bob", "--json", "--home", "alice")
    assert history.code == 0, history.err
    (line,) = history.json_lines()
    assert line["message_id"] == sent["message_id"] and line["direction"] == "out"  # the only one
    assert line["status"] in ("sent", "delivered", "read")
    (conv,) = run(tmp_path, "conversations", "--json", "--home", "alice").json_lines()
    assert conv["conversation"] == "alice:bob" and conv["messages"] == 1
    text = run(tmp_path, "history", "alice", "--home", str(bob))
    assert "alice.1 › via the daemon" in text.out
    assert run(tmp_path, "history", "Not-An-Account", "--home", "alice").code == Exit.USAGE

    # send and listen beside the daemon go through it (one process runs the device).
    through = run(tmp_path, "send", "bob", "beside the daemon", "--json", "--home", "alice")
    assert through.code == 0, through.err
    lines = through.json_lines()
    assert lines[0]["event"] == "queued" and lines[-1]["status"] == "sent"
    reply = run(tmp_path, "send", "alice", "to the daemon", "--home", str(bob))
    assert reply.code == 0, reply.err
    heard = run(tmp_path, "listen", "--count", "1", "--json", "--home", "alice", timeout=20)
    assert heard.code == 0, heard.err
    assert [m["body"] for m in heard.json_lines() if m["event"] == "message"] == ["to the daemon"]
    code = run(tmp_path, "link-code", "--json", "--home", "alice")
    assert code.code == 0, code.err
    (linked,) = code.json_lines()
    laptop = tmp_path / "alice-laptop"
    register(tmp_path, server.url, "alice", laptop, "--link-code", linked["code"])
    assert api_calls(alice, ("devices", {"account": "alice"})) == [
        {"account": "alice", "device_ids": [1, 2]}
    ]
    # `tidings devices` beside the daemon asks it (device_details): the daemon is connected
    listed = run(tmp_path, "devices", "--json", "--home", "alice")
    assert listed.code == 0, listed.err
    (me, new) = listed.json_lines()
    assert (me["device"], me["this"], me["online"], me["certificate"]) == (
        "alice.1",
        True,
        True,
        "this device",
    )
    assert new["device"] == "alice.2" and new["online"] is False  # registered, not running

    # The commands that write settings go through the daemon too (it holds the device). The
    # daemon builds a session with the new laptop as it tells it its name (DEVICE_INFO): the
    # number covers it once that session exists, so compare the number after that.
    for _ in range(20):
        (read,) = run(tmp_path, "safety-number", "bob", "--json", "--home", "alice").json_lines()
        if 2 in read["my_devices"]:
            break
        api_calls(alice, ("status", {}))  # one round trip to the daemon, then look again
    wrong = run(tmp_path, "safety-number", "bob", "--verify", "1" * 60, "--home", "alice")
    assert wrong.code == 1 and "not the safety number" in wrong.out, wrong.err
    marked = run(tmp_path, "safety-number", "bob", "--verify", read["safety_number"],
                 "--json", "--home", "alice")  # fmt: skip
    assert marked.code == 0, marked.err
    assert marked.json_lines()[0]["verified"] is True
    off = run(tmp_path, "read-receipts", "off", "--home", "alice")
    assert off.code == 0, off.err
    number, settings = api_calls(
        alice, ("safety_number", {"account": "bob"}), ("settings", {})
    )  # the daemon's own view changed: it made the changes
    assert number["verified"] is True and settings["read_receipts"] is False

    assert daemon.signal(signal.SIGTERM) == 0
    assert daemon.lines[-1] == {"event": "stopped"}
    assert not sock.exists()
    assert all("via the daemon" not in str(line) for line in daemon.lines)  # no content logged
    assert run(tmp_path, "trace", sent["message_id"][:8], "--home", str(alice)).code == 0


def test_what_the_daemon_received_is_shown_by_the_next_listen(
    tmp_path: Path, procs: list[Proc]
) -> None:
    """Nothing received is hidden: the daemon commits messages no terminal has printed; the
    next ``listen`` shows them first (before it even connects), once."""
    server = Server(tmp_path, tmp_path / "data")
    procs.append(server.proc)
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    register(tmp_path, server.url, "alice", alice)
    register(tmp_path, server.url, "bob", bob)
    daemon = Proc(tmp_path, "daemon", ["daemon", "--home", str(alice), "--json"])
    procs.append(daemon)
    daemon.wait_for(lambda line: line.get("event") == "connected")

    async def receive() -> str:
        api = await ApiClient.open(alice)
        try:
            await api.call("subscribe")
            sent = run(tmp_path, "send", "alice", "while the daemon ran", "--home", str(bob))
            assert sent.code == 0, sent.err
            while (event := await api.next_event(20))["event"] != "message":
                pass
            return str(event["message_id"])
        finally:
            await api.close()

    mid = asyncio.run(asyncio.wait_for(receive(), 40))
    assert daemon.signal(signal.SIGTERM) == 0

    server.stop()  # offline: the backlog comes from the store alone
    first = run(tmp_path, "listen", "--count", "1", "--read", "--json", "--home", str(alice))
    assert first.code == 0, first.err
    (shown,) = first.json_lines()
    assert shown["event"] == "message" and shown["message_id"] == mid
    (stored,) = run(tmp_path, "history", "bob", "--json", "--home", str(alice)).json_lines()
    assert stored["read_at"] is not None  # --read marks what it shows from the backlog too
    again = run(tmp_path, "listen", "--timeout", "1", "--json", "--home", str(alice))
    assert [line for line in again.json_lines() if line["event"] == "message"] == []
