"""The delivery rules of the relay's connection core: SEND and its answer, the DELIVER stream,
cumulative ACKs (DESIGN §5). A part of :class:`~tidings.server.core.RelayCore`.

Invariants:

* SENT is only ever the continuation of a commit's result (:class:`~tidings.store.Stored`):
  there is no other path to it (G1).
* At most ``delivery_window`` DELIVERs are unacknowledged; seqs go out strictly increasing,
  each once per connection; an ACK above the highest seq sent is a violation, one at or below
  the last is ignored (acks are cumulative).
* Items stored while the device is connected are pushed from memory only when they are next in
  line and no page read is in flight; otherwise the stream reads the store in pages.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import StoreUnavailable
from ..store import (
    Device,
    DeviceMismatch,
    DeviceRef,
    InboxItem,
    QueueFull,
    Stored,
    Submission,
    SubmitResult,
)
from ..wire import Ack, Deliver, ErrorCode, FrameType, Refused, Send, Sent
from .core_actions import (
    AckItems,
    AckTaken,
    Failure,
    FetchItems,
    ItemsDelivered,
    ListDevices,
    SendRefused,
    SendStored,
    StoreTrouble,
)
from .core_base import State
from .core_prekeys import PrekeyRules

__all__ = ["DeliveryRules", "item_frame"]


def item_frame(item: InboxItem) -> Deliver:
    """The DELIVER frame of an inbox item (of a multi-send: its part, then the shared body)."""
    return Deliver(
        item.seq,
        int(item.kind),
        item.sender.account,
        item.sender.device_id,
        item.message_id,
        item.enqueued_at,
        item.expires_at,
        item.payload + item.shared if item.shared else item.payload,
    )


class DeliveryRules(PrekeyRules):
    """Sends, the delivery stream and acks (see the module docstring)."""

    __slots__ = (
        "_acked",
        "_backlog",
        "_fetching",
        "_in_flight",
        "_max_stranger_queue",
        "_sent_upto",
    )

    def _init_stream(self) -> None:
        self._acked = 0  # highest seq the device acked (or its HELLO cursor)
        self._sent_upto = 0  # highest seq sent on this connection
        # Seqs sent and not yet acked, increasing (a list: an empty deque costs ~700 bytes).
        self._in_flight: list[int] = []
        self._fetching = False
        self._backlog = False  # items may be waiting in the store
        self._max_stranger_queue = self.config.max_stranger_queue  # a computed property

    def offer(self, item: InboxItem, now: float, mono: float) -> None:
        """A new item was stored for this device: push it now if it is next in line."""
        if self.state is not State.OPEN:
            return
        self.now, self.mono = now, mono
        if (
            not self._backlog
            and not self._fetching
            and item.seq == self._sent_upto + 1
            and len(self._in_flight) < self.config.delivery_window
        ):
            self._deliver([item])
        else:
            self._backlog = True
            self._pump()

    @property
    def sent_upto(self) -> int:
        """The highest seq sent on this connection (its HELLO cursor before any)."""
        return self._sent_upto

    def recheck(self, now: float, mono: float) -> None:
        """Items may be waiting in the store that this connection was not offered (another
        relay node stored them, and hinted or was polled): read the next page if none is in
        flight, or right after the one that is."""
        if self.state is not State.OPEN:
            return
        self.now, self.mono = now, mono
        self._backlog = True
        self._pump()

    # ---------------------------------------------------------------- sends

    def _handle_send(self, frame: Send) -> None:
        assert self.device is not None
        limit = self.config.max_payload
        for target in frame.targets:
            if len(target.payload) > limit:
                self._refuse(frame, ErrorCode.PAYLOAD_TOO_LARGE, f"payload over {limit} bytes")
                return
        self.with_account_age(lambda new: self._submit(frame, new))

    def _submit(self, frame: Send, new: bool) -> None:
        assert self.device is not None
        retry_after = self.limits.send(self.device.account, new, self.mono)
        if retry_after > 0:
            self._refuse(frame, ErrorCode.RATE_LIMITED, "send rate limit", retry_after=retry_after)
            return
        cfg, now = self.config, self.now
        sub = Submission(
            sender=self.device,
            message_id=frame.message_id,
            recipient=frame.recipient,
            payloads=tuple((DeviceRef(t.account, t.device_id), t.payload) for t in frame.targets),
            now=now,
            expires_at=now + cfg.retention_seconds,
            max_queue=cfg.max_queue,
            max_stranger_queue=self._max_stranger_queue,
        )
        # Not blocking: the next frames (more sends, acks) are decided while the commit is in
        # progress, and the sends of one read share it.
        self._ask(
            sub,
            lambda result: self._submitted(frame, result),
            lambda exc: self._submit_failed(frame, exc),
            block=False,
        )

    def _submitted(self, frame: Send, result: SubmitResult) -> None:
        if isinstance(result, Stored):  # committed: only now the ✓ (G1)
            self._send(Sent(frame.message_id, result.stored_at, result.duplicate))
            self._actions.append(SendStored(result))
        elif isinstance(result, DeviceMismatch):

            def listed(devices: list[Device]) -> None:
                if not devices:
                    reason = f"no account {frame.recipient}"
                    self._refuse(frame, ErrorCode.NO_SUCH_ACCOUNT, reason)
                    return
                self._refuse(
                    frame,
                    ErrorCode.DEVICE_MISMATCH,
                    "device set is not current",
                    missing=tuple((r.account, r.device_id) for r in result.missing),
                    stale=tuple((r.account, r.device_id) for r in result.stale),
                )

            def failed(exc: Exception) -> None:
                self._submit_failed(frame, exc)

            self._ask(ListDevices(frame.recipient), listed, failed, block=False)
        elif isinstance(result, QueueFull):
            self._refuse(
                frame,
                ErrorCode.QUEUE_FULL,
                self._queue_full_reason(result, result.device),
                retry_after=self.queue_full_retry_after,
            )

    def _submit_failed(self, frame: Send, exc: Exception) -> None:
        if isinstance(exc, StoreUnavailable):  # logged by the relay, once per interval
            self._actions.append(StoreTrouble(exc))
            reason = "store unavailable; retry later"
            code = ErrorCode.STORE_UNAVAILABLE
            self._refuse(frame, code, reason, retry_after=self.store_retry_after)
            return
        self._actions.append(Failure("! store failed a send", exc))
        self._refuse(frame, ErrorCode.INTERNAL, "store failure; retry", retry_after=1.0)

    def _refuse(
        self,
        frame: Send,
        code: ErrorCode,
        reason: str,
        *,
        missing: tuple[tuple[str, int], ...] = (),
        stale: tuple[tuple[str, int], ...] = (),
        retry_after: float = 0.0,
    ) -> None:
        self._actions.append(SendRefused(int(code)))
        self._send(Refused(frame.message_id, int(code), reason, missing, stale, retry_after))

    # ---------------------------------------------------------------- delivery stream

    def _handle_ack(self, frame: Ack) -> None:
        assert self.device is not None
        if frame.seq > self._sent_upto:
            reason = "ack above the highest seq delivered"
            self._violation(ErrorCode.INVALID_ACK, reason, FrameType.ACK)
            return
        if frame.seq <= self._acked:
            return
        self._acked = frame.seq
        in_flight = self._in_flight
        done = 0
        while done < len(in_flight) and in_flight[done] <= frame.seq:
            done += 1
        del in_flight[:done]
        self._actions.append(AckTaken())
        self._pump()
        # Not blocking: the store deletes in order with what comes after (a later HELLO of the
        # device reads past it); a failure closes the connection, as a failed decision does.
        self._ask(
            AckItems(self.device, frame.seq),
            lambda removed: self._actions.append(ItemsDelivered(removed)),
            self._stream_failed(FrameType.ACK),
            block=False,
        )

    def _deliver(self, items: list[InboxItem]) -> None:
        frames = self._frames
        in_flight = self._in_flight
        for item in items:
            if item.seq <= self._sent_upto:
                continue
            frames.append(item_frame(item))
            in_flight.append(item.seq)
            self._sent_upto = item.seq

    def _pump(self) -> None:
        if self._backlog and not self._fetching and self.state is State.OPEN:
            room = self.config.delivery_window - len(self._in_flight)
            if room > 0:
                assert self.device is not None
                self._fetching = True
                # Items offered while the read is in flight set _backlog again: none is left.
                self._backlog = False
                self._ask(
                    FetchItems(self.device, self._sent_upto, room),
                    lambda items: self._fetched(room, items),
                    self._stream_failed(FrameType.ACK),
                    block=False,
                )

    def _fetched(self, room: int, items: list[InboxItem]) -> None:
        self._fetching = False
        if self.state is not State.OPEN:
            return
        if len(items) == room:
            self._backlog = True  # a full page: there may be more
        self._deliver(items)
        self._pump()

    def _stream_failed(self, frame_type: FrameType) -> Callable[[Exception], None]:
        """A failed deletion or page read: ERROR and close (the device resumes from its cursor
        on the next connection)."""

        def failed(exc: Exception) -> None:
            self._fetching = False
            self._frame_type = frame_type
            self._failed(exc)

        return failed
