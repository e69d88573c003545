"""The lab's named relay, for real: its resolver in the server namespace, the client
namespaces' ``resolv.conf``, the routed relay address and its route faults — and that all of it
goes away (``close``, and the next start's sweep after a kill -9).

Lookups run as short ``python -c`` children inside a client namespace (``ip netns exec``
bind-mounts its ``resolv.conf``); TCP probes use a socket created inside the namespace.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.test_netns import DEADLINE, namespaces, read_line, socket_in
from tidings.lab.dns import Mode
from tidings.lab.dns_server import ResolverProc
from tidings.lab.netns import (
    RELAY_ADDRESS,
    SERVER_ADDRESS,
    NetLab,
    argv_in,
    kernel_faults_available,
    sweep_orphans,
)
from tidings.lab.netns_cmd import NETNS_ETC, _pid_alive
from tidings.lab.procs import ProcRegistry

_UNAVAILABLE = kernel_faults_available()
pytestmark = pytest.mark.skipif(_UNAVAILABLE is not None, reason=_UNAVAILABLE or "")

NAME = "relay.tidings-lab.test"
WRONG = "10.78.0.2"

LOOKUP = """
import socket, sys
try:
    print(socket.gethostbyname(sys.argv[1]))
except OSError as exc:
    print("error", exc.errno)
"""

LISTEN = f"""
import socket
srv = socket.create_server(({RELAY_ADDRESS!r}, 0))
print(srv.getsockname()[1], flush=True)
while True:
    srv.accept()[0].close()
"""

HOLD = f"""
import signal, sys
from pathlib import Path
from tidings.lab.dns_server import ResolverProc
from tidings.lab.netns import NetLab
lab = NetLab(clients=1)
lab.start()
ResolverProc(lab.server_ns, {SERVER_ADDRESS!r}, {{{NAME!r}: "10.78.0.1"}}, "10.78.0.2",
             Path(sys.argv[1])).start()
lab.use_resolver({SERVER_ADDRESS!r})
print(lab.prefix, flush=True)
while True:
    signal.pause()
"""


def lookup(ns: str, name: str = NAME) -> str:
    argv = argv_in(ns, [sys.executable, "-I", "-S", "-c", LOOKUP, name])
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()


@pytest.fixture
def named(tmp_path: Path) -> Iterator[tuple[NetLab, ResolverProc]]:
    with ProcRegistry() as registry, NetLab(clients=1) as lab:
        resolver = ResolverProc(
            lab.server_ns, SERVER_ADDRESS, {NAME: RELAY_ADDRESS}, WRONG, tmp_path, registry=registry
        )
        resolver.start()
        lab.use_resolver(SERVER_ADDRESS)
        yield lab, resolver


def test_clients_resolve_through_the_lab_resolver_in_each_mode(
    named: tuple[NetLab, ResolverProc],
) -> None:
    lab, resolver = named
    ns = lab.clients[0]
    assert (NETNS_ETC / ns / "resolv.conf").read_text().startswith(f"nameserver {SERVER_ADDRESS}")
    assert lookup(ns) == RELAY_ADDRESS
    assert lookup(ns, "elsewhere.test").startswith("error")  # NXDOMAIN
    resolver.set_mode(Mode.WRONG)
    assert lookup(ns) == WRONG
    resolver.set_mode(Mode.SERVFAIL)
    assert lookup(ns).startswith("error")
    seen = resolver.set_mode(Mode.TIMEOUT)
    assert seen["answer"] >= 1 and seen["servfail"] >= 1 and seen["wrong"] >= 1
    assert lookup(ns).startswith("error")  # after resolv.conf's 1 s timeout
    assert resolver.set_mode(Mode.ANSWER)["timeout"] >= 1
    assert lookup(ns) == RELAY_ADDRESS


def test_the_relay_route_withdrawn_dead_and_restored(named: tuple[NetLab, ResolverProc]) -> None:
    lab, _ = named
    ns = lab.clients[0]
    server = subprocess.Popen(
        argv_in(lab.server_ns, [sys.executable, "-I", "-c", LISTEN]),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(read_line(server))

        def connect(timeout: float = DEADLINE) -> int:
            with socket_in(ns) as sock:
                sock.settimeout(timeout)
                return sock.connect_ex((RELAY_ADDRESS, port))

        assert connect() == 0
        lab.withdraw_route(ns)
        assert connect() == errno.ENETUNREACH  # at once: no route
        assert lookup(ns) == RELAY_ADDRESS  # the resolver, on the bridge, still answers
        lab.restore_route(ns)
        assert connect() == 0
        lab.dead_hop(ns)
        assert connect(timeout=0.5) in (errno.EAGAIN, errno.EHOSTUNREACH)  # hangs: no ARP
        lab.restore_route(ns)
        assert connect() == 0
        lab.link_down(ns)
        lab.link_up(ns)
        assert connect() == 0  # link_up gives the relay route back
    finally:
        server.kill()
        server.wait(DEADLINE)
        assert server.stdout is not None
        server.stdout.close()
    kinds = [f.kind for f in lab.faults]
    assert kinds[:4] == ["route_withdrawn", "route_restored", "route_dead_hop", "route_restored"]


def test_close_removes_the_resolv_conf_directories(tmp_path: Path) -> None:
    with NetLab(clients=2) as lab:
        lab.use_resolver(SERVER_ADDRESS)
        dirs = [NETNS_ETC / ns for ns in lab.clients]
        assert all((d / "resolv.conf").is_file() for d in dirs)
    assert not any(d.exists() for d in dirs)


def test_a_killed_lab_leaves_its_resolver_and_etc_to_the_next_sweep(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    prefix = read_line(proc, timeout=10)
    resolver_pids = subprocess.run(
        ["ip", "netns", "pids", f"{prefix}s"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert resolver_pids  # the resolver runs in the server namespace
    proc.kill()  # SIGKILL: no cleanup at all
    assert proc.wait(DEADLINE) == -signal.SIGKILL
    assert proc.stdout is not None
    proc.stdout.close()
    assert (NETNS_ETC / f"{prefix}c1" / "resolv.conf").is_file()
    swept = sweep_orphans()
    assert sorted(ns for ns in swept if ns.startswith(prefix)) == [f"{prefix}c1", f"{prefix}s"]
    assert not [ns for ns in namespaces() if ns.startswith(prefix)]
    assert not (NETNS_ETC / f"{prefix}c1").exists()
    for pid in resolver_pids:
        # killed by the sweep; a SIGKILLed process may still be on its way out (state R):
        # wait for its exit as an event (a pidfd turns readable), at most DEADLINE
        try:
            fd = os.pidfd_open(int(pid))
        except ProcessLookupError:
            continue  # gone already
        try:
            readable, _, _ = select.select([fd], [], [], DEADLINE)
        finally:
            os.close(fd)
        assert readable, f"resolver {pid} still runs after the sweep"


def test_a_zombie_lab_counts_as_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    # wait for its exit but leave it unreaped: a zombie, as a lab killed -9 is until its shell
    # waits for it
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    assert not _pid_alive(child.pid)
    child.wait()
    assert not _pid_alive(child.pid)
    assert _pid_alive(os.getpid())
