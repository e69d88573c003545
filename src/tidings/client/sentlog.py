"""The confirmation points of outbox entries in flight, recorded a burst at a time.

An entry's trace points after "composed" — "written" (to the socket), "tcp_acked" (the relay's
kernel), "sent" (✓: the relay stored it) — are buffered here while it is in flight and reach the
store with its ✓. The ✓ of every SENT frame handled in one store batch (one turn of the event
loop) are recorded together by :meth:`SentLog.flush`: one
:meth:`~tidings.client.store.ClientStore.mark_sent_many` — a handful of statements for the
burst, inside the batch's one transaction — instead of ~10 statements per ✓. Their
:class:`~tidings.client.events.StatusChanged` events go out through ``emit``, which holds them
until that transaction commits (G5: ✓ is reported once it is durable here too).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ..delivery import Status
from ..errors import StoreUnavailable
from ..refs import DeviceRef
from .events import ClientEvent, StatusChanged
from .store import ClientStore, SentMark, TracePoint

__all__ = ["SentLog", "TracePoints"]

#: Buffered trace points: ``(point, at, detail)``.
TracePoints = list[tuple[str, float, str | None]]


class SentLog:
    """Buffers the trace points of entries in flight and the ✓ of a batch (module docstring).

    Args:
        store: the device's store.
        emit: where the status events go (after their commit).
    """

    def __init__(self, store: ClientStore, emit: Callable[[ClientEvent], None]) -> None:
        self.store = store
        self._emit = emit
        self._points: dict[bytes, TracePoints] = {}
        self._sent: list[SentMark] = []

    def later(self, mid: bytes, point: str, at: float, detail: str | None = None) -> None:
        """Buffer a trace point of an entry in flight (recorded with its ✓ or refusal)."""
        self._points.setdefault(mid, []).append((point, at, detail))

    def pop(self, mid: bytes) -> TracePoints:
        """The points buffered for ``mid`` (they are the caller's to record now)."""
        return self._points.pop(mid, [])

    def flush_trace(self, mid: bytes, *more: tuple[str, float, str | None]) -> None:
        """Record the points buffered for ``mid`` and ``more`` now (a refusal, a failure)."""
        points = self.pop(mid) + list(more)
        if points:
            self.store.add_traces(mid, points)

    def sent(self, mid: bytes, stored_at: float, at: float, devices: tuple[DeviceRef, ...]) -> None:
        """The relay stored ``mid`` (✓) for ``devices`` (the recipient account's; none: a note
        to self with no other device): record it with the next :meth:`flush`."""
        self._sent.append(SentMark(mid, stored_at, at, devices))

    @property
    def pending(self) -> bool:
        """Whether ✓ wait for :meth:`flush`."""
        return bool(self._sent)

    def flush(self) -> None:
        """Record the ✓ received since the last flush (one store call), then report them.

        Raises:
            StoreError: as :meth:`ClientStore.mark_sent_many`; nothing was recorded.
        """
        sent, self._sent = self._sent, []
        if not sent:
            return
        unique: dict[bytes, SentMark] = {}
        for m in sent:  # a ✓ repeated in the batch counts once (the first)
            unique.setdefault(m.message_id, m)
        marks = [dataclasses.replace(m, trace=tuple(self.pop(mid))) for mid, m in unique.items()]
        done, overall = self.store.mark_sent_many(marks)
        for m in marks:
            status = overall.get(m.message_id)
            if m.message_id not in done or status is None:
                continue  # a repeated ✓, or not a message (a receipt): nothing to report
            for device in m.devices:
                self._emit(StatusChanged(m.message_id, device, Status.SENT, status, m.at))
            if not m.devices:  # a note to self with no other device: for no device
                self._emit(StatusChanged(m.message_id, None, Status.SENT, status, m.at))

    def drop(self) -> None:
        """The batch was rolled back: its ✓ were not recorded (the entries go again)."""
        self._sent.clear()

    def on_tcp_acked(self, ids: list[bytes], at: float) -> None:
        """The relay's kernel acknowledged the bytes of these entries' SEND frames."""
        for mid in ids:
            if mid in self._points:  # in flight, or its ✓ not recorded yet
                self.later(mid, TracePoint.TCP_ACKED, at)
                continue
            try:  # ✓ came first: the trace is already committed
                self.store.add_traces(mid, [(TracePoint.TCP_ACKED, at, None)])
            except StoreUnavailable:
                return  # the store told the client, which stops
