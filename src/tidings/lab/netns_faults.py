"""The kernel fault primitives of one client namespace: nftables rules and ``ip`` changes.

Each function changes one namespace and returns quickly (one ``nft`` transaction or a few
``ip`` commands); :class:`~tidings.lab.netns.NetLab` calls them and records each as a
:class:`FaultEvent`. :data:`NFT_SETUP` is installed once per client namespace: its ``loss``,
``dead`` and ``mtu`` chains start empty and each fault flushes and refills its own chain, so
faults of different kinds compose. Loopback traffic inside a client namespace is never faulted:
faults model the radio link.
"""

from __future__ import annotations

from dataclasses import dataclass

from .netns_cmd import argv_in, run

__all__ = [
    "CLIENT_IFACE",
    "MAX_BLACK_HOLE",
    "MIN_BLACK_HOLE",
    "NFT_SETUP",
    "NFT_TABLE",
    "FaultEvent",
    "black_hole",
    "dead_zone",
    "move_address",
    "nft",
    "set_link",
    "set_loss",
    "set_relay_route",
]

CLIENT_IFACE = "eth0"
"""The name of the client end of each veth pair, inside its client namespace."""
NFT_TABLE = "tidings_lab"
"""The nftables table (family ``inet``) the lab creates inside each client namespace."""

MIN_BLACK_HOLE = 576
"""The smallest packet a black hole lets through: IPv4's minimum datagram every host accepts."""
MAX_BLACK_HOLE = 1500
"""The largest: the veths' MTU (a hole above it drops nothing)."""

NFT_SETUP = f"""
table inet {NFT_TABLE} {{
    chain loss {{ }}
    chain dead {{ }}
    chain mtu {{ }}
    chain input {{
        type filter hook input priority 0; policy accept;
        iif "lo" accept
        jump dead
        jump mtu
        jump loss
    }}
    chain output {{
        type filter hook output priority 0; policy accept;
        oif "lo" accept
        jump dead
        jump mtu
        jump loss
    }}
}}
"""
"""The table every client namespace gets when it is created."""

# A path-MTU black hole: big packets vanish and the ICMP that would say so (RFC 1191's
# "fragmentation needed", RFC 8201's "packet too big") is filtered, as a broken middlebox does.
_NFT_BLACK_HOLE = """flush chain inet {table} mtu
add rule inet {table} mtu icmp type destination-unreachable icmp code frag-needed drop
add rule inet {table} mtu icmpv6 type packet-too-big drop
add rule inet {table} mtu meta length > {size} drop
"""


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """One applied fault operation (the report pairs start/end ones into ``record.Fault`` windows).

    Attributes:
        at: when it was applied, on the injector's clock.
        kind: what was done (``loss``, ``dead_zone_start``, ``link_down``, ``stall``, …).
        target: what it was applied to (a client namespace, a proxy address).
        detail: the parameter, if any (``"30%"``, ``"10.77.1.3"``, ``""``).
    """

    at: float
    kind: str
    target: str
    detail: str = ""


def nft(ns: str, script: str) -> None:
    """Apply ``script`` atomically (one nft transaction) in namespace ``ns``."""
    run(argv_in(ns, ["nft", "-f", "-"]), stdin=script)


def set_loss(ns: str, percent: int) -> None:
    """Drop ``percent``% of packets at random in each direction; 0 removes the loss."""
    if not 0 <= percent <= 100:
        raise ValueError(f"loss must be 0..100 %, not {percent}")
    script = f"flush chain inet {NFT_TABLE} loss\n"
    if percent == 100:  # numgen's range is 0..99: "< 100" is not a valid comparison
        script += f"add rule inet {NFT_TABLE} loss drop\n"
    elif percent:
        script += f"add rule inet {NFT_TABLE} loss numgen random mod 100 < {percent} drop\n"
    nft(ns, script)


def dead_zone(ns: str, on: bool) -> None:
    """Drop every packet to and from ``ns`` (the link stays up), or stop doing so."""
    script = f"flush chain inet {NFT_TABLE} dead\n"
    if on:
        script += f"add rule inet {NFT_TABLE} dead drop\n"
    nft(ns, script)


def black_hole(ns: str, size: int | None) -> None:
    """Drop every IP packet of more than ``size`` bytes and the ICMP errors that would report
    it (a path-MTU black hole); ``None`` ends it."""
    if size is None:
        nft(ns, f"flush chain inet {NFT_TABLE} mtu\n")
        return
    if not MIN_BLACK_HOLE <= size <= MAX_BLACK_HOLE:
        raise ValueError(f"black hole size must be {MIN_BLACK_HOLE}..{MAX_BLACK_HOLE}, not {size}")
    nft(ns, _NFT_BLACK_HOLE.format(table=NFT_TABLE, size=size))


def set_link(ns: str, up: bool) -> None:
    """Bring the client interface of ``ns`` up or down (its connected routes follow it)."""
    run(["ip", "-n", ns, "link", "set", CLIENT_IFACE, "up" if up else "down"])


def set_relay_route(ns: str, relay_net: str, via: str | None) -> None:
    """Route ``relay_net`` through next hop ``via`` in ``ns`` (replacing any route to it);
    ``None`` deletes the route (``ip route del``: connects fail, "network unreachable")."""
    if via is None:
        run(["ip", "-n", ns, "route", "del", relay_net])
        return
    run(["ip", "-n", ns, "route", "replace", relay_net, "via", via, "dev", CLIENT_IFACE])


def move_address(ns: str, old: str, new: str, prefix: str) -> None:
    """Add ``new``, make it the source of new connections on ``prefix``, delete ``old``.

    ``promote_secondaries`` must be on in ``ns``: deleting the primary then promotes ``new``
    instead of deleting it too.
    """
    ip = ["ip", "-n", ns]
    bits = prefix.rpartition("/")[2]
    run([*ip, "addr", "add", f"{new}/{bits}", "dev", CLIENT_IFACE])
    route = [prefix, "dev", CLIENT_IFACE, "proto", "kernel", "scope", "link"]
    run([*ip, "route", "replace", *route, "src", new])
    run([*ip, "addr", "del", f"{old}/{bits}", "dev", CLIENT_IFACE])
