"""The server's storage interface: accounts, devices, link codes, per-device inboxes, prekeys.

Invariants every backend keeps (the conformance suite in ``tests/store/`` checks them):

* ``seq`` is strictly increasing per device and never reused, even after items are deleted.
* :meth:`Store.submit` is one atomic, durable write: all inbox items of a send plus its
  idempotency record ``(sender device, message id)``. When it returns :class:`Stored`, the write
  has been committed (fsync'ed, or the database's commit) — only then may the ✓ go out (G1).
* A retried submit with the same ``(sender, message_id)`` returns ``Stored(duplicate=True)`` and
  stores nothing new (G3), whatever its payloads.
* The device set is checked inside the same transaction as the write, so a device linked
  concurrently cannot slip between check and commit.
* Items are removed only by :meth:`ack` (the device committed them) or :meth:`expire`.
* A multi-send's shared ciphertext is stored once and lives exactly as long as an item refers
  to it (:meth:`submit_multi`).
* Every stored send from one account to another makes the recipient account a *contact* of the
  sender's: from then on, the recipient's sends to it are no stranger's (see
  ``Submission.max_stranger_queue``). Contacts are never forgotten.
* A failed or refused operation changes nothing stored (G8).
* Push: at most one subscription per device, of a registered device.
* Device cards: a certificate (opaque bytes) and a last-seen time per registered device, gone
  with it; ``mark_seen`` keeps the latest time it was given.
* Sealed sender: at most one access key per account, replaced whole by a new one. A sealed
  send (:meth:`Store.submit_sealed`) stores nothing that names its sender: its items (kind
  ``SEALED``, sender ``DeviceRef("", 0)``, the tag as message id) and one *tag record* per
  ``(recipient, tag)``, which is also its idempotency record. A tag record counts the copies
  still queued (an ack, an expiry or a removed device takes one off), whether one expired, and
  is forgotten :data:`TAG_RETENTION` after its items' expiry time.
* Prekeys: a device's identity key never changes once stored; a one-time prekey (EC or KEM) is
  handed out by at most one :meth:`take_prekey_bundle`, and deleted in the same transaction.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..refs import DeviceRef as DeviceRef  # the Store interface names devices with it
from ..wire.sealed import TagState as TagState  # what Store.tag_states answers

#: Longest account name, in bytes of UTF-8. Matches the wire limit.
MAX_ACCOUNT_NAME = 64

#: How long a sealed send's tag record outlives its items' expiry time (seconds): its state
#: (queued, delivered, expired) is what the sender learns with TAG_QUERY, and a sender that
#: was offline up to a week after its message expired still learns the ✗ (or the delivery);
#: after that the tag is forgotten (UNKNOWN) and a retry with it would be stored anew.
TAG_RETENTION = 7 * 86_400.0

#: The sender every sealed item names: none (an empty account, device 0).
NO_SENDER = DeviceRef("", 0)


@dataclass(frozen=True, slots=True)
class Device:
    """A registered device."""

    ref: DeviceRef
    noise_key: bytes  #: the device's Noise static public key (32 bytes): how it authenticates
    created_at: float


@dataclass(frozen=True, slots=True)
class DeviceCard:
    """What the relay keeps of a device for its account's and contacts' device lists."""

    ref: DeviceRef
    last_seen: float | None  #: when it was last connected, as the relay rounded it; None: never
    certificate: bytes | None  #: a device certificate (opaque here), or None


class ItemKind(enum.IntEnum):
    """What an inbox item is."""

    MESSAGE = 0  #: an envelope from another device: opaque payload bytes
    EXPIRED = 1  #: the server's notice that ``message_id`` expired unfetched at ``sender``
    #: the server's notice to a device that ``message_id`` from ``sender`` expired in its own
    #: inbox unfetched: it will never come, so its gap need not be waited out
    MISSED = 2
    #: a sealed message (docs/protocol.md §14.2): no sender (``DeviceRef("", 0)``), the
    #: sender's tag as ``message_id``, the sealed bytes as ``payload``
    SEALED = 3


@dataclass(frozen=True, slots=True)
class InboxItem:
    """One item of a device's inbox.

    For ``EXPIRED`` notices, ``sender`` names the device whose copy expired; for ``MISSED``
    notices, the device that sent the message that expired here. Notices have an empty
    ``payload``. An item of a multi-send holds the device's part in ``payload`` and the
    ciphertext all its devices share in ``shared`` (one bytes object for all of them): the
    device is delivered ``payload + shared`` (:attr:`body`).
    """

    seq: int
    kind: ItemKind
    sender: DeviceRef
    message_id: bytes
    payload: bytes
    enqueued_at: float
    expires_at: float
    shared: bytes = b""

    @property
    def body(self) -> bytes:
        """What the device is delivered: its payload, followed by the shared ciphertext."""
        return self.payload + self.shared if self.shared else self.payload


@dataclass(frozen=True, slots=True)
class Submission:
    """A send to store atomically.

    Attributes:
        sender: the sending device.
        message_id: 16 bytes chosen by the sender; the idempotency key with ``sender``.
        recipient: the recipient account.
        payloads: one payload per target device: every device of ``recipient`` and every other
            device of the sender's account.
        now: server time of the write; becomes ``enqueued_at``.
        expires_at: when the items expire unfetched.
        max_queue: the per-device queue limit; a target over it refuses the whole send.
        max_stranger_queue: how many items of a recipient device's queue may come from
            senders its account never sent to (strangers, counted together); a recipient
            device at it refuses a stranger's whole send. ``None``: no such share.
    """

    sender: DeviceRef
    message_id: bytes
    recipient: str
    payloads: tuple[tuple[DeviceRef, bytes], ...]
    now: float
    expires_at: float
    max_queue: int
    max_stranger_queue: int | None = None


@dataclass(frozen=True, slots=True)
class Stored:
    """The send is durably stored (or was already: ``duplicate``)."""

    items: tuple[tuple[DeviceRef, InboxItem], ...]  #: empty when ``duplicate``
    stored_at: float
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class DeviceMismatch:
    """The send's device set is not the current one; nothing was stored."""

    missing: tuple[DeviceRef, ...]  #: current devices the send has no payload for
    stale: tuple[DeviceRef, ...]  #: devices the send names that do not exist (any more)


