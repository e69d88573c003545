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
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType, TracebackType

from tidings.errors import TidingsError

__all__ = [
    "CLIENT_IFACE",
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
CLIENT_IFACE = "eth0"
"""The name of the client end of each veth pair, inside its client namespace."""
NFT_TABLE = "tidings_lab"
"""The nftables table (family ``inet``) the lab creates inside each client namespace."""
COMMAND_TIMEOUT = 10.0
"""Seconds one ``ip``/``nft`` command may take; they normally take milliseconds."""
MAX_CLIENTS = 254
"""Clients get 10.77.<n>.2 with n in 1..254 (one /24-sized block of the /16 each)."""

MIN_BLACK_HOLE = 576
"""The smallest packet a black hole lets through: IPv4's minimum datagram every host accepts."""
MAX_BLACK_HOLE = 1500
"""The largest: the veths' MTU (a hole above it drops nothing)."""

_PREFIX = "tdl"
_NAME_RE = re.compile(rf"^{_PREFIX}(\d+)_\d+[sc]\d*$")

# Loopback traffic inside a client namespace is never faulted: faults model the radio link.
_NFT_SETUP = f"""
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

# A path-MTU black hole: big packets vanish and the ICMP that would say so (RFC 1191's
# "fragmentation needed", RFC 8201's "packet too big") is filtered, as a broken middlebox does.
_NFT_BLACK_HOLE = """flush chain inet {table} mtu
add rule inet {table} mtu icmp type destination-unreachable icmp code frag-needed drop
add rule inet {table} mtu icmpv6 type packet-too-big drop
add rule inet {table} mtu meta length > {size} drop
"""

# The address a handoff deletes was the primary: promote the new secondary instead of deleting it.
_PROMOTE = "open('/proc/sys/net/ipv4/conf/all/promote_secondaries', 'w').write('1')"


class LabSetupError(TidingsError):
    """An ``ip`` or ``nft`` command of the lab failed.

    Attributes:
        argv: the command that failed.
        stderr: what it wrote to stderr (or why it did not finish).
    """

    def __init__(self, argv: Sequence[str], stderr: str) -> None:
        super().__init__(f"lab command failed: {' '.join(argv)}: {stderr.strip()}")
        self.argv = list(argv)
        self.stderr = stderr


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


def kernel_faults_available() -> str | None:
    """Tell whether :class:`NetLab` can run here.

    Returns:
        ``None`` if it can, else a short human reason (not root, ``ip`` or ``nft`` missing).
    """
    if os.geteuid() != 0:
        return "kernel faults need root (network namespaces and nftables)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if shutil.which("nft") is None:
        return "the `nft` command (nftables) is not installed"
    return None


def argv_in(ns: str, argv: Sequence[str]) -> list[str]:
    """Return the argv that runs ``argv`` inside the network namespace ``ns``."""
    return ["ip", "netns", "exec", ns, *argv]


def _run(argv: Sequence[str], stdin: str | None = None) -> str:
    """Run one command; return its stdout or raise :class:`LabSetupError`."""
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabSetupError(argv, f"timed out after {COMMAND_TIMEOUT} s") from exc
    except OSError as exc:
        raise LabSetupError(argv, str(exc)) from exc
    if done.returncode != 0:
        raise LabSetupError(argv, done.stderr or f"exit status {done.returncode}")
    return done.stdout


def _list_namespaces() -> list[str]:
    """Names of every named network namespace (``ip netns list`` prints ``name (id: N)``)."""
    return [line.split()[0] for line in _run(["ip", "netns", "list"]).splitlines() if line.strip()]


def _delete_namespace(ns: str) -> None:
    """Kill what still runs inside ``ns`` (it would keep the namespace alive), then delete it."""
    with contextlib.suppress(LabSetupError):
        for pid in _run(["ip", "netns", "pids", ns]).split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
    _run(["ip", "netns", "delete", ns])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_orphans() -> list[str]:
    """Delete the lab namespaces left by runs that died (e.g. killed with SIGKILL).

    A namespace is an orphan when its name has the lab's prefix and the pid encoded in it is no
    longer alive. Namespaces of live processes (including this one) are left alone.

    Returns:
        The names of the namespaces deleted.
    """
    swept = []
    for ns in _list_namespaces():
        match = _NAME_RE.match(ns)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        _delete_namespace(ns)
        swept.append(ns)
    return swept


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def interrupts_unwind() -> Iterator[None]:
    """Make SIGINT and SIGTERM raise :class:`KeyboardInterrupt` inside the block.

    Use it around ``with NetLab() as lab:`` in the main thread so that Ctrl-C or a ``kill``
    unwinds the ``with`` and :meth:`NetLab.close` leaves no namespace behind. The previous
    handlers are restored on exit. Call it from the main thread (a rule of :mod:`signal`).
    """
    previous = {
        sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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
        self.prefix = f"{_PREFIX}{os.getpid()}_{next(_sequence)}"
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
        _run(["ip", "netns", "add", ns])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def _create_server(self) -> None:
        ns = self.server_ns
        self._create_namespace(ns)
        _run(["ip", "-n", ns, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", ns, "addr", "add", f"{SERVER_ADDRESS}/16", "dev", "br0"])
        _run(["ip", "-n", ns, "link", "set", "br0", "up"])

    def add_client(self) -> str:
        """Create one more client namespace joined to the bridge; return its name."""
        n = len(self.clients) + 1
        if n > MAX_CLIENTS:
            raise LabSetupError(["add_client"], f"at most {MAX_CLIENTS} clients")
        ns = f"{self.prefix}c{n}"
        self._create_namespace(ns)
        srv = ["ip", "-n", self.server_ns]
        _run([*srv, "link", "add", f"v{n}", "type", "veth", "peer", CLIENT_IFACE, "netns", ns])
        _run([*srv, "link", "set", f"v{n}", "master", "br0"])
        _run([*srv, "link", "set", f"v{n}", "up"])
        address = f"10.77.{n}.2"
        _run(["ip", "-n", ns, "addr", "add", f"{address}/16", "dev", CLIENT_IFACE])
        _run(["ip", "-n", ns, "link", "set", CLIENT_IFACE, "up"])
        _run(argv_in(ns, [sys.executable, "-I", "-S", "-c", _PROMOTE]))
        _run(argv_in(ns, ["nft", "-f", "-"]), stdin=_NFT_SETUP)
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
                existing = set(_list_namespaces()) if self._created else set()
            for ns in reversed(self._created):
                if ns not in existing:
                    continue
                try:
                    _delete_namespace(ns)
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

    def _nft(self, client: str, script: str) -> None:
        """Apply ``script`` atomically (one nft transaction) in ``client``'s namespace."""
        _run(argv_in(client, ["nft", "-f", "-"]), stdin=script)

    def set_loss(self, client: str, percent: int) -> None:
        """Drop ``percent``% of packets at random in each direction; 0 removes the loss."""
        if not 0 <= percent <= 100:
            raise ValueError(f"loss must be 0..100 %, not {percent}")
        script = f"flush chain inet {NFT_TABLE} loss\n"
        if percent == 100:  # numgen's range is 0..99: "< 100" is not a valid comparison
            script += f"add rule inet {NFT_TABLE} loss drop\n"
        elif percent:
            script += f"add rule inet {NFT_TABLE} loss numgen random mod 100 < {percent} drop\n"
        self._nft(self._check(client), script)
        self._record("loss", client, f"{percent}%")

    def dead_zone_start(self, client: str) -> None:
        """Drop every packet to and from ``client`` (the link stays up: a dead radio zone)."""
        script = f"flush chain inet {NFT_TABLE} dead\nadd rule inet {NFT_TABLE} dead drop\n"
        self._nft(self._check(client), script)
        self._record("dead_zone_start", client)

    def dead_zone_end(self, client: str) -> None:
        """End a dead zone; connections that survived it resume (TCP retransmits)."""
        self._nft(self._check(client), f"flush chain inet {NFT_TABLE} dead\n")
        self._record("dead_zone_end", client)

    def black_hole_start(self, client: str, size: int) -> None:
        """Drop every IP packet of more than ``size`` bytes to and from ``client``, and the
        ICMP errors that would report it: a path-MTU black hole (small packets pass)."""
        if not MIN_BLACK_HOLE <= size <= MAX_BLACK_HOLE:
            raise ValueError(
                f"black hole size must be {MIN_BLACK_HOLE}..{MAX_BLACK_HOLE}, not {size}"
            )
        self._nft(self._check(client), _NFT_BLACK_HOLE.format(table=NFT_TABLE, size=size))
        self._record("black_hole_start", client, f"> {size} B")

    def black_hole_end(self, client: str) -> None:
        """End a black hole: packets of any size pass again."""
        self._nft(self._check(client), f"flush chain inet {NFT_TABLE} mtu\n")
        self._record("black_hole_end", client)

    def link_down(self, client: str) -> None:
        """Take ``client``'s interface down (WiFi switched off: sends fail, routes go)."""
        _run(["ip", "-n", self._check(client), "link", "set", CLIENT_IFACE, "down"])
        self._record("link_down", client)

    def link_up(self, client: str) -> None:
        """Bring ``client``'s interface back up (its routes come back with it)."""
        _run(["ip", "-n", self._check(client), "link", "set", CLIENT_IFACE, "up"])
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
        ip = ["ip", "-n", ns]
        _run([*ip, "addr", "add", f"{new}/16", "dev", CLIENT_IFACE])
        route = ["10.77.0.0/16", "dev", CLIENT_IFACE, "proto", "kernel", "scope", "link"]
        _run([*ip, "route", "replace", *route, "src", new])
        # promote_secondaries is on: deleting the primary promotes `new`, it does not delete it.
        _run([*ip, "addr", "del", f"{old}/16", "dev", CLIENT_IFACE])
        self._host[ns], self._address[ns] = host, new
        self._record("handoff", client, new)
        return new
