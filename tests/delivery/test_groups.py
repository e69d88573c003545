"""Group membership as a replicated log (tidings.delivery.groups): the rules of the replay,
and that every device with the same changes computes the same group, whatever their order."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.delivery.groups import (
    MAX_MEMBERS,
    MAX_NAME,
    GroupError,
    GroupLog,
    GroupOp,
    OpKind,
    replay,
)

G = bytes(range(16))


def oid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def op(n: int, lamport: int, author: str, kind: OpKind, *targets: str, name: str = "") -> GroupOp:
    return GroupOp(G, oid(n), lamport, author, kind, targets, name)


def test_create_add_rename_leave_and_who_may_do_what() -> None:
    log = GroupLog(G)
    log.add(op(1, 1, "alice", OpKind.CREATE, "bob", name="climbing"))
    s = log.state
    assert s.exists and s.name == "climbing"
    assert s.members == {"alice", "bob"} and s.admins == {"alice"}
    log.add(op(2, 2, "bob", OpKind.ADD, "mallory"))  # bob is no admin
    log.add(op(3, 2, "alice", OpKind.ADD, "carol"))
    log.add(op(4, 3, "bob", OpKind.RENAME, name="climbing club"))  # any member renames
    log.add(op(5, 3, "eve", OpKind.RENAME, name="eve's"))  # not a member
    s = log.state
    assert s.members == {"alice", "bob", "carol"} and s.name == "climbing club"
    reasons = {o.op.op_id: o.reason for o in s.history if not o.applied}
    assert reasons == {oid(2): "bob is not an admin", oid(5): "eve is not a member"}
    log.add(op(6, 4, "carol", OpKind.LEAVE))
    log.add(op(7, 5, "carol", OpKind.RENAME, name="back"))  # after leaving: no effect
    assert log.state.members == {"alice", "bob"} and log.state.name == "climbing club"


def test_the_group_always_keeps_an_admin() -> None:
    log = GroupLog(G, [op(1, 1, "alice", OpKind.CREATE, "dave", "bob")])
    log.add(op(2, 2, "alice", OpKind.DEMOTE, "alice"))
    assert log.state.admins == {"alice"}  # the last admin cannot be demoted
    log.add(op(3, 3, "alice", OpKind.LEAVE))
    assert log.state.admins == {"bob"}  # the member whose account sorts first takes over
    log.add(op(4, 4, "bob", OpKind.PROMOTE, "dave"))
    log.add(op(5, 5, "bob", OpKind.PROMOTE, "zed"))  # not a member
    log.add(op(6, 6, "dave", OpKind.REMOVE, "bob"))
    s = log.state
    assert s.members == {"dave"} and s.admins == {"dave"}
    assert [o.applied for o in s.history][-2:] == [False, True]


def test_only_the_first_create_counts_and_nothing_before_it() -> None:
    ops = [
        op(1, 5, "mallory", OpKind.CREATE, "alice", name="hijack"),
        op(2, 3, "alice", OpKind.CREATE, "bob", name="real"),
        op(3, 1, "bob", OpKind.ADD, "carol"),
    ]
    s = replay(G, ops)
    assert s.name == "real" and s.members == {"alice", "bob"}
    assert [o.applied for o in s.history] == [False, True, False]
    assert replay(G, []).exists is False


def test_concurrent_changes_resolve_the_same_way_on_every_device() -> None:
    base = [op(1, 1, "alice", OpKind.CREATE, "bob", "carol")]
    # at the same Lamport time, alice removes carol while bob (made admin) renames and carol adds
    concurrent = [
        op(2, 2, "alice", OpKind.PROMOTE, "bob"),
        op(3, 3, "alice", OpKind.REMOVE, "carol"),
        op(4, 3, "bob", OpKind.ADD, "dave"),
        op(5, 3, "carol", OpKind.RENAME, name="carol's"),
    ]
    states = set()
    for seed in range(20):
        ops = base + concurrent
        random.Random(seed).shuffle(ops)
        s = GroupLog(G, ops).state
        states.add((s.members, s.admins, s.name))
    assert states == {(frozenset({"alice", "bob", "dave"}), frozenset({"alice", "bob"}), "")}


accounts = st.sampled_from(["alice", "bob", "carol", "dave", "erin"])
kinds = st.sampled_from(list(OpKind))


@st.composite
def changes(draw: st.DrawFn) -> list[GroupOp]:
    out = [op(0, 1, "alice", OpKind.CREATE, "bob", name="g")]
    for n in range(1, draw(st.integers(0, 25))):
        kind = draw(kinds)
        author = draw(accounts)
        lamport = draw(st.integers(1, 12))
        if kind in (OpKind.LEAVE,):
            out.append(op(n, lamport, author, kind))
        elif kind is OpKind.RENAME:
            out.append(op(n, lamport, author, kind, name=draw(st.sampled_from(["x", "y"]))))
        elif kind is OpKind.CREATE:
            out.append(op(n, lamport, author, kind, name="other"))
        else:
            targets = draw(st.lists(accounts, min_size=1, max_size=3, unique=True))
            out.append(op(n, lamport, author, kind, *targets))
    return out


@settings(max_examples=200, deadline=None)
@given(changes(), st.randoms())
def test_any_order_of_arrival_gives_the_same_group(ops: list[GroupOp], rnd: random.Random) -> None:
    first = GroupLog(G, ops)
    shuffled = list(ops)
    rnd.shuffle(shuffled)
    again = GroupLog(G)
    for o in shuffled + shuffled[:3]:  # duplicates too
        again.add(o)
    a, b = first.state, again.state
    assert (a.exists, a.name, a.members, a.admins) == (b.exists, b.name, b.members, b.admins)
    assert first.digest() == again.digest()
    if a.members:
        assert a.admins and a.admins <= a.members  # never without an admin


def test_a_device_that_missed_changes_catches_up_by_digest() -> None:
    full = GroupLog(
        G, [op(1, 1, "alice", OpKind.CREATE, "bob"), op(2, 2, "alice", OpKind.ADD, "carol")]
    )
    behind = GroupLog(G, [op(1, 1, "alice", OpKind.CREATE, "bob")])
    assert behind.digest() != full.digest()
    for o in full.missing(o.op_id for o in behind.ops):
        assert behind.add(o)
    assert behind.digest() == full.digest() and behind.state.members == full.state.members
    new = full.author("alice", OpKind.RENAME, oid(9), name="later")
    assert new.lamport == 3  # after every change seen


def test_bad_changes_are_refused_whole() -> None:
    good = op(1, 1, "alice", OpKind.CREATE, "bob", name="g")
    assert GroupOp.parse(good.serialize()) == good
    builds: list[Callable[[], object]] = [
        lambda: GroupOp(G[:15], oid(1), 1, "alice", OpKind.CREATE),
        lambda: GroupOp(G, oid(1), 0, "alice", OpKind.CREATE),
        lambda: GroupOp(G, oid(1), 1, "Alice!", OpKind.CREATE),
        lambda: GroupOp(G, oid(1), 1, "alice", OpKind.ADD),  # adds no one
        lambda: GroupOp(G, oid(1), 1, "alice", OpKind.LEAVE, ("bob",)),
        lambda: GroupOp(G, oid(1), 1, "alice", OpKind.ADD, ("bob", "bob")),
        lambda: GroupOp(G, oid(1), 1, "alice", OpKind.CREATE, name="x" * (MAX_NAME + 1)),
        lambda: GroupOp(G, oid(1), 1, "alice", OpKind.ADD, ("bob",), name="x"),
        lambda: GroupOp(
            G, oid(1), 1, "alice", OpKind.ADD, tuple(f"a{i}" for i in range(MAX_MEMBERS + 1))
        ),
    ]
    for build in builds:
        with pytest.raises(GroupError):
            build()
    for data in (b"", b"\x90", b"\xc1", good.serialize() + b"\x00", b"\x97" + b"\xc0" * 7):
        with pytest.raises(GroupError):
            GroupOp.parse(data)
    log = GroupLog(G, [good])
    with pytest.raises(GroupError):  # the same id with other content
        log.add(op(1, 2, "alice", OpKind.RENAME, name="x"))
    with pytest.raises(GroupError):
        log.add(GroupOp(oid(7), oid(2), 1, "alice", OpKind.CREATE))
    assert len(log) == 1 and log.state.name == "g"
