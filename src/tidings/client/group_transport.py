"""How a group message's one ciphertext reaches the member devices: the seam between the
group runtime (:mod:`.groups`) and the relay's multi-recipient send.

:class:`GroupTransport` is the whole interface: given one :class:`GroupSend` (the group, the
message id, the shared ciphertext and the member devices it is for), say what to queue in the
device's durable outbox, in the same transaction as the message itself (G2). Whatever the
transport, the receiving device hands the shared ciphertext to
:meth:`tidings.client.groups.GroupRuntime.open_message`.

:class:`PairwiseFallback` is the implementation for a relay without multi-recipient sends: one
GROUP_MESSAGE content (the shared ciphertext under the message id) per member account,
through the ordinary outbox, which seals it once per device of that account over the pairwise
sessions and sends it under the relay's device-set rules. It is correct (same ✓ and queue rules
as any send), only not the one-ciphertext fan-out.

:class:`MultiTransport` (the default) queues ONE outbox entry for the message, under the
message id, in the lane ``group:<hex>`` (:func:`group_lane`); the outbox sends it as one
MULTI_SEND to every member device (:mod:`.outbox_multi`). Each device is delivered
``GROUP_PART || GroupMessage`` (docs/protocol.md §13, "One send for every member device"): a
two-byte part no pairwise envelope starts with, then the serialized GROUP_MESSAGE content,
which the inbox hands to the group runtime as the fallback's copy (:mod:`.inbox_groups`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import msgpack

from ..delivery import ContentError, ContentKind
from ..delivery.content_groups import GroupMessage
from ..refs import DeviceRef
from .store import OutboxRequest

__all__ = [
    "GROUP_LANE",
    "GROUP_PART",
    "GroupSend",
    "GroupTransport",
    "MultiEntry",
    "MultiTransport",
    "PairwiseFallback",
    "copy_id",
    "group_lane",
    "is_group_lane",
]

#: Every device's part of a group multi-send (protocol §13): type byte 0x47, which no pairwise
#: envelope uses (0x01, 0x03, 0x10, 0x11, 0x22 are taken), and this format's version, 1.
GROUP_PART = b"\x47\x01"

#: The outbox lane (and stored recipient) of a multi-send entry: ``group:`` and the group id in
#: hex, the group's conversation id; never an account name (accounts have no ``:``).
GROUP_LANE = "group:"

#: Version of a stored :class:`MultiEntry` (the outbox row's content).
_ENTRY_VERSION = 1


def group_lane(group_id: bytes) -> str:
    """The outbox lane of a group's multi-send entries (its conversation id)."""
    return GROUP_LANE + group_id.hex()


def is_group_lane(recipient: str) -> bool:
    """Whether an outbox entry's recipient is a group's multi-send lane."""
    return recipient.startswith(GROUP_LANE)


def copy_id(message_id: bytes, account: str) -> bytes:
    """The outbox id of the fallback's copy of a group message for one account: derived, so
    the ✓ of each copy (its statuses, SENT per device) can be read back for the message
    (:meth:`tidings.client.Client.group_status`), and unique per message and account."""
    return hashlib.sha256(b"tidings group copy\0" + message_id + account.encode()).digest()[:16]


@dataclass(frozen=True, slots=True)
class GroupSend:
    """One group message to send.

    Attributes:
        group_id: the group.
        message_id: the message's id (what receipts and retries name).
        shared: the one ciphertext every member device reads (a SenderKeyMessage).
        devices: the member devices it is for (this device excluded), grouped by account.
        parts: a small per-device part, for a transport that has them (none yet).
    """

    group_id: bytes
    message_id: bytes
    shared: bytes
    devices: tuple[DeviceRef, ...]
    parts: Mapping[DeviceRef, bytes] = field(default_factory=dict)


class GroupTransport(Protocol):
    """Turns a group send into durable outbox entries (see the module docstring)."""

    def queue(self, send: GroupSend, now: float) -> list[OutboxRequest]:
        """The entries to commit with the message; the outbox sends them after the commit."""
        ...


class PairwiseFallback:
    """:class:`GroupTransport` by one pairwise-sealed copy per device (module docstring);
    each account's copy is its own send to the relay, under :func:`copy_id`."""

    def queue(self, send: GroupSend, now: float) -> list[OutboxRequest]:
        content = GroupMessage(send.group_id, send.message_id, send.shared).serialize()
        accounts = sorted({d.account for d in send.devices})
        return [
            OutboxRequest(copy_id(send.message_id, a), a, content, ContentKind.GROUP_MESSAGE, now)
            for a in accounts
        ]


@dataclass(frozen=True, slots=True)
class MultiEntry:
    """A multi-send outbox entry's stored content: the member accounts the message is for
    (fixed when it was sealed: a later member has no key to it) and the serialized
    GROUP_MESSAGE content every device gets after its part.

    Stored as MessagePack ``[1, [account, ...], content]``."""

    accounts: tuple[str, ...]
    content: bytes

    def serialize(self) -> bytes:
        return msgpack.packb([_ENTRY_VERSION, list(self.accounts), self.content])

    @classmethod
    def parse(cls, data: bytes) -> MultiEntry:
        """Raises: ContentError: not a multi-send entry of this version."""
        try:
            value = msgpack.unpackb(data)
        except Exception as exc:  # msgpack raises several types for bad input
            raise ContentError("not a multi-send entry") from exc
        ok = type(value) is list and len(value) == 3 and value[0] == _ENTRY_VERSION
        if not ok or type(value[1]) is not list or type(value[2]) is not bytes:
            raise ContentError("not a multi-send entry of version 1")
        if not all(type(a) is str for a in value[1]):
            raise ContentError("a multi-send entry's accounts are strings")
        return cls(tuple(value[1]), value[2])

    def copies(self, message_id: bytes, now: float) -> list[OutboxRequest]:
        """The pairwise fallback's entries for the same message (:class:`PairwiseFallback`)."""
        return [
            OutboxRequest(copy_id(message_id, a), a, self.content, ContentKind.GROUP_MESSAGE, now)
            for a in sorted(set(self.accounts))
        ]


class MultiTransport:
    """:class:`GroupTransport` by one multi-recipient send (module docstring): one entry under
    the message id; the outbox falls back to :class:`PairwiseFallback`'s copies for a relay
    without MULTI_SEND."""

    def queue(self, send: GroupSend, now: float) -> list[OutboxRequest]:
        accounts = tuple(sorted({d.account for d in send.devices}))
        if not accounts:
            return []  # no other member device: nothing to send (as the fallback)
        content = GroupMessage(send.group_id, send.message_id, send.shared).serialize()
        entry = MultiEntry(accounts, content).serialize()
        lane = group_lane(send.group_id)
        return [OutboxRequest(send.message_id, lane, entry, ContentKind.GROUP_MESSAGE, now)]
