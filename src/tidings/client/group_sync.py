"""Groups for a device that joined late (issue 12), and a bound on answering key requests.

A device linked to an account after a group was made holds none of its log or keys. Three
steps bring it in, none needing the user:

* an existing device of the account that learns of the new one (the relay's DEVICES notice,
  the session's own-device list at connect, or a device-set refusal that names it) sends it,
  per group the account is in, a GROUP_SYNC
  (:func:`sync_requests`): the group's log and this device's current distribution message, in
  one content; the new device replays the log to the same membership (the replay is
  deterministic) and takes the key in the same transaction (:func:`on_sync`);
* a member device whose multi-send the relay refuses because it names a new device
  (RECIPIENTS_REFUSED, DEVICE_MISMATCH) sends that device its sender key and the refused
  message again under its id, pairwise (:func:`catch_up`), and the retried multi-send waits
  until they are sent (:mod:`.outbox_multi`): the message sealed before the key went cannot be
  read with a later chain position, so the copy is what the new device reads, and the
  multi-send's copy is then a duplicate;
* what the new device sends names every member device from the relay's diff the same way.

The rule underneath: this device's key goes to a device of its own account only as a
GROUP_SYNC, with the log (:meth:`GroupRuntime._keys_for`), so whichever path finds the new
device first — the notice, the session's device list at connect, a send's device set — it gets
the group with the key. The cost: a rotation sends the whole log again to each own device.

Idempotent: a GROUP_SYNC delivered twice adds no change (changes are kept by id) and its
distribution is the same chain again (kept as held, :func:`~tidings.e2e.senderkey.
process_distribution`); a device is synced once per group (it is then in the group's
given-key set, which is stored).

:class:`KeyResendLimit` bounds the work a GROUP_KEY_REQUEST can cause (sans-I/O, ``now``
passed in); :class:`AskedAgain` remembers what this device asked for, so that the order of
the sender's messages waits for them (:meth:`~tidings.delivery.Reorderer.awaiting`), and
:class:`WaitingAsks` the messages it will ask for once it can take them (below).

*Asking when the answer can be taken.* A group message may arrive before the change that
makes it readable here: the group's create or log (from the creator or the adder, on another
sender's path), or the change that adds its sender. Asking the sender at once is a race the
answer can lose: an answer that comes before that change is dropped again, and the sender
sends a message again at most once per :data:`KEY_RESEND_INTERVAL`, so the message would be
lost. Such a message is noted instead (:class:`WaitingAsks`), and the GROUP_KEY_REQUEST is
queued with the change that makes its sender a member here, in the same transaction
(:meth:`~tidings.client.groups.GroupRuntime._commit`): the answer can only come after it.

Functions of :class:`~tidings.client.groups.GroupRuntime` (``rt``), kept apart to keep that
module readable in one sitting.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..delivery import Message, StreamKey
from ..delivery.content_groups import (
    MAX_OPS_PER_CHANGE,
    GroupKeyRequest,
    GroupMessage,
    GroupSync,
    group_conversation,
)
from ..delivery.groups import GroupError, GroupLog
from ..delivery.ordering import MAX_AWAITED_STREAMS
from ..errors import DecryptionError
from ..refs import DeviceRef
from .store import CryptoWrites, Direction, OutboxRequest
from .store._groups import GroupWrites

if TYPE_CHECKING:
    from .groups import GroupRuntime

__all__ = [
    "KEY_RESEND_INTERVAL",
    "MAX_ASKED_PER_STREAM",
    "MAX_RESENT_PER_WINDOW",
    "MAX_TRACKED_WINDOWS",
    "OWN_COPY_WINDOW",
    "AskedAgain",
    "KeyResendLimit",
    "WaitingAsks",
    "catch_up",
    "on_sync",
    "own_copies",
    "sync_requests",
]

log = logging.getLogger("tidings.client")

#: A device's sender key goes again to the same requesting device at most once per 30 s: one
#: answer is what a device that missed the key needs (it is durable in our outbox, and the
#: requester asks again only for messages that arrived before it); a hostile member asking in a
#: loop gets one key per 30 s, not one per request.
KEY_RESEND_INTERVAL = 30.0
#: Messages sent again to one requesting device per window: one request's worth
#: (:data:`~tidings.delivery.content.MAX_IDS`), so a real catch-up is answered in full while a
#: loop of requests costs at most that many encryptions per 30 s per device.
MAX_RESENT_PER_WINDOW = 256
#: (group, device) windows remembered: well above the member devices of busy groups; beyond
#: it the oldest are forgotten (a forgotten device may be answered once more, never in a loop
#: faster than the windows turn over).
MAX_TRACKED_WINDOWS = 4096


@dataclass(slots=True)
class _Window:
    start: float
    answered: set[bytes] = field(default_factory=set)


#: Group message ids remembered as asked for again per stream (one request's worth); beyond it
#: the oldest is forgotten (its stream then begins without waiting for it).
MAX_ASKED_PER_STREAM = 256


class AskedAgain:
    """The group messages this device asked their sender for again (GROUP_KEY_REQUEST: they
    did not decrypt, or came before this device knew their group), per stream (conversation,
    sender device), until they come back. What :meth:`ask` and :meth:`back` return is the
    count still out, for :meth:`~tidings.delivery.Reorderer.awaiting`: a stream that joins
    midstream then waits for them instead of beginning after them, so a recovered message is
    shown in its place. In memory; at most ``max_streams`` streams (the oldest forgotten) of
    ``per_stream`` ids."""

    def __init__(
        self, max_streams: int = MAX_AWAITED_STREAMS, per_stream: int = MAX_ASKED_PER_STREAM
    ) -> None:
        self.max_streams = max_streams
        self.per_stream = per_stream
        #: per stream: each id, and whether it was asked while its sender was a member here
        self._asked: dict[StreamKey, dict[bytes, bool]] = {}

    def ask(self, key: StreamKey, message_id: bytes, *, member: bool = True) -> int:
        """``message_id`` of stream ``key`` was asked for again — or will be (``member``
        False: its sender is not a member here yet, :class:`WaitingAsks`); the count out."""
        ids = self._asked.pop(key, {})
        self._asked[key] = ids  # newest last: the oldest are forgotten first
        ids[message_id] = member or ids.get(message_id, False)
        while len(ids) > self.per_stream:
            del ids[next(iter(ids))]
        while len(self._asked) > self.max_streams:
            del self._asked[next(iter(self._asked))]
        return len(ids)

    def confirm(self, key: StreamKey, message_ids: Iterable[bytes]) -> None:
        """``message_ids`` that waited are asked for now: their sender is a member here."""
        ids = self._asked.get(key, {})
        for message_id in message_ids:
            if message_id in ids:
                ids[message_id] = True

    def asked_of_member(self, key: StreamKey, message_id: bytes) -> bool:
        """Whether ``message_id`` of stream ``key`` was asked for while its sender was a
        member here (its original reached this device then), and is not back yet: the answer
        is taken even if the sender has left since."""
        return self._asked.get(key, {}).get(message_id, False)

    def back(self, key: StreamKey, message_id: bytes) -> int | None:
        """``message_id`` of stream ``key`` arrived readable: the count still out, or None
        if it was not asked for."""
        ids = self._asked.get(key)
        if ids is None or message_id not in ids:
            return None
        del ids[message_id]
        if not ids:
            del self._asked[key]
        return len(ids)


class WaitingAsks:
    """Group messages this device could not take yet — their group is not known here, or
    their sender is not a member here yet — to ask their sender for once it can (module
    docstring), per (group, sender device). In memory (a device restarted before the change
    came has lost them); at most ``max_senders`` senders (the oldest forgotten) of
    ``per_sender`` ids."""

    def __init__(
        self, max_senders: int = MAX_AWAITED_STREAMS, per_sender: int = MAX_ASKED_PER_STREAM
    ) -> None:
        self.max_senders = max_senders
        self.per_sender = per_sender
        self._waiting: dict[tuple[bytes, DeviceRef], dict[bytes, None]] = {}

    def add(self, group_id: bytes, sender: DeviceRef, message_id: bytes) -> None:
        """``message_id`` from ``sender`` waits for a change of ``group_id``."""
        ids = self._waiting.pop((group_id, sender), {})
        self._waiting[(group_id, sender)] = ids
        ids[message_id] = None
        while len(ids) > self.per_sender:
            del ids[next(iter(ids))]
        while len(self._waiting) > self.max_senders:
            del self._waiting[next(iter(self._waiting))]

    def ready(
        self, group_id: bytes, members: frozenset[str]
    ) -> list[tuple[DeviceRef, GroupKeyRequest]]:
        """What to queue now that ``group_id`` has ``members`` (this account among them): a
        request to each waiting sender device that is a member (:meth:`done` once queued)."""
        return [
            (sender, GroupKeyRequest(g, sender.device_id, tuple(ids)))
            for (g, sender), ids in self._waiting.items()
            if g == group_id and sender.account in members
        ]

    def done(self, group_id: bytes, senders: Iterable[DeviceRef]) -> None:
        """The messages ``senders`` were waited for in ``group_id`` for are asked (committed)."""
        for sender in senders:
            self._waiting.pop((group_id, sender), None)

    def __len__(self) -> int:
        return sum(len(ids) for ids in self._waiting.values())


class KeyResendLimit:
    """Per (group, requesting device): the key at most once per ``interval``, each message id
    once per window, at most ``per_window`` messages per window."""

    def __init__(
        self,
        interval: float = KEY_RESEND_INTERVAL,
        per_window: int = MAX_RESENT_PER_WINDOW,
        max_tracked: int = MAX_TRACKED_WINDOWS,
    ) -> None:
        self.interval = interval
        self.per_window = per_window
        self.max_tracked = max_tracked
        self._windows: dict[tuple[bytes, DeviceRef], _Window] = {}

    def admit(
        self, group_id: bytes, device: DeviceRef, message_ids: Iterable[bytes], now: float
    ) -> tuple[bool, tuple[bytes, ...]]:
        """Whether the key may go again now, and which of ``message_ids`` may go again."""
        key = (group_id, device)
        window = self._windows.get(key)
        fresh_window = window is None or not window.start <= now < window.start + self.interval
        if fresh_window:
            window = _Window(now)
            self._windows.pop(key, None)
            self._windows[key] = window  # newest last: the oldest are forgotten first
            self._prune(now)
        assert window is not None
        room = self.per_window - len(window.answered)
        ids = tuple(dict.fromkeys(i for i in message_ids if i not in window.answered))[:room]
        window.answered.update(ids)
        return fresh_window, ids

    def _prune(self, now: float) -> None:
        if len(self._windows) <= self.max_tracked:
            return
        for key in [k for k, w in self._windows.items() if now >= w.start + self.interval]:
            del self._windows[key]
        while len(self._windows) > self.max_tracked:
            del self._windows[next(iter(self._windows))]


# ---------------------------------------------------------------- a new own device

#: How far back an own device newly given our key gets the messages we sealed without it: a
#: device this one did not know yet when it sealed them (its first messages after a create can
#: go before a device-set answer names the account's other devices). 30 s covers that moment;
#: a device linked long after gets no old messages (history is :mod:`.history`'s job).
OWN_COPY_WINDOW = 30.0


def own_copies(
    rt: GroupRuntime,
    group_id: bytes,
    devices: list[DeviceRef],
    now: float,
    sealing: bytes | None = None,
) -> list[OutboxRequest]:
    """Our messages of the group from the last :data:`OWN_COPY_WINDOW` seconds that have no
    status at one of own ``devices`` (the relay never took them for it), again as a
    GROUP_MESSAGE under its id to our account, after the GROUP_SYNC that gives the key: in
    counter order, before what we seal next (a multi-send waits behind them,
    :mod:`.outbox_multi`). An own device that has one drops the copy (same id)."""
    conversation = group_conversation(group_id)
    out: list[OutboxRequest] = []
    for m in rt.store.messages(conversation, limit=MAX_RESENT_PER_WINDOW):
        if m.direction is not Direction.OUT or m.message_id == sealing:
            continue
        if m.sent_at < now - OWN_COPY_WINDOW:
            continue
        statuses = rt.store.statuses(m.message_id)
        if all(d in statuses for d in devices):
            continue
        inner = Message(conversation, m.counter, m.sent_at, m.body)
        shared = rt.cipher.encrypt(group_id, inner.serialize())
        out.append(rt._request(rt.me.account, GroupMessage(group_id, m.message_id, shared), now))
    if out:
        log.info("= %d recent group message(s) again to own device(s) %s", len(out), devices)
    return out


def sync_parts(
    rt: GroupRuntime, group_id: bytes, device: DeviceRef, material: bytes, now: float
) -> list[OutboxRequest]:
    """The GROUP_SYNC contents that give own ``device`` the group's log and ``material`` (this
    device's distribution message), to queue."""
    ops = rt.logs[group_id].ops
    return [
        rt._request(
            rt.me.account,
            GroupSync(device.device_id, group_id, tuple(ops[i : i + MAX_OPS_PER_CHANGE]), material),
            now,
        )
        for i in range(0, len(ops), MAX_OPS_PER_CHANGE)
    ]


