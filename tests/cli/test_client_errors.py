"""How the device commands fail when the relay cannot be reached: one line on stderr naming the
relay and the reason, exit 6 (``Exit.UNREACHABLE``), at once rather than after a silent timeout;
and the README's exit-code table is the CLI's."""

from __future__ import annotations

import re
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidings.cli.exits import Exit

from .test_cli import TIDINGS, WAIT, Proc, Server, child_env, one_line, register, run

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def dead_relay(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A home registered with a relay that is stopped since: (home, the relay's port)."""
    server = Server(tmp_path, tmp_path / "data")
    try:
        home = tmp_path / "alice"
        register(tmp_path, server.url, "alice", home)
        assert server.stop() == 0
        yield home, server.port
    finally:
        server.proc.kill()


def test_link_code_with_the_relay_down_fails_at_once(dead_relay: tuple[Path, int]) -> None:
    home, port = dead_relay
    root = home.parent
    result = run(root, "link-code", "--home", str(home))  # WAIT (20 s) < the old 30 s of silence
    assert result.code == Exit.UNREACHABLE, result.err
    assert one_line(result.err) == (
        f"tidings: cannot reach the relay at ws://127.0.0.1:{port}/v1: connection refused by "
        f"127.0.0.1:{port} (is the relay running?)"
    )
    assert result.out == ""


def test_register_with_no_relay_fails_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"ws://127.0.0.1:{port}/v1"
    result = run(tmp_path, "register", "alice", "--server", url, "--home", "alice")
    assert result.code == Exit.UNREACHABLE
    assert "connection refused" in one_line(result.err)


def test_wss_to_a_plain_endpoint_fails_in_one_line(tmp_path: Path) -> None:
    """The README's relay speaks ws://; a wss:// URL to it (or to any plain port) used to end in
    a traceback with an empty reason."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]

    def reset_one() -> None:  # what a plain server that cannot parse a ClientHello does
        conn, _ = listener.accept()
        conn.recv(1024)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    thread = threading.Thread(target=reset_one, daemon=True)
    thread.start()
    try:
        url = f"wss://127.0.0.1:{port}/v1"
        result = run(tmp_path, "register", "alice", "--server", url, "--home", "alice")
    finally:
        listener.close()
        thread.join(5)
    assert result.code == Exit.UNREACHABLE
    assert one_line(result.err) == (
        f"tidings: cannot reach the relay at {url}: the server closed the connection before "
        "the WebSocket upgrade (not a TLS endpoint? use ws://)"
    )


def test_the_readme_lists_every_exit_code() -> None:
    text = README.read_text()
    section = text[text.index("### Exit codes") :]
    section = section[: section.index("\n#", 1)]
    rows = dict(re.findall(r"^\| (\d+) \| `([A-Z_]+)` \|", section, re.M))
    assert {int(code): name for code, name in rows.items()} == {e.value: e.name for e in Exit}


def test_a_closed_stdout_is_quiet(tmp_path: Path) -> None:
    """``tidings lab list | head -1``: the reader closed the pipe; no error line, exit 141."""
    with subprocess.Popen(
        [*TIDINGS, "lab", "list"],
        cwd=tmp_path,
        env=child_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None
        proc.stdout.close()  # before it writes: its first flush meets a closed pipe
        _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == Exit.PIPE_CLOSED, err
    assert err == b""


def test_a_relay_with_another_key_is_one_line_for_every_command(
    dead_relay: tuple[Path, int], procs: list[Proc]
) -> None:
    """Another relay answers at the registered address (or its server.key was replaced): the
    device refuses it, and says so the same way whatever the command."""
    home, port = dead_relay
    root = home.parent
    other = Server(root, root / "other-data", port=port, name="other")
    procs.append(other.proc)
    for args in (["listen"], ["send", "bob", "hi", "--wait", "sent"], ["link-code"]):
        result = run(root, *args, "--home", str(home))
        assert result.code == Exit.ERROR, (args, result.err)
        line = one_line(result.err)
        assert line == (
            f"tidings: the relay at ws://127.0.0.1:{port}/v1 presents another key than the one "
            "pinned at registration (another relay at this address, its server.key was "
            "replaced, or a node of it without the relay's server.key): ask its operator; this "
            "device does not connect to it"
        ), args
