"""Catch-up progress: how much of the backlog WELCOME announced is stored (sans-I/O, pure time).

WELCOME says how many items waited for this device beyond its HELLO cursor (``backlog``) and
the highest seq among them (``backlog_upto``, docs/protocol.md §6.7). Each DELIVER with a seq up
to it that the client stores is one more of the backlog; storing ``backlog_upto`` itself, or a
later item (items of the backlog can expire meanwhile), finishes the catch-up. The client counts
only what its store has committed: it calls :meth:`CatchUp.stored` for an item of a batch and
:meth:`CatchUp.report` after that batch's commit.
"""

from __future__ import annotations

from .events import CatchingUp

#: Seconds between two progress reports while a catch-up runs: a line a person can follow
#: (10,000 messages at ~3,000/s give ~6 reports), and little work per message.
PROGRESS_INTERVAL = 0.5


class CatchUp:
    """The catch-up of one session: started by WELCOME, fed the seqs stored, asked for reports."""

    def __init__(self, interval: float = PROGRESS_INTERVAL) -> None:
        self.interval = interval
        self.total = 0
        self.done = 0
        self._upto = 0
        self._started = 0.0
        self._reported = 0.0
        self._active = False  # a catch-up runs and has not been reported finished
        self._finished = False

    @property
    def active(self) -> bool:
        """A catch-up runs (its finish not yet reported)."""
        return self._active

    def start(self, backlog: int, upto: int, now: float) -> CatchingUp | None:
        """A session opened with ``backlog`` items waiting, up to seq ``upto``: the first
        report (``None`` when nothing waits: there is no catch-up to show)."""
        self.total, self.done, self._upto = backlog, 0, upto
        self._started = self._reported = now
        self._finished = False
        self._active = backlog > 0
        return self._progress(now) if self._active else None

    def stored(self, seq: int) -> None:
        """The item ``seq`` of this session is stored (in the batch about to commit)."""
        if not self._active or self._finished:
            return
        if seq <= self._upto:
            self.done = min(self.done + 1, self.total)
        if seq >= self._upto:
            self._finished = True

    def report(self, now: float) -> CatchingUp | None:
        """After a commit: a report if one is due (the finish always is), else ``None``."""
        if not self._active:
            return None
        if self._finished:
            self._active = False
            return self._progress(now)
        if now - self._reported < self.interval:
            return None
        self._reported = now
        return self._progress(now)

    def stop(self) -> None:
        """The session ended: this catch-up reports nothing more (the next WELCOME tells what
        is left)."""
        self._active = False

    def _progress(self, now: float) -> CatchingUp:
        elapsed = now - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        return CatchingUp(self.done, self.total, rate, self._finished)
