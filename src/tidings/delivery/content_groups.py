"""Group content (issue 12): what member devices tell each other over their pairwise sessions
about a group, and the group message carried to them.

Layout (content arrays, see :mod:`.content`)::

    GROUP_CHANGE       [1, 8, group_id: bin16, [op: bin, ...]]   (GroupOp bytes, :mod:`.groups`)
    SENDER_KEY         [1, 9, group_id: bin16, distribution: bin]
    GROUP_MESSAGE      [1, 10, group_id: bin16, message_id: bin16, ciphertext: bin]
    GROUP_KEY_REQUEST  [1, 11, group_id: bin16, device_id: int, [message_id: bin16, ...]]
    GROUP_SYNC         [1, 12, device_id: int, group_id: bin16, [op: bin, ...], distribution: bin]

* GROUP_CHANGE carries one change, or the whole log for a member who was just added (its
  changes in replay order); each is validated by replay at the receiver.
* SENDER_KEY is the sender device's SenderKeyDistributionMessage (libsignal bytes,
  :mod:`tidings.e2e.senderkey_wire`) for the group: what a member device needs to read it.
* GROUP_MESSAGE is the one ciphertext of a group message (a SenderKeyMessage whose plaintext
  is a MESSAGE content of conversation ``group:<hex id>``) under the message's id. It is what
  the pairwise fallback of the group transport carries (:mod:`tidings.client.group_transport`);
  a multi-recipient send carries the same ciphertext once.
* GROUP_KEY_REQUEST asks device ``device_id`` of the receiving account for its current sender
  key and the named messages again (a member device that could not decrypt them).
* GROUP_SYNC hands a group to device ``device_id`` of the sender's OWN account — one linked
  after the group was created: the group's log (as GROUP_CHANGE's, in replay order; a log over
  :data:`MAX_OPS_PER_CHANGE` changes goes in several) and the sender device's current
  distribution message, in one content so that the new device takes both in one step. It is a
  kind of its own, not a GROUP_CHANGE, because its trust rule differs (taken only from a device
  of the receiver's account, which vouches for the whole log, where a forwarded GROUP_CHANGE is
  taken only by a joining account) and because it names the one device it is for (the account's
  other devices, which get every own-account send, ignore it).

Invariants as :mod:`.content`: valid or unbuildable; the parsers refuse anything else with
:class:`ContentError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..wire import MESSAGE_ID_LEN
from .content import MAX_BODY, ContentError, ContentKind, _check_ids, _pack
from .groups import GROUP_ID_LEN, GroupError, GroupOp

__all__ = [
    "GROUP_CONVERSATION_PREFIX",
    "MAX_OPS_PER_CHANGE",
    "GroupChange",
    "GroupKeyRequest",
    "GroupMessage",
    "GroupSync",
    "SenderKey",
    "group_conversation",
    "group_of_conversation",
    "parse_group_content",
]

#: Changes one GROUP_CHANGE carries: a new member's catch-up of a long-lived group. ~100 bytes
#: a change keeps 500 far below a payload; a longer log goes in several contents.
MAX_OPS_PER_CHANGE = 500
#: Largest distribution message: libsignal's is ~100 bytes; room for its future fields.
MAX_DISTRIBUTION = 1024
#: What names a group conversation: ``group:`` and the 32 hex digits of its id. Account names
#: cannot contain ``:``, so it never collides with a 1:1 id (``a:b``).
GROUP_CONVERSATION_PREFIX = "group:"
_U63 = (1 << 63) - 1


def group_conversation(group_id: bytes) -> str:
    """The conversation id of a group's messages."""
    _check_group(group_id)
    return GROUP_CONVERSATION_PREFIX + group_id.hex()


def group_of_conversation(conversation: str) -> bytes | None:
    """The group id a conversation id names, or None if it is not a group conversation."""
    if not conversation.startswith(GROUP_CONVERSATION_PREFIX):
        return None
    digits = conversation[len(GROUP_CONVERSATION_PREFIX) :]
    if len(digits) != 2 * GROUP_ID_LEN or digits != digits.lower():
        return None
    try:
        return bytes.fromhex(digits)
    except ValueError:
        return None


def _check_group(group_id: object) -> None:
    if type(group_id) is not bytes or len(group_id) != GROUP_ID_LEN:
        raise ContentError(f"a group id is {GROUP_ID_LEN} bytes")


@dataclass(frozen=True, slots=True)
class GroupChange:
    """Changes of one group (1 to :data:`MAX_OPS_PER_CHANGE`, all of it, distinct)."""

    KIND: ClassVar[ContentKind] = ContentKind.GROUP_CHANGE
    group_id: bytes
    ops: tuple[GroupOp, ...]

    def __post_init__(self) -> None:
        _check_group(self.group_id)
        if type(self.ops) is not tuple or not 1 <= len(self.ops) <= MAX_OPS_PER_CHANGE:
            raise ContentError(f"a group change carries 1..{MAX_OPS_PER_CHANGE} changes")
        for op in self.ops:
            if type(op) is not GroupOp or op.group_id != self.group_id:
                raise ContentError("a group change carries changes of its group")
        if len({op.op_id for op in self.ops}) != len(self.ops):
            raise ContentError("a group change carries a change twice")

    def serialize(self) -> bytes:
        return _pack(self.KIND, [self.group_id, [op.serialize() for op in self.ops]])


