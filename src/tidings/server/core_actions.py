"""What the relay's connection core (:mod:`tidings.server.core`) asks its adapter for.

Two kinds of output besides the frames to send:

* **store commands** (``(id, op)`` pairs, drained by :meth:`RelayCore.store_commands`): one
  :class:`~tidings.store.Store` call each (``op``, a :data:`StoreOp`), named by an id. The
  adapter runs them in the order given (the store runs its operations in the order they were
  queued, so a command sees every one before it) and reports each result back with
  :meth:`RelayCore.stored` or :meth:`RelayCore.store_failed`;
* **actions** (drained by :meth:`RelayCore.actions`): what the adapter must do outside this
  connection (routing, the other sessions, logs, metrics) and how to close it.

All are plain values: the core never touches the store, the relay or a socket. The ones made
per message are few (a send gives its :class:`~tidings.store.Submission` as the op itself and
one :class:`SendStored`): a frozen dataclass costs ~0.6 µs to build here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import StoreUnavailable
from ..store import (
    DeviceRef,
    MultiSubmission,
    PreKey,
    PreKeyCounts,
    SealedMultiSubmission,
    SealedSubmission,
    Stored,
    Submission,
)

__all__ = [
    "INFO",
    "WARNING",
    "AckItems",
    "AckTaken",
    "Action",
    "AddDevice",
    "AnnounceDevices",
    "Attach",
    "CloseConnection",
    "CountPrekeys",
    "CreateAccount",
    "ExpectAuth",
    "Failure",
    "FetchItems",
    "GetDeviceByKey",
    "ItemsDelivered",
    "ListDevices",
    "Log",
    "MarkSeen",
    "NotifyPrekeysLow",
    "PushInfo",
    "PushOp",
    "PutAccessKey",
    "PutCertificate",
    "PutLinkCode",
    "PutPrekeys",
    "QueryPush",
    "ReadDeviceCards",
    "ReadIdentityKey",
    "ReadLastSeq",
    "ReadQueueDepth",
    "ReadTagStates",
    "RegisterPush",
    "SealedCounted",
    "SendRefused",
    "SendStored",
    "StoreOp",
    "StoreTrouble",
    "TakePrekeyBundle",
    "UnregisterPush",
]

#: Log levels of :class:`Log` (the values of :mod:`logging`'s, which the core does not import).
INFO = 20
WARNING = 30


# ---------------------------------------------------------------- store operations


@dataclass(frozen=True, slots=True)
class CreateAccount:
    """``Store.create_account``: a :class:`~tidings.store.Device`, or ``IntegrityError``."""

    account: str
    noise_key: bytes
    name: str
    now: float


@dataclass(frozen=True, slots=True)
class AddDevice:
    """``Store.add_device`` (consume a link code): a ``Device``, or ``IntegrityError``."""

    account: str
    noise_key: bytes
    name: str
    code_hash: bytes
    now: float
    max_devices: int | None = None


@dataclass(frozen=True, slots=True)
class RemoveDevice:
    """``Store.remove_device``: ``None``, or ``IntegrityError`` (unknown, last device)."""

    device: DeviceRef


@dataclass(frozen=True, slots=True)
class GetDeviceByKey:
    """``Store.device_by_key``: a ``Device`` or ``None``."""

    noise_key: bytes


@dataclass(frozen=True, slots=True)
class ListDevices:
    """``Store.devices``: the account's devices (a list, empty for no such account)."""

    account: str


@dataclass(frozen=True, slots=True)
class ReadLastSeq:
    """``Store.last_seq``: an ``int``."""

    device: DeviceRef


@dataclass(frozen=True, slots=True)
class ReadQueueDepth:
    """``Store.queue_depth``: an ``int``."""

    device: DeviceRef


@dataclass(frozen=True, slots=True)
class AckItems:
    """``Store.ack``: how many items were deleted (``int``)."""

    device: DeviceRef
    up_to_seq: int


@dataclass(frozen=True, slots=True)
class FetchItems:
    """``Store.fetch``: a list of :class:`~tidings.store.InboxItem`."""

    device: DeviceRef
    after_seq: int
    limit: int


@dataclass(frozen=True, slots=True)
class PutLinkCode:
    """``Store.put_link_code``: ``None``."""

    device: DeviceRef
    code_hash: bytes
    expires_at: float
    now: float


@dataclass(frozen=True, slots=True)
class CountPrekeys:
    """``Store.prekey_counts``: a :class:`~tidings.store.PreKeyCounts` or ``None``."""

    device: DeviceRef


@dataclass(frozen=True, slots=True)
class PutPrekeys:
    """``Store.put_prekeys``: the ``PreKeyCounts`` after it, or ``IntegrityError``."""

    device: DeviceRef
    identity_key: bytes
    signed_prekey: PreKey
    one_time: Sequence[PreKey]
    kem: Sequence[PreKey]
    now: float


@dataclass(frozen=True, slots=True)
class TakePrekeyBundle:
    """``Store.take_prekey_bundle``: a ``PreKeyBundle`` or ``None``."""

    device: DeviceRef
    now: float
    one_time: bool


@dataclass(frozen=True, slots=True)
class PushInfo:
    """What the push operations give: the relay's VAPID public key, and the device's
    subscription (its state, a ``PushState``, and its endpoint, empty without one)."""

    vapid_key: bytes
    state: int
    endpoint: str


@dataclass(frozen=True, slots=True)
class RegisterPush:
    """``WakeUps.register`` (not the store's: the relay's push sender checks the endpoint and
    stores it): a :class:`PushInfo`, or ``EndpointRefused``."""

    device: DeviceRef
    endpoint: str
    p256dh: bytes
    auth: bytes
    now: float


