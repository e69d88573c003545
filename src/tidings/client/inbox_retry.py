"""What the inbox does with items about broken sessions: retry requests, both ways.

* :func:`undecryptable` — a payload that does not decrypt: a rate-limited retry request to its
  sender device is queued (the only unencrypted content; it names ids only), and
  :class:`DecryptionFailed` reported;
* :func:`on_plaintext` — a retry request for this device: the session with the requester is
  rebuilt and the named messages it was a recipient of are queued again (RESEND, same message
  id inside), in one transaction with the rebuilt session and the cursor.

Functions of :class:`~tidings.client.inbox.Inbox` (``self``), kept apart to keep that module
readable in one sitting.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from ..delivery import ContentError, ContentKind, Message, Resend, RetryRequest, parse_content
from ..delivery.msgids import new_message_id
from ..refs import DeviceRef
from ..wire import Deliver
from .events import DecryptionFailed
from .store import CryptoWrites, Direction, OutboxRequest

if TYPE_CHECKING:
    from .inbox import Inbox

log = logging.getLogger("tidings.client")


def undecryptable(self: Inbox, frame: Deliver, sender: DeviceRef, now: float) -> list[bytes]:
    """Ask the sender device to rebuild the session and send again (rate-limited)."""
    if self.store.has_message(sender, frame.message_id):  # a replay of what we have
        self.store.advance_cursor(frame.seq)
        return []
    requested = self.crypto.retry_request_allowed(sender)
    requests = []
    if requested:
        content = RetryRequest(sender.account, sender.device_id, (frame.message_id,))
        requests.append(
            OutboxRequest(
                new_message_id(now, os.urandom),
                sender.account,
                content.serialize(),
                ContentKind.RETRY_REQUEST,
                now,
            )
        )
    log.warning("! undecryptable item from %s; retry requested: %s", sender, requested)
    self.store.commit_control(frame.seq, requests)
    self._emit(DecryptionFailed(sender, frame.message_id, requested))
    return [r.message_id for r in requests]


def on_plaintext(
    self: Inbox, frame: Deliver, sender: DeviceRef, data: bytes, now: float, writes: CryptoWrites
) -> list[bytes]:
    """Unencrypted content: only a retry request for this device is acted on."""
    try:
        request = parse_content(data)
    except ContentError:
        request = None
    if not isinstance(request, RetryRequest) or (
        DeviceRef(request.account, request.device_id) != self.me
    ):
        self.store.advance_cursor(frame.seq, writes)
        return []
    if not self.crypto.resend_allowed(sender):
        self.store.advance_cursor(frame.seq, writes)
        return []
    self.crypto.rebuild(sender, writes)
    requests = []
    for mid in request.message_ids:
        m = self.store.message(mid)
        if m is None or m.direction is not Direction.OUT or m.sender != self.me:
            continue
        if m.recipient is None or sender.account not in (m.recipient, self.me.account):
            continue  # only a device the message was for may have it again
        inner = Message(m.conversation, m.counter, m.sent_at, m.body, m.expires_in)
        requests.append(
            OutboxRequest(
                new_message_id(now, os.urandom),
                m.recipient,
                Resend(mid, inner).serialize(),
                ContentKind.RESEND,
                now,
            )
        )
    log.info("= %s asked for %d message(s) again", sender, len(requests))
    self.store.commit_control(frame.seq, requests, writes)
    return [r.message_id for r in requests]