@dataclass(frozen=True, slots=True)
class SenderKey:
    """A sender device's distribution message for a group."""

    KIND: ClassVar[ContentKind] = ContentKind.SENDER_KEY
    group_id: bytes
    distribution: bytes

    def __post_init__(self) -> None:
        _check_group(self.group_id)
        size = len(self.distribution) if type(self.distribution) is bytes else 0
        if not 1 <= size <= MAX_DISTRIBUTION:
            raise ContentError(f"a distribution message is 1..{MAX_DISTRIBUTION} bytes")

    def serialize(self) -> bytes:
        return _pack(self.KIND, [self.group_id, self.distribution])


@dataclass(frozen=True, slots=True)
class GroupMessage:
    """A group message's one ciphertext, under the message's id."""

    KIND: ClassVar[ContentKind] = ContentKind.GROUP_MESSAGE
    group_id: bytes
    message_id: bytes
    ciphertext: bytes

    def __post_init__(self) -> None:
        _check_group(self.group_id)
        if type(self.message_id) is not bytes or len(self.message_id) != MESSAGE_ID_LEN:
            raise ContentError(f"message ids are {MESSAGE_ID_LEN} bytes")
        size = len(self.ciphertext) if type(self.ciphertext) is bytes else 0
        if not 1 <= size <= MAX_BODY + 1024:  # a body and the sender key's framing and MAC
            raise ContentError("a group message's ciphertext is 1 byte to a body and its MAC")

    def serialize(self) -> bytes:
        return _pack(self.KIND, [self.group_id, self.message_id, self.ciphertext])


@dataclass(frozen=True, slots=True)
class GroupKeyRequest:
    """Device ``device_id`` (of the account it is sent to) is asked for its sender key and
    these messages again."""

    KIND: ClassVar[ContentKind] = ContentKind.GROUP_KEY_REQUEST
    group_id: bytes
    device_id: int
    message_ids: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _check_group(self.group_id)
        if type(self.device_id) is not int or not 1 <= self.device_id <= _U63:
            raise ContentError("device_id must be an integer in 1..2^63-1")
        _check_ids(self.message_ids)

    def serialize(self) -> bytes:
        return _pack(self.KIND, [self.group_id, self.device_id, list(self.message_ids)])


@dataclass(frozen=True, slots=True)
class GroupSync:
    """A group's log and the sender's key, for device ``device_id`` of the sender's account."""

    KIND: ClassVar[ContentKind] = ContentKind.GROUP_SYNC
    device_id: int
    group_id: bytes
    ops: tuple[GroupOp, ...]
    distribution: bytes

    def __post_init__(self) -> None:
        if type(self.device_id) is not int or not 1 <= self.device_id <= _U63:
            raise ContentError("device_id must be an integer in 1..2^63-1")
        GroupChange(self.group_id, self.ops)  # the same checks as a change's
        SenderKey(self.group_id, self.distribution)

    def serialize(self) -> bytes:
        ops = [op.serialize() for op in self.ops]
        return _pack(self.KIND, [self.device_id, self.group_id, ops, self.distribution])


GroupContent = GroupChange | SenderKey | GroupMessage | GroupKeyRequest | GroupSync


def _ops(ops: object) -> tuple[GroupOp, ...]:
    if type(ops) is not list or not all(type(o) is bytes for o in ops):
        raise ContentError("a group change carries an array of changes' bytes")
    try:
        return tuple(GroupOp.parse(o) for o in ops)
    except GroupError as exc:
        raise ContentError(f"a bad group change: {exc.reason}") from None


def parse_group_content(kind: ContentKind, fields: list[Any]) -> GroupContent:
    """The group content of ``kind`` from its fields (arity checked by the caller)."""
    if kind is ContentKind.GROUP_CHANGE:
        group_id, ops = fields
        return GroupChange(group_id, _ops(ops))
    if kind is ContentKind.SENDER_KEY:
        return SenderKey(*fields)
    if kind is ContentKind.GROUP_MESSAGE:
        return GroupMessage(*fields)
    if kind is ContentKind.GROUP_SYNC:
        device_id, group_id, ops, distribution = fields
        return GroupSync(device_id, group_id, _ops(ops), distribution)
    group_id, device_id, ids = fields
    if type(ids) is not list:
        raise ContentError("message ids must be an array")
    return GroupKeyRequest(group_id, device_id, tuple(ids))
