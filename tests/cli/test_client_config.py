"""Client settings as a user sets them: ``HOME/config.toml``, ``TIDINGS_CLIENT_*``, ``--config``
and ``--set`` on real ``tidings`` processes, seen in ``tidings config`` and in what ``listen``
does (its reconnect backoff with the relay down). Nothing sleeps: lines are awaited with
deadlines (the helpers of test_cli)."""

from __future__ import annotations

from pathlib import Path

from .test_cli import Proc, Server, ok, one_line_error, register, run


def test_config_shows_each_setting_with_its_source(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(
        '[client]\noutbox_window = 8\nreconnect_max_seconds = "2m"\nkeepalive_seconds = 7\n'
    )
    result = run(
        tmp_path, "config", "--home", str(home), "--json", "--set", "keepalive_seconds=6",
        TIDINGS_CLIENT_RECONNECT_MAX_SECONDS="45",
    )  # fmt: skip
    assert result.code == 0, result.err
    ((shown,),) = [result.json_lines()]
    assert shown["file"] == str(home / "config.toml")
    settings = shown["settings"]
    assert settings["outbox_window"] == {
        "value": 8, "source": "file", "where": str(home / "config.toml")
    }  # fmt: skip
    assert settings["reconnect_max_seconds"] == {
        "value": 45.0, "source": "env", "where": "TIDINGS_CLIENT_RECONNECT_MAX_SECONDS"
    }  # fmt: skip
    assert settings["keepalive_seconds"] == {
        "value": 6.0, "source": "flag", "where": "--set keepalive_seconds"
    }  # fmt: skip
    assert settings["keepalive_timeout_seconds"]["source"] == "default"
    assert settings["read_receipts"] == {"value": True, "source": "default", "where": None}

    other = tmp_path / "other.toml"
    other.write_text("[client]\nread_receipts = false\n")
    text = run(tmp_path, "config", "--home", str(home), TIDINGS_CLIENT_CONFIG=str(other))
    assert text.code == 0, text.err
    lines = text.out.splitlines()
    assert lines[0] == f"file: {other}"  # the variable names another file: HOME's is not read
    assert lines[-1].split() == ["read_receipts", "off", "file", f"({other})"]
    assert lines[5].split() == ["outbox_window", "64", "default"]


def test_a_bad_setting_is_one_line_and_exit_1(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("[client]\nkeepalive = 3\n")
    line = one_line_error(run(tmp_path, "listen", "--home", str(home)))
    assert line == (
        f"tidings: {home / 'config.toml'}: [client] keepalive: unknown setting; did you mean "
        "keepalive_seconds?"
    )
    bad_env = run(
        tmp_path, "send", "bob", "hi", "--home", str(home), "--config", "/dev/null",
        TIDINGS_CLIENT_OUTBOX_WINDOW="0",
    )  # fmt: skip
    assert one_line_error(bad_env) == (
        "tidings: environment variable TIDINGS_CLIENT_OUTBOX_WINDOW: must be from 1 to 1024, got 0"
    )
    missing = run(tmp_path, "daemon", "--home", str(home), "--config", str(tmp_path / "no.toml"))
    assert "cannot read config file" in one_line_error(missing)


def test_a_small_reconnect_cap_is_what_listen_waits(tmp_path: Path, procs: list[Proc]) -> None:
    server = Server(tmp_path, tmp_path / "data")
    procs.append(server.proc)
    home = tmp_path / "alice"
    register(tmp_path, server.url, "alice", home)
    assert server.stop() == 0
    # 10 attempts take seconds to minutes with the default backoff (0.5 s doubling to 30 s).
    (home / "config.toml").write_text("[client]\nreconnect_max_seconds = 0.001\n")
    listen = Proc(tmp_path, "listen", ["listen", "--home", str(home), "--json"])
    procs.append(listen)
    tenth = listen.wait_for(lambda line: line.get("attempt", 0) >= 10)
    assert tenth["event"] == "connect-failed"
    failed = [line for line in listen.lines if line.get("event") == "connect-failed"]
    assert len(failed) >= 10 and all(0 <= line["retry_in"] <= 0.001 for line in failed)


def test_read_receipts_command_defers_to_a_configured_value(
    tmp_path: Path, procs: list[Proc]
) -> None:
    server = Server(tmp_path, tmp_path / "data")
    procs.append(server.proc)
    home = tmp_path / "alice"
    register(tmp_path, server.url, "alice", home)
    ok(tmp_path, "read-receipts", "off", "--home", str(home))
    shown = ok(tmp_path, "config", "--home", str(home), "--json").json_lines()[0]
    assert shown["settings"]["read_receipts"] == {
        "value": False, "source": "stored", "where": None
    }  # fmt: skip

    pinned = run(
        tmp_path, "read-receipts", "on", "--home", str(home), TIDINGS_CLIENT_READ_RECEIPTS="off"
    )
    assert one_line_error(pinned) == (
        "tidings: read receipts are set off by environment variable TIDINGS_CLIENT_READ_RECEIPTS, "
        "which wins over the device's stored setting: change it there"
    )
    ok(tmp_path, "read-receipts", "on", "--home", str(home), "--set", "read_receipts=on")
    shown = ok(tmp_path, "config", "--home", str(home), "--json").json_lines()[0]
    assert shown["settings"]["read_receipts"]["value"] is True  # stored on
