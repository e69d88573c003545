"""Two clocks: a monotonic one for every delay, the wall clock for what people see.

A device's wall clock can jump: NTP steps it, a user fixes it, a laptop wakes with a wrong RTC.
A delay measured on it stretches by the size of the step (a step back of an hour stalls a
retry for an hour) or vanishes (a step forward fires every timer at once). So every delay in
the delivery layer — outbox backoffs and retry times, ordering holds, rate limits — runs on a
*monotonic* clock, which never jumps but means nothing across processes or reboots. The wall
clock is only for timestamps shown to people (composed at, trace times) and stored to survive
a restart.

:class:`ClockReading` converts between the two at one instant, for the few values that cross
the line: a retry time shown to a person or stored, a stored time fed back after a restart.
Sans-I/O: the caller reads both clocks and passes them in.

Invariant: a time converted from the wall clock to the monotonic one is clamped to a window
around the reading, so a wall-clock step between storing and reading a time (across a restart)
costs at most the window, never the size of the step.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import LocalProtocolError
from ..wire import ErrorCode

__all__ = ["ClockReading"]


@dataclass(frozen=True, slots=True)
class ClockReading:
    """Both clocks read at the same instant.

    Attributes:
        wall: the wall clock (seconds since the epoch).
        mono: the monotonic clock (seconds, any origin).
    """

    wall: float
    mono: float

    def to_wall(self, mono_time: float) -> float:
        """The wall-clock time of ``mono_time`` (e.g. a retry time, to show or store)."""
        return self.wall + (mono_time - self.mono)

    def to_mono(self, wall_time: float, earliest: float, latest: float) -> float:
        """The monotonic time of ``wall_time``, its distance from now clamped to
        ``[earliest, latest]`` seconds (e.g. ``[0, RETRY_CAP]`` for a stored retry time,
        ``[-hold, 0]`` for a stored arrival time).

        Raises:
            LocalProtocolError: ``earliest > latest``.
        """
        if earliest > latest:
            raise LocalProtocolError(ErrorCode.INVALID_FIELD, "earliest must be <= latest")
        return self.mono + min(max(wall_time - self.wall, earliest), latest)