def sync_requests(rt: GroupRuntime, device: DeviceRef, now: float) -> list[bytes]:
    """Send own ``device`` every group this account is in for which it lacks this device's
    current key (so it was never synced, or a rotation came since): committed in one
    transaction; returns the outbox ids."""
    if device.account != rt.me.account or device == rt.me:
        return []
    writes = GroupWrites()
    for state in rt.joined():
        g = state.group_id
        requests = rt._keys_for(g, [device], now)
        if requests:
            writes.requests += requests
            writes.given[g] = rt.cipher.given_to(g)
            writes.records[(g, rt.me)] = rt.cipher.records()[(g, rt.me)]
    if not writes.requests:
        return []
    log.info("= syncing %d group(s) to own device %s", len(writes.given), device)
    _commit(rt, writes, now)
    return [r.message_id for r in writes.requests]


def on_sync(
    rt: GroupRuntime, seq: int, sender: DeviceRef, sync: GroupSync, now: float, w: CryptoWrites
) -> list[bytes]:
    """A group from another device of this account (module docstring): its changes and key."""
    if sync.device_id != rt.me.device_id or sender.account != rt.me.account or sender == rt.me:
        if sender.account != rt.me.account:
            log.warning("! %s sent a group sync and is not a device of this account", sender)
        rt.store.advance_cursor(seq, w)
        return []
    group = rt.logs.get(sync.group_id) or GroupLog(sync.group_id)
    known = {op.op_id for op in group.ops}
    new = [op for op in sync.ops if op.op_id not in known]
    try:
        trial = GroupLog(sync.group_id, [*group.ops, *new])
    except GroupError as exc:
        log.warning("! %s sent a group sync that conflicts: %s", sender, exc.reason)
        rt.store.advance_cursor(seq, w)
        return []
    if sender.account in trial.state.members:
        try:
            rt.cipher.accept_key(sync.group_id, sender, sync.distribution)
        except DecryptionError:
            log.warning("! %s sent a bad sender key in a group sync", sender)
        else:
            record = rt.cipher.records()[(sync.group_id, sender)]
            w.sender_keys[(sync.group_id, sender)] = record.serialize()
    if not new:
        rt.store.advance_cursor(seq, w)  # a sync delivered again: nothing changes
        return []
    out = GroupWrites(new, [trial.state])
    if not rt._commit(out, group.state, trial, now, sender, seq, w):
        return []
    return [r.message_id for r in out.requests]  # the asks that waited for the group