@dataclass(frozen=True, slots=True)
class QueueFull:
    """A target device's queue is at its limit; nothing was stored."""

    device: DeviceRef
    limit: int


SubmitResult = Stored | DeviceMismatch | QueueFull


@dataclass(frozen=True, slots=True)
class MultiSubmission:
    """A multi-recipient send to store atomically: ``shared`` once, one item per device.

    Attributes:
        sender: the sending device.
        message_id: the idempotency key with ``sender`` (shared with :class:`Submission`'s:
            a message id is stored once, by whichever kind of send).
        shared: the ciphertext every recipient device gets after its part.
        recipients: per recipient account (each once), its devices and their parts. Each
            account's devices must be all its current ones (the sender's own: all but the
            sender), by the rule :class:`Submission` has for its recipient.
        now, expires_at, max_queue, max_stranger_queue: as :class:`Submission`'s; a recipient
            account that never sent to the sender's is a stranger's (per account).
    """

    sender: DeviceRef
    message_id: bytes
    shared: bytes
    recipients: tuple[tuple[str, tuple[tuple[DeviceRef, bytes], ...]], ...]
    now: float
    expires_at: float
    max_queue: int
    max_stranger_queue: int | None = None


@dataclass(frozen=True, slots=True)
class MultiRefused:
    """A multi-send some recipient accounts refused; nothing was stored.

    ``unknown``: accounts that do not exist; ``mismatches``: accounts whose device set is not
    the current one (every one of them); ``full``: the first device at its queue limit (only
    looked for when the device sets are right).
    """

    unknown: tuple[str, ...] = ()
    mismatches: tuple[tuple[str, DeviceMismatch], ...] = ()
    full: QueueFull | None = None


MultiSubmitResult = Stored | MultiRefused


