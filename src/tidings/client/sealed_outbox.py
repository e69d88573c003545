"""The outbox's sealed sends (docs/protocol.md §14.2): the part of
:class:`~tidings.client.outbox.Outbox` that sends an entry sealed and handles what the relay
answers on the unidentified connection (:mod:`.unidentified`).

* :meth:`SealedOutbox.split` (called while the outbox seals an entry) decides by
  :func:`~tidings.client.sealed_send.route`; a sealed entry gets its tag — stored before
  anything is sent, so that a retry (after a refusal, a reconnect or a restart) reuses it and
  the relay stores it once — and its SEALED_SEND, plus the SEND of the own copies.
* SEALED_SENT ✓ writes the own copies' SEND (✓ of the entry once it is stored), or is the
  entry's ✓ when there are none. DEVICE_MISMATCH and the limits go through the outbox's
  refusal path as a REFUSED of the entry would (the device set refreshed, sessions fetched,
  resealed, sent again with the same tag). ACCESS_DENIED forgets the access key and sends the
  entry as a normal SEND with the same message id (traced ``unsealed``); so does a relay that
  does not accept sealed sends.
* ✗ without the sender's identity: the tags of sent sealed messages that are not delivered
  are asked about (TAG_QUERY, on the unidentified connection) when the session opens and every
  :data:`TAG_QUERY_INTERVAL`; EXPIRED makes the message ✗ as an EXPIRED notice does, DELIVERED
  and UNKNOWN (the relay forgot it after its retention) forget the tag.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..delivery import ContentKind, Status
from ..e2e.keys import IdentityKeyPair
from ..net.ws import ChannelConnection
from ..refs import DeviceRef
from ..wire import ErrorCode, Refused, SealedSend, SealedSent, Send, Sent, TagQuery, TagStatus
from ..wire.limits import MAX_TAGS_PER_QUERY, TAG_LEN
from ..wire.sealed import TagState
from .events import ClientEvent, StatusChanged
from .sealed_send import SealedCredentials, build_sealed, route
from .store import ClientStore, OutboxItem, SealedRecord, TracePoint
from .unidentified import UnidentifiedLink

if TYPE_CHECKING:
    from .outbox import Outbox

__all__ = ["MAX_TAG_QUERIES", "TAG_QUERY_INTERVAL", "SealedOutbox"]

log = logging.getLogger("tidings.client")

#: Seconds between two rounds of TAG_QUERY (one also when a session opens): an expiry is a
#: matter of days (the relay's retention), so an hour shows the ✗ soon enough and costs the
#: relay one small question per device an hour.
TAG_QUERY_INTERVAL = 3600.0
#: TAG_QUERY frames per round (each of at most ``MAX_TAGS_PER_QUERY`` tags): the oldest
#: 1,024 sealed messages not yet delivered are asked about; the rest wait for the next round.
MAX_TAG_QUERIES = 4

#: Content whose tag is kept after ✓ to ask about: it has a status to show (✗).
_ASKED_KINDS = frozenset({ContentKind.MESSAGE})


@dataclass(slots=True)
class _InFlight:
    """A sealed entry on the wire: its SEALED_SEND and the SEND of its own copies."""

    recipient: str
    tag: bytes
    own: Send | None
    conn: ChannelConnection | None = None


class SealedOutbox:
    """The sealed sends of ``outbox`` (see the module docstring).

    Args:
        outbox: the outbox whose entries these are.
        store: the device's store.
        identity: this device's identity key pair (what its certificates name).
        link: the unidentified connection.
        emit: where status changes go.
        rng: the tags' randomness and the sealing's.
    """

    def __init__(
        self,
        outbox: Outbox,
        store: ClientStore,
        identity: IdentityKeyPair,
        link: UnidentifiedLink | None,
        emit: Callable[[ClientEvent], None],
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._outbox = outbox
        self.store = store
        self._identity = identity
        self.link = link
        self._emit = emit
        self._rng = rng
        #: The sealed-sender credentials (``None``: nothing goes sealed).
        self.credentials: SealedCredentials | None = None
        #: Why the relay does not take sealed sends now (``None``: it does, as far as known).
        self.unsupported: str | None = None
        self.records: dict[bytes, SealedRecord] = store.sealed_records()
        self._flight: dict[bytes, _InFlight] = {}
        self._by_tag: dict[bytes, bytes] = {r.tag: m for m, r in self.records.items()}
        self._queries: dict[int, list[SealedRecord]] = {}
        self._next_request = 1

    # ---------------------------------------------------------------- sealing

    def split(
        self,
        item: OutboxItem,
        targets: list[DeviceRef],
        payloads: dict[DeviceRef, bytes],
        now: float,
    ) -> tuple[SealedSend, Send | None] | None:
        """The sealed form of an entry being sealed (its tag stored first), or ``None``: it
        goes as a normal SEND."""
        if self.link is None:
            return None
        record = self.records.get(item.message_id)
        chosen = route(
            item.recipient,
            self._outbox.me.account,
            self.credentials,
            None if record is None else record.unsealed,
            self.unsupported,
            now,
        )
        if not chosen.sealed:
            # one that was to go sealed (its tag stored, maybe even stored by the relay) and
            # now cannot — refused, no certificate any more — falls back for good, traced
            if record is not None and record.unsealed is None:
                self._fall_back(item.message_id, chosen.reason, now)
            return None
        tag = record.tag if record is not None else self._rng(TAG_LEN)
        pins = self.store.pinned_identities(item.recipient)

        def pinned(device: DeviceRef) -> bytes | None:
            pin = pins.get(device.device_id)
            return None if pin is None else pin[0]

        try:
            frames = build_sealed(
                item.message_id,
                item.recipient,
                targets,
                payloads,
                tag,
                chosen,
                self._identity,
                pinned,
                self._rng,
            )
        except ValueError as exc:
            log.info("= not sealed (%s): a normal send", exc)
            return None
        if record is None:
            n = sum(1 for t in targets if t.account == item.recipient)
            detail = f"to {item.recipient}: {n} device(s), tag {tag.hex()[:8]}"
            record = self.store.put_sealed_tag(item.message_id, item.recipient, tag, now, detail)
            self.records[item.message_id] = record
            self._by_tag[record.tag] = item.message_id
            if record.tag != tag:  # stored before (not in memory): that one is the tag
                return self.split(item, targets, payloads, now)
        self._flight[item.message_id] = _InFlight(item.recipient, tag, frames[1])
        return frames

    def start(self, conn: ChannelConnection, frames: list[tuple[bytes, SealedSend]]) -> None:
        """Write the sealed sends of a batch (the authenticated ``conn`` writes their own
        copies later)."""
        if self.link is None or not frames:
            return
        written = self._outbox._clock()
        for mid, _ in frames:
            flight = self._flight.get(mid)
            if flight is not None:
                flight.conn = conn
            self._outbox.log.later(mid, TracePoint.WRITTEN, written, "sealed")
        self.link.send([f for _, f in frames])

    def reload(self) -> None:
        """The batch was rolled back: the tags it stored are not stored."""
        self.records = self.store.sealed_records()
        self._by_tag = {r.tag: m for m, r in self.records.items()}

    def on_disconnect(self) -> None:
        """The authenticated session is gone: what was in flight goes again on the next."""
        self._flight.clear()

    def on_connect(self) -> None:
        """A new session: the relay may have been upgraded since it refused sealed sends."""
        self.unsupported = None

    # ---------------------------------------------------------------- answers

    def on_sealed_sent(self, frame: SealedSent) -> None:
        """What the relay answered a SEALED_SEND."""
        mid = self._by_tag.get(frame.tag)
        flight = None if mid is None else self._flight.get(mid)
        if mid is None or flight is None or flight.recipient != frame.recipient:
            return  # an answer to an attempt that is over (resent, reconnected)
        t = self._outbox._clocks.read()
        if frame.code == 0:
            del self._flight[mid]
            detail = "duplicate" if frame.duplicate else None
            self._outbox.log.later(mid, "sealed_stored", t.wall, detail)
            item = self._outbox._items.get(mid)
            keep = item is not None and item.kind in _ASKED_KINDS
            self.store.sealed_stored(mid, keep)
            if not keep:
                self._forget(mid)
            own = flight.own
            if own is None:
                self._outbox.on_sent(Sent(mid, frame.stored_at))
            elif flight.conn is not None and flight.conn is self._outbox._session():
                flight.conn.send_frame(own)  # ✓ once the own copies are stored too
                self._outbox.log.later(mid, TracePoint.WRITTEN, self._outbox._clock())
            return
        if frame.code == ErrorCode.ACCESS_DENIED:
            del self._flight[mid]
            if self.credentials is not None:
                self.credentials.forget_access_key(frame.recipient)
            self._fall_back(mid, f"ACCESS_DENIED: {frame.reason}", t.wall)
            self._outbox.requeue(mid)
            return
        self._flight.pop(mid, None)
        missing = tuple((frame.recipient, d) for d in frame.missing)
        stale = tuple((frame.recipient, d) for d in frame.stale)
        refused = Refused(mid, frame.code, frame.reason, missing, stale, frame.retry_after)
        self._outbox.on_refused(refused)

    def on_unsupported(self, reason: str) -> None:
        """The relay does not accept sealed sends, or no unidentified connection can be opened
        (``reason``): what is in flight goes unsealed, and nothing goes sealed until the next
        authenticated session."""
        self.unsupported = reason
        log.info("! %s: sending unsealed", self.unsupported)
        now = self._outbox._clock()
        flights, self._flight = self._flight, {}
        for mid in flights:
            self._fall_back(mid, self.unsupported, now)
            self._outbox.requeue(mid)
        self._outbox.multi.sealed.on_unsupported(reason)

    def _fall_back(self, mid: bytes, reason: str, now: float) -> None:
        record = self.records.get(mid)
        if record is None or record.unsealed is not None:
            return
        self.store.mark_unsealed(mid, reason, now)
        self.records[mid] = SealedRecord(mid, record.recipient, record.tag, reason, record.state)
        if self.link is not None:
            self.link.forget(record.recipient, record.tag)

    def _forget(self, mid: bytes) -> None:
        record = self.records.pop(mid, None)
        if record is not None:
            self._by_tag.pop(record.tag, None)

    def entry_done(self, mid: bytes, failed: bool) -> None:
        """The entry left the outbox (✓, or ``failed``): the record of one that went unsealed,
        or failed, is no longer needed (a sealed one's was kept or dropped at its ✓)."""
        self._flight.pop(mid, None)
        record = self.records.get(mid)
        if record is None or not (failed or record.unsealed is not None):
            return
        self.store.forget_sealed([mid])
        self._forget(mid)

    # ---------------------------------------------------------------- TAG_QUERY

    def ask_tags(self, now: float) -> int:
        """Ask about the tags of sent sealed messages not yet delivered (a round of at most
        :data:`MAX_TAG_QUERIES` TAG_QUERY frames); those already ✓✓ by a receipt are
        forgotten instead. Returns how many tags were asked about."""
        if self.link is None:
            return 0
        records = self.store.tags_to_ask(MAX_TAG_QUERIES * MAX_TAGS_PER_QUERY)
        done = [r.message_id for r in records if _delivered(self.store, r.message_id)]
        if done:
            self.store.forget_sealed(done)
            for mid in done:
                self._forget(mid)
        ask = [r for r in records if r.message_id not in set(done)]
        frames: list[SealedSend | TagQuery] = []
        for i in range(0, len(ask), MAX_TAGS_PER_QUERY):
            chunk = ask[i : i + MAX_TAGS_PER_QUERY]
            rid = self._next_request
            self._next_request += 1
            self._queries[rid] = chunk
            frames.append(TagQuery(rid, tuple(r.tag for r in chunk)))
        self.link.send(frames)
        return len(ask)

    def on_tag_status(self, frame: TagStatus) -> None:
        """What the relay knows of the tags asked about."""
        asked = {r.tag: r for r in self._queries.pop(frame.request_id, [])}
        now = self._outbox._clock()
        forget: list[bytes] = []
        for tag, state in frame.states:
            record = asked.get(tag)
            if record is None:
                continue
            if state == TagState.EXPIRED:
                mid = record.message_id
                moved = self.store.expire_sealed(mid, record.recipient, now)
                self._forget(mid)
                overall = self.store.message_status(mid) or Status.EXPIRED
                for device in moved:
                    self._emit(StatusChanged(mid, device, Status.EXPIRED, overall, now))
            elif state in (TagState.DELIVERED, TagState.UNKNOWN):
                forget.append(record.message_id)
        if forget:
            self.store.forget_sealed(forget)
            for mid in forget:
                self._forget(mid)


def _delivered(store: ClientStore, mid: bytes) -> bool:
    status = store.message_status(mid)
    return status is not None and status in (Status.DELIVERED, Status.READ)
