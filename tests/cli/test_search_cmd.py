"""``tidings search``: what it prints and refuses (in-process, on a real store)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from tidings.cli.exits import Exit
from tidings.cli.history_cmd import cmd_search
from tidings.client.connect import DB_NAME
from tidings.client.store import ClientStore, Identity
from tidings.delivery import Message
from tidings.refs import DeviceRef

BOB, CAROL = DeviceRef("bob", 1), DeviceRef("carol", 1)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    with ClientStore(tmp_path / DB_NAME) as store:
        store.save_identity(Identity(bytes(32), "alice", 1, "laptop", "ws://127.0.0.1:1/v1"))
        for seq, (who, conv, body) in enumerate(
            [
                (BOB, "alice:bob", "climbing at nine\x1b[2J"),
                (CAROL, "alice:carol", "Climbing shoes?"),
                (BOB, "alice:bob", "unrelated"),
            ],
            1,
        ):
            mid = seq.to_bytes(16, "big")
            content = Message(conv, 1, 10.0 + seq, body.encode())
            assert store.commit_incoming(seq, who, mid, content, 20.0 + seq, surfaced=[(who, mid)])
    return tmp_path


def run(home: Path, *words: str, contact: str | None = None, json_: bool = False) -> int:
    ns = argparse.Namespace(
        home=str(home), words=list(words), contact=contact, limit=50, json=json_
    )
    return cmd_search(ns)


def test_it_finds_across_chats_newest_first_and_prints_bodies_inert(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(home, "climb") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert "[alice:carol]" in lines[0] and "carol.1 › Climbing shoes?" in lines[0]
    assert "[alice:bob]" in lines[1] and "bob.1 › climbing at nine␛[2J" in lines[1]
    assert run(home, "climb", contact="bob") == 0
    (only,) = capsys.readouterr().out.splitlines()
    assert "bob.1 › climbing" in only and "[alice:bob]" not in only
    assert run(home, "climbing", "shoes", json_=True) == 0
    (obj,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert obj["from"] == "carol.1" and obj["body"] == "Climbing shoes?"
    assert run(home, "kayak") == 0
    assert capsys.readouterr().out == "no messages with 'kayak'\n"


def test_too_long_a_search_is_refused(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(home, "x" * 300) == Exit.USAGE
    assert "at most 256 characters" in capsys.readouterr().err
