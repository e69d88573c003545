"""What ``tidings listen`` and ``tidings trace`` print for refusals and skipped gaps (in process:
the printing functions, fed events and a store; test_cli.py runs the real commands)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytest

from tidings.cli import client_cmds
from tidings.cli.common import _ts
from tidings.cli.show import _show_event
from tidings.cli.trace_cmd import cmd_trace
from tidings.client import GapSkipped, SendRefused
from tidings.client.connect import DB_NAME
from tidings.client.store import ClientStore, Identity
from tidings.delivery import ContentKind, Message, SkipReason
from tidings.store import DeviceRef

MID = bytes.fromhex("3fa2c1d0e9b8a7f6e5d4c3b2a1908f7e")
AT = time.mktime((2030, 1, 2, 12, 0, 0, 0, 0, -1))
REASON = "queue of bob.2 is full (10000 items)"


def args(json_output: bool = False, **more: object) -> argparse.Namespace:
    return argparse.Namespace(json=json_output, **more)


def test_listen_prints_a_refusal_that_will_be_retried(capsys: pytest.CaptureFixture[str]) -> None:
    event = SendRefused(MID, "bob", ContentKind.MESSAGE, 10, REASON, AT, AT + 5.0)
    _show_event(args(), event)
    line = capsys.readouterr().out.strip()
    assert line == (
        f"[{_ts(AT)}] …  3fa2c1d0e9b8… to bob refused by the relay: QUEUE_FULL ({REASON}); "
        f"retry at {_ts(AT + 5.0)}"
    )
    _show_event(args(json_output=True), event)
    assert json.loads(capsys.readouterr().out) == {
        "event": "refused",
        "message_id": MID.hex(),
        "recipient": "bob",
        "kind": "message",
        "code": 10,
        "code_name": "QUEUE_FULL",
        "reason": REASON,
        "at": AT,
        "retry_at": AT + 5.0,
        "final": False,
    }


def test_listen_prints_a_final_refusal_and_what_it_was(capsys: pytest.CaptureFixture[str]) -> None:
    event = SendRefused(MID, "bob", ContentKind.RECEIPT, 999, "new code", AT, None)
    _show_event(args(), event)
    assert capsys.readouterr().out.strip() == (
        f"[{_ts(AT)}] !  3fa2c1d0e9b8… to bob (receipt) refused by the relay: CODE_999 "
        "(new code); failed for good"
    )


def test_listen_says_why_a_gap_was_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    event = GapSkipped("alice:bob", DeviceRef("alice", 1), range(4, 6), SkipReason.EXPIRED)
    _show_event(args(), event)
    assert capsys.readouterr().out.strip() == (
        "! gap-skipped: alice.1 messages 4..5 missing in alice:bob "
        "(they expired on the relay before this device fetched them)"
    )
    _show_event(args(json_output=True), event)
    assert json.loads(capsys.readouterr().out)["reason"] == "expired"


def test_trace_shows_the_refusals_of_a_waiting_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with ClientStore(tmp_path / DB_NAME) as store:
        store.save_identity(Identity(bytes(32), "alice", 1, "laptop", "ws://127.0.0.1:1/v1"))
        store.compose(MID, "bob", "alice:bob", b"hi", AT)
        detail = f"{REASON}; retry in 5.0 s"
        store.set_attempt(MID, 1, AT + 5.1, [("written", AT + 0.05, None)])
        store.add_trace(MID, "refused:QUEUE_FULL", AT + 0.1, detail)
    assert cmd_trace(args(message_id=MID.hex(), home=str(tmp_path))) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        f"message {MID.hex()}  status … pending  "
        "(still in the outbox: last refused QUEUE_FULL, retrying)"
    )
    assert out[-2].endswith(f"refused:QUEUE_FULL  ({detail})")
    assert cmd_trace(args(True, message_id=MID.hex(), home=str(tmp_path))) == 0
    points = json.loads(capsys.readouterr().out)["points"]
    assert points[-1] == {"point": "refused:QUEUE_FULL", "at": AT + 0.1, "detail": detail}


def test_listen_shows_every_unseen_message_not_only_the_first_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """More unseen messages than one page (1,000; 2 here): ``listen`` shows them all, oldest
    first, before it connects, and marks them seen.

    Guards against a regression of ``listen`` showing only the first 1,000 of a daemon's
    catch-up and then waiting for new messages, the rest hidden (found by
    tests/proc/test_daemon_procs.py: 4,000 of 5,000 left unseen)."""
    monkeypatch.setattr(client_cmds, "UNSEEN_FIRST", 2)
    bob = DeviceRef("bob", 1)
    with ClientStore(tmp_path / DB_NAME) as store:
        store.save_identity(Identity(bytes(32), "alice", 1, "laptop", "ws://127.0.0.1:1/v1"))
        for counter in range(1, 6):
            mid = bytes([counter]) * 16
            content = Message("alice:bob", counter, 10.0, b"m%d" % counter)
            assert store.commit_incoming(counter, bob, mid, content, 20.0, surfaced=[(bob, mid)])
    # --timeout: were the last three not shown first, listen would wait for them from the relay
    listen = args(True, home=str(tmp_path), command="listen", read=False, count=5, timeout=10.0)
    assert client_cmds.cmd_listen(listen) == 0
    shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [m["counter"] for m in shown] == [1, 2, 3, 4, 5]
    with ClientStore(tmp_path / DB_NAME) as store:
        assert store.unseen() == []


def test_listen_says_which_group_and_whose_copy_a_message_is(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tidings.client import MessageReceived
    from tidings.client.store import Direction, StoredMessage

    def line(conversation: str, sender: DeviceRef, recipient: str | None) -> str:
        m = StoredMessage(MID, sender, conversation, 1, b"rope at 9", AT, Direction.IN,
                          recipient, AT, None, None, None, None, 1)  # fmt: skip
        _show_event(args(), MessageReceived(m))
        return capsys.readouterr().out.strip()

    group = "group:" + "a5" * 16
    assert line(group, DeviceRef("alice", 1), None).endswith("] alice.1 › @a5a5a5a5a5a5: rope at 9")
    assert line("alice:bob", DeviceRef("bob", 1), "alice").endswith(
        "] me (bob.1) › to alice: rope at 9"
    )
    assert line("alice:bob", DeviceRef("alice", 1), None).endswith("] alice.1 › rope at 9")
