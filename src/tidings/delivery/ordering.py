"""Per-sender ordering: surface each sender device's messages in counter order (G4).

A *stream* is one sender device in one conversation (:class:`StreamKey`). The sender numbers its
messages in a stream 1, 2, 3, … (``Message.counter``). :class:`Reorderer` surfaces them in that
order whatever order they arrive in; it is sans-I/O (``now`` is an argument, no clock, no I/O).

Invariants:

* A message is surfaced at most once per counter; surfaced messages of a stream come out in
  increasing counter order, except *late* ones (``Surfaced.late``), which arrived after the
  reorderer had given up waiting for them.
* A gap is never skipped silently: :class:`GapDetected` when it appears, :class:`GapSkipped`
  when the reorderer stops waiting (after ``hold_seconds``, when too many are held, or when the
  relay said the missing messages expired before this device fetched them), with the reason.
* An expiry notice (:meth:`Reorderer.expired`) never drops a message: a counter it declared
  expired that arrives after all is surfaced as late, like one from any skipped gap.
* Memory per stream is bounded: at most ``max_held`` held messages and
  :data:`MAX_MISSING_RANGES` remembered gaps.
* A stream that joins midstream starts at its first message's counter — unless messages that
  came *before* it were asked for again (:meth:`Reorderer.awaiting`: they arrived unreadable,
  or before this device knew their conversation): then it starts *tentative*, holding what
  arrives until the last of them is back, and begins at the lowest counter held; so a
  recovered message is surfaced in its place, not late. If they do not come back, the hold
  skips the gap as any (what was held surfaces in order; a message after that is late).

Durability: the reorderer's state minus the held items (:class:`StreamState`, small, and the
unmatched expiry notices per sender device) is what the client persists, in the same transaction
as the message that changed it (see :meth:`Reorderer.changed_states` and
:meth:`Reorderer.changed_notices`). Held messages are already in the client's store, marked not
surfaced; after a restart, restore the states and feed the held messages again with
:meth:`Reorderer.receive`, each with the time it was first received as ``now``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ._streams import (
    Duplicate,
    GapDetected,
    GapSkipped,
    OrderEvent,
    SenderDevice,
    SkipReason,
    StreamKey,
    StreamState,
    Surfaced,
    _invalid,
)

__all__ = [
    "MAX_AWAITED_STREAMS",
    "MAX_EXPIRED_NOTICES",
    "MAX_HELD_PER_SENDER",
    "MAX_MISSING_RANGES",
    "ORDER_HOLD_SECONDS",
    "Duplicate",
    "GapDetected",
    "GapSkipped",
    "OrderEvent",
    "Reorderer",
    "SenderDevice",
    "SkipReason",
    "StreamKey",
    "StreamState",
    "Surfaced",
]

T = TypeVar("T")

#: How long a message waits behind a gap before the gap is skipped. The server relays one
#: device's sends in order, so a gap means a reordered retry (the sender's outbox backs off up to
#: 60 s, but a refused send usually succeeds on its first retry within seconds) or a lost
#: message. 30 s covers a retry or a reconnect in practice and is short enough that a user
#: does not wait long for messages that are already here.
ORDER_HOLD_SECONDS = 30.0

#: Most messages held behind gaps per stream; one more skips the first gap. 1000 messages is far
#: more than a person types in a hold period, and bounds what a hostile sender can make us keep.
MAX_HELD_PER_SENDER = 1000

#: Most skipped gaps remembered per stream (to tell a late message from a duplicate). Beyond it
#: the oldest gap is forgotten; a message from a forgotten gap is surfaced as late (the store's
#: message-id dedup has already ruled out a duplicate), never dropped.
MAX_MISSING_RANGES = 256

#: Most unmatched expiry notices remembered per sender device. Each one declares one missing
#: counter expired, so more than the messages that can be held behind gaps is pointless; the
#: bound keeps a flood of notices from growing memory.
MAX_EXPIRED_NOTICES = MAX_HELD_PER_SENDER

#: Most streams remembered as awaiting messages asked for again before they began
#: (:meth:`Reorderer.awaiting`); beyond it the oldest is forgotten (its stream then starts at
#: its first message, and a recovered one shows late). In memory only: after a restart a
#: tentative stream is an ordinary one that began at 1 (its held messages wait out the hold).
MAX_AWAITED_STREAMS = 1024

_SNAPSHOT_VERSION = 1


@dataclass(slots=True)
class _Stream(Generic[T]):
    key: StreamKey
    expected: int = 1
    missing: list[tuple[int, int]] = field(default_factory=list)
    horizon: int = 1
    held: dict[int, tuple[T, float]] = field(default_factory=dict)
    #: Began midstream while messages before its first were asked for again: it holds what
    #: arrives until they are back, then begins at the lowest counter held.
    tentative: bool = False

    def state(self) -> StreamState:
        return StreamState(self.key, self.expected, tuple(self.missing), self.horizon)

    def first_arrival(self) -> float:
        return min(arrived for _, arrived in self.held.values())

    def take_missing(self, counter: int) -> bool:
        """Forget ``counter`` as missing; whether it was."""
        for i, (first, last) in enumerate(self.missing):
            if first <= counter <= last:
                parts = [(first, counter - 1), (counter + 1, last)]
                self.missing[i : i + 1] = [(a, b) for a, b in parts if a <= b]
                self._bound_missing()
                return True
        return False

    def add_missing(self, first: int, last: int) -> None:
        """Remember ``first..last`` as skipped (``first`` is ``expected``: above every range)."""
        if self.missing and self.missing[-1][1] + 1 == first:  # adjacent: one range
            first = self.missing.pop()[0]
        self.missing.append((first, last))
        self._bound_missing()

    def _bound_missing(self) -> None:
        while len(self.missing) > MAX_MISSING_RANGES:
            _, last = self.missing.pop(0)
            self.horizon = last + 1


class Reorderer(Generic[T]):
    """Surfaces each stream's messages in counter order, holding those that arrive early.

    Inputs: :meth:`receive` for each new message (after the store's dedup by message id), and
    :meth:`handle_timer` when :meth:`next_deadline` passes. Both return the events to act on,
    in order. After either, persist :meth:`changed_states` with the messages they surfaced.

    Args:
        hold_seconds: how long a gap may stay open before it is skipped.
        max_held: most messages held per stream.
        states: streams to restore (see :meth:`restore`).
        notices: unmatched expiry notices to restore, per sender device (see :meth:`expired`).
        join_midstream: a stream seen for the first time starts at the counter of its first
            message instead of 1. For a device linked to an account after its conversations
            began: it was never sent the earlier messages, so they are not a gap. A function
            of the stream's key decides per stream (a group this account was added to later).
    """

    def __init__(
        self,
        hold_seconds: float = ORDER_HOLD_SECONDS,
        max_held: int = MAX_HELD_PER_SENDER,
        states: Iterable[StreamState] = (),
        join_midstream: bool | Callable[[StreamKey], bool] = False,
        notices: Mapping[SenderDevice, int] | None = None,
    ) -> None:
        if not hold_seconds >= 0 or max_held < 1:
            raise _invalid("hold_seconds must be >= 0 and max_held >= 1")
        self.hold_seconds = hold_seconds
        self.max_held = max_held
        self.join_midstream = join_midstream
        self._streams: dict[StreamKey, _Stream[T]] = {}
        self._changed: set[StreamKey] = set()
        self._notices = {k: min(n, MAX_EXPIRED_NOTICES) for k, n in (notices or {}).items() if n}
        self._changed_notices: set[SenderDevice] = set()
        #: Messages asked for again per stream not begun (or tentative), still outstanding.
        self._awaited: dict[StreamKey, int] = {}
        for s in states:
            self._streams[s.key] = _Stream(s.key, s.expected, list(s.missing), s.horizon)

    def receive(self, key: StreamKey, counter: int, item: T, now: float) -> list[OrderEvent[T]]:
        """A message with ``counter`` arrived in stream ``key``.

        In a tentative stream (module docstring) it is held; once :meth:`awaiting` says none
        is left (call it first for a recovered message, with the count left), the stream
        begins at its lowest held counter and releases its run.

        Returns:
            The events, in order: ``Surfaced`` for it and every held successor it unblocks; or
            ``GapDetected`` (if it opens a new gap) and it is held; or ``Surfaced(late=True)``
            for a counter whose gap was skipped; or ``Duplicate``. Holding one message too many
            skips the first gap at once (``GapSkipped`` then ``Surfaced`` events); so does an
            unmatched expiry notice of the sender device (see :meth:`expired`).

        Raises:
            LocalProtocolError: ``counter`` is not a positive integer.
        """
        if type(counter) is not int or counter < 1:
            raise _invalid("counter must be an integer >= 1")
        s = self._streams.get(key)
        if s is None:
            midstream = self.join_midstream
            joins = midstream(key) if callable(midstream) else midstream
            # Earlier messages asked for again: do not begin after them (module docstring).
            tentative = joins and self._awaited.get(key, 0) > 0
            start = counter if joins and not tentative else 1
            s = self._streams[key] = _Stream(key, expected=start, horizon=start)
            s.tentative = tentative
        if not s.tentative:
            self._awaited.pop(key, None)
        events = self._receive(s, counter, item, now)
        if s.tentative and (s.expected > s.horizon or not self._awaited.get(key, 0)):
            events += self._begin(s)
        return events

    def awaiting(self, key: StreamKey, outstanding: int) -> None:
        """``outstanding`` messages of stream ``key`` that arrived before any other of it were
        asked for again (0: none is left). Only a stream that has not begun (or is
        tentative) takes note: one that joins midstream then holds what arrives for them
        rather than beginning after them (see :meth:`receive`). The count is
        in memory, at most :data:`MAX_AWAITED_STREAMS` streams."""
        s = self._streams.get(key)
        if s is not None and not s.tentative:
            return
        self._awaited.pop(key, None)
        if outstanding > 0:
            self._awaited[key] = outstanding
            while len(self._awaited) > MAX_AWAITED_STREAMS:
                del self._awaited[next(iter(self._awaited))]

    def _begin(self, s: _Stream[T]) -> list[OrderEvent[T]]:
        """A tentative stream begins: at its lowest held counter if nothing was surfaced (the
        counters below it were never meant for this device), else where it is."""
        s.tentative = False
        self._awaited.pop(s.key, None)
        if s.expected == s.horizon and s.held:
            s.expected = s.horizon = min(s.held)
            self._changed.add(s.key)
            return self._release_run(s)
        return []

    def _receive(self, s: _Stream[T], counter: int, item: T, now: float) -> list[OrderEvent[T]]:
        key = s.key
        if counter < s.expected:
            return self._late(s, counter, item)
        if counter in s.held:
            return [Duplicate(key, counter, item)]
        self._changed.add(key)
        sender = (key.sender_account, key.sender_device)
        if counter == s.expected:
            # In order: the expired message of an unmatched notice was not this stream's next
            # one, so the notice is stale (its gap was skipped before it came, or a device
            # linked later never had that message). Forget it rather than skip a wrong gap.
            self._set_notices(sender, 0)
            s.expected += 1
            return [Surfaced(key, counter, item), *self._release_run(s)]
        top = max(s.held, default=s.expected - 1)
        events: list[OrderEvent[T]] = []
        if counter > top + 1:
            events.append(GapDetected(key, range(top + 1, counter)))
        s.held[counter] = (item, now)
        events += self._apply_notices(sender)
        while len(s.held) > self.max_held:
            events += self._skip_gap(s, SkipReason.OVERFLOW)
        return events

    def expired(self, sender_account: str, sender_device: int) -> list[OrderEvent[T]]:
        """The relay's notice that a message of this sender device expired before this device
        fetched it (DELIVER kind 2). Call it only for a message this device does not hold: a
        notice for a message that arrived must skip nothing.

        The notice names the message id, not its counter (that is inside the ciphertext). The
        relay queues it after every item that was queued before the expiry, so the message is
        missing here: the earliest missing counter of the sender device is declared expired, in
        the stream that has waited longest. With no gap open yet (nothing later has arrived),
        the notice is kept for the sender device's next gap, and forgotten at its next in-order
        message. Counters are per conversation, notices per device: for a device of another
        account there is one conversation; for another device of this account (sent-message
        copies) notices count for any of its conversations.

        Returns:
            ``GapSkipped(reason=EXPIRED)`` and the ``Surfaced`` messages it released; or nothing
            (the notice is kept).
        """
        sender = (sender_account, sender_device)
        self._set_notices(sender, min(self._notices.get(sender, 0) + 1, MAX_EXPIRED_NOTICES))
        return self._apply_notices(sender)

    def notices(self) -> dict[SenderDevice, int]:
        """The unmatched expiry notices per sender device."""
        return dict(self._notices)

    def changed_notices(self) -> dict[SenderDevice, int]:
        """The unmatched notice counts changed since the last call (0: none left), to persist
        with :meth:`changed_states`; forgets them."""
        changed, self._changed_notices = self._changed_notices, set()
        return {k: self._notices.get(k, 0) for k in sorted(changed)}

    def handle_timer(self, now: float) -> list[OrderEvent[T]]:
        """Skip every gap that has been open for ``hold_seconds`` or more.

        Returns:
            For each skipped gap, ``GapSkipped`` followed by the ``Surfaced`` messages it
            released.
        """
        events: list[OrderEvent[T]] = []
        for s in self._streams.values():
            while s.held and s.first_arrival() + self.hold_seconds <= now:
                events += self._skip_gap(s, SkipReason.TIMEOUT)
        return events

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` next has work, or ``None`` if nothing is held."""
        deadlines = [s.first_arrival() for s in self._streams.values() if s.held]
        return min(deadlines) + self.hold_seconds if deadlines else None

    def held(self, key: StreamKey) -> list[int]:
        """The counters held in stream ``key``, ascending."""
        s = self._streams.get(key)
        return sorted(s.held) if s else []

    def state(self, key: StreamKey) -> StreamState:
        """The durable state of stream ``key`` (the initial state if never seen)."""
        s = self._streams.get(key)
        return s.state() if s else StreamState(key)

    def changed_states(self) -> list[StreamState]:
        """The states changed since the last call, to persist; forgets them."""
        changed, self._changed = self._changed, set()
        return [self._streams[k].state() for k in sorted(changed)]

    def snapshot(self) -> dict[str, Any]:
        """The durable state of every stream and the unmatched notices, JSON-compatible (held
        messages excluded)."""
        streams = [s.state().to_dict() for s in self._streams.values()]
        notices = [[a, d, n] for (a, d), n in sorted(self._notices.items())]
        return {"version": _SNAPSHOT_VERSION, "streams": streams, "expired": notices}

    @classmethod
    def restore(
        cls,
        snapshot: Mapping[str, Any],
        hold_seconds: float = ORDER_HOLD_SECONDS,
        max_held: int = MAX_HELD_PER_SENDER,
    ) -> Reorderer[T]:
        """Rebuild from :meth:`snapshot`; then feed the held messages again (module docstring).

        Raises:
            LocalProtocolError: the snapshot is not valid.
        """
        streams = snapshot.get("streams")
        if snapshot.get("version") != _SNAPSHOT_VERSION or type(streams) is not list:
            raise _invalid("not a reorderer snapshot")
        states = [StreamState.from_dict(d) for d in streams]
        try:
            notices = {(str(a), int(d)): int(n) for a, d, n in snapshot.get("expired", [])}
        except (TypeError, ValueError) as exc:
            raise _invalid("not a reorderer snapshot") from exc
        return cls(hold_seconds, max_held, states, notices=notices)

    # ------------------------------------------------------------ internals

    def _late(self, s: _Stream[T], counter: int, item: T) -> list[OrderEvent[T]]:
        if s.take_missing(counter) or counter < s.horizon:
            self._changed.add(s.key)
            return [Surfaced(s.key, counter, item, late=True)]
        return [Duplicate(s.key, counter, item)]

    def _release_run(self, s: _Stream[T]) -> list[OrderEvent[T]]:
        events: list[OrderEvent[T]] = []
        while s.expected in s.held:
            item, _ = s.held.pop(s.expected)
            events.append(Surfaced(s.key, s.expected, item))
            s.expected += 1
        return events

    def _skip_gap(self, s: _Stream[T], reason: SkipReason) -> list[OrderEvent[T]]:
        return self._skip(s, min(s.held) - s.expected, reason)

    def _skip(self, s: _Stream[T], count: int, reason: SkipReason) -> list[OrderEvent[T]]:
        """Stop waiting for the ``count`` counters from ``expected`` (all missing); a tentative
        stream stops waiting for what it awaited too."""
        if s.tentative:
            s.tentative = False
            self._awaited.pop(s.key, None)
        first = s.expected
        s.add_missing(first, first + count - 1)
        s.expected = first + count
        self._changed.add(s.key)
        return [GapSkipped(s.key, range(first, first + count), reason), *self._release_run(s)]

    def _set_notices(self, sender: SenderDevice, count: int) -> None:
        if self._notices.get(sender, 0) != count:
            self._changed_notices.add(sender)
            if count:
                self._notices[sender] = count
            else:
                del self._notices[sender]

    def _apply_notices(self, sender: SenderDevice) -> list[OrderEvent[T]]:
        """Declare the earliest missing counters of ``sender`` expired, one per notice."""
        left = self._notices.get(sender, 0)
        events: list[OrderEvent[T]] = []
        while left:
            waiting = [
                s
                for s in self._streams.values()
                if s.held and (s.key.sender_account, s.key.sender_device) == sender
            ]
            if not waiting:
                break
            s = min(waiting, key=lambda w: (w.first_arrival(), w.key))
            take = min(left, min(s.held) - s.expected)
            events += self._skip(s, take, SkipReason.EXPIRED)
            left -= take
        self._set_notices(sender, left)
        return events
