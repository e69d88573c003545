"""Which addresses to try for a relay named by a host name: the resolver's, then the last good.

A relay URL names a host. Resolving it on every attempt follows the relay when it moves, but a
resolver that times out, answers SERVFAIL or answers a stale address would cut a device off a
relay that is still where it was. :class:`RelayAddresses` (sans-I/O: the caller resolves and
connects) remembers the **last good address** — the last one whose connection completed the
Noise handshake, i.e. proved it is the pinned relay — and plans each attempt:

* the resolver answered: its addresses in its order, then the last good one if it is not
  among them (a stale or wrong answer costs one connect attempt delay, not the session);
* the resolver failed (timeout, SERVFAIL, no such name): the last good address alone; with
  none yet, nothing (the attempt fails with the resolver's reason and the client backs off).

A host that is an IP address literal is never resolved (:attr:`RelayAddresses.literal`).
"""

from __future__ import annotations

import ipaddress

__all__ = ["RelayAddresses"]


class RelayAddresses:
    """The addresses to try for ``host`` (see the module docstring)."""

    def __init__(self, host: str) -> None:
        self.host = host
        #: The last address that proved to be the relay, or None.
        self.last_good: str | None = None
        try:
            ipaddress.ip_address(host)
        except ValueError:
            self.literal = False
        else:
            self.literal = True

    def plan(self, resolved: list[str] | None) -> list[str]:
        """The addresses to try, in order, given the resolver's answer (``None``: it failed)."""
        if self.literal:
            return [self.host]
        tries = list(dict.fromkeys(resolved or []))
        if self.last_good is not None and self.last_good not in tries:
            tries.append(self.last_good)
        return tries

    def confirm(self, address: str) -> None:
        """A connection to ``address`` completed the handshake with the pinned relay."""
        if not self.literal:
            self.last_good = address
