"""Kernel-level network faults: network namespaces, a bridge, veth pairs and nftables.

Topology of one :class:`NetLab`::

    <prefix>s (server ns)                      <prefix>c1 (client ns 1)
      br0  10.77.0.1/16  ── v1 ═══ veth ═══ eth0  10.77.1.2/16   (table inet tidings_lab)
                         ── v2 ═══ veth ═══ eth0  10.77.2.2/16   <prefix>c2 …

The relay runs inside the server namespace listening on 10.77.0.1; each device runs inside its
own client namespace (spawn with :func:`argv_in`). Faults are applied inside a client namespace:
random loss, dead zones and path-MTU black holes as nftables rules, link down/up, and a handoff
to a new address.

The server namespace also holds a *routed* service address, :data:`RELAY_ADDRESS` (10.78.0.1,
on its loopback), which each client reaches through a route ``10.78.0.0/24 via 10.77.0.1``: a
relay listening there can lose its route (:meth:`NetLab.withdraw_route`, or a dead next hop)
while everything on the bridge — the lab's resolver at 10.77.0.1 — still answers.
:meth:`NetLab.use_resolver` makes every client namespace resolve names through a resolver on
the bridge (``/etc/netns/<ns>/resolv.conf``, which ``ip netns exec`` bind-mounts).

Invariants:
    * The lab only creates and changes namespaces whose names start with its prefix
      ``tdl<pid>_<seq>``; the root namespace's interfaces, routes and ruleset are never touched
      (veth pairs are created directly inside lab namespaces, never in the root namespace).
    * The creating pid is part of every name, so :func:`sweep_orphans` can tell an orphan (its
      pid is dead) from a namespace of a live run, and concurrent runs never collide.
    * :meth:`NetLab.close` deletes every namespace the lab created (the veths, routes and nft
      tables go with them) and its ``/etc/netns`` directory, also after an exception or an
      interrupt; it is idempotent.
    * Every fault operation returns quickly (a few ``ip``/``nft`` commands) and is appended to
      :attr:`NetLab.faults` with its timestamp, for the report's fault windows.
    * Every command runs through :func:`subprocess.run` with a list argv, no shell, a timeout; a
      failure raises :class:`LabSetupError` carrying the command and its stderr.

The command runner and the sweep of orphans live in :mod:`.netns_cmd`, the fault primitives
(the nftables table and its chains, link and address changes) in :mod:`.netns_faults`; their
public names are importable from here too.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import signal
import sys
import time
import weakref
from collections.abc import Callable
from types import TracebackType

from . import netns_faults as nf
from .netns_cmd import (
    NETNS_ETC,
    PREFIX,
    LabSetupError,
    argv_in,
    delete_namespace,
    interrupts_unwind,
    kernel_faults_available,
    list_namespaces,
    remove_etc,
    run,
    sweep_orphans,
)
from .netns_faults import (
    CLIENT_IFACE,
    MAX_BLACK_HOLE,
    MIN_BLACK_HOLE,
    NFT_SETUP,
    NFT_TABLE,
    FaultEvent,
)

__all__ = [
    "CLIENT_IFACE",
    "MAX_BLACK_HOLE",
    "MIN_BLACK_HOLE",
    "NFT_TABLE",
    "RELAY_ADDRESS",
    "RELAY_NET",
    "RESOLV_OPTIONS",
    "SERVER_ADDRESS",
    "FaultEvent",
    "LabSetupError",
    "NetLab",
    "argv_in",
    "interrupts_unwind",
    "kernel_faults_available",
    "sweep_orphans",
]

SERVER_ADDRESS = "10.77.0.1"
"""The relay's address inside the server namespace (on the bridge)."""
LAB_NET = "10.77.0.0/16"
"""The bridge's network: the server and every client address."""
RELAY_ADDRESS = "10.78.0.1"
"""The server namespace's routed address (see the module docstring)."""
RELAY_NET = "10.78.0.0/24"
"""What each client routes through :data:`SERVER_ADDRESS` to reach :data:`RELAY_ADDRESS`."""
DEAD_HOP = "10.77.0.254"
"""A next hop on the bridge that nobody has: packets routed to it wait for an ARP answer that
never comes, so connects hang, then fail ("no route to host")."""
RESOLV_OPTIONS = "options timeout:1 attempts:1"
"""A client namespace's resolver options: a silent resolver costs a lookup 1 s, not glibc's
default 5 s x 2 tries, so a quick run sees the client's fallback within its window."""
MAX_CLIENTS = 254
"""Clients get 10.77.<n>.2 with n in 1..254 (one /24-sized block of the /16 each)."""

