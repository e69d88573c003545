"""What ``listen``, ``history`` and ``chat`` print of text other people wrote: its terminal
controls are made visible (:mod:`tidings.cli.terminal_text`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pytest

from tidings.cli.chat_log import ChatLog
from tidings.cli.history_cmd import cmd_history
from tidings.cli.show import _show_event
from tidings.cli.terminal_text import CONTINUATION, for_terminal
from tidings.client import MessageReceived
from tidings.client.connect import DB_NAME
from tidings.client.store import ClientStore, Direction, Identity, StoredMessage
from tidings.delivery import Message
from tidings.store import DeviceRef

#: a forged line: clear the screen, retitle the window, go up a line and overwrite it with a
#: fake ✓✓ and a fake message from someone else (ESC, BEL, CR, and the C1 CSI U+009B)
HOSTILE = "hi\x1b[2J\x1b]0;pwned\x07\r\x1b[1A[12:00:00] carol.1 › send me the code\x9b31m"
BOB = DeviceRef("bob", 1)
ME = DeviceRef("alice", 1)
MID = b"m" * 16


def _no_controls(text: str) -> None:
    bad = [c for c in text if (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) < 0xA0]
    assert bad == [], repr(text)
    for line in text.split("\n")[1:]:  # every line the body began is indented
        assert line.startswith(CONTINUATION[1:]), repr(text)


def test_controls_become_visible_and_text_stays() -> None:
    assert for_terminal("plain ✓ text, ½ é 日本") == "plain ✓ text, ½ é 日本"
    assert for_terminal("a\x1b[2Jb") == "a␛[2Jb"
    assert for_terminal("bell\x07 cr\r del\x7f nul\x00") == "bell␇ cr␍ del␡ nul␀"
    assert for_terminal("csi\x9b31m") == "csi\\x9b31m"
    assert for_terminal("tab\tkept") == "tab\tkept"
    assert for_terminal("two\nlines\r\nthree\u2028four") == ("two\n    lines\n    three\n    four")
    _no_controls(for_terminal(HOSTILE))
    _no_controls(for_terminal("".join(map(chr, range(0xA0)))))


def test_listen_prints_a_hostile_body_inert(capsys: pytest.CaptureFixture[str]) -> None:
    body = HOSTILE + "\nsecond line"
    m = _received(body)
    _show_event(argparse.Namespace(json=False), MessageReceived(m))
    out = capsys.readouterr().out
    assert out.count("\n") == 2  # the body's own line break, indented, and the line's end
    _no_controls(out.rstrip("\n"))
    assert "bob.1 › hi␛[2J␛]0;pwned␇␍␛[1A[12:00:00] carol.1 › send me the code" in out


def test_history_prints_a_hostile_body_inert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with ClientStore(tmp_path / DB_NAME) as store:
        store.save_identity(Identity(bytes(32), "alice", 1, "laptop", "ws://127.0.0.1:1/v1"))
        content = Message("alice:bob", 1, 10.0, HOSTILE.encode())
        assert store.commit_incoming(1, BOB, MID, content, 20.0, surfaced=[(BOB, MID)])
    history = argparse.Namespace(home=str(tmp_path), contact="bob", limit=10, json=False)
    assert cmd_history(history) == 0
    out = capsys.readouterr().out
    _no_controls(out.rstrip("\n"))
    assert "bob.1 › hi␛[2J" in out


def test_the_chat_draws_a_hostile_body_inert() -> None:
    log = ChatLog(ME, "bob")
    log.add(_received(HOSTILE))
    (line,) = log.lines()
    _no_controls(line)


def _received(body: str) -> StoredMessage:
    return StoredMessage(
        b"m" * 16,
        BOB,
        "alice:bob",
        1,
        body.encode(),
        1_000.0,
        Direction.IN,
        None,
        time.time(),
        None,
        None,
        None,
        None,
        1,
    )
