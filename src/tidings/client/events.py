"""What a :class:`~tidings.client.Client` reports: incoming messages, status changes, refusals.

Every event is caused by something this device durably stored first (G5): a message is reported
after it was committed locally, a status after the status row was committed. Times (``at``,
``retry_at``) are on the wall clock, for people; the client's timers run on a monotonic clock.
:class:`EventStream` is how a caller receives them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..delivery import ContentKind, SkipReason, Status
from ..refs import DeviceRef
from ..wire import ErrorCode
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
    #: None for a status of the whole message: FAILED, or SENT for a note to self that has no
    #: other device to go to
    device: DeviceRef | None
    status: Status
    overall: Status
    at: float


@dataclass(frozen=True, slots=True)
class SendRefused:
    """The relay refused a send of this device (REFUSED; DESIGN §5, back-pressure).

    Reported for every refusal that is not fixed silently (a stale device set is): transient
    ones (QUEUE_FULL, RATE_LIMITED, STORE_UNAVAILABLE, INTERNAL, …) keep the entry in the outbox
    until ``retry_at``; a final one removes it, and ``StatusChanged`` FAILED follows.

    Attributes:
        message_id: the outbox entry (a message, or a receipt: see ``kind``).
        recipient: the account it is for.
        kind: what the entry carries.
        code: the error code (``tidings.wire.ErrorCode``; unknown codes are kept as numbers).
        reason: the relay's reason, for people (never act on it).
        at: when the refusal arrived (wall clock).
        retry_at: when the outbox sends it again (wall clock), or ``None``: refused for good.
    """

    message_id: bytes
    recipient: str
    kind: ContentKind
    code: int
    reason: str
    at: float
    retry_at: float | None

    @property
    def final(self) -> bool:
        """Whether the entry failed for good (it is no longer in the outbox)."""
        return self.retry_at is None

    @property
    def code_name(self) -> str:
        """The code's name (e.g. ``"QUEUE_FULL"``), or its number if this client does not know
        it."""
        return code_name(self.code)


def code_name(code: int) -> str:
    """The name of error ``code`` (``"QUEUE_FULL"``), or ``"CODE_<n>"`` for an unknown one."""
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"CODE_{code}"


@dataclass(frozen=True, slots=True)
class GapDetected:
    """Messages of a sender device are missing; later ones are held for a while."""

    conversation: str
    sender: DeviceRef
    missing: range


@dataclass(frozen=True, slots=True)
class GapSkipped:
    """Messages of a sender device will not be waited for any more; the held messages after
    them are shown. ``reason``: ``timeout`` (the gap stayed open too long), ``overflow`` (too
    many messages were held behind it) or ``expired`` (the relay said these messages expired
    before this device fetched them: they will never come). A skipped message that arrives after
    all is shown as late."""

    conversation: str
    sender: DeviceRef
    missing: range
    reason: SkipReason


@dataclass(frozen=True, slots=True)
class Connected:
    """A session with the server is open: WELCOME arrived (``pattern``: the Noise handshake
    used). Messages flow from here; sends go once the account's devices are known, a round trip
    later (:meth:`Client.wait_connected` waits for that)."""

    pattern: str


@dataclass(frozen=True, slots=True)
class ConnectFailed:
    """A connection attempt failed before a session opened; the client tries again by itself
    in ``retry_in`` seconds (sooner after :meth:`~tidings.client.Client.reconnect_now`).

    Attributes:
        reason: one line for people ("connection refused by 127.0.0.1:7400 (is the relay
            running?)", "cannot resolve host …", "TLS: …", or the relay's close reason).
        attempt: failed attempts in a row (1 for the first).
        retry_in: seconds until the next attempt (capped exponential backoff with jitter).
    """

    reason: str
    attempt: int
    retry_in: float


@dataclass(frozen=True, slots=True)
class CatchingUp:
    """Progress of the catch-up after an absence: ``done`` of the ``total`` items that waited
    on the relay when the session opened (WELCOME's backlog) are stored here, at ``rate`` items
    per second so far. Reported when the catch-up starts, at most every
    :data:`tidings.client.catchup.PROGRESS_INTERVAL` seconds while it runs, and once with
    ``finished`` when it is over. Messages and sends keep flowing meanwhile."""

    done: int
    total: int
    rate: float
    finished: bool


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The session ended; the client reconnects by itself unless ``fatal`` (the relay refused
    this device, its key changed, or the store failed: :class:`StorageFailed`)."""

    code: int
    reason: str
    fatal: bool = False


@dataclass(frozen=True, slots=True)
class StorageFailed:
    """The device's store cannot write — its disk is full, an I/O error, a read-only or damaged
    file — so the client stopped: it closed its connection and does not reconnect, since every
    write would fail again. Reported once, before the :class:`Disconnected` (``fatal``) of that
    close. Nothing the store could not commit was acknowledged to the relay, which keeps it for
    the next start (G1); what was stored before stays. From now on :meth:`Client.send` raises
    :class:`~tidings.errors.StoreUnavailable`. Close the client, fix the cause, open it again.

    Attributes:
        state: ``"full"``, or ``"error: <what SQLite said>"`` (as
            :attr:`~tidings.errors.StoreUnavailable.state`).
        message: one line for people: the file, what failed, what to do.
    """

    state: str
    message: str


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


@dataclass(frozen=True, slots=True)
class SealedRefused:
    """A sealed message (DELIVER kind 3, sealed sender) was refused and dropped: it did not
    open, its sender certificate is not valid (forged, expired), or it names another identity
    key than the one pinned for its sender device. Its sender is not known, so nobody is asked
    to send it again. ``tag``: the relay's id of the item (the sender's random tag)."""

    tag: bytes
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class ReadElsewhere:
    """Another device of this account displayed these received messages: they are read here
    too (unread counts clear on every device of the account)."""

    message_ids: tuple[bytes, ...]
    device: DeviceRef
    at: float


@dataclass(frozen=True, slots=True)
class TimerChanged:
    """A conversation's disappearing-messages timer changed (set here, by another device of
    this account, or by a contact): what is sent from now on disappears ``seconds`` after it
    was displayed; 0: off."""

    conversation: str
    seconds: int
    by: DeviceRef
    at: float  #: when it was set (the setter's clock)


@dataclass(frozen=True, slots=True)
class MessagesExpired:
    """Disappearing messages ran out and were deleted from this device (and its search
    index): a UI removes them from view."""

    message_ids: tuple[bytes, ...]
    conversations: tuple[str, ...]
    at: float


@dataclass(frozen=True, slots=True)
class DevicesChanged:
    """This account's device set changed while this device was connected: ``added`` were
    linked (by a link code from one of its devices), ``removed`` unlinked."""

    account: str
    added: tuple[int, ...]
    removed: tuple[int, ...]
    at: float


@dataclass(frozen=True, slots=True)
class PushDead:
    """The relay can no longer wake this device: its push service said the subscription is
    gone (or not made for the relay's key). Register a new one (``Client.push_register``)."""

    endpoint: str


@dataclass(frozen=True, slots=True)
class HistoryImported:
    """A part of the history another device of this account sent this one was imported:
    ``added`` messages were new here (the rest it had)."""

    archive_id: bytes
    part: int
    parts: int
    added: int
    sender: DeviceRef
    at: float


@dataclass(frozen=True, slots=True)
class DeviceNamed:
    """Another device of this account told this one its name (``tidings devices`` shows it)."""

    device: DeviceRef
    name: str


@dataclass(frozen=True, slots=True)
class GroupChanged:
    """A group this device knows changed (created, members added or removed, left, renamed):
    its state now, and the device whose change it learned (``by``; this one for its own)."""

    group_id: bytes
    name: str
    members: tuple[str, ...]
    admins: tuple[str, ...]
    by: DeviceRef
    #: whether this account is (still) a member
    member: bool


@dataclass(frozen=True, slots=True)
class DeviceCertification:
    """What this device now concludes of ``device``'s certificate (docs/protocol.md §6.31):
    ``status`` ``certified`` (by device ``issuer`` of the account), ``uncertified``,
    ``unchecked`` or ``invalid`` (refused: ``reason``; the device is flagged). Reported when it
    changes."""

    device: DeviceRef
    status: str
    issuer: int | None
    reason: str


ClientEvent = (
    MessageReceived
    | DeviceNamed
    | HistoryImported
    | DevicesChanged
    | PushDead
    | ReadElsewhere
    | TimerChanged
    | MessagesExpired
    | StatusChanged
    | SendRefused
    | GapDetected
    | GapSkipped
    | Connected
    | ConnectFailed
    | CatchingUp
    | Disconnected
    | StorageFailed
    | IdentityChanged
    | DecryptionFailed
    | SealedRefused
    | GroupChanged
    | DeviceCertification
)


class EventStream:
    """An async iterator over a client's events, registered when created (nothing is missed
    between creating it and iterating)."""

    def __init__(self, registry: list[asyncio.Queue[ClientEvent]]) -> None:
        self._queue: asyncio.Queue[ClientEvent] = asyncio.Queue()
        self._registry = registry
        registry.append(self._queue)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> ClientEvent:
        return await self._queue.get()

    def pending(self) -> int:
        """Events already waiting (0: the next ``next()`` waits)."""
        return self._queue.qsize()

    async def next(self, timeout: float | None = None) -> ClientEvent:
        """The next event, waiting at most ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            return await self._queue.get()

    def close(self) -> None:
        """Stop receiving events."""
        if self._queue in self._registry:
            self._registry.remove(self._queue)
