"""``tidings server`` that cannot start: one line on stderr naming the address or path and what to
do, exit status 1, no traceback. Real processes (``python -m tidings``), as an operator runs it.
"""

from __future__ import annotations

import resource
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_cli import TIDINGS, WAIT, Result, child_env, one_line_error, run
from tests.mounts import tmpfs

pytestmark = [pytest.mark.proc, pytest.mark.slow]

#: Only the error line: info lines (limits raised, key created) would be on stderr too.
QUIET = ("--log-level", "warning")


def server(root: Path, data: Path, *args: str) -> Result:
    return run(root, "server", "--data-dir", str(data), *QUIET, *args)


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port some other process listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_a_relay_port_in_use_is_one_line(tmp_path: Path, taken_port: int) -> None:
    result = server(tmp_path, tmp_path / "data", "--port", str(taken_port), "--metrics-port", "0")
    line = one_line_error(result)
    assert f"the relay cannot listen on 127.0.0.1:{taken_port}: address already in use" in line
    assert "choose another port with --port" in line


def test_a_metrics_port_in_use_is_one_line(tmp_path: Path, taken_port: int) -> None:
    result = server(tmp_path, tmp_path / "data", "--port", "0", "--metrics-port", str(taken_port))
    line = one_line_error(result)
    assert (
        f"the metrics endpoint cannot listen on 127.0.0.1:{taken_port}: address already in use"
        in line
    )
    assert "--metrics-port" in line


def test_an_empty_key_file_is_one_line_and_is_kept(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "server.key").write_bytes(b"")
    result = server(tmp_path, data, "--port", "0", "--metrics-port", "0")
    line = one_line_error(result)
    assert line == (
        f"tidings: {data / 'server.key'} is 0 bytes, not a 32-byte key: restore it from a "
        "backup, or delete it to give this relay a new identity (clients that pinned the old "
        "key will refuse the new one until they are told to accept it)"
    )
    assert (data / "server.key").read_bytes() == b""


def test_an_unwritable_data_directory_is_one_line(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", 64, read_only=True) as ro:
        result = server(tmp_path, ro / "data", "--port", "0", "--metrics-port", "0")
        line = one_line_error(result)
        assert f"cannot create the data directory {ro / 'data'}: read-only file system" in line
        assert "--data-dir" in line


def test_a_cap_above_the_limit_of_open_files_is_one_line(tmp_path: Path) -> None:
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    argv = ["--data-dir", str(tmp_path / "data"), "--port", "0", "--metrics-port", "0"]
    done = subprocess.run(
        [*TIDINGS, "server", *argv, *QUIET, "--max-connections", "1000"],
        cwd=tmp_path,
        env=child_env(tmp_path),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
        preexec_fn=lower,
    )
    line = one_line_error(Result(done.returncode, done.stdout, done.stderr))
    assert "max_connections = 1000 needs 1164 open files but the limit is 256" in line
    assert "ulimit -n" in line


def test_the_help_documents_the_exit_status(tmp_path: Path) -> None:
    result = run(tmp_path, "server", "--help")
    assert result.code == 0
    assert "1 when it cannot start" in " ".join(result.out.split())
