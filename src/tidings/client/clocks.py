"""The device's two clocks, injected together (see :mod:`tidings.delivery.clocks`).

The wall clock stamps what people see and what is stored (composed at, trace points, statuses);
the monotonic clock times every delay (outbox retries, ordering holds, rate limits). Tests inject
fakes of both and step the wall clock without touching the delays.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..delivery import ClockReading

__all__ = ["Clocks"]


@dataclass(frozen=True, slots=True)
class Clocks:
    """The wall clock and the monotonic clock of one device."""

    wall: Callable[[], float] = time.time
    mono: Callable[[], float] = time.monotonic

    def read(self) -> ClockReading:
        """Both clocks, read now."""
        return ClockReading(self.wall(), self.mono())
