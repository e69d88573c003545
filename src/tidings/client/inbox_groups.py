"""What the inbox does with group content (issue 12): changes, sender keys and key requests
go to the device's :class:`~tidings.client.groups.GroupRuntime`; a group message is opened by it
and then stored as any message (dedup, per-sender-device order, delivered receipt), or, when it
does not decrypt, a key request to its sender is queued and :class:`DecryptionFailed` reported.

A group multi-send (:func:`on_group_part`) arrives as ``GROUP_PART || GROUP_MESSAGE content``
outside any pairwise session: its sender is the relay-authenticated DELIVER's, and the sender
key's signature proves the content (the receiver holds that device's chain from its SENDER_KEY,
which did come pairwise); from there it is the fallback copy's path.

Functions of :class:`~tidings.client.inbox.Inbox` (``self``), kept apart as :mod:`.inbox_retry`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..delivery import ContentError, parse_content
from ..delivery.content_groups import (
    GroupChange,
    GroupKeyRequest,
    GroupMessage,
    GroupSync,
    SenderKey,
)
from ..refs import DeviceRef
from ..wire import Deliver
from .events import DecryptionFailed
from .group_transport import GROUP_PART
from .store import CryptoWrites, OutboxRequest

if TYPE_CHECKING:
    from .inbox import Inbox

log = logging.getLogger("tidings.client")


def is_group_part(payload: bytes) -> bool:
    """Whether a DELIVER payload is a group multi-send's (protocol §13), not an envelope."""
    return payload.startswith(GROUP_PART)


def on_group_part(self: Inbox, frame: Deliver, sender: DeviceRef, now: float) -> list[bytes]:
    """A group multi-send: its GROUP_MESSAGE, taken as a pairwise copy's (no session state
    moves, so ``writes`` holds only the sender-key step). Anything else after the part, or a
    content under another message id than the DELIVER's, is dropped (cursor only)."""
    writes = CryptoWrites(now)
    try:
        content = parse_content(frame.payload[len(GROUP_PART) :])
    except ContentError as exc:
        log.warning("! undecodable group multi-send from %s: %s", sender, exc.reason)
        self.store.advance_cursor(frame.seq, writes)
        return []
    if not isinstance(content, GroupMessage) or content.message_id != frame.message_id:
        log.warning("! %s sent a group multi-send that is not its group message", sender)
        self.store.advance_cursor(frame.seq, writes)
        return []
    return on_group(self, frame, sender, content, now, writes)


def on_group(
    self: Inbox,
    frame: Deliver,
    sender: DeviceRef,
    content: GroupChange | SenderKey | GroupMessage | GroupKeyRequest | GroupSync,
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
    if isinstance(content, GroupSync):
        return groups.on_sync(frame.seq, sender, content, now, writes)
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
