"""``tidings chat`` as a person uses it: a real process in a pseudo-terminal, against a real
relay on loopback, with bob as a second process.

What the person sees is read from a terminal emulator (``pyte``) fed with everything the chat
wrote: the screen's text, not the escape sequences that drew it (prompt_toolkit redraws only
what changed). Nothing sleeps: the screen is read with ``select`` and a deadline until the
expected text is on it. The log itself (:class:`ChatLog`, :func:`state_text`) is tested
without a terminal at the end.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pyte

from tidings.cli.chat_log import ChatLog, Connecting, state_text
from tidings.cli.exits import Exit
from tidings.client import (
    ConnectFailed,
    Disconnected,
    MessageReceived,
    SendRefused,
    StatusChanged,
)
from tidings.client.connect import DB_NAME
from tidings.client.events import CatchingUp, Connected
from tidings.client.store import ClientStore, Direction, StoredMessage
from tidings.delivery import ContentKind, Status
from tidings.store.base import DeviceRef

from .test_cli import TIDINGS, WAIT, Proc, Server, child_env, register, run

COLS, ROWS = 120, 30


class _Screen(pyte.Screen):
    """pyte's screen, answering the program's queries (cursor position) as a terminal does."""

    def __init__(self, columns: int, lines: int, fd: int) -> None:
        super().__init__(columns, lines)
        self.fd = fd

    def write_process_input(self, data: str) -> None:
        os.write(self.fd, data.encode())


class Terminal:
    """A ``tidings`` child on a pseudo-terminal, and the screen a person would see."""

    def __init__(self, root: Path, args: Sequence[str]) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        self.stderr_path = root / "chat.stderr"
        with self.stderr_path.open("wb") as err:
            self.popen = subprocess.Popen(
                [*TIDINGS, *args],
                cwd=root,
                env=child_env(root, TERM="xterm"),
                stdin=slave,
                stdout=slave,
                stderr=err,
                start_new_session=True,
            )
        os.close(slave)
        self.fd = master
        self.screen = _Screen(COLS, ROWS, master)
        self.stream = pyte.ByteStream(self.screen)
        self.eof = False

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)

    def _read(self, left: float) -> None:
        readable, _, _ = select.select([self.fd], [], [], left)
        if not readable:
            return
        try:
            data = os.read(self.fd, 1 << 16)
        except OSError:  # EIO: the child closed the terminal
            data = b""
        if not data:
            self.eof = True
        self.stream.feed(data)

    def wait_for(self, pred: Callable[[str], bool], what: str, timeout: float = WAIT) -> str:
        """The screen's text once ``pred`` holds for it."""
        deadline = time.monotonic() + timeout
        while not pred(screen := self.text()):
            left = deadline - time.monotonic()
            if self.eof or left <= 0:
                raise AssertionError(
                    f"no {what} on the screen (eof={self.eof}):\n{screen}\n"
                    f"stderr: {self.stderr_path.read_text(errors='replace')}"
                )
            self._read(left)
        return screen

    def line_with(self, text: str, pattern: str, what: str) -> str:
        """The screen line holding ``text`` once it matches the regex ``pattern``."""
        rx = re.compile(pattern)

        def found(screen: str) -> bool:
            return any(text in line and rx.search(line) for line in screen.splitlines())

        screen = self.wait_for(found, what)
        return next(line for line in screen.splitlines() if text in line and rx.search(line))

    def type(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def finish(self, timeout: float = WAIT) -> int:
        """Read until the child closed the terminal; its exit code."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"chat did not exit:\n{self.text()}")
            self._read(left)
        code = self.popen.wait(max(0.1, deadline - time.monotonic()))
        os.close(self.fd)
        return code

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()


def _setup(tmp_path: Path, procs: list[Proc]) -> tuple[Path, Path]:
    server = Server(tmp_path, tmp_path / "data")
    procs.append(server.proc)
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    register(tmp_path, server.url, "alice", alice)
    register(tmp_path, server.url, "bob", bob)
    return alice, bob


def _converse(tmp_path: Path, chat: Terminal, bob: Path) -> None:
    """alice types, bob reads it, bob answers: what alice's chat shows on the way."""
    chat.wait_for(lambda s: "bob.1 › before the chat" in s, "the history")
    chat.wait_for(lambda s: "bob · online" in s, "the state online")
    chat.type("hello bob\r")
    mark = r"\] (…|✓ |✓✓|R ) me › hello bob"
    chat.line_with("hello bob", mark, "the sent message with a mark")
    heard = run(tmp_path, "listen", "--count", "1", "--read", "--json", "--home", str(bob))
    assert heard.code == 0, heard.err
    assert [m["body"] for m in heard.json_lines() if m["event"] == "message"] == ["hello bob"]
    chat.line_with("hello bob", r"\] (✓✓|R ) me › hello bob", "the mark ✓✓ or R")
    chat.line_with("hello bob", r"\] R  me › hello bob", "the mark R (read by bob)")
    reply = run(tmp_path, "send", "alice", "hi alice", "--home", str(bob))
    assert reply.code == 0, reply.err
    chat.wait_for(lambda s: "bob.1 › hi alice" in s, "bob's reply")


def _all_seen_and_read(alice: Path) -> None:
    with ClientStore(alice / DB_NAME) as store:
        assert store.unseen() == []
        received = [m for m in store.messages("alice:bob") if m.direction is Direction.IN]
        assert [m.body for m in received] == [b"before the chat", b"hi alice"]
        assert all(m.read_at is not None for m in received)


def test_chat_sends_shows_live_marks_and_replies_then_ctrl_d_exits_0(
    tmp_path: Path, procs: list[Proc]
) -> None:
    alice, bob = _setup(tmp_path, procs)
    early = run(tmp_path, "send", "alice", "before the chat", "--home", str(bob))
    assert early.code == 0, early.err

    chat = Terminal(tmp_path, ["chat", "bob", "--home", str(alice)])
    try:
        _converse(tmp_path, chat, bob)
        chat.type("\x04")  # Ctrl-D on the empty input line
        assert chat.finish() == Exit.OK, chat.stderr_path.read_text()
    finally:
        chat.kill()
    assert chat.stderr_path.read_text() == ""
    _all_seen_and_read(alice)
    # What chat displayed is read, so bob hears it: the receipt for "before the chat".
    trace = run(tmp_path, "history", "alice", "--json", "--home", str(bob))
    sent = [m for m in trace.json_lines() if m["direction"] == "out"]
    assert [m["body"] for m in sent] == ["before the chat", "hi alice"]


def test_chat_through_the_daemon_and_quit(tmp_path: Path, procs: list[Proc]) -> None:
    alice, bob = _setup(tmp_path, procs)
    early = run(tmp_path, "send", "alice", "before the chat", "--home", str(bob))
    assert early.code == 0, early.err
    daemon = Proc(tmp_path, "daemon", ["daemon", "--home", str(alice), "--json"])
    procs.append(daemon)
    daemon.wait_for(lambda line: line.get("event") == "connected")

    chat = Terminal(tmp_path, ["chat", "bob", "--home", str(alice)])
    try:
        _converse(tmp_path, chat, bob)
        chat.type("/quit\r")
        assert chat.finish() == Exit.OK, chat.stderr_path.read_text()
    finally:
        chat.kill()
    assert chat.stderr_path.read_text() == ""
    _all_seen_and_read(alice)


def test_chat_offline_says_so_and_ctrl_c_keeps_what_was_typed(
    tmp_path: Path, procs: list[Proc]
) -> None:
    """The relay is down: the state line says why and when it tries again; a line typed and
    Ctrl-C pressed at once (before it could be drawn) is in the outbox all the same."""
    alice, _ = _setup(tmp_path, procs)
    procs[0].kill()  # the relay
    chat = Terminal(tmp_path, ["chat", "bob", "--home", str(alice)])
    try:
        chat.wait_for(lambda s: "no messages with bob yet" in s, "the empty history")
        chat.line_with("bob · ", r"cannot reach the relay: .+; retry in [0-9.]+ s", "the state")
        chat.type("while offline\r")
        chat.line_with("while offline", r"\] …  me › while offline$", "the queued mark")
        chat.type("typed, then Ctrl-C\r\x03")
        assert chat.finish() == Exit.OK, chat.stderr_path.read_text()
    finally:
        chat.kill()
    assert "2 messages to bob not yet stored by the relay: in this device's outbox" in chat.text()
    with ClientStore(alice / DB_NAME) as store:
        queued = [store.message(item.message_id) for item in store.pending()]
        assert [m.body for m in queued if m is not None] == [
            b"while offline",
            b"typed, then Ctrl-C",
        ]


def test_chat_needs_a_terminal(tmp_path: Path) -> None:
    result = run(tmp_path, "chat", "bob", "--home", str(tmp_path / "nobody"))
    assert result.code == Exit.USAGE
    assert "chat needs a terminal" in result.err


# ---------------------------------------------------------------- the log, without a terminal

ME = DeviceRef("alice", 1)
BOB = DeviceRef("bob", 1)


def _message(
    mid: bytes, sender: DeviceRef, body: str, conversation: str = "alice:bob"
) -> StoredMessage:
    out = sender.account == "alice"
    return StoredMessage(
        mid,
        sender,
        conversation,
        1,
        body.encode(),
        1_000.0,
        Direction.OUT if out else Direction.IN,
        "bob" if out else None,
        None if out else 1_001.0,
        None,
        None,
        None,
        None,
        1,
    )


def test_state_text_phrases_each_connection_state() -> None:
    assert state_text(Connecting("ws://h:1/v1")) == "connecting to ws://h:1/v1"
    assert state_text(Connected("IK")) == "online"
    assert state_text(CatchingUp(0, 10_000, 0.0, False)) == "online, catching up 0 / 10,000"
    running = CatchingUp(3120, 10_000, 2480.0, False)
    assert state_text(running) == "online, catching up 3,120 / 10,000 (2,480/s)"
    assert state_text(CatchingUp(10_000, 10_000, 3000.0, True)) == "online"
    failed = ConnectFailed("connection refused by h:1 (is the relay running?)", 3, 4.0)
    assert state_text(failed) == (
        "cannot reach the relay: connection refused by h:1 (is the relay running?); retry in 4 s"
    )
    assert (state_text(ConnectFailed("x", 1, 0.44)) or "").endswith("retry in 0.4 s")
    assert state_text(Disconnected(1006, "")) == "disconnected: code 1006; reconnecting"
    assert state_text(Disconnected(4003, "device revoked", fatal=True)) == "stopped: device revoked"
    assert state_text(StatusChanged(b"1" * 16, BOB, Status.SENT, Status.SENT, 0.0)) is None


def test_the_log_changes_marks_in_place_and_keeps_received_for_marking() -> None:
    log = ChatLog(ME, "bob")
    mid = b"m" * 16
    log.add(_message(mid, ME, "hello"), Status.PENDING)
    log.add(_message(b"r" * 16, BOB, "hi"))
    assert log.take_unshown() == [b"r" * 16] and log.take_unshown() == []
    assert "…  me › hello" in log.lines()[0] and log.pending() == 1

    assert log.apply(StatusChanged(mid, BOB, Status.SENT, Status.SENT, 0.0))
    assert "✓  me › hello" in log.lines()[0] and log.pending() == 0
    log.apply(StatusChanged(mid, BOB, Status.READ, Status.READ, 0.0))
    assert "R  me › hello" in log.lines()[0] and len(log) == 2

    other = b"o" * 16
    log.add(_message(other, ME, "big"), Status.PENDING)
    refused = SendRefused(other, "bob", ContentKind.MESSAGE, 8, "queue full", 0.0, 60.0)
    assert log.apply(refused)
    assert "refused for now: " in log.lines()[-1] and "queue full" in log.lines()[-1]
    log.apply(SendRefused(other, "bob", ContentKind.MESSAGE, 8, "too big", 0.0, None))
    assert "!  me › big   (refused: " in log.lines()[-1]

    elsewhere = _message(b"c" * 16, DeviceRef("carol", 1), "psst", "alice:carol")
    assert log.apply(MessageReceived(_message(b"l" * 16, BOB, "two\nlines"), late=True))
    assert log.lines()[-1].endswith("bob.1 › two\n    lines   (late)")
    assert log.take_unshown() == [b"l" * 16]
    assert log.apply(MessageReceived(elsewhere))
    assert "a message from carol.1: tidings chat carol" in log.lines()[-1]
    assert log.take_unshown() == []  # left unseen for carol's chat or listen


def test_the_log_keeps_its_scrollback() -> None:
    log = ChatLog(ME, "bob", scrollback=3)
    for i in range(5):
        log.add(_message(bytes([i]) * 16, ME, f"m{i}"), Status.PENDING)
    assert len(log) == 3 and log.pending() == 3
    assert not log.apply(StatusChanged(bytes([0]) * 16, BOB, Status.SENT, Status.SENT, 0.0))
