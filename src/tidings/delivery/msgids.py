"""Message ids: 16 bytes, unique, and in time order (sans-I/O: the time and the randomness in).

A message id is chosen once by the sending device and kept across retries; the relay keys its
idempotency records by it (``sent``: the id first, then the sender). Random ids put each new
record on a page of its own in that table, so every commit rewrote one page per message
(bench/README.md, "The store's disk bytes"). An id that starts with the time lands at the
table's right edge with the other new ones, so a commit of many sends writes a few pages:

    id = milliseconds since 1970 (48 bits, big-endian) || 80 random bits

(the layout of UUIDv7, RFC 9562 §5.7, without its version and variant bits: nothing here reads
an id as a UUID). 80 random bits keep ids unique: two devices of the same millisecond collide
with a probability of 2⁻⁸⁰, and a collision would only make the relay answer the second send as
a duplicate of the first *of the same sender device* (the records are per sender). The time
tells the relay nothing it does not know: it sees when each send arrives. A clock set wrong
costs locality, never uniqueness.
"""

from __future__ import annotations

from collections.abc import Callable

from ..wire.limits import MESSAGE_ID_LEN

__all__ = ["TIME_BYTES", "new_message_id"]

#: Bytes of the millisecond timestamp at the front of an id: 48 bits last until the year 10889.
TIME_BYTES = 6


def new_message_id(now: float, random_bytes: Callable[[int], bytes]) -> bytes:
    """A new message id for a message made at ``now`` (seconds since 1970).

    Raises:
        ValueError: ``now`` is before 1970 or past what 48 bits of milliseconds hold.
    """
    millis = int(now * 1000)
    if not 0 <= millis < 1 << (8 * TIME_BYTES):
        raise ValueError(f"not a time a message id can hold: {now!r}")
    tail = random_bytes(MESSAGE_ID_LEN - TIME_BYTES)
    if len(tail) != MESSAGE_ID_LEN - TIME_BYTES:
        raise ValueError("random_bytes returned the wrong length")
    return millis.to_bytes(TIME_BYTES, "big") + tail
