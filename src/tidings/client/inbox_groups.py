"""What the inbox does with group content (issue 12): changes, sender keys and key requests
go to the device's :class:`~tidings.client.groups.GroupRuntime`; a group message is opened by it
and then stored as any message (dedup, per-sender-device order, delivered receipt), or, when it
does not decrypt, a key request to its sender is queued and :class:`DecryptionFailed` reported.

A function of :class:`~tidings.client.inbox.Inbox` (``self``), kept apart as :mod:`.inbox_retry`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..delivery.content_groups import GroupChange, GroupKeyRequest, GroupMessage, SenderKey
from ..refs import DeviceRef
from ..wire import Deliver
from .events import DecryptionFailed
from .store import CryptoWrites, OutboxRequest

if TYPE_CHECKING:
    from .inbox import Inbox


def on_group(
    self: Inbox,
    frame: Deliver,
    sender: DeviceRef,
    content: GroupChange | SenderKey | GroupMessage | GroupKeyRequest,
    now: float,
    writes: CryptoWrites,
) -> list[bytes]:
    """Group content (:mod:`.groups` decides; a group message is then stored as any)."""
    groups = self.groups
    if groups is None:
        self.store.advance_cursor(frame.seq, writes)
        return []
    if isinstance(content, GroupChange):
        return groups.on_change(frame.seq, sender, content, now, writes)
    if isinstance(content, SenderKey):
        groups.on_sender_key(frame.seq, sender, content, writes)
        return []
    if isinstance(content, GroupKeyRequest):
        return groups.on_key_request(frame.seq, sender, content, now, writes)
    if self.store.has_message(sender, content.message_id):
        self.store.advance_cursor(frame.seq, writes)  # a duplicate (G3)
        return []
    opened = groups.open_message(sender, content, now, writes)
    if opened is None:
        self.store.advance_cursor(frame.seq, writes)
        return []
    if isinstance(opened, OutboxRequest):  # no key for it: asked the sender (never silent)
        self.store.commit_control(frame.seq, [opened], writes)
        self._emit(DecryptionFailed(sender, content.message_id, True))
        return [opened.message_id]
    return self._on_message(frame, sender, opened, now, content.message_id, writes)
