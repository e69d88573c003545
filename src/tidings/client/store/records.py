"""The client store's records: what its methods take and return, its enums, error and limits.

Every record is a frozen dataclass: a value read from (or about to be written to) the store, never
a live view of it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tidings.delivery import ContentKind, OutboxEntry, Status
from tidings.errors import StoreError
from tidings.refs import DeviceRef

from ..migrations import MIGRATIONS

__all__ = [
    "MAX_OUTBOX",
    "SCHEMA_VERSION",
    "ConversationSummary",
    "ConversationTimer",
    "DeviceStatus",
    "Direction",
    "ExpiredMessage",
    "Identity",
    "MessageKey",
    "OutboxFullError",
    "OutboxItem",
    "OutboxRequest",
    "SentMark",
    "StoredMessage",
    "TraceEntry",
    "TracePoint",
]

#: Most entries in the outbox. A person composes far fewer while offline; the bound keeps a
#: runaway script from filling the disk. Receipts queued by incoming messages are exempt, so
#: a full outbox never stops this device from receiving.
MAX_OUTBOX = 10_000

#: The schema version this code needs.
SCHEMA_VERSION = len(MIGRATIONS)

#: A stored message's identity: its sender device and message id.
MessageKey = tuple[DeviceRef, bytes]


class OutboxFullError(StoreError):
    """The outbox holds :data:`MAX_OUTBOX` entries; nothing was queued."""


class Direction(enum.IntEnum):
    """Whether this device sent or received a message (stable: stored)."""

    IN = 0
    OUT = 1


class TracePoint(enum.StrEnum):
    """Confirmation points of the trace (DESIGN §5). Per-device points are ``"point:acct.N"``.

    A refusal the outbox retries (or a stale device set it fixes) is ``"refused:CODE"``, e.g.
    ``"refused:QUEUE_FULL"`` with the reason and the retry delay as detail; plain ``"refused"``
    is the refusal for good (status FAILED).
    """

    COMPOSED = "composed"  #: committed to the outbox
    WRITTEN = "written"  #: written to the socket
    TCP_ACKED = "tcp_acked"  #: the server's kernel acked the bytes (TCP_INFO)
    SENT = "sent"  #: ✓ the server stored it
    DELIVERED = "delivered"  #: ✓✓ at a device (per device)
    READ = "read"  #: displayed at a device (per device)
    EXPIRED = "expired"  #: ✗ expired unfetched at a device (per device)
    REFUSED = "refused"  #: the server refused it permanently (``refused:CODE``: for now)

    def at(self, device: DeviceRef) -> str:
        """The per-device form of this point, e.g. ``"delivered:bob.2"``."""
        return f"{self.value}:{device}"


@dataclass(frozen=True, slots=True)
class Identity:
    """This device: its Noise private key, registration and settings."""

    noise_private_key: bytes
    account: str
    device_id: int
    device_name: str
    server_url: str  #: the relay's (preferred) URL
    server_key: bytes | None = None  #: the pinned server static key, once known
    read_receipts: bool = True
    #: The relay's other URLs (its other nodes, which present the same key), in order.
    alternate_urls: tuple[str, ...] = ()

    @property
    def server_urls(self) -> tuple[str, ...]:
        """Every URL of the relay, preferred first."""
        return (self.server_url, *self.alternate_urls)


@dataclass(frozen=True, slots=True)
class OutboxRequest:
    """Content to queue in the outbox (e.g. a receipt passed to :meth:`commit_incoming`)."""

    message_id: bytes
    recipient: str
    content: bytes
    kind: ContentKind
    created_at: float


@dataclass(frozen=True, slots=True)
class SentMark:
    """A ✓ to record (:meth:`ClientStore.mark_sent_many`): the relay stored ``message_id`` at
    ``stored_at`` (its clock); heard at ``at`` (ours); SENT at ``devices``; with the trace
    points ``(point, at, detail)`` buffered while it was in flight (written, TCP-acked)."""

    message_id: bytes
    stored_at: float
    at: float
    devices: tuple[DeviceRef, ...] = ()
    trace: tuple[tuple[str, float, str | None], ...] = ()


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A queued outbox entry; ``position`` is its creation order."""

    position: int
    message_id: bytes
    recipient: str
    kind: ContentKind
    content: bytes
    created_at: float
    attempts: int
    next_attempt_at: float

    def entry(self) -> OutboxEntry:
        """The scheduler's view of this entry (lane = recipient)."""
        return OutboxEntry(
            self.message_id, self.position, self.recipient, self.attempts, self.next_attempt_at
        )


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A sent or received message. ``shown`` is its display order, ``None`` while held."""

    message_id: bytes
    sender: DeviceRef
    conversation: str
    counter: int
    body: bytes
    sent_at: float
    direction: Direction
    recipient: str | None
    received_at: float | None
    stored_at: float | None  #: ✓ time (server clock), for sent messages
    failed_code: int | None
    failed_reason: str | None
    read_at: float | None
    shown: int | None
    #: when a UI displayed it (received messages; ``None``: unseen, shown first next time)
    seen_at: float | None = None
    #: its disappearing-messages timer in seconds (0: it stays)
    expires_in: int = 0
    #: when every device deletes it (``None``: it stays, or its timer has not started)
    expires_at: float | None = None

    @property
    def key(self) -> MessageKey:
        """The message's identity: ``(sender, message_id)``."""
        return self.sender, self.message_id

    @property
    def own(self) -> bool:
        """Sent by this account: from this device (``OUT``), or a copy of what another of its
        devices sent (``IN`` with a ``recipient``). Never unread; it has a sent status."""
        return self.direction is Direction.OUT or self.recipient is not None


@dataclass(frozen=True, slots=True)
class ConversationTimer:
    """A conversation's disappearing-messages timer and the setting that decided it."""

    conversation: str
    seconds: int  #: 0: off
    set_at: float  #: the setter's clock
    set_by: DeviceRef


@dataclass(frozen=True, slots=True)
class ExpiredMessage:
    """A message the expiry sweep deleted."""

    message_id: bytes
    conversation: str


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """A message's status at one device, and when it got there (local clock)."""

    status: Status
    at: float


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One point of a message's trace."""

    point: str
    at: float
    detail: str | None


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    """A conversation as the CLI lists it."""

    conversation: str
    messages: int
    unread: int
    last_at: float
