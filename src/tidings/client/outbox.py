"""The client's outbox pump: sending queued entries, recording what the relay answered.

The decisions (which entries go when, how a refusal is handled) live in the sans-I/O
:class:`~tidings.delivery.OutboxScheduler`; :class:`Outbox` only pumps:

* entries the scheduler releases are sealed (:mod:`~tidings.client.sealing`: one ciphertext
  per device, saved with the session state before anything is sent) and sent as SEND frames
  naming the devices :class:`~tidings.client.recipients.Recipients` gives;
* an entry for a device without a session is held back, with the rest of its lane (G4), while
  the client fetches that device's prekey bundle; :meth:`Outbox.sessions_ready` lets it go;
* SENT marks the entry sent in the store, with the trace points buffered while it was in
  flight ("written", the TCP ack), and reports the new statuses: the ✓ of one store batch are
  recorded together (:class:`~tidings.client.sentlog.SentLog`);
* group multi-send entries go as one MULTI_SEND each (:mod:`~tidings.client.outbox_multi`),
  their MULTI_SENT answers through the same ✓ and refusal paths;
* REFUSED updates the known devices (DEVICE_MISMATCH), schedules a retry or fails the entry;
  each refusal is a trace point ``refused:CODE`` (with the reason and the retry delay), and one
  that is not a stale device set is reported (:class:`~tidings.client.events.SendRefused`), so a
  message held back by a full queue or a rate limit is never a silent ``…``.

Times: the scheduler runs on the monotonic clock (a step of the wall clock neither stalls nor
hastens a retry); the store keeps retry times on the wall clock, so they survive a restart, and
they come back clamped to at most the largest retry delay from now (``outbox_retry_max_seconds``).

Batches: while the client's store batch is open (:meth:`Outbox.hold`) nothing is written to
the wire. Just before it commits, :meth:`Outbox.prepare` records the batch's ✓ and seals what
the scheduler releases next *in the batch's transaction* (the ratchet steps and ciphertexts are
durable with it); after the commit :meth:`Outbox.release` writes those frames. A send composed
in a turn of the event loop thus costs one transaction with its encryption, and a burst of
sends or of ✓ one transaction for all of them.

Events are reported only after the commit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Iterable

from ..delivery import (
    OUTBOX_WINDOW,
    RETRY_BASE,
    RETRY_CAP,
    ClockReading,
    OutboxEntry,
    OutboxScheduler,
    RetryPolicy,
    Status,
)
from ..delivery.outbox import Failed, RefreshDevices, RetryAt
from ..errors import StoreError, StoreUnavailable
from ..net.ws import ChannelConnection
from ..refs import DeviceRef
from ..wire import ErrorCode, Frame, Refused, SealedSend, Sent
from .clocks import Clocks
from .connect import TcpAckWatcher
from .crypto import DeviceCrypto
from .events import ClientEvent, SendRefused, StatusChanged, code_name
from .outbox_multi import MultiLink, MultiPlan, MultiSender
from .recipients import Recipients
from .sealed_outbox import SealedOutbox
from .sealing import seal_entries
from .sentlog import SentLog
from .store import ClientStore, OutboxItem, TracePoint
from .unidentified import UnidentifiedLink

log = logging.getLogger("tidings.client")

#: Seconds before entries go again after the store failed to save their ciphertexts.
STORE_RETRY = 1.0

#: SEND frames sealed in a batch, written after its commit: the connection, the frames' ids,
#: the multi-sends to start, and the sealed sends (:mod:`.sealed_outbox`).
_Prepared = tuple[
    ChannelConnection, list[Frame], list[bytes], list[MultiPlan], list[tuple[bytes, SealedSend]]
]


class Outbox:
    """Sends the durable outbox and commits the relay's answers (see the module docstring).

    Args:
        store: the device's store.
        me: this device.
        emit: where events go (after their commit).
        clocks: the wall clock (trace, statuses) and the monotonic one (the scheduler).
        random: the jitter source of the retry backoff.
        session: the connection to send on, or ``None`` while no session is open.
        server_time: the server's clock as far as this client knows.
        crypto: this device's sessions.
        fetch_sessions: ``fetch_sessions(lane, devices)`` starts fetching bundles and building
            sessions for ``devices``, then calls :meth:`sessions_ready` for ``lane``.
        window: most sends in flight.
        retry: a refused send's first and largest retry delay ceilings, in seconds.
        multi: the relay's multi-recipient send (None: group entries fall back to pairwise).
        unidentified: the unidentified connection of sealed sends (None: nothing goes sealed;
            the credentials are :attr:`SealedOutbox.credentials` of :attr:`sealed`).
    """

    def __init__(
        self,
        store: ClientStore,
        me: DeviceRef,
        emit: Callable[[ClientEvent], None],
        clocks: Clocks,
        random: Callable[[], float],
        session: Callable[[], ChannelConnection | None],
        server_time: Callable[[], float],
        crypto: DeviceCrypto,
        fetch_sessions: Callable[[str, list[DeviceRef]], None],
        window: int = OUTBOX_WINDOW,
        retry: tuple[float, float] = (RETRY_BASE, RETRY_CAP),
        multi: MultiLink | None = None,
        unidentified: UnidentifiedLink | None = None,
    ) -> None:
        self.store = store
        self.crypto = crypto
        self._fetch_sessions = fetch_sessions
        self._fetching: set[str] = set()
        self.me = me
        self._emit = emit
        self._clocks = clocks
        self._clock = clocks.wall
        self._mono = clocks.mono
        self._session = session
        self._server_time = server_time
        self._retry_cap = retry[1]
        self.scheduler = OutboxScheduler(RetryPolicy(random, *retry), window)
        #: What this client knows of each account's devices; who each send goes to.
        self.recipients = Recipients(me)
        #: The known devices of each account (:attr:`Recipients.devices`).
        self.devices = self.recipients.devices
        self._targets: dict[bytes, tuple[DeviceRef, ...]] = {}
        self._drained = asyncio.Event()  # set whenever an outbox entry is done (sent or failed)
        self._timer: asyncio.TimerHandle | None = None
        self._held = False  # see hold()
        self._pump_wanted = False
        self._prepared: _Prepared | None = None  # see prepare()
        #: The trace points of entries in flight and the ✓ of the open batch.
        self.log = SentLog(store, emit)
        self._tcp = TcpAckWatcher(self.log.on_tcp_acked, clocks.wall)
        self._items: dict[bytes, OutboxItem] = {}  # the outbox, mirrored in memory
        #: Entries known to have no saved ciphertext (new, not sealed yet): no store read.
        self._fresh: set[bytes] = set()
        #: The group multi-sends (:mod:`.outbox_multi`).
        self.multi = MultiSender(self, multi)
        #: The sealed sends (:mod:`.sealed_outbox`).
        self.sealed = SealedOutbox(self, store, crypto.keys.identity, unidentified, emit)
        t = clocks.read()
        for item in store.pending():
            self._add_entry(item, t)

    def _add_entry(self, item: OutboxItem, t: ClockReading) -> None:
        """Mirror a stored entry; its stored retry time (wall clock) becomes a monotonic one."""
        self._items[item.message_id] = item
        entry = item.entry()
        if item.next_attempt_at:  # else 0.0, on either clock: now
            at = t.to_mono(item.next_attempt_at, 0.0, self._retry_cap)
            entry = dataclasses.replace(entry, next_attempt_at=at)
        self.scheduler.add(entry)

    def __len__(self) -> int:
        return len(self.scheduler)

    # ---------------------------------------------------------------- life cycle

    def on_connect(self) -> None:
        """A session is open (call :meth:`pump` next)."""
        self.scheduler.on_connect()
        self.sealed.on_connect()

    def on_disconnect(self) -> None:
        """The session is gone: what was in flight goes again on the next one."""
        self.scheduler.on_disconnect()
        self.recipients.on_disconnect()
        self._fetching.clear()
        self._tcp.reset()
        self.multi.on_disconnect()
        self.sealed.on_disconnect()

    def close(self) -> None:
        """Stop the timers."""
        if self._timer is not None:
            self._timer.cancel()
        self._tcp.reset()
        self.multi.close()

    async def drain(self, timeout: float) -> bool:
        """Wait until the outbox is empty, at most ``timeout`` seconds; return whether it did."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.scheduler):
            self._drained.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                async with asyncio.timeout(remaining):
                    await self._drained.wait()
            except TimeoutError:
                return False
        return True

    # ---------------------------------------------------------------- queueing

    def add(self, item: OutboxItem) -> None:
        """Queue a new entry (just composed: no ciphertext of it is saved yet) already
        written to the store, and pump."""
        self._add_entry(item, self._clocks.read())
        self._fresh.add(item.message_id)
        self.pump()

    def add_queued(self, ids: Iterable[bytes], *, fresh: bool = False) -> None:
        """Queue the entries the store holds under ``ids``, and pump. ``fresh``: they were
        just queued under new ids (no ciphertext of them is saved yet)."""
        t = self._clocks.read()
        for mid in ids:
            item = self.store.outbox_item(mid)
            if item is not None:
                self._add_entry(item, t)
                if fresh:
                    self._fresh.add(mid)
        self.pump()

    def hold(self) -> None:
        """Send nothing until :meth:`release`: the store's batch is not committed yet, and what
        goes on the wire (ciphertext of ratchet steps, receipts) must not run ahead of it."""
        self._held = True

    def prepare(self) -> None:
        """The batch is about to commit: record its ✓ and seal, in its transaction, what the
        scheduler releases now; :meth:`release` writes it once the batch committed.

        Raises:
            StoreError: the ✓ could not be recorded (the batch must not commit).
        """
        self.log.flush()
        if self._pump_wanted:
            self._pump_wanted = False
            self._prepared = self._seal_next()
            self.log.flush()  # notes to self, ✓ at once

    def release(self) -> None:
        """The batch committed: write what :meth:`prepare` sealed; pump if anything asked to
        since."""
        self._held = False
        prepared, self._prepared = self._prepared, None
        if prepared is not None:
            self._write(prepared)
        if self._pump_wanted:
            self._pump_wanted = False
            self.pump()

    def abort_batch(self) -> None:
        """The batch was rolled back: nothing sealed in it goes, its ✓ were not recorded, and
        the sessions in memory are ahead of the store (reloaded)."""
        self._prepared = None
        self._pump_wanted = False
        self.log.drop()
        self.crypto.reload()
        self.sealed.reload()

    def pump(self) -> None:
        """Send what the scheduler releases now; re-arm the timer for what it holds back."""
        if self._held:
            self._pump_wanted = True
            return
        prepared = self._seal_next()
        if prepared is not None:
            self._write(prepared)
        self.log.flush()  # notes to self

    def _seal_next(self) -> _Prepared | None:
        """Seal the entries the scheduler releases now (their ciphertexts saved with the
        session states); re-arm the timer for what it holds back."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        conn = self._session()
        if conn is None:
            return None
        t = self._clocks.read()
        entries = self.scheduler.handle_timer(t.mono)
        prepared: _Prepared | None = None
        if entries:
            frames, ids, notes, plans, sealed = self._build(entries, t)
            if frames or plans or sealed:
                prepared = (conn, frames, ids, plans, sealed)
            for mid in notes:  # a note to self with no other device: nothing to relay
                self.on_sent(Sent(mid, self._server_time()))
        deadline = self.scheduler.next_deadline()
        if deadline is not None:
            delay = max(0.0, deadline - self._mono())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)
        return prepared

    def _write(self, prepared: _Prepared) -> None:
        """Write sealed SEND frames (now: the trace's "written" and the TCP-ack target need
        it), unless their connection is gone (its entries go again on the next one)."""
        conn, frames, ids, plans, sealed = prepared
        if conn is not self._session():
            return
        if frames:
            conn.send_frames(frames)
            conn.flush()
        self.multi.start(conn, plans)
        self.sealed.start(conn, sealed)
        written = self._clock()
        for mid in ids:
            self.log.later(mid, TracePoint.WRITTEN, written)
        self._tcp.written(conn, ids)

    def _on_timer(self) -> None:
        try:
            self.pump()
        except StoreUnavailable:
            pass  # the store told the client, which stops: nothing to retry

    def _fail_locally(self, message_id: bytes, code: int, reason: str) -> None:
        now = self._mono()
        self.scheduler.on_refused(message_id, int(ErrorCode.INVALID_FIELD), reason, 0.0, now)
        self._report_failed(message_id, code, reason)

    def _build(
        self, entries: list[OutboxEntry], t: ClockReading
    ) -> tuple[
        list[Frame], list[bytes], list[bytes], list[MultiPlan], list[tuple[bytes, SealedSend]]
    ]:
        """The SEND frames for released entries (their ciphertexts saved first), their ids,
        the ids of notes to self that need no relay (see :func:`seal_entries`), and the
        multi-sends. Entries that need sessions are held (with the rest of their lane) and the
        fetch started."""
        multi, entries = self.multi.split(entries)
        plans, multi_notes = self.multi.plan(multi, t.wall)
        out = seal_entries(
            entries,
            self._items,
            self.recipients,
            self.crypto,
            self._fresh,
            t.wall,
            self.sealed.split,
        )
        for mid in out.held:
            self.scheduler.hold(mid)
        for lane, devices in out.fetch.items():
            self._start_fetch(lane, devices)
        for mid, code, reason in out.invalid:
            self._fail_locally(mid, code, reason)
        self._fresh.difference_update(out.ids)
        self._fresh.difference_update(mid for mid, _ in out.sealed)
        self._targets.update(out.targets)
        if out.ciphertexts:
            try:
                # the ratchet moved: durable (with the ciphertexts) before it leaves
                self.store.save_sealed(out.ciphertexts, out.writes)
            except StoreError as exc:
                if not isinstance(exc, StoreUnavailable):  # that one stops the client
                    log.exception("! could not save ciphertexts; retrying shortly")
                self.crypto.reload()
                for mid in [*out.ids, *(m for m, _ in out.sealed)]:
                    self.scheduler.hold(mid, t.mono + STORE_RETRY)
                return [], [], out.notes + multi_notes, plans, []
        return out.frames, out.ids, out.notes + multi_notes, plans, out.sealed

    def _start_fetch(self, lane: str, devices: list[DeviceRef]) -> None:
        if lane in self._fetching:
            return
        self._fetching.add(lane)
        self._fetch_sessions(lane, devices)

    def fail_lane(self, lane: str, code: int, reason: str) -> None:
        """Fail every entry of ``lane`` for good (e.g. its account does not exist)."""
        for entry in self.scheduler.entries():
            if entry.lane == lane and not entry.in_flight:
                self.scheduler.drop(entry.message_id)
                self._report_failed(entry.message_id, code, reason)

    def _report_failed(self, message_id: bytes, code: int, reason: str) -> None:
        """The entry left the scheduler for good: record and report the failure."""
        now = self._clock()
        item = self._items.pop(message_id, None)
        self._fresh.discard(message_id)
        self._drained.set()
        self.multi.release_waiting()
        self.sealed.entry_done(message_id, failed=True)
        self.log.flush_trace(message_id)
        self.store.mark_failed(message_id, code, reason, now)
        if item is not None:
            self._emit(SendRefused(message_id, item.recipient, item.kind, code, reason, now, None))
        self._emit(StatusChanged(message_id, None, Status.FAILED, Status.FAILED, now))

    def sessions_ready(self, lane: str, not_before: float = 0.0) -> None:
        """The session fetch for ``lane`` is over: its held entries may go (not before
        ``not_before``, e.g. a rate limit's retry time)."""
        self._fetching.discard(lane)
        self.scheduler.devices_refreshed(lane, not_before)
        self.pump()

    def requeue(self, message_id: bytes) -> None:
        """Send an entry in flight again at once, another way (a sealed send that falls back to
        a normal SEND): not an attempt, no backoff."""
        self.scheduler.hold(message_id, self._mono())
        self._targets.pop(message_id, None)
        self.pump()

    # ---------------------------------------------------------------- answers

    def on_sent(self, frame: Sent) -> None:
        """The relay stored an entry (✓): recorded with the batch's others (see
        :meth:`prepare`), or at once outside a batch."""
        self._tcp.poll_now()
        if self.scheduler.on_sent(frame.message_id) is None:
            return
        self._drained.set()
        self.multi.release_waiting()
        self.sealed.entry_done(frame.message_id, failed=False)
        item = self._items.pop(frame.message_id, None)
        self._fresh.discard(frame.message_id)
        targets = self._targets.pop(frame.message_id, ())
        # The statuses are the recipient account's devices: for a note to self, the other own
        # devices (their delivered receipts come back like anyone's); else not the own copies.
        if item is not None and item.recipient == self.me.account:
            recipients = tuple(targets)
        else:
            recipients = tuple(t for t in targets if t.account != self.me.account)
        self.log.sent(frame.message_id, frame.stored_at, self._clock(), recipients)
        if not self._held:
            self.log.flush()
        self.pump()

    def on_refused(self, frame: Refused) -> None:
        """The relay refused an entry: trace it, then refresh, retry later or fail it."""
        t = self._clocks.read()
        mid = frame.message_id
        action = self.scheduler.on_refused(mid, frame.code, frame.reason, frame.retry_after, t.mono)
        self._targets.pop(mid, None)
        point = f"{TracePoint.REFUSED}:{code_name(frame.code)}"
        if isinstance(action, RefreshDevices):
            self.recipients.on_mismatch(frame, self._items.get(mid))
            self.scheduler.devices_refreshed(action.lane)
            detail = f"missing={_refs(frame.missing)} stale={_refs(frame.stale)}"
            self.log.flush_trace(mid, (point, t.wall, detail))
        elif isinstance(action, RetryAt):
            retry_at = t.to_wall(action.at)
            detail = f"{frame.reason}; retry in {action.at - t.mono:.1f} s"
            self.log.later(mid, point, t.wall, detail)
            self.store.set_attempt(mid, action.attempts, retry_at, self.log.pop(mid))
            item = self._items.get(mid)
            if item is not None:
                self._emit(
                    SendRefused(
                        mid, item.recipient, item.kind, frame.code, frame.reason, t.wall, retry_at
                    )
                )
        elif isinstance(action, Failed):
            self._report_failed(mid, frame.code, frame.reason)
        self.pump()


def _refs(refs: Iterable[tuple[str, int]]) -> str:
    return ",".join(f"{a}.{d}" for a, d in refs) or "-"
