"""Cross-node hints, sans-I/O: what one relay node tells the others through Redis, coalesced.

Several relay nodes share one PostgreSQL database (the truth) and one Redis (hints only). A
hint never carries an item: it says "look at the store", so a lost, late or repeated hint
costs a delay or a read, never a message (docs/nodes.md). The asyncio adapter is
:mod:`tidings.server.cluster`; here are the parts that decide without I/O:

- :class:`HintBatch` coalesces what a node has to tell between two flushes: devices that got
  items (a set: a device hinted by 64 sends of one commit batch is named once), devices
  unlinked (their live session elsewhere must close), accounts whose device set changed, and
  the presence records to write or drop. :meth:`HintBatch.take` empties it into at most a few
  messages of at most :data:`MAX_HINT_DEVICES` devices each: one PUBLISH per commit batch.
- :func:`encode` / :func:`decode`: the message on the channel (msgpack); :func:`decode`
  refuses anything malformed with :class:`HintError` (Redis is shared infrastructure: a bad
  message is logged and ignored, never trusted).
- :class:`Backoff`: the waits between reconnection attempts to Redis, pure (``random`` in).
- :func:`presence_key`: where a device's presence record lives.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import msgpack

from ..store import DeviceRef

__all__ = [
    "HINT_CHANNEL",
    "MAX_HINT_DEVICES",
    "POLL_INTERVAL",
    "PRESENCE_PREFIX",
    "PRESENCE_REFRESH",
    "PRESENCE_TTL",
    "RECONNECT_FIRST",
    "RECONNECT_MAX",
    "Backoff",
    "Hint",
    "HintBatch",
    "HintError",
    "decode",
    "encode",
    "presence_key",
]

#: The one pub/sub channel every node publishes to and subscribes to. One channel keeps a
#: hint's cost at one PUBLISH whatever the number of nodes; Redis fans it out (docs/nodes.md
#: gives the traffic, and when per-node channels would pay).
HINT_CHANNEL = "tidings:hints"
#: Most devices (and most rate-limit takes) of each kind named in one message: 4,096 refs of
#: ~20 bytes is ~80 KB, far below Redis's 512 MB limit and small enough that no subscriber's
#: read stalls on one message; a commit batch (≤ 256 sends) names far fewer.
MAX_HINT_DEVICES = 4096
#: Prefix of the presence keys (``tidings:presence:<device id>:<account>`` → node id).
PRESENCE_PREFIX = "tidings:presence:"
#: Seconds a presence record lives without a refresh: three refreshes, so one slow heartbeat
#: does not make a connected device look offline (and push it), while a crashed node's
#: devices are free to be pushed within half a minute.
PRESENCE_TTL = 30.0
#: Seconds between refreshes of the presence records of the devices connected to a node.
PRESENCE_REFRESH = 10.0
#: Seconds between polls of the store for the devices connected to this node while Redis is
#: down: a message between nodes then takes up to a second instead of milliseconds, and one
#: read of ``devices.last_seq`` per 1,000 connected devices per second costs the database
#: little (one indexed lookup per device).
POLL_INTERVAL = 1.0
#: Seconds before the first reconnection attempt to Redis: a restart takes longer, a blip not.
RECONNECT_FIRST = 0.1
#: Longest wait between reconnection attempts: a Redis back after an outage is used within
#: 5 s, and a node tries at most 12 connections a minute against one that stays down.
RECONNECT_MAX = 5.0


class HintError(ValueError):
    """A message on the channel that is not a hint."""


def presence_key(device: DeviceRef) -> str:
    """The Redis key of ``device``'s presence record (the device id first: an account name
    may contain anything a key may, and the id ends at the first ``:``)."""
    return f"{PRESENCE_PREFIX}{device.device_id}:{device.account}"


@dataclass(frozen=True, slots=True)
class Hint:
    """One message between nodes.

    Attributes:
        sender: the publishing node's instance token (a node ignores its own messages).
        items: devices that got items in the store: the node with a live session reads it.
        evict: devices that were unlinked: the node with a live session closes it.
        devices: accounts whose device set changed, with the ids after it: each node tells
            the account's live sessions (an unsolicited DEVICES).
        takes: tokens the node's requests took from the relay's rate limits, as
            ``(budget name, key as encoded by limits.encode_key, count)``: each node takes
            them from its own buckets (the limits are global, :mod:`.limits`).
        push: devices whose push subscription changed in the store (registered, dropped,
            marked dead): each node reads it again (its push sender works from memory).
    """

    sender: str
    items: tuple[DeviceRef, ...] = ()
    evict: tuple[DeviceRef, ...] = ()
    devices: tuple[tuple[str, tuple[int, ...]], ...] = ()
    takes: tuple[tuple[str, object, float], ...] = ()
    push: tuple[DeviceRef, ...] = ()


def encode(hint: Hint) -> bytes:
    """The bytes published for ``hint``."""
    return msgpack.packb(
        [
            hint.sender,
            [[r.account, r.device_id] for r in hint.items],
            [[r.account, r.device_id] for r in hint.evict],
            [[account, list(ids)] for account, ids in hint.devices],
            [[name, key, count] for name, key, count in hint.takes],
            [[r.account, r.device_id] for r in hint.push],
        ]
    )


def decode(data: bytes) -> Hint:
    """The hint in ``data``.

    A message of a node of the version before (four fields: no takes, no push changes) is
    read as such, so nodes can be upgraded one at a time.

    Raises:
        HintError: ``data`` is not a message :func:`encode` writes.
    """
    try:
        fields = msgpack.unpackb(data)
        if not isinstance(fields, list) or len(fields) not in (4, 6):
            raise HintError("not a hint: expected a list of 4 or 6 fields")
        sender, items, evict, devices = fields[:4]
        takes, push = fields[4:] if len(fields) == 6 else ([], [])
        hint = Hint(
            _text(sender),
            tuple(_ref(x) for x in items),
            tuple(_ref(x) for x in evict),
            tuple((_text(a), tuple(_id(i) for i in ids)) for a, ids in devices),
            tuple(_take(x) for x in takes),
            tuple(_ref(x) for x in push),
        )
    except HintError:
        raise
    except (ValueError, TypeError) as exc:  # msgpack's errors are ValueErrors
        raise HintError(f"not a hint: {exc}") from None
    return hint


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise HintError(f"expected a non-empty string, got {value!r}")
    return value


def _id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise HintError(f"expected a device id, got {value!r}")
    return value


def _take(value: object) -> tuple[str, object, float]:
    """One rate-limit take; its key is checked by the limits that apply it."""
    if not isinstance(value, list) or len(value) != 3:
        raise HintError(f"expected [budget, key, count], got {value!r}")
    name, key, count = value
    if isinstance(count, bool) or not isinstance(count, int | float) or not count > 0:
        raise HintError(f"expected a positive token count, got {count!r}")
    return _text(name), key, float(count)


def _ref(value: object) -> DeviceRef:
    if not isinstance(value, list) or len(value) != 2:
        raise HintError(f"expected [account, device id], got {value!r}")
    return DeviceRef(_text(value[0]), _id(value[1]))


@dataclass(slots=True)
class HintBatch:
    """What this node has to tell the others and Redis since the last :meth:`take`."""

    sender: str
    items: set[DeviceRef] = field(default_factory=set)
    evict: set[DeviceRef] = field(default_factory=set)
    devices: dict[str, tuple[int, ...]] = field(default_factory=dict)
    #: Presence records to write (device connected here) or drop (its session here closed);
    #: a device in both is whichever came last.
    present: set[DeviceRef] = field(default_factory=set)
    absent: set[DeviceRef] = field(default_factory=set)
    #: Rate-limit tokens taken since the last take, summed per (budget, encoded key).
    takes: dict[tuple[str, Hashable], tuple[object, float]] = field(default_factory=dict)
    push: set[DeviceRef] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(
            self.items or self.evict or self.devices or self.present or self.absent
            or self.takes or self.push
        )  # fmt: skip

    def took(self, name: str, key: Hashable, encoded: object) -> None:
        """A request here took one token of budget ``name`` for ``key`` (``encoded``: the key
        as :func:`~.limits.encode_key` writes it). Tokens of one key add up."""
        _, count = self.takes.get((name, key), (encoded, 0.0))
        self.takes[(name, key)] = (encoded, count + 1.0)

    def attached(self, device: DeviceRef) -> None:
        """``device`` connected to this node."""
        self.absent.discard(device)
        self.present.add(device)

    def detached(self, device: DeviceRef) -> None:
        """``device``'s session on this node closed."""
        self.present.discard(device)
        self.absent.add(device)

    def clear(self) -> None:
        """Forget everything (Redis is down: the poll and the next refresh stand in)."""
        parts = (self.items, self.evict, self.devices, self.present, self.absent, self.takes)
        for part in (*parts, self.push):
            part.clear()

    def take(self) -> tuple[list[Hint], set[DeviceRef], set[DeviceRef]]:
        """Empty the batch: the messages to publish (none if there is nothing to say to other
        nodes; several only past :data:`MAX_HINT_DEVICES` devices), the presence records to
        write and those to drop."""
        items, evict, push = sorted(self.items), sorted(self.evict), sorted(self.push)
        devices = sorted(self.devices.items())
        takes = [(name, encoded, count) for (name, _), (encoded, count) in self.takes.items()]
        present, absent = set(self.present), set(self.absent)
        self.clear()
        hints: list[Hint] = []
        step = MAX_HINT_DEVICES
        for start in range(0, max(len(items), len(evict), len(takes), len(push)), step):
            hints.append(
                Hint(
                    self.sender,
                    tuple(items[start : start + step]),
                    tuple(evict[start : start + step]),
                    takes=tuple(takes[start : start + step]),
                    push=tuple(push[start : start + step]),
                )
            )
        if devices:
            if hints:
                first = hints[0]
                hints[0] = Hint(
                    first.sender, first.items, first.evict, tuple(devices), first.takes, first.push
                )
            else:
                hints.append(Hint(self.sender, devices=tuple(devices)))
        return hints, present, absent


@dataclass(slots=True)
class Backoff:
    """Waits between reconnection attempts: :data:`RECONNECT_FIRST` doubling up to
    :data:`RECONNECT_MAX`, each scaled by a random factor in [0.5, 1) so that nodes that lost
    Redis together do not all come back in the same millisecond. :meth:`reset` after a
    success. ``random`` returns a float in [0, 1)."""

    random: Callable[[], float]
    first: float = RECONNECT_FIRST
    most: float = RECONNECT_MAX
    attempts: int = 0

    def next(self) -> float:
        """Seconds to wait before the next attempt (counts one attempt)."""
        base = min(self.most, self.first * 2.0**self.attempts)
        self.attempts += 1
        return base * (0.5 + self.random() / 2)

    def reset(self) -> None:
        """A connection worked: the next failure starts again from :attr:`first`."""
        self.attempts = 0
