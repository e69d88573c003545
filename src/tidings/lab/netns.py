"""Kernel-level network faults: network namespaces, a bridge, veth pairs and nftables.

Topology of one :class:`NetLab`::

    <prefix>s (server ns)                      <prefix>c1 (client ns 1)
      br0  10.77.0.1/16  ── v1 ═══ veth ═══ eth0  10.77.1.2/16   (table inet tidings_lab)
                         ── v2 ═══ veth ═══ eth0  10.77.2.2/16   <prefix>c2 …

The relay runs inside the server namespace listening on 10.77.0.1; each device runs inside its
own client namespace (spawn with :func:`argv_in`). Faults are applied inside a client namespace:
random loss, dead zones and path-MTU black holes as nftables rules, link down/up, and a handoff
to a new address.

Invariants:
    * The lab only creates and changes namespaces whose names start with its prefix
      ``tdl<pid>_<seq>``; the root namespace's interfaces, routes and ruleset are never touched
      (veth pairs are created directly inside lab namespaces, never in the root namespace).
    * The creating pid is part of every name, so :func:`sweep_orphans` can tell an orphan (its
      pid is dead) from a namespace of a live run, and concurrent runs never collide.
    * :meth:`NetLab.close` deletes every namespace the lab created (the veths and nft tables go
      with them), also after an exception or an interrupt; it is idempotent.
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
    PREFIX,
    LabSetupError,
    argv_in,
    delete_namespace,
    interrupts_unwind,
    kernel_faults_available,
    list_namespaces,
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
        self.clients.append(ns)
        self._index[ns] = n
        self._address[ns] = address
        self._host[ns] = 2
        return ns

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
        """Bring ``client``'s interface back up (its routes come back with it)."""
        nf.set_link(self._check(client), True)
        self._record("link_up", client)

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
