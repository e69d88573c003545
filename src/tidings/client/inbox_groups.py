"""What the inbox does with group content (issue 12): changes, sender keys and key requests
go to the device's :class:`~tidings.client.groups.GroupRuntime`; a group message is opened by it
and then stored as any message (dedup, per-sender-device order, delivered receipt), or, when it
does not decrypt, a key request to its sender is queued and :class:`DecryptionFailed` reported
(one whose group, or whose sender as a member, this device does not know yet is asked for with
the change that makes it readable: :mod:`.group_sync`). The sender's stream then waits for
that message before it begins (:class:`~tidings.client.group_sync.AskedAgain`,
:meth:`~tidings.delivery.Reorderer.awaiting`), so when it comes back it is shown in its
counter's place.

A group multi-send (:func:`on_group_part`) arrives as ``GROUP_PART || GROUP_MESSAGE content``
outside any pairwise session: its sender is the relay-authenticated DELIVER's, and the sender
key's signature proves the content (the receiver holds that device's chain from its SENDER_KEY,
which did come pairwise); from there it is the fallback copy's path.

Functions of :class:`~tidings.client.inbox.Inbox` (``self``), kept apart as :mod:`.inbox_retry`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..delivery import ContentError, StreamKey, parse_content
from ..delivery.content_groups import (
    GroupChange,
    GroupKeyRequest,
    GroupMessage,
    GroupSync,
    SenderKey,
    group_conversation,
)
from ..refs import DeviceRef
from ..wire import Deliver
from .events import DecryptionFailed
from .group_transport import GROUP_PART
from .groups import Later
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
    key = StreamKey(group_conversation(content.group_id), sender.account, sender.device_id)
    if isinstance(opened, OutboxRequest | Later):  # asked the sender, or will (never silent)
        if isinstance(opened, OutboxRequest):
            self.store.commit_control(frame.seq, [opened], writes)
        else:  # asked with the change that lets this device take it (group_sync)
            self.store.advance_cursor(frame.seq, writes)
        # The sender's stream must not begin after it (a linked device or a joiner begins
        # midstream): it waits for the message to come back (Reorderer.awaiting).
        member = isinstance(opened, OutboxRequest)  # asked of a member (else: will be)
        self.reorderer.awaiting(key, groups.asked.ask(key, content.message_id, member=member))
        self._emit(DecryptionFailed(sender, content.message_id, True))
        return [opened.message_id] if isinstance(opened, OutboxRequest) else []
    left = groups.asked.back(key, content.message_id)
    if left is not None:  # one it asked for is back: its stream may begin (before receive)
        self.reorderer.awaiting(key, left)
    return self._on_message(frame, sender, opened, now, content.message_id, writes, member=True)
