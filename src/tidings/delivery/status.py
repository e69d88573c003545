"""Message statuses: per recipient device, the transition rule, and the per-message roll-up.

Each status is caused by a real event at the named endpoint (G5):

========== ===== ==================================================================
status     glyph caused by
========== ===== ==================================================================
PENDING    …     composed, in the sender's outbox; the server has not stored it
SENT       ✓     the server durably stored it for every target device (SENT frame)
DELIVERED  ✓✓    that device decrypted it and committed it to its store (receipt)
READ       R     that device displayed it to its user (read receipt)
EXPIRED    ✗     retention ran out before that device fetched it (server notice)
FAILED     !     the server refused it permanently (e.g. no such account)
========== ===== ==================================================================

Invariants:

* Statuses never go backwards and duplicates change nothing: :func:`advance` is the one rule,
  and ``_NEXT`` below is its whole table.
* The integer values are stable (they are stored) and order the *progress* statuses
  ``PENDING < SENT < DELIVERED < READ``. EXPIRED and FAILED are outside that order: never compare
  them with ``<``; use :func:`advance` and :func:`rollup`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TypeVar

__all__ = ["GLYPHS", "Status", "advance", "glyph", "rollup"]

_K = TypeVar("_K")


class Status(enum.IntEnum):
    """The status of one message at one recipient device (stable: never renumber)."""

    PENDING = 0
    SENT = 1
    DELIVERED = 2
    READ = 3
    EXPIRED = 4
    FAILED = 5


# The transition table: from each status, the statuses it may move to. Anything else is ignored.
_NEXT: dict[Status, frozenset[Status]] = {
    # A receipt or an expiry notice may overtake the ✓: the server stored the message and the
    # connection broke before the SENT frame came back; the retry is then answered "duplicate".
    Status.PENDING: frozenset(
        {Status.SENT, Status.DELIVERED, Status.READ, Status.EXPIRED, Status.FAILED}
    ),
    # Once stored, the server cannot refuse it any more: FAILED after SENT is ignored.
    Status.SENT: frozenset({Status.DELIVERED, Status.READ, Status.EXPIRED}),
    # A device that committed the message cannot have let it expire unfetched.
    Status.DELIVERED: frozenset({Status.READ}),
    Status.READ: frozenset(),
    # EXPIRED is terminal except for proof from the device itself: the device can fetch and
    # commit an item and have its ack arrive after the server's expiry pass removed it. The
    # receipt is the end-to-end truth (G5), so it wins over the server's notice.
    Status.EXPIRED: frozenset({Status.DELIVERED, Status.READ}),
    Status.FAILED: frozenset(),
}


def advance(current: Status | None, new: Status) -> Status | None:
    """Apply an event's status to a device's current status.

    Args:
        current: the device's status so far; ``None`` (nothing recorded yet) counts as PENDING.
        new: the status the event claims.

    Returns:
        ``new`` if the status moves forward, or ``None`` if the event must be ignored (a
        duplicate, a status that would go backwards, or anything after a terminal status).
    """
    return new if new in _NEXT[Status.PENDING if current is None else current] else None


def rollup(statuses: Mapping[_K, Status], sent: bool) -> Status:
    """The status of one message to one recipient, from its statuses at the recipient's devices.

    The rule, in order:

    1. FAILED if any device is FAILED: the server stores a send for all devices or none, so a
       refusal is the whole message's.
    2. With no device known yet: SENT if the server stored it (``sent``), else PENDING.
    3. EXPIRED if every device expired: the message reached no one and never will.
    4. Otherwise the *lowest* progress among the devices that did not expire, so ✓✓ means every
       device that can still get the message got it. A device that expired after another one
       delivered does not drag the message to ✗ (the per-device view still shows it).
       PENDING is raised to SENT when ``sent``: the ✓ covers every target device.

    Args:
        statuses: the status at each device of the recipient (not the sender's own devices).
        sent: whether the server acknowledged the send (✓).
    """
    values = list(statuses.values())
    if Status.FAILED in values:
        return Status.FAILED
    live = [s for s in values if s is not Status.EXPIRED]
    if values and not live:
        return Status.EXPIRED
    lowest = min(live, default=Status.PENDING)
    return Status.SENT if sent and lowest is Status.PENDING else lowest


#: The CLI's glyph for each status. READ is "R" so it differs from ✓✓ without colour (a
#: colour terminal may render it as a blue ✓✓ instead).
GLYPHS: Mapping[Status, str] = {
    Status.PENDING: "…",
    Status.SENT: "✓",
    Status.DELIVERED: "✓✓",
    Status.READ: "R",
    Status.EXPIRED: "✗",
    Status.FAILED: "!",
}


def glyph(status: Status) -> str:
    """The CLI's glyph for ``status`` (see :data:`GLYPHS`)."""
    return GLYPHS[status]
