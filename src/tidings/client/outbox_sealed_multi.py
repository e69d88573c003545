"""The outbox's sealed group messages (docs/protocol.md §14.3): a group multi-send entry
(:mod:`.outbox_multi`) that goes as ONE SEALED_MULTI_SEND on the unidentified connection.

* *When.* The entry has not fallen back, the relay takes sealed sends, this device holds a
  sender certificate valid now, and it knows the access key of **every** other member account
  it names and the pinned identity key of every device it names there. Otherwise it goes as
  today's MULTI_SEND (authenticated), unchanged.
* *What.* ``seal_group`` (:mod:`tidings.e2e.sealed_group`) of the message id and
  ``0x47 0x01 || GROUP_MESSAGE`` (what every device of an unsealed group send is delivered):
  the shared part once, each device's part ``0x22 || C_i || AT_i``, and per account its access
  key, under a 16-byte random tag **stored with the entry before the first attempt** (the
  client's ``sealed_sends`` table, recipient = the group's lane), so that a retry — a refusal,
  a lost connection, a restart — reuses it and the relay stores the send once.
* *The own devices.* This account's other devices get theirs by the authenticated path: a
  MULTI_SEND to the own account only, with the same message id and the group part, written
  only **after** SEALED_MULTI_SENT ✓ (were it first, an unsealed fallback's MULTI_SEND of that
  id would be a duplicate of it for the relay). ✓ of the entry is that MULTI_SENT's, or
  SEALED_MULTI_SENT ✓ when there are no own devices.
* *Refusals.* ACCESS_DENIED for an account: its key is forgotten and the entry falls back for
  good (traced ``unsealed``) — sent again at once as the unsealed MULTI_SEND of the same id;
  a member shows it once whichever copies arrive (it deduplicates by sender and message id).
  DEVICE_MISMATCH, QUEUE_FULL and the limits are the MULTI_SENT refusal they stand for
  (:meth:`MultiSender.on_answer`: device lists fixed, new devices caught up, retried — with the
  same tag). A relay without sealed multi-sends falls back as for SEALED_SEND.
* *Tags.* A group message's tag is forgotten at its ✓: its ✓✓ and read come from the members'
  receipts (pairwise, themselves sealed), and no TAG_QUERY asks about it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..e2e.keys import PublicKey
from ..e2e.sealed_group import seal_group
from ..errors import FrameError
from ..net.ws import ChannelConnection
from ..wire import (
    ErrorCode,
    MultiAccount,
    MultiDevice,
    MultiSent,
    SealedMultiAccount,
    SealedMultiSend,
    SealedMultiSent,
    Sent,
)
from ..wire.limits import TAG_LEN
from .group_transport import GROUP_PART

if TYPE_CHECKING:
    from .outbox_multi import MultiSender

__all__ = ["SealedGroup", "SealedGroupPlan"]

log = logging.getLogger("tidings.client")


@dataclass(frozen=True, slots=True)
class SealedGroupPlan:
    """A multi-send entry that goes sealed: its frame and the own devices' MULTI_SEND."""

    frame: SealedMultiSend
    own: tuple[MultiAccount, ...]


@dataclass(slots=True)
class _Flight:
    tag: bytes
    content: bytes
    own: tuple[MultiAccount, ...]
    conn: ChannelConnection | None = None