# ---------------------------------------------------------------- a new member device


def catch_up(
    rt: GroupRuntime, group_id: bytes, message_id: bytes, devices: Iterable[DeviceRef], now: float
) -> list[bytes]:
    """Member ``devices`` the relay named missing for our multi-send ``message_id``: our key
    to those that lack it and the message again under its id, pairwise (module docstring);
    committed; returns the outbox ids (the retried multi-send waits for them)."""
    state = rt.state(group_id)
    if state is None or rt.me.account not in state.members:
        return []
    targets = sorted({d for d in devices if d.account in state.members and d != rt.me})
    if not targets:
        return []
    requests = rt._keys_for(group_id, targets, now)  # an own device's with the log
    conversation = group_conversation(group_id)
    m = rt.store.message(message_id)
    if m is not None and m.direction is Direction.OUT and m.conversation == conversation:
        inner = Message(conversation, m.counter, m.sent_at, m.body)
        shared = rt.cipher.encrypt(group_id, inner.serialize())
        copy = GroupMessage(group_id, message_id, shared)
        requests += [rt._request(a, copy, now) for a in sorted({d.account for d in targets})]
    if not requests:
        return []
    log.info("= new member device(s) %s: key and message sent pairwise", targets)
    writes = GroupWrites(requests=requests, given={group_id: rt.cipher.given_to(group_id)})
    own = rt.cipher.records().get((group_id, rt.me))
    if own is not None:
        writes.records[(group_id, rt.me)] = own
    _commit(rt, writes, now)
    return [r.message_id for r in requests]


def _commit(rt: GroupRuntime, writes: GroupWrites, now: float) -> None:
    try:
        rt.store.commit_group(writes, now)
    except BaseException:
        rt.reload()
        raise
