"""The device's groups: membership over the pairwise sessions, sender keys, group messages.

:class:`GroupRuntime` keeps each group's change log (:class:`~tidings.delivery.groups.GroupLog`)
and this device's :class:`~tidings.e2e.groupcipher.GroupCipher`, and turns each step into one
:class:`~tidings.client.store._groups.GroupWrites` for the store:

* a change made here (:meth:`change`) is checked by replaying it (admin rules: a change that
  would not apply is refused, nothing stored), committed with the content that announces it —
  the change to every member account and to those it removes, the whole log to an account it
  adds, all through the pairwise outbox — and reported (:class:`GroupChanged`);
* a received change (:meth:`on_change`) is taken if its sender authored it, or, for a device
  joining the group, if the sender is a member once it is applied (the log an adder forwards);
  every device then holds the same changes and so, by the replay, the same group. A device
  that learns that an account was added sends it the changes its own account authored, so a
  change made concurrently with the add reaches the new member from its author;
* after a member leaves or is removed, this device's sender key is rotated: what it sends next
  is unreadable to the leaver;
* a group message (:meth:`seal`) goes to member devices that lack the current sender key as a
  SENDER_KEY first (pairwise), then once, encrypted with the sender key, by the
  :class:`~tidings.client.group_transport.GroupTransport`;
* a group message that does not decrypt (:meth:`open_message`) makes this device ask its
  sender device (GROUP_KEY_REQUEST); one of a group this device has not heard of yet, or from
  an account not a member here yet (the change from another member may come after it), is
  asked for with the change that makes it readable (:class:`~tidings.client.group_sync.
  WaitingAsks`, in :meth:`_commit`); the sender answers (:meth:`on_key_request`) with its
  key and the messages again under their ids, to a device that is a member now — never to a
  leaver — and at most as often as :class:`~tidings.client.group_sync.KeyResendLimit` allows;
* a device of this account linked after a group was made gets it from the others
  (:meth:`sync_to`, :meth:`on_sync`), and a member device the relay names as missing for a
  multi-send gets the key and that message pairwise (:meth:`catch_up`): :mod:`.group_sync`.

Sans-I/O apart from the store: times are passed in, ids come from ``new_id``.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable

from ..delivery import ContentError, Message, StreamKey, parse_content
from ..delivery.content_groups import (
    MAX_OPS_PER_CHANGE,
    GroupChange,
    GroupKeyRequest,
    GroupMessage,
    GroupSync,
    SenderKey,
    group_conversation,
    group_of_conversation,
)
from ..delivery.groups import GroupError, GroupLog, GroupOp, GroupState, OpKind
from ..e2e.groupcipher import SenderKeyCipher
from ..e2e.senderkey import DuplicateMessage
from ..errors import DecryptionError
from ..refs import DeviceRef
from . import group_sync
from .events import ClientEvent, GroupChanged
from .group_sync import AskedAgain, KeyResendLimit, WaitingAsks
from .group_transport import GroupSend, GroupTransport
from .store import ClientStore, CryptoWrites, Direction, OutboxRequest
from .store._groups import GroupWrites

__all__ = ["LATER", "MAX_UNKNOWN_GROUP_KEYS", "GroupRuntime", "Later", "Opened"]

log = logging.getLogger("tidings.client")

#: Sender keys kept for groups this device does not know (yet), and per group for senders not
#: members here (yet): a device linked late hears of a few groups before its account's sync, a
#: member of a new member before its add; a stranger cannot make it store keys without end.
MAX_UNKNOWN_GROUP_KEYS = 64


class Later(enum.Enum):
    """A group message this device cannot take yet: it asks for it once it can
    (:class:`~tidings.client.group_sync.WaitingAsks`)."""

    LATER = "later"


LATER = Later.LATER

#: What :meth:`GroupRuntime.open_message` gives: the message, the request to queue instead,
#: :data:`LATER` (noted: asked for with the change that lets this device take it), or None.
Opened = Message | OutboxRequest | Later | None


class GroupRuntime:
    """This device's groups (see the module docstring).

    Args:
        store: the device's store.
        me: this device.
        emit: where events go (the caller's emit holds them until the commit).
        known_devices: the devices of an account as far as this device knows.
        transport: how a group message's one ciphertext is sent.
        new_id: 16 fresh random bytes (group, change and outbox ids; sender keys).
    """

    def __init__(
        self,
        store: ClientStore,
        me: DeviceRef,
        emit: Callable[[ClientEvent], None],
        known_devices: Callable[[str], tuple[int, ...]],
        transport: GroupTransport,
        rng: Callable[[int], bytes],
    ) -> None:
        self.store = store
        self.me = me
        self.transport = transport
        self._emit = emit
        self._known = known_devices
        self._rng = rng
        self.cipher = SenderKeyCipher(me, rng)
        self.logs: dict[bytes, GroupLog] = {}
        #: How often a key request is answered (per group and requesting device).
        self.resend_limit = KeyResendLimit()
        #: The group messages this device asked for again, until they come back.
        self.asked = AskedAgain()
        #: The group messages it will ask for once a change lets it take them.
        self.waiting = WaitingAsks()
        #: Per group, the accounts whose streams begin at their first message here.
        self._from_start: dict[bytes, set[str]] = {}
        self.reload()
        store.on_rollback(self.reload)

    def reload(self) -> None:
        """Forget what is not in the store (a transaction that carried group writes failed)."""
        self.logs = {g: GroupLog(g, ops) for g, ops in self.store.group_ops().items()}
        self.cipher.load(*self.store.sender_keys())

    def _new_id(self) -> bytes:
        return self._rng(16)

    # ---------------------------------------------------------------- reads

    def state(self, group_id: bytes) -> GroupState | None:
        """The group as this device knows it, or None if it knows no change of it."""
        group = self.logs.get(group_id)
        return group.state if group is not None else None

    def joined(self) -> list[GroupState]:
        """The groups this account is a member of, by name."""
        states = [g.state for g in self.logs.values()]
        return sorted(
            (s for s in states if s.exists and self.me.account in s.members),
            key=lambda s: (s.name, s.group_id),
        )

    def is_member(self, conversation: str, account: str) -> bool | None:
        """Whether ``account`` is a member of the group of ``conversation``; None if it is not
        a group conversation."""
        group_id = group_of_conversation(conversation)
        if group_id is None:
            return None
        state = self.state(group_id)
        return state is not None and account in state.members

    def added_later(self, conversation: str) -> bool:
        """Whether ``conversation`` is a group this account was added to after its creation
        (its members' message streams began before it: the inbox starts them midstream)."""
        group_id = group_of_conversation(conversation)
        group = self.logs.get(group_id) if group_id is not None else None
        if group is None:
            return False
        create = next((op for op in group.ops if op.kind is OpKind.CREATE), None)
        return create is not None and self.me.account not in {create.author, *create.targets}

    def member_devices(self, group_id: bytes) -> list[DeviceRef]:
        """Every member device but this one, as far as this device knows them."""
        state = self.state(group_id)
        members = sorted(state.members) if state is not None else []
        devices = [DeviceRef(a, d) for a in members for d in self._known(a)]
        return [d for d in devices if d != self.me]

    # ---------------------------------------------------------------- changes made here

    def create(self, name: str, members: Iterable[str], now: float) -> tuple[bytes, list[bytes]]:
        """A new group of this account (its admin) and ``members``, committed and announced:
        its id and the outbox ids queued."""
        group_id = self._new_id()
        targets = sorted(set(members) - {self.me.account})
        return group_id, self.change(group_id, OpKind.CREATE, targets, name, now, new=True)

    def change(
        self,
        group_id: bytes,
        kind: OpKind,
        targets: Iterable[str] = (),
        name: str = "",
        now: float = 0.0,
        *,
        new: bool = False,
    ) -> list[bytes]:
        """Make, commit and announce a change by this account; returns the outbox ids queued.

        Raises:
            GroupError: no such group, or the change would not apply (its reason); nothing
                is stored.
        """
        group = GroupLog(group_id) if new else self.logs.get(group_id)
        if group is None:
            raise GroupError("no such group")
        op = group.author(self.me.account, kind, self._new_id(), targets, name)
        before = group.state
        trial = GroupLog(group_id, [*group.ops, op])
        outcome = next(o for o in trial.state.history if o.op.op_id == op.op_id)
        if not outcome.applied:
            raise GroupError(outcome.reason)
        writes = GroupWrites([op], [trial.state])
        writes.requests = self._announce(op, before, trial, now)
        self._commit(writes, before, trial, now, self.me)
        return [r.message_id for r in writes.requests]

    def _announce(
        self, op: GroupOp, before: GroupState, after: GroupLog, now: float
    ) -> list[OutboxRequest]:
        """The change to every account that was or is a member (and this one's other
        devices); the whole log to an account it adds. This account is never "added" here:
        its other devices get the change itself even when it is the create (their log starts
        with it), else a second device of the creator never learns of the group."""
        added = after.state.members - before.members - {self.me.account}
        accounts = (before.members | after.state.members | {self.me.account}) - added
        requests = [self._request(a, GroupChange(op.group_id, (op,)), now) for a in accounts]
        for account in sorted(added - {self.me.account}):
            requests += self._log_to(account, after.ops, now)
        return requests

    def _log_to(self, account: str, ops: list[GroupOp], now: float) -> list[OutboxRequest]:
        step = MAX_OPS_PER_CHANGE
        return [
            self._request(account, GroupChange(ops[0].group_id, tuple(ops[i : i + step])), now)
            for i in range(0, len(ops), step)
        ]

    def _request(
        self,
        account: str,
        content: GroupChange | SenderKey | GroupMessage | GroupKeyRequest | GroupSync,
        now: float,
    ) -> OutboxRequest:
        return OutboxRequest(self._new_id(), account, content.serialize(), content.KIND, now)

    def _commit(
        self,
        writes: GroupWrites,
        before: GroupState,
        after: GroupLog,
        now: float,
        by: DeviceRef,
        seq: int | None = None,
        crypto: CryptoWrites | None = None,
    ) -> bool:
        group_id = after.group_id
        asks = self._asks_now(after.state, now)
        writes.requests += [r for _, r in asks]
        if before.members - after.state.members:  # someone left: rotate (module docstring)
            self.cipher.member_left(group_id)
            own = self.cipher.records().get((group_id, self.me))
            if own is not None:
                writes.records[(group_id, self.me)] = own
            writes.given[group_id] = frozenset()
        try:
            ok = self.store.commit_group(writes, now, seq, crypto)
        except BaseException:
            self.reload()
            raise
        if not ok:
            return False
        self.waiting.done(group_id, [d for d, _ in asks])
        self.logs[group_id] = after
        s = after.state
        self._emit(
            GroupChanged(
                group_id,
                s.name,
                tuple(sorted(s.members)),
                tuple(sorted(s.admins)),
                by,
                self.me.account in s.members,
            )
        )
        return True

    def _asks_now(self, state: GroupState, now: float) -> list[tuple[DeviceRef, OutboxRequest]]:
        """The requests for messages that waited for this change (their group, or their
        sender's membership): queued with it, so the answers come after it (:mod:`.group_sync`,
        "Asking when the answer can be taken")."""
        if not state.exists or self.me.account not in state.members:
            return []
        asks = self.waiting.ready(state.group_id, state.members)
        conversation = group_conversation(state.group_id)
        for sender, ask in asks:
            key = StreamKey(conversation, sender.account, sender.device_id)
            self.asked.confirm(key, ask.message_ids)
        return [(sender, self._request(sender.account, ask, now)) for sender, ask in asks]

    # ---------------------------------------------------------------- received changes

    def on_change(
        self, seq: int, sender: DeviceRef, change: GroupChange, now: float, writes: CryptoWrites
    ) -> list[bytes]:
        """Apply changes ``sender`` sent (module docstring); returns the outbox ids queued."""
        group = self.logs.get(change.group_id) or GroupLog(change.group_id)
        known = {op.op_id for op in group.ops}
        new = [op for op in change.ops if op.op_id not in known]
        try:
            trial = GroupLog(change.group_id, [*group.ops, *new])
        except GroupError as exc:  # a change id reused with other content, or a full log
            log.warning("! %s sent a group change that conflicts: %s", sender, exc.reason)
            self.store.advance_cursor(seq, writes)
            return []
        before = group.state
        # Its own changes a sender vouches for (the pairwise session authenticates it; the
        # replay decides what they may do). Others' only reach a device joining the group,
        # from a member: the log an adder forwards (not signed by their authors: trusted as
        # the adder's word). A member never takes a change another member forwards, so no
        # member can put words in an admin's mouth.
        foreign = any(op.author != sender.account for op in new)
        joining = self.me.account not in before.members
        if not new or (foreign and not (joining and sender.account in trial.state.members)):
            if new:
                log.warning("! %s forwarded changes of others to a member: dropped", sender)
            self.store.advance_cursor(seq, writes)
            return []
        out = GroupWrites(new, [trial.state])
        added = trial.state.members - before.members - {self.me.account}
        if added and sender.account != self.me.account and self.me.account in before.members:
            mine = [op for op in trial.ops if op.author == self.me.account]
            for account in sorted(added):
                out.requests += self._log_to(account, mine, now) if mine else []
        if not self._commit(out, before, trial, now, sender, seq, writes):
            return []
        self._note_from_start(change.group_id, before, trial, new)
        return [r.message_id for r in out.requests]

    def _note_from_start(
        self, group_id: bytes, before: GroupState, after: GroupLog, new: list[GroupOp]
    ) -> None:
        """Accounts that became members while this device held the group (or that it learned
        in the create itself, not from a sync): it is owed their messages from the first, so
        their streams do not begin midstream here (:meth:`from_start`)."""
        if self.me.account in before.members:
            fresh = set(after.state.members - before.members)
        else:
            creates = [op for op in new if op.kind is OpKind.CREATE]
            made = {a for op in creates for a in (op.author, *op.targets)}
            fresh = set(made & after.state.members) if self.me.account in made else set()
        if fresh:
            self._from_start.setdefault(group_id, set()).update(fresh)

    def from_start(self, conversation: str, account: str) -> bool:
        """Whether this device is owed ``account``'s messages in the group of
        ``conversation`` from its first: the account joined (or the group was made) while
        this device held the group. In memory: after a restart, the usual rule (a linked
        device begins midstream)."""
        group_id = group_of_conversation(conversation)
        return group_id is not None and account in self._from_start.get(group_id, ())

    # ---------------------------------------------------------------- sender keys

    def on_sender_key(
        self, seq: int, sender: DeviceRef, key: SenderKey, writes: CryptoWrites
    ) -> None:
        """Take a member device's sender key. A key for a group this device does not know yet,
        or from an account that is not a member here yet (while this one is), is kept too: a
        device linked late may hear from a member before its own account's sync
        (:mod:`.group_sync`), a member from a new member before the change that adds it; a key
        alone opens nothing, since :meth:`open_message` checks membership. Else a non-member's
        key is dropped."""
        state = self.state(key.group_id)
        records = self.cipher.records()
        if state is None:  # kept for unknown groups, or for this group from non-members
            kept = sum(1 for g, _ in records if g not in self.logs)
        else:
            kept = sum(1 for g, d in records if g == key.group_id and not self._from_member(g, d))
        if (
            state is not None
            and sender.account not in state.members
            and (self.me.account not in state.members)
        ):
            log.warning("! %s sent a sender key for a group it is not in", sender)
        elif not self._from_member(key.group_id, sender) and kept >= MAX_UNKNOWN_GROUP_KEYS:
            log.warning("! %s sent a sender key for a group not known: too many kept", sender)
        else:
            try:
                self.cipher.accept_key(key.group_id, sender, key.distribution)
            except DecryptionError:
                log.warning("! %s sent a bad sender key", sender)
            else:
                record = self.cipher.records()[(key.group_id, sender)]
                writes.sender_keys[(key.group_id, sender)] = record.serialize()
        self.store.advance_cursor(seq, writes)

    def _from_member(self, group_id: bytes, device: DeviceRef) -> bool:
        state = self.state(group_id)
        return state is not None and device.account in state.members

    def seal(self, group_id: bytes, message_id: bytes, message: Message, now: float) -> GroupWrites:
        """What sending ``message`` queues: the sender key to the member devices that lack
        it, then the one ciphertext by the transport (call inside the compose transaction)."""
        devices = self.member_devices(group_id)
        requests = self._keys_for(group_id, devices, now, message_id)
        shared = self.cipher.encrypt(group_id, message.serialize())
        requests += self.transport.queue(
            GroupSend(group_id, message_id, shared, tuple(devices)), now
        )
        own = self.cipher.records()[(group_id, self.me)]
        return GroupWrites(
            records={(group_id, self.me): own},
            given={group_id: self.cipher.given_to(group_id)},
            requests=requests,
        )

    def _keys_for(
        self,
        group_id: bytes,
        devices: Iterable[DeviceRef],
        now: float,
        sealing: bytes | None = None,
    ) -> list[OutboxRequest]:
        """Our key to each of ``devices`` that lacks it: a SENDER_KEY per member account; to a
        device of this account, a GROUP_SYNC (the log with the key: it may be new and not know
        the group, :mod:`.group_sync`), then our recent messages of the group sealed without
        it (:func:`.group_sync.own_copies`; ``sealing``: the one being sealed now, not)."""
        need: dict[str, bytes] = {}
        syncs: list[OutboxRequest] = []
        own: list[DeviceRef] = []
        for device in devices:
            material = self.cipher.key_for(group_id, device)
            if material is None:
                continue
            self.cipher.given(group_id, device)
            if device.account == self.me.account:
                syncs += group_sync.sync_parts(self, group_id, device, material, now)
                own.append(device)
            else:
                need[device.account] = material
        keys = [self._request(a, SenderKey(group_id, m), now) for a, m in sorted(need.items())]
        copies = group_sync.own_copies(self, group_id, own, now, sealing) if own else []
        return syncs + copies + keys

    # ---------------------------------------------------------------- group messages

    def open_message(
        self, sender: DeviceRef, gm: GroupMessage, now: float, writes: CryptoWrites
    ) -> Opened:
        """The message in a group ciphertext from ``sender``; the key request to queue when
        it does not decrypt (no chain, or a chain position used up though the message is not
        stored here); :data:`LATER` when this device cannot take it yet; None to drop it (not
        a member, not valid)."""
        state = self.state(gm.group_id)
        stream = StreamKey(group_conversation(gm.group_id), sender.account, sender.device_id)
        if (
            state is not None
            and self.me.account in state.members
            and sender.account not in (state.members)
            and self.asked.asked_of_member(stream, gm.message_id)
        ):
            # Asked for while its sender was a member here (its original reached this device
            # then), answered after the sender left: it was sealed for this device, take it.
            log.info("= %s left; a message asked for before: taken", sender)
        elif state is None or (
            sender.account not in state.members and self.me.account in state.members
        ):
            # Not heard of yet, or its sender not a member here yet: the change comes from
            # another member (the creator, the adder) and may be behind this sender's message.
            # Ask the sender again once that change is here (asked now, its answer could come
            # before it and be dropped again), rather than drop the message for good.
            log.info("= %s sent into a group it is not in here yet: asking it later", sender)
            self.waiting.add(gm.group_id, sender, gm.message_id)
            return LATER
        elif sender.account not in state.members:
            log.warning("! %s sent into a group it is not in", sender)
            return None
        elif self.me.account not in state.members:  # left or removed: nothing more of it
            log.warning("! %s sent into a group this account is not in", sender)
            return None
        try:
            plaintext = self.cipher.decrypt(gm.group_id, sender, gm.ciphertext)
        except DuplicateMessage:
            # Its chain position is used up here, yet the message is not stored (the inbox
            # checked its id first): the chain came at a later position, or a step that read
            # it was not committed. It cannot be read from this ciphertext: ask for it again
            # (the answer is encrypted anew), rather than drop it silently for good.
            log.info("= a group message of %s at a used chain position: asking it again", sender)
            ask = GroupKeyRequest(gm.group_id, sender.device_id, (gm.message_id,))
            return self._request(sender.account, ask, now)
        except DecryptionError:
            log.info("= no sender key of %s for a group message: asking it", sender)
            ask = GroupKeyRequest(gm.group_id, sender.device_id, (gm.message_id,))
            return self._request(sender.account, ask, now)
        record = self.cipher.records()[(gm.group_id, sender)]
        writes.sender_keys[(gm.group_id, sender)] = record.serialize()
        try:
            message = parse_content(plaintext)
        except ContentError:
            message = None
        if type(message) is not Message or message.conversation != group_conversation(gm.group_id):
            log.warning("! %s sent a group ciphertext that is not a message of it", sender)
            return None
        return message

    def on_key_request(
        self, seq: int, sender: DeviceRef, ask: GroupKeyRequest, now: float, writes: CryptoWrites
    ) -> list[bytes]:
        """A member device could not read messages of ours: its key, then them again."""
        state = self.state(ask.group_id)
        if ask.device_id != self.me.device_id or state is None:
            self.store.advance_cursor(seq, writes)
            return []
        # A member only (never a leaver) is answered — also by a device whose account left
        # since: what it sent while a member was sealed for the asker (its answers are taken
        # for what was asked before it left: open_message).
        if sender.account not in state.members:
            log.warning("! %s asked for a group's messages and is not a member", sender)
            self.store.advance_cursor(seq, writes)
            return []
        key_again, ids = self.resend_limit.admit(ask.group_id, sender, ask.message_ids, now)
        if key_again or sender not in self.cipher.given_to(ask.group_id):
            self.cipher.lacks(ask.group_id, sender)  # else it has our key since < 30 s
        requests = self._keys_for(ask.group_id, [sender], now)
        if not requests and not ids:
            log.info("= %s asked for our key again within the limit: not answered", sender)
            self.store.advance_cursor(seq, writes)
            return []
        conversation = group_conversation(ask.group_id)
        for mid in ids:
            m = self.store.message(mid)
            if m is None or m.direction is not Direction.OUT or m.conversation != conversation:
                continue
            inner = Message(conversation, m.counter, m.sent_at, m.body)
            shared = self.cipher.encrypt(ask.group_id, inner.serialize())
            requests.append(
                self._request(sender.account, GroupMessage(ask.group_id, mid, shared), now)
            )
        log.info("= %s asked for %d group message(s) again", sender, len(requests))
        out = GroupWrites(
            requests=requests, given={ask.group_id: self.cipher.given_to(ask.group_id)}
        )
        own = self.cipher.records().get((ask.group_id, self.me))
        if own is not None:
            out.records[(ask.group_id, self.me)] = own
        try:
            ok = self.store.commit_group(out, now, seq, writes)
        except BaseException:
            self.reload()
            raise
        return [r.message_id for r in requests] if ok else []

    # ---------------------------------------------------------------- late devices

    def sync_to(self, device: DeviceRef, now: float) -> list[bytes]:
        """Own ``device`` (new) gets every group of this account (:mod:`.group_sync`)."""
        return group_sync.sync_requests(self, device, now)

    def on_sync(
        self, seq: int, sender: DeviceRef, sync: GroupSync, now: float, writes: CryptoWrites
    ) -> list[bytes]:
        """A group from another device of this account (:func:`.group_sync.on_sync`)."""
        return group_sync.on_sync(self, seq, sender, sync, now, writes)

    def catch_up(
        self, group_id: bytes, message_id: bytes, devices: Iterable[DeviceRef], now: float
    ) -> list[bytes]:
        """New member ``devices`` of a refused multi-send (:func:`.group_sync.catch_up`)."""
        return group_sync.catch_up(self, group_id, message_id, devices, now)
