"""An in-memory :class:`~tidings.store.base.Store`: the same semantics, no durability.

For fast tests of the layers above the store. Every method runs to completion without awaiting,
so each operation is atomic under asyncio; each one checks everything before it changes
anything, so a refused or failed operation changes nothing (G8). Not thread-safe: use it from one
event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from tidings.errors import IntegrityError, Rule, StoreError
from tidings.store import _multi, _sealed, _sealed_multi
from tidings.store._mem_sealed import SealedTags
from tidings.store._rules import check_targets, first_full, is_stranger
from tidings.store._stats import record_commit
from tidings.store.base import (
    NO_SENDER,
    AccessDenied,
    Device,
    DeviceCard,
    DeviceRef,
    ExpiryResult,
    InboxItem,
    ItemKind,
    MultiSubmission,
    MultiSubmitResult,
    PreKey,
    PreKeyBundle,
    PreKeyCounts,
    PushSubscription,
    SealedMultiSubmission,
    SealedMultiSubmitResult,
    SealedSubmission,
    SealedSubmitResult,
    Stored,
    StoreStats,
    Submission,
    SubmitResult,
    TagState,
)


@dataclass(slots=True)
class _Inbox:
    device: Device
    last_seq: int = 0
    items: dict[int, InboxItem] = field(default_factory=dict)  #: by seq, in seq order
    strangers: set[int] = field(default_factory=set)  #: seqs of the items from strangers
    last_seen: float | None = None
    certificate: bytes | None = None


@dataclass(slots=True)
class _Account:
    next_device_id: int
    inboxes: dict[int, _Inbox] = field(default_factory=dict)  #: by device id, in id order


@dataclass(frozen=True, slots=True)
class _LinkCode:
    issued_by: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class _Sent:
    stored_at: float
    expires_at: float


@dataclass(slots=True)
class _PreKeys:
    identity_key: bytes
    signed: PreKey
    last_resort: PreKey | None = None
    one_time: dict[int, PreKey] = field(default_factory=dict)  #: by key id
    kem: dict[int, PreKey] = field(default_factory=dict)  #: one-time KEM prekeys, by key id

    def counts(self) -> PreKeyCounts:
        return PreKeyCounts(one_time=len(self.one_time), kem=len(self.kem))


class MemoryStore:
    """A :class:`~tidings.store.base.Store` held in dictionaries.

    Call :meth:`open` before use and :meth:`close` after; in between, the methods of the
    ``Store`` protocol. Each write counts as one commit of one operation in :attr:`stats`.
    """

    def __init__(self) -> None:
        """Create an empty, closed store."""
        self.stats = StoreStats()
        self._open = False
        self._accounts: dict[str, _Account] = {}
        self._keys: dict[bytes, DeviceRef] = {}
        self._codes: dict[tuple[str, bytes], _LinkCode] = {}
        self._sent: dict[tuple[DeviceRef, bytes], _Sent] = {}
        self._prekeys: dict[DeviceRef, _PreKeys] = {}
        self._contacts: set[tuple[str, str]] = set()  #: (account, an account it sent to)
        self._push: dict[DeviceRef, PushSubscription] = {}
        self._access_keys: dict[str, bytes] = {}
        self._tags = SealedTags()

    async def open(self) -> None:
        """Open the store (keeps what it held if it was closed before)."""
        self._open = True

    async def close(self) -> None:
        """Close the store; later calls raise :class:`StoreError` until :meth:`open`."""
        self._open = False

    async def probe(self) -> None:
        """Memory can always be written: only checks that the store is open."""
        self._check_open()

    def _check_open(self) -> None:
        if not self._open:
            raise StoreError("store is not open")

    def _committed(self) -> None:
        record_commit(self.stats, 1, 0.0)

    def _inbox(self, ref: DeviceRef) -> _Inbox | None:
        account = self._accounts.get(ref.account)
        return None if account is None else account.inboxes.get(ref.device_id)

    def _add(self, account: _Account, ref: DeviceRef, key: bytes, name: str, now: float) -> Device:
        device = Device(ref=ref, noise_key=key, created_at=now)  # the name is not kept
        account.inboxes[ref.device_id] = _Inbox(device)
        account.next_device_id = ref.device_id + 1
        self._keys[key] = ref
        self._committed()
        return device

    async def create_account(self, account: str, noise_key: bytes, name: str, now: float) -> Device:
        """Create ``account`` with its first device (id 1). See ``Store.create_account``."""
        self._check_open()
        if account in self._accounts:
            raise IntegrityError(Rule.ACCOUNT_EXISTS)
        if noise_key in self._keys:
            raise IntegrityError(Rule.KEY_ALREADY_REGISTERED)
        entry = self._accounts[account] = _Account(next_device_id=1)
        return self._add(entry, DeviceRef(account, 1), noise_key, name, now)

    async def put_link_code(
        self, device: DeviceRef, code_hash: bytes, expires_at: float, now: float
    ) -> None:
        """Store a one-use link code issued by ``device``. See ``Store.put_link_code``."""
        self._check_open()
        if self._inbox(device) is None:
            raise IntegrityError(Rule.UNKNOWN_DEVICE)
        key = (device.account, code_hash)
        if key in self._codes:
            raise IntegrityError(Rule.LINK_CODE_EXISTS)
        self._codes[key] = _LinkCode(issued_by=device.device_id, expires_at=expires_at)
        self._committed()

    async def add_device(
        self,
        account: str,
        noise_key: bytes,
        name: str,
        code_hash: bytes,
        now: float,
        max_devices: int | None = None,
    ) -> Device:
        """Consume a link code and add a device. See ``Store.add_device``."""
        self._check_open()
        code = self._codes.get((account, code_hash))
        entry = self._accounts.get(account)
        if code is None or code.expires_at <= now or entry is None:
            raise IntegrityError(Rule.INVALID_LINK_CODE)
        if max_devices is not None and len(entry.inboxes) >= max_devices:
            raise IntegrityError(Rule.TOO_MANY_DEVICES)
        if noise_key in self._keys:
            raise IntegrityError(Rule.KEY_ALREADY_REGISTERED)
        del self._codes[account, code_hash]
        return self._add(entry, DeviceRef(account, entry.next_device_id), noise_key, name, now)

    async def remove_device(self, device: DeviceRef) -> None:
        """Remove a device for good. See ``Store.remove_device``."""
        self._check_open()
        entry = self._accounts.get(device.account)
        inbox = None if entry is None else entry.inboxes.get(device.device_id)
        if entry is None or inbox is None:
            raise IntegrityError(Rule.UNKNOWN_DEVICE)
        if len(entry.inboxes) == 1:
            raise IntegrityError(Rule.LAST_DEVICE)
        del entry.inboxes[device.device_id]
        for item in inbox.items.values():
            if item.kind is ItemKind.SEALED:
                self._tags.gone(device.account, item.message_id, expired=False)
        self._keys.pop(inbox.device.noise_key, None)
        self._prekeys.pop(device, None)
        self._push.pop(device, None)
        for key, code in list(self._codes.items()):
            if key[0] == device.account and code.issued_by == device.device_id:
                del self._codes[key]
        self._committed()

    async def device_by_key(self, noise_key: bytes) -> Device | None:
        """The device registered with this Noise static key, if any."""
        self._check_open()
        ref = self._keys.get(noise_key)
        inbox = None if ref is None else self._inbox(ref)
        return None if inbox is None else inbox.device

    async def devices(self, account: str) -> list[Device]:
        """The account's current devices, by id; empty if there is no such account."""
        self._check_open()
        entry = self._accounts.get(account)
        return [] if entry is None else [inbox.device for inbox in entry.inboxes.values()]

    async def put_certificate(self, device: DeviceRef, certificate: bytes) -> None:
        """Store a device's certificate. See ``Store.put_certificate``."""
        self._check_open()
        inbox = self._inbox(device)
        if inbox is None:
            raise IntegrityError(Rule.UNKNOWN_DEVICE)
        inbox.certificate = certificate
        self._committed()

    async def put_access_key(self, device: DeviceRef, access_key: bytes) -> None:
        """Store an account's access key. See ``Store.put_access_key``."""
        self._check_open()
        if self._inbox(device) is None:
            raise IntegrityError(Rule.UNKNOWN_DEVICE)
        self._access_keys[device.account] = access_key
        self._committed()

    async def access_key(self, account: str) -> bytes | None:
        """An account's access key. See ``Store.access_key``."""
        self._check_open()
        return self._access_keys.get(account)

    async def identity_key(self, device: DeviceRef) -> bytes | None:
        """A device's uploaded identity key. See ``Store.identity_key``."""
        self._check_open()
        keys = self._prekeys.get(device)
        return None if keys is None else keys.identity_key

    async def mark_seen(self, device: DeviceRef, at: float) -> None:
        """Record when a device was connected. See ``Store.mark_seen``."""
        self._check_open()
        inbox = self._inbox(device)
        if inbox is not None and (inbox.last_seen is None or at > inbox.last_seen):
            inbox.last_seen = at
            self._committed()

    async def device_cards(self, account: str) -> list[DeviceCard]:
        """The account's devices with their cards. See ``Store.device_cards``."""
        self._check_open()
        entry = self._accounts.get(account)
        inboxes = [] if entry is None else list(entry.inboxes.values())
        return [DeviceCard(i.device.ref, i.last_seen, i.certificate) for i in inboxes]

    async def submit(self, sub: Submission) -> SubmitResult:
        """Store a send atomically (see ``tidings.store._rules`` for the order of the checks)."""
        self._check_open()
        sent = self._sent.get((sub.sender, sub.message_id))
        if sent is not None:
            return Stored(items=(), stored_at=sent.stored_at, duplicate=True)
        current: dict[DeviceRef, _Inbox] = {}
        for account in {sub.recipient, sub.sender.account}:
            entry = self._accounts.get(account)
            if entry is not None:
                current.update((inbox.device.ref, inbox) for inbox in entry.inboxes.values())
        stranger = is_stranger(sub, lambda account, contact: (account, contact) in self._contacts)
        refusal = check_targets(sub, current, sub.recipient in self._accounts) or first_full(
            sub,
            lambda ref: len(current[ref].items),
            (lambda ref: len(current[ref].strangers)) if stranger else None,
        )
        if refusal is not None:
            return refusal
        template = InboxItem(
            0, ItemKind.MESSAGE, sub.sender, sub.message_id, b"", sub.now, sub.expires_at
        )
        items = tuple(
            (ref, _append(current[ref], replace(template, payload=payload)))
            for ref, payload in sub.payloads
        )
        if stranger:
            for ref, item in items:
                if ref.account == sub.recipient:
                    current[ref].strangers.add(item.seq)
        if sub.sender.account != sub.recipient:
            self._contacts.add((sub.sender.account, sub.recipient))
        self._sent[sub.sender, sub.message_id] = _Sent(sub.now, sub.expires_at)
        self._committed()
        return Stored(items=items, stored_at=sub.now)

    async def submit_multi(self, sub: MultiSubmission) -> MultiSubmitResult:
        """Store a multi-send atomically (the rules of ``tidings.store._multi``). Every item
        refers to the one ``sub.shared`` object, which goes with the last of them."""
        self._check_open()
        sent = self._sent.get((sub.sender, sub.message_id))
        if sent is not None:
            return Stored(items=(), stored_at=sent.stored_at, duplicate=True)
        inboxes: dict[DeviceRef, _Inbox] = {}
        current: dict[str, list[DeviceRef]] = {}
        for account, _ in sub.recipients:
            entry = self._accounts.get(account)
            if entry is not None:
                current[account] = [inbox.device.ref for inbox in entry.inboxes.values()]
                inboxes.update((inbox.device.ref, inbox) for inbox in entry.inboxes.values())
        refusal, strangers = _multi.decide(
            sub,
            current,
            lambda ref: (len(inboxes[ref].items), len(inboxes[ref].strangers)),
            lambda account, contact: (account, contact) in self._contacts,
        )
        if refusal is not None:
            return refusal
        template = InboxItem(
            0,
            ItemKind.MESSAGE,
            sub.sender,
            sub.message_id,
            b"",
            sub.now,
            sub.expires_at,
            sub.shared,
        )
        items = []
        for (_, parts), stranger in zip(sub.recipients, strangers, strict=True):
            for ref, part in parts:
                item = _append(inboxes[ref], replace(template, payload=part))
                if stranger:
                    inboxes[ref].strangers.add(item.seq)
                items.append((ref, item))
        self._contacts.update(_multi.new_contacts(sub))
        self._sent[sub.sender, sub.message_id] = _Sent(sub.now, sub.expires_at)
        self._committed()
        return Stored(items=tuple(items), stored_at=sub.now)

    async def submit_sealed(self, sub: SealedSubmission) -> SealedSubmitResult:
        """Store a sealed send atomically (the rules of ``tidings.store._sealed``)."""
        self._check_open()
        if not _sealed.access_ok(self._access_keys.get(sub.recipient), sub.access_key):
            return AccessDenied()
        stored_at = self._tags.stored_at(sub.recipient, sub.tag)
        if stored_at is not None:
            return Stored(items=(), stored_at=stored_at, duplicate=True)
        inboxes = {
            inbox.device.ref: inbox for inbox in self._accounts[sub.recipient].inboxes.values()
        }
        refusal = _sealed.decide(
            sub,
            inboxes,
            lambda ref: len(inboxes[ref].items),
            lambda ref: len(inboxes[ref].strangers),
        )
        if refusal is not None:
            return refusal
        template = InboxItem(0, ItemKind.SEALED, NO_SENDER, sub.tag, b"", sub.now, sub.expires_at)
        items = []
        for ref, payload in sub.payloads:
            item = _append(inboxes[ref], replace(template, payload=payload))
            inboxes[ref].strangers.add(item.seq)
            items.append((ref, item))
        self._tags.add(sub.recipient, sub.tag, len(items), sub.now, sub.expires_at)
        self._committed()
        return Stored(items=tuple(items), stored_at=sub.now)

    async def submit_sealed_multi(self, sub: SealedMultiSubmission) -> SealedMultiSubmitResult:
        """Store a sealed multi-send atomically (the rules of ``tidings.store._sealed_multi``).
        Every item refers to the one ``sub.shared`` object."""
        self._check_open()
        refusal = _sealed_multi.denied(sub, self._access_keys)
        if refusal is not None:
            return refusal
        for account, _, _ in sub.recipients:
            stored_at = self._tags.stored_at(account, sub.tag)
            if stored_at is not None:
                return Stored(items=(), stored_at=stored_at, duplicate=True)
        inboxes: dict[DeviceRef, _Inbox] = {}
        current: dict[str, list[DeviceRef]] = {}
        for account, _, _ in sub.recipients:
            entry = self._accounts.get(account)
            found = [] if entry is None else list(entry.inboxes.values())
            current[account] = [inbox.device.ref for inbox in found]
            inboxes.update((inbox.device.ref, inbox) for inbox in found)
        refusal = _sealed_multi.decide(
            sub,
            current,
            lambda ref: len(inboxes[ref].items),
            lambda ref: len(inboxes[ref].strangers),
        )
        if refusal is not None:
            return refusal
        template = InboxItem(
            0, ItemKind.SEALED, NO_SENDER, sub.tag, b"", sub.now, sub.expires_at, sub.shared
        )
        items = []
        for account, _, parts in sub.recipients:
            for ref, part in parts:
                item = _append(inboxes[ref], replace(template, payload=part))
                inboxes[ref].strangers.add(item.seq)
                items.append((ref, item))
            self._tags.add(account, sub.tag, len(parts), sub.now, sub.expires_at)
        self._committed()
        return Stored(items=tuple(items), stored_at=sub.now)

    async def tag_states(self, tags: Sequence[bytes]) -> list[TagState]:
        """The states of sealed sends' tags. See ``Store.tag_states``."""
        self._check_open()
        return self._tags.states(tags)

    async def fetch(self, device: DeviceRef, after_seq: int, limit: int) -> list[InboxItem]:
        """Up to ``limit`` items of the device's inbox with ``seq > after_seq``, by seq."""
        self._check_open()
        inbox = self._inbox(device)
        if inbox is None or limit <= 0:
            return []
        found = []
        for seq, item in inbox.items.items():
            if seq > after_seq:
                found.append(item)
                if len(found) == limit:
                    break
        return found

    async def ack(self, device: DeviceRef, up_to_seq: int) -> int:
        """Delete the device's items with ``seq <= up_to_seq``; return how many were deleted."""
        self._check_open()
        inbox = self._inbox(device)
        if inbox is None:
            return 0
        done = [seq for seq in inbox.items if seq <= up_to_seq]
        for seq in done:
            item = inbox.items.pop(seq)
            inbox.strangers.discard(seq)
            if item.kind is ItemKind.SEALED:
                self._tags.gone(device.account, item.message_id, expired=False)
        if done:
            self._committed()
        return len(done)

    async def last_seq(self, device: DeviceRef) -> int:
        """The highest seq ever assigned to the device's inbox (0 if none)."""
        self._check_open()
        inbox = self._inbox(device)
        return 0 if inbox is None else inbox.last_seq

    async def queue_depth(self, device: DeviceRef) -> int:
        """How many items the device's inbox holds."""
        self._check_open()
        inbox = self._inbox(device)
        return 0 if inbox is None else len(inbox.items)

    async def total_queued(self) -> int:
        """How many items all inboxes hold together."""
        self._check_open()
        return sum(
            len(inbox.items)
            for entry in self._accounts.values()
            for inbox in entry.inboxes.values()
        )

    async def expire(self, now: float, notice_expires_at: float, limit: int) -> ExpiryResult:
        """Remove up to ``limit`` expired items, oldest first. See ``Store.expire``."""
        self._check_open()
        due = sorted(
            (
                (inbox.device.ref, item)
                for entry in self._accounts.values()
                for inbox in entry.inboxes.values()
                for item in inbox.items.values()
                if item.expires_at <= now
            ),
            key=lambda due: (due[1].expires_at, due[0], due[1].seq),
        )[: max(limit, 0)]
        expired, notices, missed = [], [], []
        for ref, item in due:
            inbox = self._inbox_of(ref)
            del inbox.items[item.seq]
            inbox.strangers.discard(item.seq)
            if item.kind is ItemKind.SEALED:  # no sender to tell: its tag says EXPIRED
                self._tags.gone(ref.account, item.message_id, expired=True)
                expired.append((ref, item))
                continue
            if item.kind is not ItemKind.MESSAGE:
                continue  # an expired notice goes silently
            expired.append((ref, item))
            notice = InboxItem(
                0, ItemKind.EXPIRED, ref, item.message_id, b"", now, notice_expires_at
            )
            owner = self._accounts.get(item.sender.account)
            for sender_inbox in [] if owner is None else owner.inboxes.values():
                notices.append((sender_inbox.device.ref, _append(sender_inbox, notice)))
            gone = replace(notice, kind=ItemKind.MISSED, sender=item.sender)
            missed.append((ref, _append(inbox, gone)))
        self._purge(now)
        self._committed()
        return ExpiryResult(expired=tuple(expired), notices=tuple(notices), missed=tuple(missed))

    async def put_prekeys(
        self,
        device: DeviceRef,
        identity_key: bytes,
        signed_prekey: PreKey,
        one_time: Sequence[PreKey],
        kem: Sequence[PreKey],
        now: float,
    ) -> PreKeyCounts:
        """Store a prekey upload. See ``Store.put_prekeys``."""
        self._check_open()
        if self._inbox(device) is None:
            raise IntegrityError(Rule.UNKNOWN_DEVICE)
        keys = self._prekeys.get(device)
        if keys is not None and keys.identity_key != identity_key:
            raise IntegrityError(Rule.IDENTITY_KEY_CHANGED)
        if keys is None:
            keys = self._prekeys[device] = _PreKeys(identity_key, signed_prekey)
        keys.signed = signed_prekey
        for key in one_time:
            keys.one_time[key.key_id] = PreKey(key.key_id, key.public)
        for key in kem:
            if key.last_resort:
                keys.last_resort = key
            else:
                keys.kem[key.key_id] = key
        self._committed()
        return keys.counts()

    async def take_prekey_bundle(
        self, device: DeviceRef, now: float, *, one_time: bool = True
    ) -> PreKeyBundle | None:
        """Take a bundle of the device's prekeys. See ``Store.take_prekey_bundle``."""
        self._check_open()
        keys = self._prekeys.get(device)
        if keys is None or not (keys.kem or keys.last_resort):
            return None
        if not one_time:
            if keys.last_resort is None:
                return None
            return PreKeyBundle(
                keys.identity_key, keys.signed, None, keys.last_resort, keys.counts()
            )
        kem = keys.kem.pop(min(keys.kem)) if keys.kem else keys.last_resort
        assert kem is not None
        ec = keys.one_time.pop(min(keys.one_time)) if keys.one_time else None
        self._committed()
        return PreKeyBundle(keys.identity_key, keys.signed, ec, kem, keys.counts())

    async def prekey_counts(self, device: DeviceRef) -> PreKeyCounts | None:
        """The device's one-time prekey counts. See ``Store.prekey_counts``."""
        self._check_open()
        keys = self._prekeys.get(device)
        return None if keys is None else keys.counts()

    async def put_push_subscription(self, sub: PushSubscription) -> None:
        """Store a device's push subscription. See ``Store.put_push_subscription``."""
        self._check_open()
        if self._inbox(sub.device) is None:
            raise IntegrityError(Rule.UNKNOWN_DEVICE)
        self._push[sub.device] = sub
        self._committed()

    async def delete_push_subscription(self, device: DeviceRef) -> bool:
        """Drop a device's push subscription. See ``Store.delete_push_subscription``."""
        self._check_open()
        self._committed()
        return self._push.pop(device, None) is not None

    async def push_subscriptions(self) -> list[PushSubscription]:
        """Every stored push subscription, by account and device id."""
        self._check_open()
        return [self._push[ref] for ref in sorted(self._push)]

    def _inbox_of(self, ref: DeviceRef) -> _Inbox:
        return self._accounts[ref.account].inboxes[ref.device_id]

    def _purge(self, now: float) -> None:
        self._tags.purge(now)
        for key in [key for key, sent in self._sent.items() if sent.expires_at <= now]:
            del self._sent[key]
        for code_key in [key for key, code in self._codes.items() if code.expires_at <= now]:
            del self._codes[code_key]


def _append(inbox: _Inbox, template: InboxItem) -> InboxItem:
    """Queue ``template`` to ``inbox`` under the inbox's next seq."""
    inbox.last_seq += 1
    item = replace(template, seq=inbox.last_seq)
    inbox.items[item.seq] = item
    return item