@dataclass(frozen=True, slots=True)
class UnregisterPush:
    """``WakeUps.unregister``: a :class:`PushInfo`."""

    device: DeviceRef


@dataclass(frozen=True, slots=True)
class QueryPush:
    """``WakeUps.status``: a :class:`PushInfo`."""

    device: DeviceRef


@dataclass(frozen=True, slots=True)
class PutCertificate:
    """``Store.put_certificate``: ``None``, or ``IntegrityError`` (unknown device)."""

    device: DeviceRef
    certificate: bytes


@dataclass(frozen=True, slots=True)
class MarkSeen:
    """``Store.mark_seen``: ``None``."""

    device: DeviceRef
    at: float


@dataclass(frozen=True, slots=True)
class ReadDeviceCards:
    """``Store.device_cards`` with whether each device has a live session now (the adapter
    knows its sessions): a list of ``(DeviceCard, online)``."""

    account: str


@dataclass(frozen=True, slots=True)
class ReadIdentityKey:
    """``Store.identity_key``: the uploaded identity key (bytes) or ``None``."""

    device: DeviceRef


@dataclass(frozen=True, slots=True)
class PutAccessKey:
    """``Store.put_access_key``: ``None``, or ``IntegrityError`` (unknown device)."""

    device: DeviceRef
    access_key: bytes


@dataclass(frozen=True, slots=True)
class ReadTagStates:
    """``Store.tag_states``: a list of ``TagState``, one per tag, in order."""

    tags: tuple[bytes, ...]


#: The operations the relay's push sender runs (``Session`` routes them to it, in order with
#: the store's: each result comes back as a store result does).
PushOp = RegisterPush | UnregisterPush | QueryPush

StoreOp = (
    CreateAccount
    | AddDevice
    | RemoveDevice
    | GetDeviceByKey
    | ListDevices
    | ReadLastSeq
    | ReadQueueDepth
    | AckItems
    | FetchItems
    | Submission
    | MultiSubmission
    | PutLinkCode
    | CountPrekeys
    | PutPrekeys
    | TakePrekeyBundle
    | PushOp
    | PutCertificate
    | MarkSeen
    | ReadDeviceCards
    | ReadIdentityKey
    | PutAccessKey
    | SealedSubmission
    | SealedMultiSubmission
    | ReadTagStates
)


#: Run ``op`` on the store; report its result under the id (``Store.submit`` for a
#: :class:`~tidings.store.Submission`: a ``SubmitResult``, committed, G1; ``Store.submit_multi``
#: for a :class:`~tidings.store.MultiSubmission`: a ``MultiSubmitResult``; ``Store.submit_sealed``
#: for a :class:`~tidings.store.SealedSubmission`: a ``SealedSubmitResult``, committed;
#: ``Store.submit_sealed_multi`` for a :class:`~tidings.store.SealedMultiSubmission`: a
#: ``SealedMultiSubmitResult``, committed).
StoreCommand = tuple[int, StoreOp]


# ---------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Attach:
    """This connection is now the live one of its device (:attr:`RelayCore.device`): route its
    items here, and close an older connection of the same device."""


@dataclass(frozen=True, slots=True)
class AnnounceDevices:
    """Tell every live session of ``account`` its devices (an unsolicited DEVICES): a device
    was linked."""

    account: str
    device_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class EvictDevice:
    """``device`` was unlinked: close its live session, if any (UNKNOWN_DEVICE)."""

    device: DeviceRef


@dataclass(frozen=True, slots=True)
class SendStored:
    """A send was committed (or was a duplicate): count it, and hand each of its new items to
    its device's live session, if any."""

    result: Stored


@dataclass(frozen=True, slots=True)
class NotifyPrekeysLow:
    """A fetch took prekeys of ``device``: its live session, if any, checks ``counts``."""

    device: DeviceRef
    counts: PreKeyCounts


@dataclass(frozen=True, slots=True)
class ExpectAuth:
    """REGISTERED went out: HELLO is due within the auth timeout from now (the channel's)."""


@dataclass(frozen=True, slots=True)
class CloseConnection:
    """Send ERROR ``code`` (``reason``, caused by a frame of ``frame_type``) and close; always
    the last action of the connection, after its frames."""

    code: int
    reason: str
    frame_type: int


@dataclass(frozen=True, slots=True)
class StoreTrouble:
    """The store could not write (``exc``): the relay's health."""

    exc: StoreUnavailable


@dataclass(frozen=True, slots=True)
class Failure:
    """Something failed unexpectedly (``exc``): log it with its traceback."""

    message: str
    exc: BaseException


@dataclass(frozen=True, slots=True)
class Log:
    """A line for the connection's log (``level``: :data:`INFO` or :data:`WARNING`)."""

    level: int
    message: str


@dataclass(frozen=True, slots=True)
class SendRefused:
    """Metrics: a send was refused with ``code``."""

    code: int


@dataclass(frozen=True, slots=True)
class SealedCounted:
    """Metrics: a sealed send was answered ``code`` (0: stored, or ``duplicate``); no label
    names an account."""

    code: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class AckTaken:
    """Metrics: an ACK moved the device's cursor."""


@dataclass(frozen=True, slots=True)
class ItemsDelivered:
    """Metrics: the store deleted ``removed`` items for an ACK."""

    removed: int


Action = (
    Attach
    | AnnounceDevices
    | EvictDevice
    | SendStored
    | NotifyPrekeysLow
    | ExpectAuth
    | CloseConnection
    | StoreTrouble
    | Failure
    | Log
    | SendRefused
    | SealedCounted
    | AckTaken
    | ItemsDelivered
)
