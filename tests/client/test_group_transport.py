"""The pairwise fallback of the group transport: one GROUP_MESSAGE per member account, under
ids derived from the message id (pinned: docs/protocol.md §13)."""

from __future__ import annotations

from tidings.client.group_transport import GroupSend, PairwiseFallback, copy_id
from tidings.delivery import ContentKind, parse_content
from tidings.delivery.content_groups import GroupMessage
from tidings.refs import DeviceRef

G, MID = b"\x07" * 16, b"\x22" * 16


def test_one_copy_per_account_under_derived_ids() -> None:
    devices = (DeviceRef("bob", 1), DeviceRef("bob", 2), DeviceRef("alice", 2))
    requests = PairwiseFallback().queue(GroupSend(G, MID, b"shared", devices), 5.0)
    assert [r.recipient for r in requests] == ["alice", "bob"]
    assert [r.message_id for r in requests] == [copy_id(MID, "alice"), copy_id(MID, "bob")]
    for r in requests:
        assert r.kind is ContentKind.GROUP_MESSAGE and r.created_at == 5.0
        assert parse_content(r.content) == GroupMessage(G, MID, b"shared")


def test_copy_id_known_answer() -> None:
    assert copy_id(MID, "bob").hex() == "c7c0b97cb10f76c62db3b7035a7fbb31"
    assert copy_id(MID, "bob") != copy_id(MID, "bo") != copy_id(b"\x23" * 16, "bob")
