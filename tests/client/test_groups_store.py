"""The group tables of the client store: a group step commits all or nothing, reloads as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidings.client.store import ClientStore, Identity, OutboxRequest
from tidings.client.store._groups import GroupWrites
from tidings.delivery import ContentKind
from tidings.delivery.content_groups import group_conversation
from tidings.delivery.groups import GroupLog, OpKind
from tidings.e2e.groupcipher import SenderKeyCipher
from tidings.errors import IntegrityError
from tidings.refs import DeviceRef

ME = Identity(bytes(range(32)), "alice", 1, "laptop", "ws://relay.example:8080")
G = b"\x07" * 16
ALICE = DeviceRef("alice", 1)
BOB = DeviceRef("bob", 1)


def writes() -> tuple[GroupWrites, SenderKeyCipher]:
    log = GroupLog(G)
    op = log.author("alice", OpKind.CREATE, b"\x01" * 16, ["bob"], "team")
    log.add(op)
    cipher = SenderKeyCipher(ALICE, lambda n: b"\x05" * n)
    cipher.encrypt(G, b"x")
    cipher.given(G, BOB)
    request = OutboxRequest(b"\x09" * 16, "bob", b"c", ContentKind.GROUP_CHANGE, 1.0)
    w = GroupWrites([op], [log.state], dict(cipher.records()), {G: cipher.given_to(G)}, [request])
    return w, cipher


def test_a_group_step_reloads_as_committed(tmp_path: Path) -> None:
    with ClientStore(tmp_path / "c.db") as s:
        s.save_identity(ME)
        w, cipher = writes()
        assert s.commit_group(w, 10.0, seq=5)
        assert not s.commit_group(w, 10.0, seq=5)  # the item was handled: nothing again
    with ClientStore(tmp_path / "c.db") as s:
        assert s.group_ops() == {G: w.ops}
        assert s.group_members(G) == [("alice", True), ("bob", False)]
        records, given = s.sender_keys()
        assert records.keys() == cipher.records().keys()
        assert given == {G: {BOB}}
        assert s.cursor() == 5 and s.outbox_item(b"\x09" * 16) is not None


def test_a_failed_group_step_changes_nothing(tmp_path: Path) -> None:
    with ClientStore(tmp_path / "c.db") as s:
        s.save_identity(ME)
        w, _ = writes()
        s.enqueue(b"\x09" * 16, "bob", b"c", ContentKind.RECEIPT, 1.0)  # the id is taken
        with pytest.raises(IntegrityError):
            s.commit_group(w, 10.0, seq=5)
        assert s.group_ops() == {} and s.group_members(G) == [] and s.cursor() == 0
        assert s.sender_keys() == ({}, {})


def test_group_conversation_is_a_conversation(tmp_path: Path) -> None:
    with ClientStore(tmp_path / "c.db") as s:
        s.save_identity(ME)
        conv = group_conversation(G)
        message = s.compose_group(b"\x0a" * 16, conv, b"hi all", 3.0, lambda m: GroupWrites())
        assert message.counter == 1
        assert [c.conversation for c in s.conversations()] == [conv]
        assert [m.body for m in s.search("hi")] == [b"hi all"]