@dataclass(frozen=True, slots=True)
class SealedSubmission:
    """A sealed send (docs/protocol.md §14.2) to store atomically; it names no sender.

    Attributes:
        tag: 16 bytes chosen by the sender: with ``recipient``, the idempotency key, and what
            :meth:`Store.tag_states` is asked about.
        recipient: the recipient account.
        access_key: the access key the send presents; it must equal the account's stored one
            (compared in constant time).
        payloads: one sealed payload per device: exactly every current device of
            ``recipient`` (SEND's rule, without own copies: the sender is unknown).
        now: server time of the write; becomes ``enqueued_at`` and the record's ``stored_at``.
        expires_at: when the items expire unfetched.
        max_queue: the per-device queue limit; a device over it refuses the whole send.
        max_stranger_queue: the stranger share (see :class:`Submission`). The relay cannot
            know a sealed sender, so it cannot know it is one the account writes to: every
            sealed item counts as a stranger's, and a device holding this many items of
            strangers (sealed or not) refuses a sealed send. The rest of the queue stays for
            the senders the account writes to, by SEND. ``None``: no share.
    """

    tag: bytes
    recipient: str
    access_key: bytes
    payloads: tuple[tuple[DeviceRef, bytes], ...]
    now: float
    expires_at: float
    max_queue: int
    max_stranger_queue: int | None = None


@dataclass(frozen=True, slots=True)
class AccessDenied:
    """A sealed send without the recipient's access key — no such account, no key registered,
    or another key: one answer for the three, so that a sender cannot probe which accounts
    exist. Nothing was stored."""


SealedSubmitResult = Stored | DeviceMismatch | QueueFull | AccessDenied


@dataclass(frozen=True, slots=True)
class SealedMultiSubmission:
    """A sealed multi-recipient send (docs/protocol.md §14.3) to store atomically: ``shared``
    once, one ``SEALED`` item per device referring to it, one tag record per recipient
    account; it names no sender.

    Attributes:
        tag: 16 bytes chosen by the sender: with each recipient account, the idempotency key,
            and what :meth:`Store.tag_states` is asked about.
        shared: what every recipient device gets after its part.
        recipients: per recipient account (each once): the access key the send presents for
            it (it must equal the account's stored one, compared in constant time) and its
            devices with their parts — exactly every current device of the account.
        now, expires_at, max_queue, max_stranger_queue: as :class:`SealedSubmission`'s (every
            sealed item counts as a stranger's).
    """

    tag: bytes
    shared: bytes
    recipients: tuple[tuple[str, bytes, tuple[tuple[DeviceRef, bytes], ...]], ...]
    now: float
    expires_at: float
    max_queue: int
    max_stranger_queue: int | None = None


@dataclass(frozen=True, slots=True)
class SealedMultiRefused:
    """A sealed multi-send some recipient accounts refused; nothing was stored.

    ``denied``: accounts whose access key the send does not have (wrong, none registered, or
    no such account: one answer); when there are any, nothing else was checked.
    ``mismatches``: accounts whose device set is not the current one (every one of them);
    ``full``: the first device at its queue limit or stranger share (only looked for when the
    device sets are right).
    """

    denied: tuple[str, ...] = ()
    mismatches: tuple[tuple[str, DeviceMismatch], ...] = ()
    full: QueueFull | None = None


SealedMultiSubmitResult = Stored | SealedMultiRefused


@dataclass(frozen=True, slots=True)
class ExpiryResult:
    """What one :meth:`Store.expire` pass did."""

    #: message and sealed items removed unfetched (a sealed one has no notice: no sender is
    #: known, and the MISSED notice's wire form names one; its tag record says EXPIRED)
    expired: tuple[tuple[DeviceRef, InboxItem], ...]
    notices: tuple[tuple[DeviceRef, InboxItem], ...]  #: EXPIRED notices queued to senders
    #: MISSED notices queued to the devices whose items expired, one per item
    missed: tuple[tuple[DeviceRef, InboxItem], ...] = ()


