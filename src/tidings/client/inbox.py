"""The client's inbox: turning DELIVER frames into committed messages, statuses and events.

For each item the relay streams, :meth:`Inbox.on_deliver` opens its end-to-end envelope
(:class:`~tidings.client.crypto.DeviceCrypto`) and commits what it means in ONE local
transaction together with the cursor and the session state the decryption advanced (so the item
is acked only after it is durable, and a crash between commit and ack just makes the relay send
it again, which the store then ignores):

* a message — stored once per ``(sender device, message id)`` (G3), its delivered receipt queued
  in the outbox in the same transaction (G5), shown in its sender device's counter order (G4);
* a receipt — statuses of messages this device sent move forward (never back);
* an expiry notice for a message this device sent (kind 1) — ✗ for it at the named device;
* a notice that a message *for* this device expired before it fetched it (kind 2) — the gap it
  leaves in its sender device's order is declared expired at once, so what was held behind it
  is shown without waiting out the hold (:meth:`~tidings.delivery.Reorderer.expired`);
* a payload that does not decrypt — a rate-limited retry request to its sender device is queued
  (the only unencrypted content; it names ids only), and :class:`DecryptionFailed` reported;
* group content — handed to the device's groups (:mod:`.inbox_groups`);
* a retry request for this device — the session with the requester is rebuilt and the named
  messages it was a recipient of are queued again (RESEND, same message id inside);
* a sealed message (kind 3) — opened and handled as the kind-0 item inside, or refused
  (:mod:`.inbox_sealed`);
* a profile key (sealed sender) — a contact's is kept, an own device's adopted if it wins
  (:func:`~tidings.client.sealed_keys.commit_profile_key`);
* anything from a blocked contact — decrypted (its session stays in step) and dropped.

(The two retry-request cases live in :mod:`.inbox_retry`.)

Ordering holds run on the monotonic clock; the times stored and shown are the wall clock's.
Events are reported only after the commit.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence

from ..delivery import (
    ContentError,
    ContentKind,
    DeviceInfo,
    Message,
    Receipt,
    ReceiptKind,
    Reorderer,
    Resend,
    Status,
    StreamKey,
    Surfaced,
    Timer,
    direct_members,
    parse_content,
)
from ..delivery import GapDetected as CoreGapDetected
from ..delivery import GapSkipped as CoreGapSkipped
from ..delivery.content_groups import (
    GroupChange,
    GroupKeyRequest,
    GroupMessage,
    GroupSync,
    SenderKey,
)
from ..delivery.content_history import History
from ..delivery.content_profile import ProfileKey
from ..delivery.msgids import new_message_id
from ..errors import DecryptionError, StoreError, StoreUnavailable
from ..refs import DeviceRef
from ..wire import Deliver
from .certs import CERTIFIED, answer_link_proof
from .clocks import Clocks
from .crypto import DeviceCrypto
from .events import (
    ClientEvent,
    DeviceCertification,
    DeviceNamed,
    GapDetected,
    GapSkipped,
    HistoryImported,
    MessageReceived,
    ReadElsewhere,
    StatusChanged,
    TimerChanged,
)
from .groups import GroupRuntime
from .inbox_groups import is_group_part, on_group, on_group_part
from .inbox_retry import on_plaintext, undecryptable
from .inbox_sealed import on_sealed
from .sealed_keys import commit_profile_key
from .store import ClientStore, CryptoWrites, Direction, OutboxRequest, StoredMessage

log = logging.getLogger("tidings.client")

#: Message ids per delivered receipt when a batch coalesces them (the read receipts of
#: ``mark_read`` take as many): 256 × 16 bytes stays far below a payload's 64 KiB.
RECEIPT_IDS = 256


class Inbox:
    """Commits incoming items and reports them (see the module docstring).

    Args:
        store: the device's store.
        me: this device.
        emit: where events go (after their commit).
        clocks: the wall clock (stored times) and the monotonic one (ordering holds).
        crypto: this device's sessions.
        groups: this device's groups (group content is dropped without).
    """

    def __init__(
        self,
        store: ClientStore,
        me: DeviceRef,
        emit: Callable[[ClientEvent], None],
        clocks: Clocks,
        crypto: DeviceCrypto,
        groups: GroupRuntime | None = None,
    ) -> None:
        self.store = store
        self.me = me
        self.crypto = crypto
        self.groups = groups
        self._emit = emit
        self._clocks = clocks
        self._clock = clocks.wall
        self._mono = clocks.mono
        self._timer: asyncio.TimerHandle | None = None
        #: Delivered receipts owed per sender account, while a batch is open (None: none is).
        self._owed: dict[str, list[bytes]] | None = None
        self.reorderer = self._load_reorderer()
        self._held = store.unsurfaced()
        #: Set when this device signed a certificate for a new own device: the client then
        #: publishes it at the relay (and clears this).
        self.certified = False
        #: Set when an own device's profile key was adopted: the client then gives the relay
        #: its access key (and clears this).
        self.profile_key_changed = False
        #: The blocked contacts, whose items are dropped (the client shares its set here).
        self.blocked: set[str] = set()
        #: The relay's pinned static key, the trust root of sealed messages (set by the client).
        self.trust_root: Callable[[], bytes | None] = lambda: None

    def _load_reorderer(self) -> Reorderer[StoredMessage]:
        # A linked device (id > 1) joins conversations that began before it existed, and a
        # member added to a group joins its streams: the messages before its first one were
        # never queued (nor sealed) for it and are not a gap.
        return Reorderer(
            states=self.store.reorder_states(),
            join_midstream=self._joins_midstream,
            notices=self.store.expired_notices(),
        )

    def _joins_midstream(self, key: StreamKey) -> bool:
        if self.groups is not None and self.groups.from_start(key.conversation, key.sender_account):
            return False  # it joined while this device held the group: owed from its first
        if self.me.device_id > 1:
            return True
        return self.groups is not None and self.groups.added_later(key.conversation)

    def start(self) -> None:
        """Feed back messages held for ordering before the last stop (needs a running loop).

        Each waits the rest of its hold: its arrival time (wall clock, stored) becomes a
        monotonic one at most a hold ago, whatever the wall clock did meanwhile."""
        held, self._held = self._held, []
        t = self._clocks.read()
        hold = self.reorderer.hold_seconds
        for message in held:
            self._feed(message, t.to_mono(message.received_at or t.wall, -hold, 0.0))

    def close(self) -> None:
        """Stop the ordering timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def begin_batch(self) -> None:
        """The store's batch is open: owe delivered receipts instead of queueing one per
        message; :meth:`flush_receipts` queues them, a few ids in each."""
        if self._owed is None:
            self._owed = {}

    def flush_receipts(self) -> list[bytes]:
        """Queue the receipts owed since :meth:`begin_batch` — one per sender account and
        :data:`RECEIPT_IDS` message ids, in the batch's transaction — and return their outbox
        ids. A catch-up of 10,000 messages sends ~40 receipts, not 10,000."""
        owed, self._owed = self._owed, None
        if not owed:
            return []
        now = self._clock()
        requests = []
        for account, ids in owed.items():
            for i in range(0, len(ids), RECEIPT_IDS):
                content = Receipt(ReceiptKind.DELIVERED, tuple(ids[i : i + RECEIPT_IDS]), now)
                requests.append(
                    OutboxRequest(
                        new_message_id(now, os.urandom),
                        account,
                        content.serialize(),
                        ContentKind.RECEIPT,
                        now,
                    )
                )
        self.store.queue_receipts(requests)
        return [r.message_id for r in requests]

    def abort_batch(self) -> None:
        """The batch was rolled back: the receipts owed went with it."""
        self._owed = None

    def on_deliver(self, frame: Deliver) -> list[bytes]:
        """Commit one DELIVER item; return the ids of outbox entries it queued (receipts).

        Raises:
            StoreError: the store failed; nothing was committed and the ordering state was
                reloaded from the store. Do not ack the item.
        """
        now = self._clock()
        sender = DeviceRef(frame.sender_account, frame.sender_device)
        if frame.seq <= self.store.cursor():
            return []  # applied before; its ack was lost: only ack it again
        if frame.kind == 1:
            if self.store.commit_expired(frame.seq, frame.message_id, sender, now):
                overall = self.store.message_status(frame.message_id) or Status.EXPIRED
                self._emit(StatusChanged(frame.message_id, sender, Status.EXPIRED, overall, now))
            return []
        if frame.kind == 2:
            self._expired_unfetched(frame, sender)
            return []
        if frame.kind == 3:  # sealed: handled as the kind-0 item inside (or refused)
            return on_sealed(self, frame, now)
        if frame.kind != 0:  # a kind newer than this client: nothing it can act on
            self.store.advance_cursor(frame.seq)
            return []
        blocked = sender.account in self.blocked
        if is_group_part(frame.payload) and not blocked:
            return self._guarded(lambda: on_group_part(self, frame, sender, now))
        writes = CryptoWrites(now)
        try:
            opened = self.crypto.open(sender, frame.payload, writes)
        except DecryptionError:
            if blocked:
                self.store.advance_cursor(frame.seq)
                return []
            return undecryptable(self, frame, sender, now)
        if blocked:  # dropped, not shown; the session moved on with it
            return self._guarded(lambda: self._dropped(frame, sender, opened.content, writes))
        # Every path below hands ``writes`` to the one store call that commits the item, so
        # the session state lands with it; if that call fails, the store drops them and makes
        # the sessions reload (its rollback hook), and the ordering state reloads here.
        try:
            if opened.plaintext:
                return on_plaintext(self, frame, sender, opened.content, now, writes)
            return self._on_content(frame, sender, opened.content, now, writes)
        except StoreError:
            self.reorderer = self._load_reorderer()
            raise
        except BaseException:
            self.crypto.reload()  # whatever failed, the cache must not run ahead of the store
            raise

    def _dropped(
        self, frame: Deliver, sender: DeviceRef, data: bytes, writes: CryptoWrites
    ) -> list[bytes]:
        """A blocked contact's item: nothing of it is stored or shown, but a message's counter
        is passed in its stream (it was dropped on purpose: not a gap to wait out)."""
        try:
            content = parse_content(data)
        except ContentError:
            content = None
        if isinstance(content, Resend):
            content = content.message
        if not isinstance(content, Message):
            self.store.advance_cursor(frame.seq, writes)
            return []
        now = self._clock()
        placeholder = StoredMessage(
            frame.message_id,
            sender,
            content.conversation,
            content.counter,
            b"",
            content.sent_at,
            Direction.IN,
            None,
            now,
            None,
            None,
            None,
            None,
            None,
        )
        key = StreamKey(content.conversation, sender.account, sender.device_id)
        events = [
            e
            for e in self.reorderer.receive(key, content.counter, placeholder, self._mono())
            if not (isinstance(e, Surfaced) and e.item is placeholder)
        ]
        surfaced = [e.item.key for e in events if isinstance(e, Surfaced)]
        states, notices = self.reorderer.changed_states(), self.reorderer.changed_notices()
        if self.store.commit_dropped(frame.seq, states, surfaced, notices, writes):
            self._report(events)
            self._arm()
        return []

    def _guarded(self, commit: Callable[[], list[bytes]]) -> list[bytes]:
        """Run ``commit``; if it fails, the ordering state and the sessions reload."""
        try:
            return commit()
        except StoreError:
            self.reorderer = self._load_reorderer()
            raise
        except BaseException:
            self.crypto.reload()
            raise

    def _on_content(
        self, frame: Deliver, sender: DeviceRef, data: bytes, now: float, writes: CryptoWrites
    ) -> list[bytes]:
        try:
            content = parse_content(data)
        except ContentError as exc:
            log.warning("! undecodable content from %s: %s", sender, exc.reason)
            self.store.advance_cursor(frame.seq, writes)
            return []
        if isinstance(content, Receipt):
            self._on_receipt(frame, sender, content, now, writes)
            return []
        if isinstance(content, Message):
            return self._on_message(frame, sender, content, now, frame.message_id, writes)
        if isinstance(content, Resend):
            return self._on_message(frame, sender, content.message, now, content.message_id, writes)
        if isinstance(content, Timer):
            self._on_timer_setting(frame, sender, content, writes)
            return []
        if isinstance(content, History):
            self._on_history(frame, sender, content, now, writes)
            return []
        if isinstance(content, ProfileKey):
            if commit_profile_key(self.store, self.me, frame.seq, sender, content, now, writes):
                self.profile_key_changed = True
            return []
        if isinstance(
            content, GroupChange | SenderKey | GroupMessage | GroupKeyRequest | GroupSync
        ):
            return on_group(self, frame, sender, content, now, writes)
        if isinstance(content, DeviceInfo):
            if sender.account == self.me.account:  # another device of this account
                if content.link_proof is not None:
                    self._on_link_proof(sender, content.link_proof, now, writes)
                if self.store.commit_device_name(
                    frame.seq, sender.device_id, content.name, now, writes
                ):
                    self._emit(DeviceNamed(sender, content.name))
            else:
                self.store.advance_cursor(frame.seq, writes)  # not ours to name
            return []
        self.store.advance_cursor(frame.seq, writes)  # a retry request must come unencrypted
        return []

    def _on_link_proof(
        self, sender: DeviceRef, proof: bytes, now: float, writes: CryptoWrites
    ) -> None:
        """A new own device proved it holds a link code's secret (protocol §6.31): if this
        device issued the code, certify the device or flag it."""
        pending = writes.pins.get(sender)
        pinned = self.store.pinned_identities(sender.account).get(sender.device_id)
        key = pending[0] if pending is not None else (pinned[0] if pinned else None)
        signer = self.crypto.keys.identity
        mark = answer_link_proof(self.store, self.me, signer, sender, key, proof, now)
        if mark is None:
            return
        self.certified = self.certified or mark.status == CERTIFIED
        self._emit(DeviceCertification(sender, mark.status, mark.issuer, mark.reason))

    def _expired_unfetched(self, frame: Deliver, sender: DeviceRef) -> None:
        """A message of ``sender`` for this device expired at the relay before this device
        fetched it: it will never come, so its gap need not be waited out (G4)."""
        if self.store.has_message(sender, frame.message_id):
            # It did arrive (its ack reached the relay after the expiry pass): nothing missing.
            self.store.advance_cursor(frame.seq)
            return
        events = self.reorderer.expired(sender.account, sender.device_id)
        try:
            ok = self.store.commit_expired_unfetched(
                frame.seq,
                self.reorderer.changed_states(),
                [e.item.key for e in events if isinstance(e, Surfaced)],
                self.reorderer.changed_notices(),
            )
        except StoreError:
            self.reorderer = self._load_reorderer()
            raise
        if ok:
            self._report(events)
            self._arm()

    # ---------------------------------------------------------------- receipts

    def _on_receipt(
        self,
        frame: Deliver,
        sender: DeviceRef,
        receipt: Receipt,
        now: float,
        writes: CryptoWrites,
    ) -> None:
        if sender.account == self.me.account and receipt.kind is ReceiptKind.READ:
            # another device of this account displayed them: read here too (read-state sync)
            newly = self.store.commit_read_elsewhere(frame.seq, receipt, now, writes)
            if newly:
                self._emit(ReadElsewhere(tuple(newly), sender, now))
            return
        moved = self.store.commit_receipt(frame.seq, sender, receipt, now, writes)
        status = Status.DELIVERED if receipt.kind is ReceiptKind.DELIVERED else Status.READ
        for mid in moved:
            overall = self.store.message_status(mid) or status
            self._emit(StatusChanged(mid, sender, status, overall, now))

    # ---------------------------------------------------------------- history

    def _on_history(
        self, frame: Deliver, sender: DeviceRef, part: History, now: float, writes: CryptoWrites
    ) -> None:
        """A part of an archive from another device of this account (for this device only)."""
        if sender.account != self.me.account or part.for_device != self.me.device_id:
            self.store.advance_cursor(frame.seq, writes)  # a sibling's, or not ours to take
            return
        added = self.store.commit_history(frame.seq, part.entries, now, writes)
        self._emit(HistoryImported(part.archive_id, part.part, part.parts, added, sender, now))

    # ---------------------------------------------------------------- timers

    def _on_timer_setting(
        self, frame: Deliver, sender: DeviceRef, timer: Timer, writes: CryptoWrites
    ) -> None:
        """A member device set the conversation's disappearing-messages timer."""
        if not self._member(sender, timer.conversation):
            log.warning("! %s set a timer in a conversation it is not in", sender)
            self.store.advance_cursor(frame.seq, writes)
            return
        if self.store.commit_timer(frame.seq, sender, timer, writes):
            self._emit(TimerChanged(timer.conversation, timer.seconds, sender, timer.set_at))

    def _member(self, sender: DeviceRef, conversation: str) -> bool:
        if self.groups is not None:
            in_group = self.groups.is_member(conversation, sender.account)
            if in_group is not None:
                return in_group and bool(self.groups.is_member(conversation, self.me.account))
        try:
            members = direct_members(conversation)
        except ContentError:
            return False
        return sender.account in members and self.me.account in members

    # ---------------------------------------------------------------- messages

    def _on_message(
        self,
        frame: Deliver,
        sender: DeviceRef,
        message: Message,
        now: float,
        message_id: bytes,
        writes: CryptoWrites,
        *,
        member: bool = False,
    ) -> list[bytes]:
        # ``member``: the group path already judged membership (GroupRuntime.open_message:
        # both accounts members, or a message asked for while its sender was one).
        if not member and not self._member(sender, message.conversation):
            log.warning("! %s sent into a conversation it is not in", sender)
            self.store.advance_cursor(frame.seq, writes)
            return []
        if self.store.has_message(sender, message_id):
            self.store.advance_cursor(frame.seq, writes)  # a duplicate (G3): only the cursor
            return []
        own_copy = sender.account == self.me.account
        recipient = None
        receipt = None
        if own_copy and message.conversation.startswith("group:"):
            recipient = message.conversation  # a copy of a group message of this account
        elif own_copy:  # a copy of what another device of this account sent (sent-message sync)
            a, b = direct_members(message.conversation)
            recipient = b if a == self.me.account else a
        owed = None
        if not own_copy or recipient == self.me.account:  # a note to self is for this device
            if self._owed is not None:
                owed = sender.account  # queued with the others by flush_receipts()
            else:
                content = Receipt(ReceiptKind.DELIVERED, (message_id,), now).serialize()
                receipt = OutboxRequest(
                    new_message_id(now, os.urandom),
                    sender.account,
                    content,
                    ContentKind.RECEIPT,
                    now,
                )
        stored = StoredMessage(
            message_id=message_id,
            sender=sender,
            conversation=message.conversation,
            counter=message.counter,
            body=message.body,
            sent_at=message.sent_at,
            direction=Direction.IN,
            recipient=recipient,
            received_at=now,
            stored_at=None,
            failed_code=None,
            failed_reason=None,
            read_at=None,
            shown=None,
            expires_in=message.expires_in,
        )
        key = StreamKey(message.conversation, sender.account, sender.device_id)
        events = self.reorderer.receive(key, message.counter, stored, self._mono())
        ok = self.store.commit_incoming(
            frame.seq,
            sender,
            message_id,
            message,
            now,
            receipt=receipt,
            streams=self.reorderer.changed_states(),
            surfaced=[e.item.key for e in events if isinstance(e, Surfaced)],
            recipient=recipient,
            notices=self.reorderer.changed_notices(),
            crypto=writes,
        )
        if not ok:
            return []
        if owed is not None and self._owed is not None:
            self._owed.setdefault(owed, []).append(message_id)
        self._report(events)
        self._arm()
        return [receipt.message_id] if receipt is not None else []

    # ---------------------------------------------------------------- ordering

    def _feed(self, message: StoredMessage, now: float) -> None:
        key = StreamKey(message.conversation, message.sender.account, message.sender.device_id)
        self._commit_surfaced(self.reorderer.receive(key, message.counter, message, now))

    def _commit_surfaced(self, events: Sequence[object]) -> None:
        surfaced = [e.item.key for e in events if isinstance(e, Surfaced)]
        self.store.mark_surfaced(
            surfaced, self.reorderer.changed_states(), self.reorderer.changed_notices()
        )
        self._report(events)
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.reorderer.next_deadline()
        if deadline is not None:
            delay = max(0.0, deadline - self._mono())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        try:
            self._commit_surfaced(self.reorderer.handle_timer(self._mono()))
        except StoreUnavailable:
            pass  # the store told the client, which stops; the held messages wait in the store

    def _report(self, events: Sequence[object]) -> None:
        for e in events:
            if isinstance(e, Surfaced):
                self._emit(MessageReceived(e.item, e.late))
            elif isinstance(e, CoreGapDetected):
                sender = DeviceRef(e.key.sender_account, e.key.sender_device)
                self._emit(GapDetected(e.key.conversation, sender, e.missing))
            elif isinstance(e, CoreGapSkipped):
                sender = DeviceRef(e.key.sender_account, e.key.sender_device)
                self._emit(GapSkipped(e.key.conversation, sender, e.missing, e.reason))
