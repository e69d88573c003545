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
as any send), only not the one-ciphertext fan-out. A MULTI_SEND transport replaces it by
returning its own durable entry, which stores ``shared`` once at the relay and a small
per-device part (``parts``) for each device.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ..delivery import ContentKind
from ..delivery.content_groups import GroupMessage
from ..refs import DeviceRef
from .store import OutboxRequest

__all__ = ["GroupSend", "GroupTransport", "PairwiseFallback", "copy_id"]


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
