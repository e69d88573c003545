"""Connection caps, sans-I/O: which accepted connection is served, refused, or closed at once.

The relay serves at most ``max_connections`` connections at a time, and at most
``max_connections_per_ip`` from one source address. A connection over a cap is *refused*: it is
told TOO_MANY_CONNECTIONS (an ERROR frame right after the Noise handshake, so that the client
knows why and backs off) — unless :data:`REFUSING_SLOTS` connections are being refused already, or
:data:`REFUSING_SLOTS_PER_ADDRESS` from its address: then it is *dropped* (closed at once, before a
byte is read), so refusing can never hold more than a few file descriptors.

Invariants:

- ``admitted <= max_connections`` and ``refusing <= REFUSING_SLOTS`` at all times, so the
  relay's client sockets never exceed ``max_connections + REFUSING_SLOTS``; the listener stops
  accepting when :attr:`Admission.full` (and the kernel's listen backlog holds new connects).
- Every :meth:`Admission.decide` that did not drop is matched by one :meth:`Admission.release`.
- Addresses are counted per host for IPv4 and per /64 for IPv6 (one IPv6 host usually holds a
  whole /64, so counting single addresses would not cap it); an IPv4-mapped IPv6 address counts
  as its IPv4 address. Nothing is kept for an address without open connections.

The limit of open files (RLIMIT_NOFILE) bounds ``max_connections``: :func:`resolve_max_connections`
derives the default from it, leaving :data:`FD_RESERVE` descriptors for everything else.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from . import limits

__all__ = [
    "FD_RESERVE",
    "MAX_CONNECTIONS_AUTO_CEILING",
    "REFUSING_SLOTS",
    "REFUSING_SLOTS_PER_ADDRESS",
    "Admission",
    "Caps",
    "Verdict",
    "address_key",
    "resolve_max_connections",
]

#: Descriptors kept for all but client connections: the database, its WAL and SHM and SQLite's
#: temporary files, the server key, stdio and log files, the listening sockets, the event loop's
#: epoll, eventfd and signal pipe, the store thread, and a few ``/metrics`` scrapes at once.
FD_RESERVE = 100
#: Connections being told TOO_MANY_CONNECTIONS at once: each needs a descriptor for the few
#: round trips of a Noise handshake; beyond this many, further ones are closed at once.
REFUSING_SLOTS = 64
#: Of those, from one address: a single host hammering the relay cannot take them all.
REFUSING_SLOTS_PER_ADDRESS = 4
#: The default cap never exceeds this, however high the limit of open files: ~15 KiB of memory
#: per idle connection is 150 MiB, and one event loop on one core serves this many active
#: devices with room; an operator who measured more sets ``max_connections``.
MAX_CONNECTIONS_AUTO_CEILING = 10_000


class Verdict(enum.Enum):
    """What happens to one accepted connection."""

    ADMIT = "admit"  #: served
    REFUSE = "refuse"  #: told TOO_MANY_CONNECTIONS after the handshake, then closed
    DROP = "drop"  #: closed at once, nothing read or written


@dataclass(frozen=True, slots=True)
class Caps:
    """The caps of one listener.

    Attributes:
        max_connections: connections served at once, in all (≥ 1).
        max_per_address: connections served at once from one address; 0: no such cap.
        refusing: connections being refused at once, in all.
        refusing_per_address: connections being refused at once from one address.
    """

    max_connections: int
    max_per_address: int = 0
    refusing: int = REFUSING_SLOTS
    refusing_per_address: int = REFUSING_SLOTS_PER_ADDRESS

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.max_per_address < 0:
            raise ValueError("max_connections must be ≥ 1 and max_per_address ≥ 0")
        if self.refusing < 0 or self.refusing_per_address < 0:
            raise ValueError("refusing slots must be ≥ 0")

    @property
    def sockets(self) -> int:
        """The most client sockets open at once."""
        return self.max_connections + self.refusing


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one connection and the cap it is over (``None`` when admitted)."""

    verdict: Verdict
    cap: str | None = None  #: ``"total"`` or ``"per_address"``


ADMITTED = Decision(Verdict.ADMIT)


class Admission:
    """Counts connections per address and decides each new one (see the module invariants)."""

    def __init__(self, caps: Caps) -> None:
        self.caps = caps
        self.admitted = 0
        self.refusing = 0
        self._by_address: dict[str, list[int]] = {}  # address → [admitted, refusing]

    @property
    def open(self) -> int:
        """Connections accepted and not yet released."""
        return self.admitted + self.refusing

    @property
    def full(self) -> bool:
        """Whether another connection must not even be accepted now."""
        return self.open >= self.caps.sockets

    def decide(self, address: str) -> Decision:
        """Decide the connection just accepted from ``address`` (an :func:`address_key`) and
        count it, unless it is dropped."""
        caps = self.caps
        counts = self._by_address.get(address) or [0, 0]
        if caps.max_per_address and counts[0] >= caps.max_per_address:
            cap = "per_address"
        elif self.admitted >= caps.max_connections:
            cap = "total"
        else:
            counts[0] += 1
            self.admitted += 1
            self._by_address[address] = counts
            return ADMITTED
        if self.refusing >= caps.refusing or counts[1] >= caps.refusing_per_address:
            return Decision(Verdict.DROP, cap)
        counts[1] += 1
        self.refusing += 1
        self._by_address[address] = counts
        return Decision(Verdict.REFUSE, cap)

    def release(self, address: str, verdict: Verdict) -> None:
        """A connection that :meth:`decide` admitted or refused is closed."""
        index = {Verdict.ADMIT: 0, Verdict.REFUSE: 1}[verdict]
        counts = self._by_address[address]
        counts[index] -= 1
        if index == 0:
            self.admitted -= 1
        else:
            self.refusing -= 1
        if counts == [0, 0]:
            del self._by_address[address]

    def addresses(self) -> int:
        """How many addresses have open connections."""
        return len(self._by_address)


def address_key(host: str) -> str:
    """The key a peer's address is counted under: the IPv4 address, or the IPv6 /64 (the same
    grouping as the per-address rate limits, :func:`tidings.server.limits.address_key`); a host
    that is not an IP address (a Unix socket path) is counted as it is."""
    return limits.address_key(host) or host


def resolve_max_connections(configured: int, fd_limit: int) -> int:
    """The cap on connections for a configured value (0: derive it) and a limit of open files.

    Raises:
        ValueError: the limit leaves no room for connections, or the configured cap does not
            fit in it; the message says what to raise or lower.
    """
    budget = fd_limit - FD_RESERVE - REFUSING_SLOTS
    if configured == 0:
        if budget < 1:
            raise ValueError(
                f"the limit of open files ({fd_limit}) leaves no room for connections: raise it "
                f"to at least {FD_RESERVE + REFUSING_SLOTS + 1} (ulimit -n, systemd LimitNOFILE=)"
            )
        return min(MAX_CONNECTIONS_AUTO_CEILING, budget)
    if configured > budget:
        raise ValueError(
            f"max_connections = {configured} needs {configured + FD_RESERVE + REFUSING_SLOTS} "
            f"open files but the limit is {fd_limit}: raise the limit (ulimit -n, systemd "
            "LimitNOFILE=) or lower max_connections (0 derives it from the limit)"
        )
    return configured
