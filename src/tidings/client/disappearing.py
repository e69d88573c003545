"""Disappearing messages on a running device: the expiry sweep and when it runs next.

The store decides what runs out when (:mod:`tidings.client.store._timers`: each message's
``expires_at``, started by the schema's triggers); this module only runs the sweep at the next
``expires_at`` and reports what it deleted. The wait is re-armed after every change that can
bring the next expiry closer, and never longer than :data:`MAX_WAIT`, so a wall clock that
jumps forward (a laptop waking up) is noticed within that bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..errors import StoreUnavailable
from .events import ClientEvent, MessagesExpired
from .store import ClientStore, ExpiredMessage
from .store._timers import EXPIRE_BATCH

__all__ = ["MAX_WAIT", "Disappearing"]

#: Longest wait between two looks at the next expiry: the wall clock may jump while the
#: monotonic timer sleeps; a minute is how late a message may disappear after such a jump.
MAX_WAIT = 60.0

#: Most sweep transactions in a row before the sweep yields to the event loop (each deletes up
#: to EXPIRE_BATCH messages): a year of history running out at once does not freeze the device.
MAX_BATCHES = 20


class Disappearing:
    """Runs the store's expiry sweep on time (see the module docstring).

    Args:
        store: the device's store.
        emit: where :class:`MessagesExpired` goes.
        clock: the wall clock (``expires_at`` is on it).
    """

    def __init__(
        self, store: ClientStore, emit: Callable[[ClientEvent], None], clock: Callable[[], float]
    ) -> None:
        self._store = store
        self._emit = emit
        self._clock = clock
        self._timer: asyncio.TimerHandle | None = None
        self._due: float | None = None

    def arm(self) -> None:
        """Look at the next expiry and wait for it (needs a running loop). Cheap: one indexed
        read; the wait is only replaced when the next expiry moved closer."""
        due = self._store.next_expiry()
        if due is None:
            return
        if self._timer is not None and self._due is not None and self._due <= due:
            return
        self.close()
        self._due = due
        delay = min(max(0.0, due - self._clock()), MAX_WAIT)
        self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def sweep(self) -> list[ExpiredMessage]:
        """Delete what ran out by now, report it, and wait for the next one."""
        now = self._clock()
        gone: list[ExpiredMessage] = []
        for _ in range(MAX_BATCHES):
            batch = self._store.expire_due(now)
            gone += batch
            if len(batch) < EXPIRE_BATCH:
                break
        if gone:
            conversations = tuple(sorted({g.conversation for g in gone}))
            self._emit(MessagesExpired(tuple(g.message_id for g in gone), conversations, now))
        self.close()
        self.arm()
        return gone

    def close(self) -> None:
        """Stop waiting."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._due = None

    def _fire(self) -> None:
        self._timer = None
        self._due = None
        try:
            self.sweep()
        except StoreUnavailable:
            pass  # the store told the client, which stops; the sweep runs after a restart
