"""The ``tidings`` command as a user runs it: real processes, the README's Usage section.

Every test runs ``python -m tidings`` as a child process with ``--home`` (and ``--data-dir``)
under ``tmp_path``, in an environment without ``TIDINGS_*`` variables and with ``HOME`` pointing
into ``tmp_path``: nothing depends on the user's home or shell. Nothing sleeps (CONVENTIONS §11):
long-running children (``server``, ``listen``) are followed line by line with ``select`` and a
deadline, one-shot commands are run to completion with a timeout.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from tidings.cli.link_cmd import terminal_qr
from tidings.cli.main import main
from tidings.client.connect import DB_NAME
from tidings.client.store import ClientStore

pytestmark = [pytest.mark.proc, pytest.mark.slow]

#: The command, run from this interpreter (the installed package, not the user's PATH).
TIDINGS = [sys.executable, "-m", "tidings"]

#: Deadline of one wait: generous; a healthy run needs a fraction of it.
WAIT = 20.0

SUBCOMMANDS = (
    "server",
    "register",
    "link-code",
    "link",
    "send",
    "listen",
    "daemon",
    "conversations",
    "history",
    "search",
    "timer",
    "chat",
    "safety-number",
    "read-receipts",
    "config",
    "relays",
    "trace",
    "push",
    "push-listen",
    "demo",
)


def child_env(root: Path, **extra: str) -> dict[str, str]:
    """This environment without ``TIDINGS_*`` (the relay refuses unknown ones), ``HOME`` moved
    into ``root`` so no default path can reach the user's files, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    home = root / "user-home"
    home.mkdir(exist_ok=True)
    env["HOME"] = str(home)
    env.update(extra)
    return env


@dataclass
class Result:
    """A finished one-shot command."""

    code: int
    out: str
    err: str

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


def run(root: Path, *args: str, timeout: float = WAIT, **env: str) -> Result:
    """Run ``tidings ARGS`` to completion in ``root``."""
    done = subprocess.run(
        [*TIDINGS, *args],
        cwd=root,
        env=child_env(root, **env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def ok(root: Path, *args: str) -> Result:
    """Run ``tidings ARGS`` and require exit 0."""
    result = run(root, *args)
    assert result.code == 0, f"tidings {' '.join(args)} → {result.code}: {result.err}"
    return result


def one_line(err: str) -> str:
    """The single ``tidings: …`` line a failing command printed on stderr (no traceback)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err[-3000:]
    assert lines[0].startswith("tidings: "), lines[0]
    return lines[0]


def one_line_error(result: Result) -> str:
    """The single stderr line of a command that failed with exit 1."""
    assert result.code == 1, (result.code, result.out, result.err)
    return one_line(result.err)


class Proc:
    """A long-running ``tidings`` child whose stdout is JSON lines, read with deadlines."""

    def __init__(self, root: Path, name: str, args: Sequence[str]) -> None:
        self.name = name
        self.stderr_path = root / f"{name}.stderr"
        with self.stderr_path.open("wb") as err:
            self.popen = subprocess.Popen(
                [*TIDINGS, *args],
                cwd=root,
                env=child_env(root),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        assert self.popen.stdout is not None
        self._out: IO[bytes] = self.popen.stdout
        self._buf = b""
        self.lines: list[dict[str, Any]] = []
        self.eof = False

    def _read(self) -> None:
        data = os.read(self._out.fileno(), 1 << 16)
        if not data:
            self.eof = True
            if self._buf.strip():
                self.lines.append(json.loads(self._buf))
            self._buf = b""
            return
        *complete, self._buf = (self._buf + data).split(b"\n")
        self.lines.extend(json.loads(raw) for raw in complete if raw.strip())

    def wait_for(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = WAIT
    ) -> dict[str, Any]:
        """The first line (already read or still to come) matching ``pred``."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for line in self.lines[seen:]:
                if pred(line):
                    return line
            seen = len(self.lines)
            left = deadline - time.monotonic()
            if self.eof or left <= 0:
                raise AssertionError(
                    f"{self.name}: no matching line (eof={self.eof}); got {self.lines}; "
                    f"stderr: {self.stderr()}"
                )
            readable, _, _ = select.select([self._out], [], [], left)
            if readable:
                self._read()

    def finish(self, timeout: float = WAIT) -> int:
        """Read to EOF and reap; returns the exit code."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name} did not exit; got {self.lines}")
            readable, _, _ = select.select([self._out], [], [], left)
            if readable:
                self._read()
        return self.popen.wait(max(0.1, deadline - time.monotonic()))

    def signal(self, sig: signal.Signals, timeout: float = WAIT) -> int:
        """Send ``sig`` and wait for the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        return self.finish(timeout)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()
        self._out.close()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


class Server:
    """``tidings server --json`` on a data directory; :attr:`ready` is its first line."""

    def __init__(
        self, root: Path, data_dir: Path, port: int = 0, name: str = "server", *extra: str
    ) -> None:
        self.proc = Proc(
            root,
            name,
            [
                "server",
                "--data-dir",
                str(data_dir),
                "--port",
                str(port),
                "--metrics-port",
                "0",
                "--log-level",
                "warning",
                "--json",
                *extra,
            ],
        )
        self.ready = self.proc.wait_for(lambda line: line.get("event") == "listening")
        self.url: str = self.ready["url"]
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])

    def stop(self) -> int:
        return self.proc.signal(signal.SIGTERM)


