"""What a :class:`~tidings.client.Client` reports: incoming messages and status changes.

Every event is caused by something this device durably stored first (G5): a message is reported
after it was committed locally, a status after the status row was committed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..delivery import Status
from ..store.base import DeviceRef
from .store import StoredMessage


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A message is shown, in its sender device's order (``late``: after a skipped gap)."""

    message: StoredMessage
    late: bool = False


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """A sent message moved at one recipient device; ``overall`` is the roll-up."""

    message_id: bytes
    device: DeviceRef | None  #: None for a status of the whole message (FAILED)
    status: Status
    overall: Status
    at: float


@dataclass(frozen=True, slots=True)
class GapDetected:
    """Messages of a sender device are missing; later ones are held for a while."""

    conversation: str
    sender: DeviceRef
    missing: range


@dataclass(frozen=True, slots=True)
class GapSkipped:
    """A gap stayed open too long; the held messages after it are shown anyway."""

    conversation: str
    sender: DeviceRef
    missing: range


@dataclass(frozen=True, slots=True)
class Connected:
    """A session with the server is open (``pattern``: the Noise handshake used)."""

    pattern: str


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The session ended; the client reconnects by itself unless ``fatal``."""

    code: int
    reason: str
    fatal: bool = False


@dataclass(frozen=True, slots=True)
class IdentityChanged:
    """A contact's identity keys changed: ``device`` presented a new identity key
    (``new_device``: a device this client had not seen, e.g. a reinstall linked anew). The
    safety number with that account changed; a verified one is no longer verified."""

    device: DeviceRef
    new_device: bool = False


@dataclass(frozen=True, slots=True)
class DecryptionFailed:
    """An item from ``sender`` did not decrypt; ``retry_requested``: the sender device was
    asked to rebuild the session and send it again (if it does, the message arrives as usual)."""

    sender: DeviceRef
    message_id: bytes
    retry_requested: bool


ClientEvent = (
    MessageReceived
    | StatusChanged
    | GapDetected
    | GapSkipped
    | Connected
    | Disconnected
    | IdentityChanged
    | DecryptionFailed
)