@dataclass(slots=True)
class StoreStats:
    """Counters a backend keeps for metrics (mutable, read by the metrics endpoint)."""

    commits: int = 0
    committed_ops: int = 0
    last_batch_size: int = 0
    commit_seconds_total: float = 0.0
    batch_sizes: list[int] = field(default_factory=list)  #: recent batch sizes (bounded)
    #: Called after each commit with (operations, seconds), from the store's own thread.
    on_commit: Callable[[int, float], None] | None = None
    #: Why the store cannot write now (``"full"``, ``"error: …"``, see ``StoreUnavailable``), set
    #: when an operation fails so; ``None`` again after a write transaction commits a change (or
    #: a :meth:`Store.probe` succeeds). ``/healthz`` reports it.
    unavailable: str | None = None


@dataclass(frozen=True, slots=True)
class PreKey:
    """One public prekey as the relay keeps it: opaque bytes it hands out unchanged.

    ``signature`` is empty for unsigned (one-time X25519) prekeys; ``last_resort`` is only ever
    set on the KEM prekey a device asks to be handed out again when none are left.
    """

    key_id: int
    public: bytes
    signature: bytes = b""
    last_resort: bool = False


@dataclass(frozen=True, slots=True)
class PreKeyCounts:
    """How many one-time prekeys the relay holds for a device (the last-resort key not counted)."""

    one_time: int
    kem: int


@dataclass(frozen=True, slots=True)
class PreKeyBundle:
    """What one fetch took of a device's prekeys, and what it left.

    ``one_time`` and a ``kem`` without ``last_resort`` were deleted by the fetch that took them;
    a ``last_resort`` KEM prekey stays.
    """

    identity_key: bytes
    signed_prekey: PreKey
    one_time: PreKey | None
    kem: PreKey
    left: PreKeyCounts


@dataclass(frozen=True, slots=True)
class PushSubscription:
    """A device's Web Push subscription (RFC 8030/8291) and its wake-up state, as the relay
    keeps it: one per device, replaced whole on every change.

    Attributes:
        device: whose subscription.
        endpoint: the push service's URL the relay POSTs wake-ups to.
        p256dh: the subscription's P-256 public key (65 bytes, uncompressed).
        auth: the subscription's authentication secret (16 bytes).
        created_at: when the device registered it (the relay's clock).
        dead: the push service said it is gone (404/410) or not the relay's (401/403).
        wake_since: when a wake-up became due (an item was queued while the device had no
            connection); ``None``: none is pending. Cleared when the device connects.
        wake_attempts: POSTs made for the pending wake-up.
        wake_next: when to POST (again); ``None``: nothing scheduled.
        wake_sent_at: when the push service last accepted a wake-up (2xx); ``None``: never
            for the pending one.
    """

    device: DeviceRef
    endpoint: str
    p256dh: bytes
    auth: bytes
    created_at: float
    dead: bool = False
    wake_since: float | None = None
    wake_attempts: int = 0
    wake_next: float | None = None
    wake_sent_at: float | None = None