@dataclass
class Relay:
    """A running relay shared by a module's tests, with alice and bob registered."""

    root: Path
    server: Server
    alice: Path
    bob: Path

    @property
    def url(self) -> str:
        return self.server.url


def register(root: Path, url: str, account: str, home: Path, *extra: str) -> dict[str, Any]:
    result = ok(root, "register", account, "--server", url, "--home", str(home), "--json", *extra)
    (line,) = result.json_lines()
    return line


def points(root: Path, home: Path, mid: str) -> list[str]:
    trace = ok(root, "trace", mid, "--home", str(home), "--json").json_lines()
    assert len(trace) == 1 and trace[0]["message_id"] == mid
    return [p["point"] for p in trace[0]["points"]]


def trace_status(root: Path, home: Path, mid: str) -> str:
    (trace,) = ok(root, "trace", mid, "--home", str(home), "--json").json_lines()
    status: str = trace["status"]
    return status


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    root = tmp_path_factory.mktemp("relay")
    server = Server(root, root / "data")
    try:
        alice, bob = root / "alice", root / "bob"
        assert register(root, server.url, "alice", alice)["device_id"] == 1
        assert register(root, server.url, "bob", bob)["device_id"] == 1
        yield Relay(root, server, alice, bob)
        assert server.stop() == 0
    finally:
        server.proc.kill()


# ------------------------------------------------------------------------------- server


def test_server_prints_ready_json_stops_on_sigterm_and_keeps_its_key(
    tmp_path: Path, procs: list[Proc]
) -> None:
    data = tmp_path / "data"
    first = Server(tmp_path, data, name="first")
    procs.append(first.proc)
    assert first.url.startswith("ws://127.0.0.1:") and first.url.endswith("/v1")
    assert first.port > 0
    assert len(bytes.fromhex(first.ready["key"])) == 32
    assert first.ready["fingerprint"]
    assert first.ready["metrics"] is None  # --metrics-port 0 turns it off
    assert first.ready["pid"] == first.proc.popen.pid
    # A request it answered proves its event loop runs (a SIGTERM sent at once after the
    # ready line is tested below).
    register(tmp_path, first.url, "alice", tmp_path / "alice")
    assert first.stop() == 0
    assert (data / "server.key").exists()

    second = Server(tmp_path, data, name="second")
    procs.append(second.proc)
    assert second.ready["fingerprint"] == first.ready["fingerprint"]
    assert second.ready["key"] == first.ready["key"]
    # Same data too: alice is still registered. (The device pinned the key at registration,
    # so this also fails loudly if the key changed.)
    again = run(
        tmp_path, "register", "alice", "--server", second.url, "--home", str(tmp_path / "again")
    )
    assert "account exists" in one_line_error(again)
    assert second.stop() == 0


