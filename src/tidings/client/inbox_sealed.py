"""What the inbox does with a sealed message (DELIVER kind 3, docs/protocol.md §14.2).

The relay delivers it with no sender and the sender's random tag as its id. The device opens
it with its identity key (:func:`~tidings.e2e.sealed_payload.open_payload`; a v2 received
message, ``0x22 …``, of a sealed group send: :func:`~tidings.e2e.sealed_group.open_group_payload`,
whose envelope is the group part and GROUP_MESSAGE of §13), validates the
sender certificate inside against the relay's pinned static key (the trust root) at its own
clock, and then handles the envelope exactly as a kind-0 DELIVER from the certificate's
``(account, device)`` with the message id inside: the same dedupe, ordering and gap rules,
receipts, statuses, events and trace, the same seq and cursor.

It is refused — acknowledged and dropped, one log line, a ``sealed_refused`` trace point under
the tag and a :class:`~tidings.client.events.SealedRefused` event — when it does not open,
its certificate is not valid (forged, expired), it names this very device, or its
certificate names another identity key than the one this device pinned for that sender
device. (A prekey message that starts a new session with the certificate's key is an
identity change, accepted and reported as anywhere else: :class:`IdentityChanged`.) No retry
request goes for a refused one: whoever sent it is not known.

Functions of :class:`~tidings.client.inbox.Inbox` (``self``), kept apart to keep that module
readable in one sitting.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..e2e import EnvelopeType, PreKeyWhisperMessage, open_envelope
from ..e2e.keys import PublicKey
from ..e2e.sealed_group import open_group_payload
from ..e2e.sealed_payload import OpenedPayload, SealedCertificateRefused, open_payload
from ..e2e.sealed_v2 import SEALED_V2
from ..errors import DecryptionError, FrameError
from ..wire import Deliver
from .events import SealedRefused

if TYPE_CHECKING:
    from .inbox import Inbox

__all__ = ["SEALED_REFUSED", "on_sealed"]

log = logging.getLogger("tidings.client")

#: The trace point of a refused sealed message (under its tag).
SEALED_REFUSED = "sealed_refused"


def on_sealed(self: Inbox, frame: Deliver, now: float) -> list[bytes]:
    """Open a sealed item and handle it as the DELIVER it carries, or refuse it."""
    root = self.trust_root()
    if root is None:
        return _refuse(self, frame, "no relay key is pinned to check its certificate", now)
    # 0x22: a sealed group message (v2, one SEALED_MULTI_SEND, protocol §14.3); else v1
    opener = open_group_payload if frame.payload[:1] == bytes([SEALED_V2]) else open_payload
    # The certificate must have been valid when the relay stored the item (its enqueued_at),
    # as Signal checks it at the envelope's server timestamp: a message sealed in time and
    # fetched days later (a device offline for days) is not refused for the time it waited.
    try:
        opened = opener(
            frame.payload, self.crypto.keys.identity, PublicKey(root), _ms(frame.enqueued_at)
        )
    except SealedCertificateRefused as exc:
        return _refuse(self, frame, f"its sender certificate is not valid: {exc.reason}", now)
    except DecryptionError:
        return _refuse(self, frame, "it does not open with this device's key", now)
    if (opened.account, opened.device) == (self.me.account, self.me.device_id):
        return _refuse(self, frame, "its certificate names this very device", now)
    why = _identity_refusal(self, opened)
    if why:
        return _refuse(self, frame, why, now)
    try:
        inner = Deliver(
            frame.seq,
            0,
            opened.account,
            opened.device,
            opened.message_id,
            frame.enqueued_at,
            frame.expires_at,
            opened.envelope,
        )
    except FrameError as exc:
        return _refuse(self, frame, f"its certificate names no device ({exc})", now)
    return self.on_deliver(inner)


def _identity_refusal(self: Inbox, opened: OpenedPayload) -> str:
    """Why the certificate's identity key is not believed for its device ("" if it is): a
    prekey message must be from the certificate's key; anything else from the pinned one."""
    key = opened.identity_key.raw
    try:
        kind, body = open_envelope(opened.envelope)
        if kind is EnvelopeType.PREKEY:
            if PreKeyWhisperMessage.parse(body).identity_key.raw == key:
                return ""  # a new session under that key (a changed one is reported as such)
            return "its certificate names another identity key than its prekey message"
    except DecryptionError:
        return ""  # not a valid envelope: refused as undecryptable by the kind-0 rules
    pinned = self.store.pinned_identities(opened.account).get(opened.device)
    if pinned is None or pinned[0] == key:
        return ""
    return (
        f"its certificate names another identity key than the one pinned for "
        f"{opened.account}.{opened.device}"
    )


def _refuse(self: Inbox, frame: Deliver, reason: str, now: float) -> list[bytes]:
    """Ack and drop: the cursor moves past it, the trace and an event say why."""
    tag = frame.message_id
    log.warning("! sealed message %s refused: %s", tag.hex(), reason)
    if self.store.commit_control(frame.seq, []):
        self.store.add_trace(tag, SEALED_REFUSED, now, reason)
        self._emit(SealedRefused(tag, reason, now))
    return []


def _ms(now: float) -> int:
    return int(now * 1000)