class Store(Protocol):
    """The server's storage. All methods are coroutines; all writes are durable on return."""

    stats: StoreStats

    async def open(self) -> None:
        """Open (creating and migrating the schema as needed)."""

    async def close(self) -> None:
        """Flush pending writes and close."""

    async def probe(self) -> None:
        """Make one tiny durable write that changes nothing, to learn whether the store can
        write again; on success :attr:`StoreStats.unavailable` is ``None``.

        Raises:
            StoreUnavailable: it still cannot write.
        """

    async def create_account(self, account: str, noise_key: bytes, name: str, now: float) -> Device:
        """Create ``account`` with its first device (id 1). ``name`` (REGISTER's device name)
        is not stored: routing needs no name (G6).

        Raises:
            IntegrityError: the account exists or the key is already registered.
        """

    async def put_link_code(
        self, device: DeviceRef, code_hash: bytes, expires_at: float, now: float
    ) -> None:
        """Store a one-use link code (its hash) issued by ``device`` for its account."""

    async def add_device(
        self,
        account: str,
        noise_key: bytes,
        name: str,
        code_hash: bytes,
        now: float,
        max_devices: int | None = None,
    ) -> Device:
        """Consume a link code of ``account`` and add a device with the next free id, atomically.
        ``name`` is not stored (see :meth:`create_account`).

        Raises:
            IntegrityError: no unexpired code with that hash for that account, or the key is
                already registered, or (``"the account has its maximum of devices"``) the
                account has ``max_devices`` devices already. Nothing is changed (the code stays
                unused).
        """

    async def remove_device(self, device: DeviceRef) -> None:
        """Remove ``device`` from its account for good, atomically and durably: the device (its
        key can no longer authenticate), its queued items, its prekeys, its push subscription
        and the link codes it issued. Its id is never reused.

        Raises:
            IntegrityError: ``"unknown device"`` (no such device), ``"the account's last
                device"`` (the account's only one: nothing would be left to use it). Nothing
                is changed.
        """

    async def device_by_key(self, noise_key: bytes) -> Device | None:
        """The device registered with this Noise static key, if any."""

    async def devices(self, account: str) -> list[Device]:
        """The account's current devices, by id; empty if there is no such account."""

    async def put_certificate(self, device: DeviceRef, certificate: bytes) -> None:
        """Store ``device``'s certificate (opaque), replacing an earlier one, durably.

        Raises:
            IntegrityError: ``"unknown device"``. Nothing is changed.
        """

    async def mark_seen(self, device: DeviceRef, at: float) -> None:
        """Record that ``device`` was connected at ``at`` (the caller rounds it); an earlier
        time than the stored one changes nothing, and so does an unknown device."""

    async def device_cards(self, account: str) -> list[DeviceCard]:
        """The account's current devices with their cards, by id; empty if no such account."""

    async def put_access_key(self, device: DeviceRef, access_key: bytes) -> None:
        """Store the unidentified-access key of ``device``'s account, durably, replacing the
        stored one (sealed sender, docs/protocol.md §14).

        Raises:
            IntegrityError: ``"unknown device"``. Nothing is changed.
        """

    async def access_key(self, account: str) -> bytes | None:
        """The account's unidentified-access key; ``None`` without one (or without account)."""

    async def identity_key(self, device: DeviceRef) -> bytes | None:
        """The identity key ``device`` uploaded with its prekeys; ``None`` before any upload."""

    async def submit(self, sub: Submission) -> SubmitResult:
        """Store a send atomically and durably (see the module invariants)."""

    async def submit_multi(self, sub: MultiSubmission) -> MultiSubmitResult:
        """Store a multi-recipient send atomically and durably: ``sub.shared`` once, one item per
        device referring to it, the idempotency record — or nothing (:class:`MultiRefused`).
        The shared ciphertext is deleted with the last item that refers to it (ack, expiry,
        a removed device). Rules, in order: duplicate; every account's device set; queues."""

    async def submit_sealed(self, sub: SealedSubmission) -> SealedSubmitResult:
        """Store a sealed send atomically and durably: one ``SEALED`` item per device and its
        tag record (``queued`` = the number of items) — or nothing. Rules, in order: the access
        key (:class:`AccessDenied`); a known ``(recipient, tag)`` (``Stored(duplicate=True)``,
        its first ``stored_at``); the device set (:class:`DeviceMismatch`, ``missing`` and
        ``stale`` as SEND's); the queue limit, then the stranger share (:class:`QueueFull`).

        Raises:
            IntegrityError: a device is named twice (a caller bug). Nothing is changed.
        """

    async def submit_sealed_multi(self, sub: SealedMultiSubmission) -> SealedMultiSubmitResult:
        """Store a sealed multi-send atomically and durably: ``sub.shared`` once (as
        :meth:`submit_multi`'s shared body), one ``SEALED`` item per device referring to it,
        one tag record per recipient account (``queued`` = its devices) — or nothing
        (:class:`SealedMultiRefused`). Rules, in order: every account's access key (all the
        denied ones); the tag known for any of the accounts (``Stored(duplicate=True)``, the
        first ``stored_at``); every account's device set; the queue limit, then the stranger
        share.

        Raises:
            IntegrityError: a device is named twice (a caller bug). Nothing is changed.
        """

    async def tag_states(self, tags: Sequence[bytes]) -> list[TagState]:
        """The state of each tag, in order: ``EXPIRED`` if a copy of a send with that tag
        expired unfetched, else ``QUEUED`` if a copy waits, else ``DELIVERED`` (every copy
        acknowledged, or gone with its removed device); ``UNKNOWN`` for a tag never stored or
        forgotten. Of several recipients' sends with one tag, the first state that applies in
        that order."""

    async def fetch(self, device: DeviceRef, after_seq: int, limit: int) -> list[InboxItem]:
        """Up to ``limit`` items of the device's inbox with ``seq > after_seq``, by seq."""

    async def ack(self, device: DeviceRef, up_to_seq: int) -> int:
        """Delete the device's items with ``seq <= up_to_seq``; return how many were deleted."""

    async def last_seq(self, device: DeviceRef) -> int:
        """The highest seq ever assigned to the device's inbox (0 if none)."""

    async def queue_depth(self, device: DeviceRef) -> int:
        """How many items the device's inbox holds."""

    async def total_queued(self) -> int:
        """How many items all inboxes hold together."""

    async def expire(self, now: float, notice_expires_at: float, limit: int) -> ExpiryResult:
        """Remove up to ``limit`` items with ``expires_at <= now``, in one transaction.

        For each MESSAGE item removed, queue an EXPIRED notice (same ``message_id``, ``sender`` =
        the device whose copy expired) to every current device of the original sender's account,
        and a MISSED notice (same ``message_id``, ``sender`` = the original sender) to the device
        whose item it was, after everything queued to it before; all expiring at
        ``notice_expires_at``. Notices (of either kind) that expire are removed silently: a
        notice about a notice would tell a device nothing, and a chain of them would never end.
        Idempotency records older than the retention (``expires_at <= now``) are purged too.
        A ``SEALED`` item that expires marks its tag record expired, and queues no notice at
        all; tag records past their retention (see :data:`TAG_RETENTION`) are purged.
        """

    async def put_prekeys(
        self,
        device: DeviceRef,
        identity_key: bytes,
        signed_prekey: PreKey,
        one_time: Sequence[PreKey],
        kem: Sequence[PreKey],
        now: float,
    ) -> PreKeyCounts:
        """Store a prekey upload of ``device`` atomically; return the counts after it.

        The signed prekey replaces the stored one; ``one_time`` and the KEM prekeys without
        ``last_resort`` are added (a stored key with the same id is replaced); a KEM prekey with
        ``last_resort`` replaces the stored last-resort key.

        Raises:
            IntegrityError: ``"unknown device"``, or ``"identity key changed"`` (an earlier
                upload stored another identity key). Nothing is changed.
        """

    async def take_prekey_bundle(
        self, device: DeviceRef, now: float, *, one_time: bool = True
    ) -> PreKeyBundle | None:
        """Take a bundle of ``device``'s prekeys, atomically and durably.

        Takes (deletes) the one-time prekey and the one-time KEM prekey with the lowest ids, if
        any; without a one-time KEM prekey, hands out the last-resort one (not deleted).
        ``None``, changing nothing, when the device has no upload or no KEM prekey at all.

        With ``one_time=False`` (the relay's per-device budget of one-time prekeys is spent)
        nothing is taken: the bundle holds no one-time prekey and the last-resort KEM prekey,
        or is ``None`` without a last-resort KEM prekey.
        """

    async def prekey_counts(self, device: DeviceRef) -> PreKeyCounts | None:
        """The device's one-time prekey counts; ``None`` if it never uploaded prekeys."""

    async def put_push_subscription(self, sub: PushSubscription) -> None:
        """Store ``sub`` as its device's subscription, durably, replacing the one stored
        (endpoint, keys and wake-up state alike).

        Raises:
            IntegrityError: ``"unknown device"``. Nothing is changed.
        """

    async def delete_push_subscription(self, device: DeviceRef) -> bool:
        """Drop the device's subscription, durably; whether there was one."""

    async def push_subscriptions(self) -> list[PushSubscription]:
        """Every stored subscription, by account and device id."""