def test_server_sigterm_right_after_startup_is_graceful(tmp_path: Path) -> None:
    """Deterministic version of the race: stdout is a full pipe, so the ready line's write
    blocks; SIGTERM goes once the relay logged that it listens (it is up and announcing)."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        while True:
            os.write(write_end, b"\n" * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(write_end, True)
    argv = ["server", "--data-dir", str(tmp_path / "data"), "--port", "0", "--metrics-port", "0"]
    popen = subprocess.Popen(
        [*TIDINGS, *argv, "--json"],
        cwd=tmp_path,
        env=child_env(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=write_end,
        stderr=subprocess.PIPE,
    )
    os.close(write_end)
    try:
        assert popen.stderr is not None
        err = b""
        deadline = time.monotonic() + WAIT
        while b"listening on" not in err:
            left = deadline - time.monotonic()
            assert left > 0, err
            if select.select([popen.stderr], [], [], left)[0]:
                chunk = os.read(popen.stderr.fileno(), 1 << 16)
                assert chunk, err
                err += chunk
        popen.send_signal(signal.SIGTERM)
        out = b""
        while chunk := os.read(read_end, 1 << 16):
            out += chunk
        popen.communicate(timeout=WAIT)
        assert b'"event": "listening"' in out
        assert popen.returncode == 0
    finally:
        os.close(read_end)
        if popen.poll() is None:
            popen.kill()
            popen.wait()


def test_server_refuses_unknown_tidings_variable(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        "server",
        "--data-dir",
        str(tmp_path / "data"),
        "--port",
        "0",
        "--metrics-port",
        "0",
        TIDINGS_PORTT="1",
    )
    line = one_line_error(result)
    assert "TIDINGS_PORTT" in line
    assert "TIDINGS_PORT?" in line  # the suggestion
    assert not (tmp_path / "data").exists()  # refused before touching anything


# ------------------------------------------------------------------------------- register


def test_register_same_account_twice_is_refused(relay: Relay, tmp_path: Path) -> None:
    result = run(
        tmp_path, "register", "alice", "--server", relay.url, "--home", str(tmp_path / "again")
    )
    line = one_line_error(result)
    assert "refused by the server" in line
    assert "account exists" in line


def test_register_with_a_bad_server_url_fails(tmp_path: Path) -> None:
    url = "http://127.0.0.1:7400/v1"
    result = run(tmp_path, "register", "alice", "--server", url, "--home", str(tmp_path / "h"))
    line = one_line_error(result)
    assert "must look like ws://host:port/v1" in line
    assert url in line


def test_link_code_adds_a_second_device(relay: Relay, tmp_path: Path) -> None:
    # An account of its own, so the other tests' alice keeps a single device.
    first, second = tmp_path / "phone", tmp_path / "laptop"
    assert register(tmp_path, relay.url, "linda", first)["device_id"] == 1
    (code,) = ok(tmp_path, "link-code", "--home", str(first), "--json").json_lines()
    assert len(bytes.fromhex(code["code"])) > 0
    assert code["expires_at"] > time.time()
    line = register(tmp_path, relay.url, "linda", second, "--link-code", code["code"])
    assert line == {"account": "linda", "device_id": 2, "home": str(second)}
    # One use only.
    again = run(
        tmp_path,
        "register",
        "linda",
        "--server",
        relay.url,
        "--home",
        str(tmp_path / "third"),
        "--link-code",
        code["code"],
    )
    assert "refused by the server" in one_line_error(again)

    # `tidings link`: the same code, also as a QR code in the terminal
    shown = ok(tmp_path, "link", "--home", str(first)).out
    code_line = next(x for x in shown.splitlines() if x.startswith("link code: "))
    hex_code = code_line.removeprefix("link code: ")
    assert shown.startswith(terminal_qr(hex_code) + "\n"), shown
    assert "▀" in shown and "█" in shown
    plain = ok(tmp_path, "link", "--no-qr", "--home", str(first)).out
    assert plain.startswith("link code: ")
    assert len(bytes.fromhex(hex_code)) == len(bytes.fromhex(code["code"]))  # a fresh one
    assert hex_code != code["code"]


# ------------------------------------------------------------------------------- send, listen


def test_send_listen_read_and_trace(relay: Relay, procs: list[Proc]) -> None:
    root = relay.root
    bob = Proc(root, "bob-listen", ["listen", "--read", "--json", "--home", str(relay.bob)])
    procs.append(bob)
    bob.wait_for(lambda line: line.get("event") == "connected")

    sent = ok(
        root, "send", "bob", "hi", "--wait", "delivered", "--json", "--home", str(relay.alice)
    )
    lines = sent.json_lines()
    assert lines[0]["event"] == "queued"
    mid = lines[0]["message_id"]
    statuses = [line["status"] for line in lines[1:]]
    assert all(line["event"] == "status" and line["message_id"] == mid for line in lines[1:])
    assert "sent" in statuses
    assert statuses[-1] == "delivered"
    assert lines[-1]["device"] == "bob.1"

    message = bob.wait_for(lambda line: line.get("event") == "message")
    assert message["message_id"] == mid
    assert message["body"] == "hi"
    assert message["from"] == "alice.1"

    names = points(root, relay.alice, mid)
    for point in ("composed", "written", "sent", "delivered:bob.1"):
        assert point in names, names
    assert names.index("composed") < names.index("sent") < names.index("delivered:bob.1")

    # Bob's device sends the read receipt right after the delivered one: the send process above
    # may have committed it before exiting (then it is in alice's store already). Otherwise it
    # waits at the relay, and alice's listener shows it as it arrives.
    if "read:bob.1" not in points(root, relay.alice, mid):
        alice = Proc(root, "alice-listen", ["listen", "--json", "--home", str(relay.alice)])
        procs.append(alice)
        read = alice.wait_for(lambda line: line.get("status") == "read")
        assert read["message_id"] == mid
        assert read["device"] == "bob.1"
        assert alice.signal(signal.SIGINT) == 0
    assert bob.signal(signal.SIGINT) == 0

    assert "read:bob.1" in points(root, relay.alice, mid)
    assert trace_status(root, relay.alice, mid) == "read"


def test_safety_numbers_match_and_can_be_verified(relay: Relay, procs: list[Proc]) -> None:
    root = relay.root
    bob = Proc(root, "bob-sn", ["listen", "--count", "1", "--json", "--home", str(relay.bob)])
    procs.append(bob)
    bob.wait_for(lambda line: line.get("event") == "connected")
    ok(root, "send", "bob", "compare", "--wait", "delivered", "--home", str(relay.alice))
    bob.wait_for(lambda line: line.get("event") == "message")
    mine = ok(root, "safety-number", "bob", "--json", "--home", str(relay.alice)).json_lines()
    theirs = ok(root, "safety-number", "alice", "--json", "--home", str(relay.bob)).json_lines()
    number = mine[0]["safety_number"]
    assert len(number) == 60 and number == theirs[0]["safety_number"]
    assert mine[0]["verified"] is False and mine[0]["their_devices"] == [1]

    wrong = run(root, "safety-number", "bob", "--verify", "1" * 60, "--home", str(relay.alice))
    assert wrong.code == 1 and "not verified" in wrong.out
    spaced = " ".join(number[i : i + 5] for i in range(0, 60, 5))  # as displayed
    text = ok(root, "safety-number", "bob", "--verify", spaced, "--home", str(relay.alice))
    assert "✓ verified" in text.out
    shown = ok(root, "safety-number", "bob", "--json", "--home", str(relay.alice)).json_lines()
    assert shown[0]["verified"] is True
    unknown = run(root, "safety-number", "nobody", "--home", str(relay.alice))
    assert unknown.code != 0 and "no session with nobody" in unknown.err


def test_listen_count_read_sends_its_receipts_before_exiting(
    relay: Relay, tmp_path: Path, procs: list[Proc]
) -> None:
    root = relay.root
    home = tmp_path / "ruth"
    register(root, relay.url, "ruth", home)
    ruth = Proc(
        root, "ruth-listen", ["listen", "--count", "1", "--read", "--json", "--home", str(home)]
    )
    procs.append(ruth)
    ruth.wait_for(lambda line: line.get("event") == "connected")
    sent = ok(
        root, "send", "ruth", "hey", "--wait", "delivered", "--json", "--home", str(relay.alice)
    )
    mid = sent.json_lines()[0]["message_id"]
    assert ruth.wait_for(lambda line: line.get("event") == "message")["message_id"] == mid
    assert ruth.finish() == 0
    # What the device still has to send (its delivered and read receipts) after it said it is done:
    # until it next connects, alice never sees "read".
    with ClientStore(home / DB_NAME) as store:
        assert store.outbox_size() == 0


def test_one_process_per_device_home(relay: Relay, tmp_path: Path, procs: list[Proc]) -> None:
    """``listen`` holds its home: a ``send`` on the same home fails at once (exit 7) instead of
    running a second copy of the device's sessions; once the listener is gone — stopped, or
    killed with SIGKILL (the kernel drops the lock) — the same send works."""
    root = relay.root
    home = tmp_path / "lena"
    register(root, relay.url, "lena", home)
    listener = Proc(root, "lena-listen", ["listen", "--json", "--home", str(home)])
    procs.append(listener)
    listener.wait_for(lambda line: line.get("event") == "connected")

    busy = run(root, "send", "bob", "from lena", "--home", str(home), timeout=5.0)
    assert busy.code == 7, busy
    assert busy.err == (
        f"tidings: device {home} is in use by process {listener.popen.pid} (tidings listen); "
        "stop it first\n"
    )
    assert busy.out == ""  # nothing was queued
    listen_too = run(root, "listen", "--home", str(home), "--timeout", "1", timeout=5.0)
    assert listen_too.code == 7, listen_too
    assert listener.signal(signal.SIGINT) == 0

    sent = ok(root, "send", "bob", "from lena", "--home", str(home))
    assert sent.out.startswith("queued ")

    killed = Proc(root, "lena-listen-2", ["listen", "--json", "--home", str(home)])
    procs.append(killed)
    killed.wait_for(lambda line: line.get("event") == "connected")
    assert run(root, "send", "bob", "again", "--home", str(home), timeout=5.0).code == 7
    killed.popen.kill()  # SIGKILL: no cleanup in the process; the kernel releases the lock
    killed.popen.wait()
    ok(root, "send", "bob", "after kill -9", "--home", str(home))


def test_trace_refuses_a_bad_id(relay: Relay) -> None:
    result = run(relay.root, "trace", "not-hex!", "--home", str(relay.alice))
    assert result.code == 2, result  # a usage error
    assert "'not-hex!' is not a message id" in result.err.splitlines()[-1]


def test_trace_takes_the_id_as_the_status_lines_print_it(relay: Relay) -> None:
    sent = ok(relay.root, "send", "bob", "by its prefix", "--home", str(relay.alice))
    queued, status = sent.out.splitlines()[:2]
    mid = queued.removeprefix("queued ")
    (shown,) = re.findall(r"[0-9a-f]{12}…", status)
    assert mid.startswith(shown[:-1])
    for form in (shown, shown[:-1], shown[:8], shown.upper()):
        traced = ok(relay.root, "trace", form, "--home", str(relay.alice))
        assert traced.out.startswith(f"message {mid}  status"), (form, traced.out)


def test_trace_of_an_unknown_message_fails(relay: Relay) -> None:
    unknown = "00" * 16
    result = run(relay.root, "trace", unknown, "--home", str(relay.alice))
    assert f"no message {unknown}" in one_line_error(result)


def test_send_while_the_server_is_down_stays_queued_then_flushes(
    tmp_path: Path, procs: list[Proc]
) -> None:
    data = tmp_path / "data"
    server = Server(tmp_path, data, name="up")
    procs.append(server.proc)
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    register(tmp_path, server.url, "alice", alice)
    register(tmp_path, server.url, "bob", bob)
    assert server.stop() == 0

    down = run(
        tmp_path, "send", "bob", "first", "--wait", "sent", "--timeout", "1", "--json",
        "--home", str(alice),
    )  # fmt: skip
    assert down.code == 3, down.err
    lines = down.json_lines()
    assert lines[0]["event"] == "queued"
    first = lines[0]["message_id"]
    refused = f"connection refused by 127.0.0.1:{server.port} (is the relay running?)"
    assert lines[1]["event"] == "connect-failed" and lines[1]["reason"] == refused
    assert lines[1]["attempt"] == 1 and 0 <= lines[1]["retry_in"] <= 0.5
    assert lines[-1] == {
        "event": "timeout",
        "wanted": "sent",
        "message_id": first,
        "status": "pending",
        "in_outbox": True,
        "devices": {},
        "unreachable": refused,
    }
    text = run(tmp_path, "send", "bob", "text", "--timeout", "1", "--home", str(alice))
    assert text.code == 3
    assert text.out.splitlines()[1].startswith(f"! cannot reach the relay: {refused}; trying")
    assert text.out.splitlines()[-1] == (
        "timed out after 1 s waiting for ✓ sent: … still only in this device's outbox (the "
        f"relay was not reached: {refused}); it goes out the next time this device connects"
    )
    assert trace_status(tmp_path, alice, first) == "pending"
    assert "sent" not in points(tmp_path, alice, first)

    again = Server(tmp_path, data, port=server.port, name="again")
    procs.append(again.proc)
    assert again.url == server.url
    second = ok(tmp_path, "send", "bob", "second", "--wait", "sent", "--json", "--home", str(alice))
    assert second.json_lines()[-1]["status"] == "sent"
    assert "sent" in points(tmp_path, alice, first)
    assert trace_status(tmp_path, alice, first) in ("sent", "delivered", "read")
    assert again.stop() == 0


def test_read_receipts_off_means_no_read_status(relay: Relay, procs: list[Proc]) -> None:
    root = relay.root
    carol, dave = root / "carol", root / "dave"
    register(root, relay.url, "carol", carol)
    register(root, relay.url, "dave", dave)
    off = ok(root, "read-receipts", "off", "--home", str(dave), "--json")
    assert off.json_lines() == [{"read_receipts": False}]

    listener = Proc(
        root, "dave-listen", ["listen", "--count", "2", "--read", "--json", "--home", str(dave)]
    )
    procs.append(listener)
    listener.wait_for(lambda line: line.get("event") == "connected")

    first = ok(root, "send", "dave", "one", "--wait", "delivered", "--json", "--home", str(carol))
    first_id = first.json_lines()[0]["message_id"]
    listener.wait_for(lambda line: line.get("message_id") == first_id)
    # Dave's device marked "one" read (--read) before "two" reaches it: a read receipt, if it
    # sent one, would travel ahead of two's delivered receipt on carol's queue.
    second = ok(root, "send", "dave", "two", "--wait", "delivered", "--json", "--home", str(carol))
    assert second.json_lines()[-1]["status"] == "delivered"
    assert listener.finish() == 0

    names = points(root, carol, first_id)
    assert "delivered:dave.1" in names
    assert not any(name.startswith("read") for name in names), names
    assert trace_status(root, carol, first_id) == "delivered"


# ------------------------------------------------------------------------------- demo, help


def test_demo_runs_and_prints_the_trace(tmp_path: Path) -> None:
    result = run(tmp_path, "demo", "--messages", "1", "--read-delay", "0")
    assert result.code == 0, result.err
    assert "trace of the first message" in result.out
    tail = result.out.split("trace of the first message", 1)[1]
    for point in ("composed", "sent", "delivered:bob.1", "read:bob.1"):
        assert point in tail, result.out


def test_help_of_every_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # One real process (the entry point, its imports); each command's help in this process,
    # through the same main() (40 process starts took ~30 s of the suite's two cores).
    done = subprocess.run(
        [*TIDINGS, "--help"], cwd=tmp_path, env=child_env(tmp_path), capture_output=True,
        text=True, timeout=3 * WAIT, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.startswith("usage: tidings"), done.stderr
    for sub in SUBCOMMANDS:
        with pytest.raises(SystemExit) as exited:
            main([sub, "--help"])
        out = capsys.readouterr().out
        assert exited.value.code == 0, sub
        assert out.startswith(f"usage: tidings {sub}"), (sub, out)


def test_usage_error_exits_2(tmp_path: Path) -> None:
    assert run(tmp_path, "send", "bob").code == 2
    assert run(tmp_path, "no-such-command").code == 2
