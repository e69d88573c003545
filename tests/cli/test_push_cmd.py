"""``tidings push`` and ``tidings push-listen`` as a user runs them: a real relay process (with
private push endpoints allowed), a daemon, the receiver; a message for the device while it is
offline comes as a wake-up the receiver decrypts, and the device then gets the message."""

from __future__ import annotations

import signal
from pathlib import Path

from tidings.cli.exits import Exit

from .test_cli import Proc, Server, one_line_error, register, run


def test_push_listen_registers_and_receives_the_relays_wake_up(
    tmp_path: Path, procs: list[Proc]
) -> None:
    server = Server(tmp_path, tmp_path / "data", 0, "server", "--push-allow-private")
    procs.append(server.proc)
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    register(tmp_path, server.url, "alice", alice)
    register(tmp_path, server.url, "bob", bob)
    assert (tmp_path / "data" / "push.key").stat().st_mode & 0o777 == 0o600

    daemon = Proc(tmp_path, "daemon", ["daemon", "--home", str(bob), "--json"])
    procs.append(daemon)
    daemon.wait_for(lambda line: line.get("event") == "connected")
    listener = Proc(
        tmp_path,
        "push-listen",
        ["push-listen", "--home", str(bob), "--register", "--count", "1", "--json"],
    )
    procs.append(listener)
    listening = listener.wait_for(lambda line: line.get("event") == "listening")
    registered = listener.wait_for(lambda line: line.get("event") == "registered")
    assert registered["state"] == "active" and registered["endpoint"] == listening["endpoint"]
    assert (bob / "push-listen.json").stat().st_mode & 0o777 == 0o600
    status = run(tmp_path, "push", "status", "--home", str(bob), "--json")
    assert status.code == 0, status.err
    (shown,) = status.json_lines()
    assert shown["state"] == "active" and shown["endpoint"] == listening["endpoint"]

    assert daemon.signal(signal.SIGTERM) == 0  # bob goes offline
    sent = run(tmp_path, "send", "bob", "wake up, bob", "--home", str(alice))
    assert sent.code == 0, sent.err
    wake = listener.wait_for(lambda line: line.get("event") == "wake")
    assert wake["nonce_bytes"] == 16 and wake["woke_daemon"] is False
    assert listener.finish() == 0  # --count 1

    got = run(tmp_path, "listen", "--count", "1", "--json", "--home", str(bob))
    assert got.code == 0, got.err
    (message,) = [line for line in got.json_lines() if line["event"] == "message"]
    assert message["body"] == "wake up, bob"

    dropped = run(tmp_path, "push", "unregister", "--home", str(bob), "--json")
    assert dropped.code == 0, dropped.err
    assert dropped.json_lines()[0]["state"] == "none"


def test_push_register_refuses_a_loopback_endpoint_without_the_operators_leave(
    tmp_path: Path, procs: list[Proc]
) -> None:
    server = Server(tmp_path, tmp_path / "data")
    procs.append(server.proc)
    bob = tmp_path / "bob"
    register(tmp_path, server.url, "bob", bob)
    key = "B" + "A" * 86  # 65 bytes of base64url
    refused = run(
        tmp_path,
        "push",
        "register",
        "http://127.0.0.1:9/push/x",
        "--p256dh",
        key,
        "--auth",
        "A" * 22,
        "--home",
        str(bob),
    )
    line = one_line_error(refused)
    assert "refused by the server" in line and "(code 24)" in line
    assert refused.code == Exit.ERROR