class SealedGroup:
    """The sealed side of a :class:`~tidings.client.outbox_multi.MultiSender`."""

    def __init__(self, sender: MultiSender) -> None:
        self._multi = sender
        self._flight: dict[bytes, _Flight] = {}

    def plan(
        self,
        mid: bytes,
        lane: str,
        content: bytes,
        recipients: tuple[MultiAccount, ...],
        now: float,
    ) -> SealedGroupPlan | None:
        """The sealed form of a released multi-send entry (its tag stored first), or ``None``:
        it goes as a MULTI_SEND."""
        ob = self._multi._ob
        so = ob.sealed
        me = ob.me.account
        record = so.records.get(mid)
        others = [r for r in recipients if r.account != me]
        own = tuple(r for r in recipients if r.account == me)
        why = self._why_not(record is not None and record.unsealed is not None, others)
        if why is not None:
            if record is not None and record.unsealed is None:
                so._fall_back(mid, why, now)  # it was to go sealed: falls back for good
            return None
        credentials = so.credentials
        assert credentials is not None
        cert = credentials.certificate(now)
        keys = {r.account: credentials.access_key_for(r.account) for r in others}
        identities: list[PublicKey] = []
        for r in others:
            pins = so.store.pinned_identities(r.account)
            for d in r.devices:
                pin = pins.get(d.device_id)
                if pin is None:
                    return self._not_sealed(
                        mid, record, f"no pinned identity key for {r.account}.{d.device_id}", now
                    )
                identities.append(PublicKey(pin[0]))
        if cert is None or any(k is None for k in keys.values()):
            return self._not_sealed(mid, record, "no credentials", now)
        tag = record.tag if record is not None else so._rng(TAG_LEN)
        try:
            shared, parts = seal_group(
                mid, GROUP_PART + content, cert, so._identity, identities, so._rng
            )
            it = iter(parts)
            accounts = []
            for r in others:
                key = keys[r.account]
                assert key is not None
                devices = tuple(MultiDevice(d.device_id, next(it)) for d in r.devices)
                accounts.append(SealedMultiAccount(r.account, key, devices))
            frame = SealedMultiSend(tag, shared, tuple(accounts))
        except (ValueError, FrameError) as exc:
            return self._not_sealed(mid, record, f"cannot seal: {exc}", now)
        if record is None:
            n = sum(len(r.devices) for r in others)
            detail = f"to {len(others)} account(s): {n} device(s), tag {tag.hex()[:8]}"
            record = so.store.put_sealed_tag(mid, lane, tag, now, detail)
            so.records[mid] = record
            so._by_tag[record.tag] = mid
            if record.tag != tag:  # stored before (not in memory): that one is the tag
                return self.plan(mid, lane, content, recipients, now)
        self._flight[mid] = _Flight(tag, content, own)
        return SealedGroupPlan(frame, own)

    def _why_not(self, fell_back: bool, others: list[MultiAccount]) -> str | None:
        so = self._multi._ob.sealed
        if so.link is None or so.credentials is None:
            return "no sealed credentials"
        if fell_back:
            return "fell back"
        if so.unsupported is not None:
            return so.unsupported
        if not others:
            return "own account"
        now = self._multi._ob._clock()
        if so.credentials.certificate(now) is None:
            return "no valid sender certificate"
        for r in others:
            if so.credentials.access_key_for(r.account) is None:
                return f"no access key of {r.account}"
        return None

    def _not_sealed(
        self, mid: bytes, record: object, why: str, now: float
    ) -> SealedGroupPlan | None:
        """``None`` (a MULTI_SEND), logged; one that was to go sealed falls back for good."""
        log.info("= group message not sealed (%s): a multi-send", why)
        if record is not None:
            self._multi._ob.sealed._fall_back(mid, why, now)
        return None

    def start(self, conn: ChannelConnection, mid: bytes, plan: SealedGroupPlan) -> None:
        """Send the planned SEALED_MULTI_SEND (after the batch that stored its tag)."""
        so = self._multi._ob.sealed
        flight = self._flight.get(mid)
        if so.link is None or flight is None:
            return
        flight.conn = conn
        so.link.send([plan.frame])

    def on_disconnect(self) -> None:
        """The authenticated session is gone: what was in flight goes again on the next."""
        self._flight.clear()

    def on_unsupported(self, reason: str) -> None:
        """The relay takes no sealed sends now: what is in flight goes unsealed."""
        ob = self._multi._ob
        flights, self._flight = self._flight, {}
        now = ob._clock()
        for mid in flights:
            ob.sealed._fall_back(mid, reason, now)
            ob.requeue(mid)

    def on_answer(self, frame: SealedMultiSent) -> None:
        """SEALED_MULTI_SENT (see the module docstring)."""
        ob = self._multi._ob
        so = ob.sealed
        mid = so._by_tag.get(frame.tag)
        flight = None if mid is None else self._flight.get(mid)
        if mid is None or flight is None:
            return  # an answer to an attempt that is over (resent, reconnected)
        t = ob._clocks.read()
        del self._flight[mid]
        if frame.code == 0:
            ob.log.later(mid, "sealed_stored", t.wall, "duplicate" if frame.duplicate else None)
            so.store.sealed_stored(mid, False)
            so._forget(mid)
            if not flight.own:
                ob.on_sent(Sent(mid, frame.stored_at))
            elif flight.conn is not None and flight.conn is ob._session():
                self._multi.send_own(flight.conn, mid, flight.content, flight.own)
            return
        denied = [r.account for r in frame.refusals if r.code == ErrorCode.ACCESS_DENIED]
        if denied:
            if so.credentials is not None:
                for account in denied:
                    so.credentials.forget_access_key(account)
            so._fall_back(mid, f"ACCESS_DENIED: {','.join(denied)}"[:200], t.wall)
            ob.requeue(mid)
            return
        self._multi.on_answer(
            MultiSent(
                0,
                mid,
                frame.code,
                0.0,
                False,
                frame.reason,
                frame.retry_after,
                frame.refusals,
            )
        )
