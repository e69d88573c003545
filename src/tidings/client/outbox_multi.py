"""The outbox's group multi-sends (issue 12): ONE MULTI_SEND per group message entry.

An entry of :class:`~tidings.client.group_transport.MultiTransport` (lane ``group:<hex>``,
content :class:`~tidings.client.group_transport.MultiEntry`) is released by the same scheduler
as every other entry (window, retries, lanes) and sent as one MULTI_SEND (docs/protocol.md
§6.27) naming every known device of each member account (for this account: every other
device), each with the part :data:`~tidings.client.group_transport.GROUP_PART`:

* it waits behind the group's earlier SENDER_KEY and GROUP_CHANGE entries to its accounts that
  are not sent yet (a member device must get the key before the message it opens);
* MULTI_SENT code 0 is the ✓ of the entry: SENT at every named device of the other accounts;
* a refusal becomes the REFUSED it stands for (:func:`as_refused`) and goes the outbox's
  refusal path: a stale device set (DEVICE_MISMATCH) fixes the named accounts' device lists
  from the relay's diff and retries at once; limits retry later; permanent codes fail it;
* a relay without MULTI_SEND — it answers REQUEST_FAILED, or closes the connection with
  MALFORMED_FRAME or UNEXPECTED_FRAME while the send is in flight — makes the entry fall back
  to the pairwise copies of :class:`~tidings.client.group_transport.PairwiseFallback`, in one
  transaction (:meth:`ClientStore.replace_outbox`); from then on, for the client's life, every
  multi-send entry does.

A DEVICE_MISMATCH that names devices missing (a member linked a device) hands them to
:attr:`MultiSender.catch_up` (the group runtime: its key and the message again, pairwise,
:mod:`.group_sync`) before the retry, and the retry waits until what it queued is sent.

After a restart a stored entry goes again under its message id: the relay stores it once.
The request/answer goes through :meth:`tidings.client.session.Session.multi_send`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..delivery import ContentError, ContentKind, OutboxEntry
from ..delivery.content_groups import group_of_conversation
from ..errors import ConnectionBroken, FrameError, RefusedError, StoreError, TidingsError
from ..net.channel import ChannelClosed
from ..net.ws import ChannelConnection
from ..refs import DeviceRef
from ..wire import ErrorCode, MultiAccount, MultiDevice, MultiSend, MultiSent, Refused, Sent
from ..wire.limits import MAX_TARGETS
from .group_transport import GROUP_PART, MultiEntry, is_group_lane
from .outbox_sealed_multi import SealedGroup, SealedGroupPlan

if TYPE_CHECKING:
    from .outbox import Outbox
    from .store import OutboxItem

__all__ = ["MultiLink", "MultiPlan", "MultiSender", "as_refused"]

log = logging.getLogger("tidings.client")

#: The close codes of a relay that does not know MULTI_SEND (frame type 13): its decoder
#: refuses the unknown type (MALFORMED_FRAME), or its session state the frame (UNEXPECTED_FRAME).
OLD_RELAY_CODES = frozenset({int(ErrorCode.MALFORMED_FRAME), int(ErrorCode.UNEXPECTED_FRAME)})

#: The group control contents a multi-send waits behind (the key and membership it needs).
_BEFORE = frozenset({ContentKind.SENDER_KEY, ContentKind.GROUP_CHANGE, ContentKind.GROUP_SYNC})


def _pairwise_group_message(item: OutboxItem) -> bool:
    """A group message sent again to one account (an answer to a key request, a copy for a
    new device): a multi-send waits behind it too, so that it comes first, in counter order.
    (A multi-send entry is queued under its group's lane, never an account.)"""
    return item.kind == ContentKind.GROUP_MESSAGE and not is_group_lane(item.recipient)


@dataclass(frozen=True, slots=True)
class MultiLink:
    """How the outbox reaches the relay's multi-send: ``send(message_id, shared, recipients)``
    (:meth:`Session.multi_send`) and how the last connection ended."""

    send: Callable[[bytes, bytes, Sequence[MultiAccount]], Awaitable[MultiSent]]
    last_close: Callable[[], ChannelClosed | None]


@dataclass(frozen=True, slots=True)
class MultiPlan:
    """One released multi-send: its id, the shared content, whom it names."""

    message_id: bytes
    shared: bytes
    recipients: tuple[MultiAccount, ...]
    #: it goes sealed (:mod:`.outbox_sealed_multi`): its SEALED_MULTI_SEND and own devices
    sealed: SealedGroupPlan | None = None


def as_refused(answer: MultiSent) -> Refused:
    """The REFUSED a refused MULTI_SENT stands for in the outbox's refusal path: an account
    that does not exist fails it (NO_SUCH_ACCOUNT, permanent); else a stale device set
    (DEVICE_MISMATCH, the diff applied by :meth:`MultiSender.on_answer`); else a full queue
    (QUEUE_FULL, retried after ``retry_after``); else the answer's own code."""
    codes = {r.code for r in answer.refusals}
    code = answer.code
    if code == ErrorCode.RECIPIENTS_REFUSED:
        for c in (ErrorCode.NO_SUCH_ACCOUNT, ErrorCode.DEVICE_MISMATCH, ErrorCode.QUEUE_FULL):
            if c in codes:
                code = int(c)
                break
    names = ",".join(r.account for r in answer.refusals)
    reason = (answer.reason + (f" ({names})" if names else ""))[:200]
    return Refused(answer.message_id, code, reason, retry_after=answer.retry_after)


class MultiSender:
    """The multi-send side of one :class:`~tidings.client.outbox.Outbox` (module docstring)."""

    def __init__(self, outbox: Outbox, link: MultiLink | None) -> None:
        self._ob = outbox
        self._link = link
        #: The relay lacks MULTI_SEND (or there is no link): every entry falls back.
        self.unsupported = link is None
        self._waiting: set[str] = set()  # lanes held behind group control entries
        self._tasks: set[asyncio.Task[None]] = set()
        #: What new member devices of a refused multi-send get first:
        #: ``catch_up(group_id, message_id, devices)`` commits it and returns its outbox ids.
        self.catch_up: Callable[[bytes, bytes, Iterable[DeviceRef]], list[bytes]] | None = None
        #: Per multi-send, the entries its retry waits for (what ``catch_up`` queued).
        self._after: dict[bytes, set[bytes]] = {}
        #: The sealed group messages (SEALED_MULTI_SEND on the unidentified connection).
        self.sealed = SealedGroup(self)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()

    def on_disconnect(self) -> None:
        self._waiting.clear()  # the scheduler forgot the holds too
        self.sealed.on_disconnect()

    def release_waiting(self) -> None:
        """An entry left the outbox: the multi-sends held behind one may go (re-checked)."""
        waiting, self._waiting = self._waiting, set()
        for lane in waiting:
            self._ob.scheduler.devices_refreshed(lane)

    # ---------------------------------------------------------------- building

    def split(self, entries: list[OutboxEntry]) -> tuple[list[OutboxEntry], list[OutboxEntry]]:
        """The released entries that are multi-sends, and the rest."""
        items = self._ob._items
        multi: list[OutboxEntry] = []
        rest: list[OutboxEntry] = []
        for e in entries:
            item = items.get(e.message_id)
            (multi if item is not None and is_group_lane(item.recipient) else rest).append(e)
        return multi, rest

    def plan(self, entries: list[OutboxEntry], now: float) -> tuple[list[MultiPlan], list[bytes]]:
        """The MULTI_SENDs for released multi-send entries, and the ids of those with no other
        device (✓ at once). Entries behind a group control entry are held; a broken entry fails;
        on a relay without MULTI_SEND they fall back to pairwise copies."""
        ob = self._ob
        plans: list[MultiPlan] = []
        notes: list[bytes] = []
        before = self._control_entries(entries)
        for e in entries:
            mid = e.message_id
            try:
                entry = MultiEntry.parse(ob._items[mid].content)
            except ContentError as exc:
                ob._fail_locally(mid, int(ErrorCode.INVALID_FIELD), exc.reason)
                continue
            if self.unsupported:
                self.fall_back(mid, entry, now, "no multi-recipient send")
                continue
            lanes = set(entry.accounts)
            after = self._after.get(mid, set()) & ob._items.keys()
            if not after:
                self._after.pop(mid, None)
            if after or any((o < e.order or old) and ln in lanes for o, ln, old in before):
                ob.scheduler.hold(mid)
                self._waiting.add(e.lane)
                continue
            recipients, targets = self._recipients(entry.accounts)
            if not recipients:
                notes.append(mid)
                continue
            try:
                MultiSend(0, mid, entry.content, recipients)  # within the wire's limits?
            except FrameError as exc:
                self.fall_back(mid, entry, now, f"too large for one multi-send: {exc}")
                continue
            ob._targets[mid] = targets
            lane = ob._items[mid].recipient
            sealed = self.sealed.plan(mid, lane, entry.content, recipients, now)
            plans.append(MultiPlan(mid, entry.content, recipients, sealed))
        return plans, notes

    def _control_entries(self, released: list[OutboxEntry]) -> list[tuple[int, str, bool]]:
        """``(order, lane)`` of group control entries the relay has not ✓'d yet, in flight
        too: an in-flight SEND may still be refused (a stale device set) and sent again after
        the multi-send, which would then reach a new member before its log of changes (it
        drops a message of a group it does not know: the ``group-chat`` lab scenario). The
        flag: a pairwise group message, an earlier one of ours sent again (a catch-up copy, an
        answer), holds every multi-send to its account, even one queued before it: a later
        message must not overtake it (a device that begins the stream midstream would show
        the earlier one late)."""
        if not released:
            return []
        ob = self._ob
        out = []
        for e in ob.scheduler.entries():
            item = ob._items.get(e.message_id)
            if item is not None and item.kind in _BEFORE:
                out.append((e.order, e.lane, False))
            elif item is not None and _pairwise_group_message(item):
                out.append((e.order, e.lane, True))
        return out

    def _recipients(
        self, accounts: tuple[str, ...]
    ) -> tuple[tuple[MultiAccount, ...], tuple[DeviceRef, ...]]:
        me = self._ob.me
        out: list[MultiAccount] = []
        targets: list[DeviceRef] = []
        for account in sorted(set(accounts)):
            ids = list(self._ob.recipients.known_devices(account))
            if account == me.account:  # the own account: every other device
                ids = [d for d in ids if d != me.device_id]
            ids = ids[:MAX_TARGETS]  # a relay has at most that many devices per account
            if ids:
                out.append(MultiAccount(account, tuple(MultiDevice(d, GROUP_PART) for d in ids)))
                targets += [DeviceRef(account, d) for d in ids]
        return tuple(out), tuple(targets)

    # ---------------------------------------------------------------- sending

    def start(self, conn: ChannelConnection, plans: list[MultiPlan]) -> None:
        """Send the planned MULTI_SENDs (after the batch that released them committed)."""
        for plan in plans:
            if plan.sealed is not None:
                self.sealed.start(conn, plan.message_id, plan.sealed)
                continue
            task = asyncio.get_running_loop().create_task(self._run(conn, plan))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def send_own(
        self, conn: ChannelConnection, mid: bytes, shared: bytes, own: tuple[MultiAccount, ...]
    ) -> None:
        """The own devices' MULTI_SEND of a sealed group message, after its sealed ✓."""
        self.start(conn, [MultiPlan(mid, shared, own)])

    async def _run(self, conn: ChannelConnection, plan: MultiPlan) -> None:
        assert self._link is not None
        if self._ob._session() is not conn:
            return  # that connection is gone: the entry goes again on the next one
        try:
            answer = await self._link.send(plan.message_id, plan.shared, plan.recipients)
        except RefusedError as exc:
            self._unsupported(plan.message_id, f"REQUEST_FAILED {exc}")
            return
        except ConnectionBroken:
            closed = self._link.last_close()
            if closed is not None and closed.by_peer and closed.code in OLD_RELAY_CODES:
                self._unsupported(plan.message_id, f"closed: {closed.code} {closed.reason}")
            return  # else: the disconnect returned the entry to pending
        except TidingsError:
            return  # no session: the entry goes again on the next one
        try:
            self.on_answer(answer)
        except StoreError:
            log.exception("! could not record a multi-send's answer; it goes again")

    def on_answer(self, answer: MultiSent) -> None:
        """MULTI_SENT: the ✓ of the entry, or its refusal (module docstring)."""
        ob = self._ob
        if answer.code == 0:
            ob.on_sent(Sent(answer.message_id, answer.stored_at))
            return
        new: list[DeviceRef] = []
        for r in answer.refusals:
            if r.code == ErrorCode.DEVICE_MISMATCH:
                missing = tuple((r.account, d) for d in r.missing)
                stale = tuple((r.account, d) for d in r.stale)
                diff = Refused(answer.message_id, r.code, "", missing, stale)
                ob.recipients._apply_device_diff(diff)
                new += [DeviceRef(r.account, d) for d in r.missing]
        if new:
            self._catch_up(answer.message_id, new)
        ob.on_refused(as_refused(answer))

    def _catch_up(self, message_id: bytes, devices: list[DeviceRef]) -> None:
        """Queue what new member ``devices`` need before the retry, which waits for it."""
        ob = self._ob
        item = ob._items.get(message_id)
        group_id = group_of_conversation(item.recipient) if item is not None else None
        if group_id is None or self.catch_up is None:
            return
        ids = self.catch_up(group_id, message_id, devices)
        t = ob._clocks.read()
        for i in ids:
            queued = ob.store.outbox_item(i)
            if queued is not None:
                ob._add_entry(queued, t)
        if ids:
            self._after[message_id] = set(ids)

    def _unsupported(self, message_id: bytes, why: str) -> None:
        if not self.unsupported:
            log.info(
                "= this relay has no multi-recipient send (%s): group messages go pairwise", why
            )
        self.unsupported = True
        item = self._ob._items.get(message_id)
        if item is None:
            return
        try:
            entry = MultiEntry.parse(item.content)
        except ContentError:
            return
        self.fall_back(message_id, entry, self._ob._clock(), why)
        self._ob.pump()

    def fall_back(self, message_id: bytes, entry: MultiEntry, now: float, why: str) -> None:
        """Replace the entry by the pairwise copies, durably, and queue them."""
        ob = self._ob
        copies = entry.copies(message_id, now)
        if not ob.store.replace_outbox(message_id, copies, now, why[:200]):
            return
        if not ob.scheduler.drop(message_id):
            ob.scheduler.on_sent(message_id)  # in flight: leaves as if done
        ob._items.pop(message_id, None)
        ob._targets.pop(message_id, None)
        ob._fresh.discard(message_id)
        t = ob._clocks.read()
        for r in copies:
            item = ob.store.outbox_item(r.message_id)
            if item is not None:
                ob._add_entry(item, t)
                ob._fresh.add(r.message_id)