# The address a handoff deletes was the primary: promote the new secondary instead of deleting it.
_PROMOTE = "open('/proc/sys/net/ipv4/conf/all/promote_secondaries', 'w').write('1')"

_live_labs: weakref.WeakSet[NetLab] = weakref.WeakSet()
_sequence = itertools.count(1)


@atexit.register
def _close_live_labs() -> None:
    """A safety net for labs never closed (the interpreter exits normally or by an exception)."""
    for lab in list(_live_labs):
        lab.close()


class NetLab:
    """A server namespace with a bridge, and client namespaces joined to it by veth pairs.

    Use as a context manager (``with NetLab(clients=2) as lab:``), or call :meth:`start` and
    then :meth:`close`. Client namespaces are named in :attr:`clients`; every fault method takes
    one of these names.

    Attributes:
        prefix: the prefix of every namespace name, ``tdl<pid>_<seq>``.
        server_ns: the server namespace (run the relay there, listening on ``SERVER_ADDRESS``).
        clients: the client namespaces, in creation order.
        faults: every fault applied so far, in order.
    """

    def __init__(self, clients: int = 0, *, clock: Callable[[], float] = time.time) -> None:
        """Name the lab; nothing is created before :meth:`start` (or ``__enter__``).

        Args:
            clients: how many client namespaces :meth:`start` creates.
            clock: the clock of :attr:`faults` timestamps (the lab's clock).
        """
        self.prefix = f"{PREFIX}{os.getpid()}_{next(_sequence)}"
        self.server_ns = f"{self.prefix}s"
        self.clients: list[str] = []
        self.faults: list[FaultEvent] = []
        self._initial_clients = clients
        self._clock = clock
        self._created: list[str] = []
        self._index: dict[str, int] = {}
        self._address: dict[str, str] = {}
        self._host: dict[str, int] = {}
        self._resolver: str | None = None

    def __enter__(self) -> NetLab:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Create the server namespace and the initial clients; on failure, undo everything."""
        try:
            self._create_server()
            for _ in range(self._initial_clients):
                self.add_client()
        except BaseException:
            self.close()
            raise

    def _create_namespace(self, ns: str) -> None:
        # Remembered before it exists: an interrupt right after `ip netns add` cannot leak it.
        self._created.append(ns)
        _live_labs.add(self)
        run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def _create_server(self) -> None:
        ns = self.server_ns
        self._create_namespace(ns)
        run(["ip", "-n", ns, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", ns, "addr", "add", f"{SERVER_ADDRESS}/16", "dev", "br0"])
        run(["ip", "-n", ns, "link", "set", "br0", "up"])
        run(["ip", "-n", ns, "addr", "add", f"{RELAY_ADDRESS}/32", "dev", "lo"])

    def add_client(self) -> str:
        """Create one more client namespace joined to the bridge; return its name."""
        n = len(self.clients) + 1
        if n > MAX_CLIENTS:
            raise LabSetupError(["add_client"], f"at most {MAX_CLIENTS} clients")
        ns = f"{self.prefix}c{n}"
        self._create_namespace(ns)
        srv = ["ip", "-n", self.server_ns]
        run([*srv, "link", "add", f"v{n}", "type", "veth", "peer", CLIENT_IFACE, "netns", ns])
        run([*srv, "link", "set", f"v{n}", "master", "br0"])
        run([*srv, "link", "set", f"v{n}", "up"])
        address = f"10.77.{n}.2"
        run(["ip", "-n", ns, "addr", "add", f"{address}/16", "dev", CLIENT_IFACE])
        run(["ip", "-n", ns, "link", "set", CLIENT_IFACE, "up"])
        run(argv_in(ns, [sys.executable, "-I", "-S", "-c", _PROMOTE]))
        run(argv_in(ns, ["nft", "-f", "-"]), stdin=NFT_SETUP)
        nf.set_relay_route(ns, RELAY_NET, SERVER_ADDRESS)
        if self._resolver is not None:
            self._write_resolv(ns, self._resolver)
        self.clients.append(ns)
        self._index[ns] = n
        self._address[ns] = address
        self._host[ns] = 2
        return ns

    def use_resolver(self, address: str) -> None:
        """Make every client namespace (those to come too) resolve names through the resolver
        at ``address`` (port 53): processes started in them from now on read its
        ``resolv.conf``."""
        self._resolver = address
        for ns in self.clients:
            self._write_resolv(ns, address)

    def _write_resolv(self, ns: str, address: str) -> None:
        etc = NETNS_ETC / ns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(f"nameserver {address}\n{RESOLV_OPTIONS}\n")

    def address(self, client: str) -> str:
        """The current address of ``client`` (it changes on :meth:`handoff`)."""
        return self._address[self._check(client)]

    def close(self) -> None:
        """Delete every namespace this lab created, clients first; idempotent.

        Processes still running inside them are killed (SIGKILL) first, since they would keep a
        deleted namespace, its veth and its rules alive. SIGINT and SIGTERM are held back while
        this runs so that a second Ctrl-C cannot leave half a lab behind.
        """
        held = {signal.SIGINT, signal.SIGTERM}
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, held)
        try:
            errors = []
            existing = set(self._created)
            with contextlib.suppress(LabSetupError):
                existing = set(list_namespaces()) if self._created else set()
            for ns in reversed(self._created):
                if ns not in existing:
                    remove_etc(ns)
                    continue
                try:
                    delete_namespace(ns)
                except LabSetupError as exc:
                    errors.append(exc)
            self._created.clear()
            _live_labs.discard(self)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        if errors:
            raise errors[0]

    # Faults. Each one changes one client namespace and is recorded in self.faults.

    def _check(self, client: str) -> str:
        if client not in self._index:
            raise ValueError(f"not a client of this lab: {client!r}")
        return client

    def _record(self, kind: str, client: str, detail: str = "") -> None:
        self.faults.append(FaultEvent(self._clock(), kind, client, detail))

    def set_loss(self, client: str, percent: int) -> None:
        """Drop ``percent``% of packets at random in each direction; 0 removes the loss."""
        nf.set_loss(self._check(client), percent)
        self._record("loss", client, f"{percent}%")

    def dead_zone_start(self, client: str) -> None:
        """Drop every packet to and from ``client`` (the link stays up: a dead radio zone)."""
        nf.dead_zone(self._check(client), True)
        self._record("dead_zone_start", client)

    def dead_zone_end(self, client: str) -> None:
        """End a dead zone; connections that survived it resume (TCP retransmits)."""
        nf.dead_zone(self._check(client), False)
        self._record("dead_zone_end", client)

    def black_hole_start(self, client: str, size: int) -> None:
        """Drop every IP packet of more than ``size`` bytes to and from ``client``, and the
        ICMP errors that would report it: a path-MTU black hole (small packets pass)."""
        nf.black_hole(self._check(client), size)
        self._record("black_hole_start", client, f"> {size} B")

    def black_hole_end(self, client: str) -> None:
        """End a black hole: packets of any size pass again."""
        nf.black_hole(self._check(client), None)
        self._record("black_hole_end", client)

    def link_down(self, client: str) -> None:
        """Take ``client``'s interface down (WiFi switched off: sends fail, routes go)."""
        nf.set_link(self._check(client), False)
        self._record("link_down", client)

    def link_up(self, client: str) -> None:
        """Bring ``client``'s interface back up (its routes come back with it: the kernel's
        connected route, and the route to :data:`RELAY_ADDRESS` the lab adds again)."""
        nf.set_link(self._check(client), True)
        nf.set_relay_route(client, RELAY_NET, SERVER_ADDRESS)
        self._record("link_up", client)

    def withdraw_route(self, client: str) -> None:
        """Delete ``client``'s route to :data:`RELAY_ADDRESS` (``ip route del``): connects to
        it fail at once ("network unreachable"); the bridge (the resolver) still answers."""
        nf.set_relay_route(self._check(client), RELAY_NET, None)
        self._record("route_withdrawn", client, RELAY_NET)

    def dead_hop(self, client: str) -> None:
        """Route ``client``'s traffic to :data:`RELAY_ADDRESS` through :data:`DEAD_HOP`, a next
        hop nobody has: connects hang (SYNs wait for ARP), then fail."""
        nf.set_relay_route(self._check(client), RELAY_NET, DEAD_HOP)
        self._record("route_dead_hop", client, DEAD_HOP)

    def restore_route(self, client: str) -> None:
        """Give ``client`` its route to :data:`RELAY_ADDRESS` back."""
        nf.set_relay_route(self._check(client), RELAY_NET, SERVER_ADDRESS)
        self._record("route_restored", client, RELAY_NET)

    def handoff(self, client: str) -> str:
        """Move ``client`` to a new address, as on a WiFi→cellular handoff; return it.

        The new address is added, becomes the source of new connections, and the old one is
        deleted: existing TCP connections die silently (their packets are no longer delivered),
        new ones work from the new address.
        """
        ns = self._check(client)
        host = self._host[ns] + 1
        if host > 254:
            raise LabSetupError(["handoff", ns], "no address left in this client's block")
        old, new = self._address[ns], f"10.77.{self._index[ns]}.{host}"
        nf.move_address(ns, old, new, LAB_NET)
        self._host[ns], self._address[ns] = host, new
        self._record("handoff", client, new)
        return new
