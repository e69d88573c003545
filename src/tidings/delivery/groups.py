"""Group membership, kept by the members: a replicated log of changes that every member
device folds into the same state.

The relay never sees a group's name or members. A change (:class:`GroupOp`: create, add,
remove, leave, rename, promote, demote) is a message from one member to the others over their
pairwise sessions, which authenticate its author. Every device keeps the set of changes it has
seen (:class:`GroupLog`) and computes the state by replaying them in one total order — Lamport
time, then author, then the change's random id — so **two devices with the same changes have
the same group**, whatever order the changes arrived in, and concurrent changes resolve the
same way everywhere. A change its author was not allowed to make at its place in that order
(an add by a non-admin, anything by a non-member) is kept but has no effect, and says why.

Rules of the replay (:func:`replay`):

* the first CREATE in the order creates the group: its author is its admin, its targets members;
  later CREATEs and everything before the first are ignored;
* ADD, REMOVE, PROMOTE and DEMOTE need an admin; RENAME and LEAVE a member;
* a group never has no admin while it has members: when the last admin leaves or is removed,
  the remaining member whose account sorts first becomes admin; DEMOTE of the last admin is
  ignored.

Members that missed changes catch up by comparing :meth:`GroupLog.digest` (a hash of the set of
change ids) and asking for what they lack (:meth:`GroupLog.missing`). Sans-I/O: ids and times
are passed in.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from ..errors import FrameError, RemoteProtocolError
from ..wire import ErrorCode, check_account

__all__ = [
    "GROUP_ID_LEN",
    "MAX_LOG",
    "MAX_MEMBERS",
    "MAX_NAME",
    "GroupError",
    "GroupLog",
    "GroupOp",
    "GroupState",
    "OpKind",
    "Outcome",
    "replay",
]

#: A group's id and a change's id: 16 random bytes.
GROUP_ID_LEN = 16
#: Accounts in one group: the size the benchmarks go to (1,000 member devices), and a bound on
#: what one change may name.
MAX_MEMBERS = 1_000
#: Bytes of a group's name (UTF-8): a title, not a description.
MAX_NAME = 128
#: Changes one group's log keeps: years of membership changes of a busy group; beyond it the
#: log wants a snapshot, which does not exist yet, so further changes are refused.
MAX_LOG = 10_000


class GroupError(RemoteProtocolError):
    """A group change that is not valid (code ``INVALID_FIELD``). From a peer it is never
    trusted; local code never builds an invalid one on purpose."""

    def __init__(self, reason: str) -> None:
        super().__init__(ErrorCode.INVALID_FIELD, reason)


class OpKind(enum.IntEnum):
    CREATE = 1
    ADD = 2
    REMOVE = 3
    LEAVE = 4
    RENAME = 5
    PROMOTE = 6
    DEMOTE = 7


_NEEDS_ADMIN = frozenset({OpKind.ADD, OpKind.REMOVE, OpKind.PROMOTE, OpKind.DEMOTE})
_HAS_TARGETS = frozenset({OpKind.CREATE, *_NEEDS_ADMIN})


@dataclass(frozen=True, slots=True)
class GroupOp:
    """One change of group ``group_id`` by ``author`` (an account)."""

    group_id: bytes
    op_id: bytes
    lamport: int
    author: str
    kind: OpKind
    targets: tuple[str, ...] = ()
    name: str = ""

    def __post_init__(self) -> None:
        if len(self.group_id) != GROUP_ID_LEN or len(self.op_id) != GROUP_ID_LEN:
            raise GroupError("a group id and a change id are 16 bytes")
        if not 0 < self.lamport < 2**63:
            raise GroupError("a change's time is 1 .. 2**63 - 1")
        if not isinstance(self.kind, OpKind):
            raise GroupError(f"unknown change kind {self.kind!r}")
        try:
            check_account(self.author)
            for target in self.targets:
                check_account(target)
        except FrameError:
            raise GroupError("an account is 1-32 of a-z, 0-9, _ and -") from None
        if len(self.targets) > MAX_MEMBERS or len(set(self.targets)) != len(self.targets):
            raise GroupError(f"a change names at most {MAX_MEMBERS} distinct accounts")
        if self.kind in _HAS_TARGETS and self.kind is not OpKind.CREATE and not self.targets:
            raise GroupError(f"{self.kind.name} names at least one account")
        if self.kind not in _HAS_TARGETS and self.targets:
            raise GroupError(f"{self.kind.name} names no accounts")
        if len(self.name.encode()) > MAX_NAME:
            raise GroupError(f"a group's name is at most {MAX_NAME} bytes")
        if self.kind not in (OpKind.CREATE, OpKind.RENAME) and self.name:
            raise GroupError(f"{self.kind.name} has no name")

    @property
    def order(self) -> tuple[int, str, bytes]:
        """Where the change goes in every member's replay."""
        return (self.lamport, self.author, self.op_id)

    def serialize(self) -> bytes:
        return msgpack.packb(
            [
                self.group_id,
                self.op_id,
                self.lamport,
                self.author,
                int(self.kind),
                list(self.targets),
                self.name,
            ],
            use_bin_type=True,
        )

    @classmethod
    def parse(cls, data: bytes) -> GroupOp:
        """Raises :class:`GroupError` for anything that is not a valid change."""
        try:
            obj: Any = msgpack.unpackb(data, raw=False, strict_map_key=True)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
            raise GroupError("a group change is one MessagePack array") from None
        if not isinstance(obj, list) or len(obj) != 7:
            raise GroupError("a group change has 7 fields")
        group_id, op_id, lamport, author, kind, targets, name = obj
        if not (
            isinstance(group_id, bytes)
            and isinstance(op_id, bytes)
            and type(lamport) is int
            and isinstance(author, str)
            and type(kind) is int
            and isinstance(targets, list)
            and all(isinstance(t, str) for t in targets)
            and isinstance(name, str)
        ):
            raise GroupError("a group change's fields have the wrong types")
        try:
            op_kind = OpKind(kind)
        except ValueError:
            raise GroupError(f"unknown change kind {kind}") from None
        return cls(group_id, op_id, lamport, author, op_kind, tuple(targets), name)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one change did in the replay: ``applied``, or why not."""

    op: GroupOp
    applied: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class GroupState:
    """A group as its changes make it."""

    group_id: bytes
    exists: bool = False
    name: str = ""
    members: frozenset[str] = frozenset()
    admins: frozenset[str] = frozenset()
    #: every change in replay order and what it did (for "carol added dave" and its refusals)
    history: tuple[Outcome, ...] = field(default=(), compare=False)

    def is_member(self, account: str) -> bool:
        return account in self.members


def replay(group_id: bytes, ops: Iterable[GroupOp]) -> GroupState:
    """The state ``ops`` make, by the rules of the module docstring."""
    exists, name = False, ""
    members: set[str] = set()
    admins: set[str] = set()
    history: list[Outcome] = []

    def done(op: GroupOp, applied: bool, reason: str = "") -> None:
        history.append(Outcome(op, applied, reason))

    for op in sorted((o for o in ops if o.group_id == group_id), key=lambda o: o.order):
        if op.kind is OpKind.CREATE:
            if exists:
                done(op, False, "the group exists already")
                continue
            exists, name = True, op.name
            members = {op.author, *op.targets}
            admins = {op.author}
            done(op, True)
            continue
        if not exists:
            done(op, False, "before the group was created")
        elif op.author not in members:
            done(op, False, f"{op.author} is not a member")
        elif op.kind in _NEEDS_ADMIN and op.author not in admins:
            done(op, False, f"{op.author} is not an admin")
        elif op.kind is OpKind.ADD:
            new = set(op.targets) - members
            if len(members) + len(new) > MAX_MEMBERS:
                done(op, False, f"a group has at most {MAX_MEMBERS} members")
            else:
                members |= new
                done(op, True)
        elif op.kind in (OpKind.REMOVE, OpKind.LEAVE):
            gone = set(op.targets) if op.kind is OpKind.REMOVE else {op.author}
            members -= gone
            admins -= gone
            if members and not admins:
                admins = {min(members)}  # the group is never left without an admin
            done(op, True)
        elif op.kind is OpKind.RENAME:
            name = op.name
            done(op, True)
        elif op.kind is OpKind.PROMOTE:
            if not set(op.targets) <= members:
                done(op, False, "only members can be admins")
            else:
                admins |= set(op.targets)
                done(op, True)
        else:  # DEMOTE
            if not admins - set(op.targets):
                done(op, False, "a group keeps at least one admin")
            else:
                admins -= set(op.targets)
                done(op, True)
    return GroupState(group_id, exists, name, frozenset(members), frozenset(admins), tuple(history))


class GroupLog:
    """The changes of one group a device has seen, and the state they make."""

    def __init__(self, group_id: bytes, ops: Iterable[GroupOp] = ()) -> None:
        if len(group_id) != GROUP_ID_LEN:
            raise ValueError("a group id is 16 bytes")
        self.group_id = group_id
        self._ops: dict[bytes, GroupOp] = {}
        self._state: GroupState | None = None
        for op in ops:
            self.add(op)

    def __len__(self) -> int:
        return len(self._ops)

    @property
    def ops(self) -> list[GroupOp]:
        """Every change, in replay order."""
        return sorted(self._ops.values(), key=lambda o: o.order)

    def add(self, op: GroupOp) -> bool:
        """Take a change; False if it was known already.

        Raises:
            GroupError: a change of another group, one whose id is known with other content,
                or the log is full (:data:`MAX_LOG`).
        """
        if op.group_id != self.group_id:
            raise GroupError("a change of another group")
        known = self._ops.get(op.op_id)
        if known is not None:
            if known != op:
                raise GroupError("two different changes with one id")
            return False
        if len(self._ops) >= MAX_LOG:
            raise GroupError(f"a group keeps at most {MAX_LOG} changes")
        self._ops[op.op_id] = op
        self._state = None
        return True

    @property
    def state(self) -> GroupState:
        if self._state is None:
            self._state = replay(self.group_id, self._ops.values())
        return self._state

    def author(
        self,
        author: str,
        kind: OpKind,
        op_id: bytes,
        targets: Iterable[str] = (),
        name: str = "",
    ) -> GroupOp:
        """A new change by ``author`` after every change seen (not added: :meth:`add` it
        when it is durable, then send it)."""
        lamport = max((o.lamport for o in self._ops.values()), default=0) + 1
        return GroupOp(self.group_id, op_id, lamport, author, kind, tuple(targets), name)

    def digest(self) -> bytes:
        """A hash of the set of change ids: equal digests, equal logs."""
        h = hashlib.sha256(self.group_id)
        for op_id in sorted(self._ops):
            h.update(op_id)
        return h.digest()

    def missing(self, theirs: Iterable[bytes]) -> list[GroupOp]:
        """Our changes a device that holds the change ids ``theirs`` lacks, in order."""
        have = set(theirs)
        return [o for o in self.ops if o.op_id not in have]
