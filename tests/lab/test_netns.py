"""Kernel-level faults: real namespaces, a real echo server in the server namespace.

The echo server is a small ``python3 -c`` process started inside the server namespace with
``argv_in``; it first sends each connection the peer address it sees, then echoes. The test's
client sockets are created *inside* a client namespace by a short-lived thread that joins it
with ``setns(2)`` (a socket stays in the namespace it was created in).

Nothing sleeps: every wait is a socket timeout or a ``select`` on a pipe, with a deadline.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from tidings.lab.netns import (
    SERVER_ADDRESS,
    LabSetupError,
    NetLab,
    argv_in,
    kernel_faults_available,
    sweep_orphans,
)

_UNAVAILABLE = kernel_faults_available()
pytestmark = pytest.mark.skipif(_UNAVAILABLE is not None, reason=_UNAVAILABLE or "")

DEADLINE = 3.0  # seconds an expected event may take (covers one TCP retransmission)
QUIET = 0.3  # seconds we watch for something that must not happen
CLONE_NEWNET = 0x40000000

ECHO_SERVER = f"""
import socket, threading
srv = socket.create_server(({SERVER_ADDRESS!r}, 0))
print(srv.getsockname()[1], flush=True)
def serve(conn, peer):
    try:
        conn.sendall(peer[0].encode() + b"\\n")
        while data := conn.recv(65536):
            conn.sendall(data)
    except OSError:
        pass
while True:
    conn, peer = srv.accept()
    threading.Thread(target=serve, args=(conn, peer), daemon=True).start()
"""

HOLD_LAB = """
import contextlib, signal, sys
from tidings.lab.netns import NetLab, interrupts_unwind
unwind = sys.argv[1] == "unwind"
with (interrupts_unwind() if unwind else contextlib.nullcontext()), NetLab(clients=2) as lab:
    print(lab.prefix, flush=True)
    while True:
        signal.pause()
"""


def namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def read_line(proc: subprocess.Popen[str], timeout: float = DEADLINE) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no output within {timeout} s"
    return proc.stdout.readline().strip()


def socket_in(ns: str) -> socket.socket:
    """A TCP socket that lives in the network namespace ``ns``."""
    libc = ctypes.CDLL(None, use_errno=True)
    made: list[socket.socket | OSError] = []

    def make() -> None:
        with open(f"/run/netns/{ns}") as handle:
            if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                made.append(OSError(ctypes.get_errno(), f"setns {ns}"))
                return
        made.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))

    thread = threading.Thread(target=make)  # dies with the namespace switch it made
    thread.start()
    thread.join(DEADLINE)
    assert made, "the setns thread did not finish"
    if isinstance(made[0], OSError):
        raise made[0]
    return made[0]


def connect(ns: str, port: int, timeout: float = DEADLINE) -> tuple[socket.socket, str]:
    """Connect from ``ns`` to the echo server; return the socket and the peer address it saw."""
    sock = socket_in(ns)
    sock.settimeout(timeout)
    try:
        sock.connect((SERVER_ADDRESS, port))
        line = b""
        while not line.endswith(b"\n"):
            part = sock.recv(64)
            assert part, "the echo server closed"
            line += part
    except BaseException:
        sock.close()
        raise
    return sock, line.decode().strip()


def echo(sock: socket.socket, data: bytes, timeout: float = DEADLINE) -> bytes:
    sock.settimeout(timeout)
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        part = sock.recv(len(data) - len(got))
        assert part, "the echo server closed"
        got += part
    return got


@pytest.fixture
def lab() -> Iterator[NetLab]:
    with NetLab(clients=2) as lab:
        yield lab


@pytest.fixture
def port(lab: NetLab) -> Iterator[int]:
    proc = subprocess.Popen(
        argv_in(lab.server_ns, [sys.executable, "-I", "-c", ECHO_SERVER]),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield int(read_line(proc))
    finally:
        proc.kill()
        proc.wait(DEADLINE)
        assert proc.stdout is not None
        proc.stdout.close()


def root_namespace_state() -> list[str]:
    argvs = [
        ["ip", "-o", "link"],
        ["ip", "-o", "addr"],
        ["ip", "route"],
        ["nft", "list", "ruleset"],
    ]
    return [subprocess.run(a, capture_output=True, text=True, check=True).stdout for a in argvs]


def test_argv_in() -> None:
    assert argv_in("ns1", ["tidings", "server"]) == [
        "ip",
        "netns",
        "exec",
        "ns1",
        "tidings",
        "server",
    ]


def test_each_client_reaches_the_server_from_its_address() -> None:
    before = root_namespace_state()
    with NetLab(clients=2) as lab:
        assert lab.prefix == f"tdl{os.getpid()}_{lab.prefix.split('_')[1]}"
        assert set(lab.clients) | {lab.server_ns} <= set(namespaces())
        proc = subprocess.Popen(
            argv_in(lab.server_ns, [sys.executable, "-I", "-c", ECHO_SERVER]),
            stdout=subprocess.PIPE,
            text=True,
        )
        port = int(read_line(proc))
        for n, client in enumerate(lab.clients, start=1):
            sock, peer = connect(client, port)
            with sock:
                assert peer == lab.address(client) == f"10.77.{n}.2"
                assert echo(sock, b"ping") == b"ping"
        assert root_namespace_state() == before  # nothing outside the lab's namespaces changed
    assert proc.wait(DEADLINE) == -signal.SIGKILL  # close() killed what ran inside
    assert proc.stdout is not None
    proc.stdout.close()
    assert root_namespace_state() == before


def test_full_loss_blocks_and_zero_loss_restores(lab: NetLab, port: int) -> None:
    client = lab.clients[0]
    lab.set_loss(client, 100)
    with pytest.raises(TimeoutError):
        connect(client, port, timeout=QUIET)
    lab.set_loss(client, 30)
    ruleset = subprocess.run(
        argv_in(client, ["nft", "list", "table", "inet", "tidings_lab"]),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "numgen random mod 100 < 30 drop" in ruleset
    assert "< 100" not in ruleset
    lab.set_loss(client, 0)
    sock, _ = connect(client, port)
    with sock:
        assert echo(sock, b"back") == b"back"
    other, _ = connect(lab.clients[1], port)  # loss is per client
    other.close()
    assert [(f.kind, f.detail) for f in lab.faults] == [
        ("loss", "100%"),
        ("loss", "30%"),
        ("loss", "0%"),
    ]


def test_dead_zone_blocks_then_traffic_resumes(lab: NetLab, port: int) -> None:
    client = lab.clients[0]
    sock, _ = connect(client, port)
    with sock:
        lab.dead_zone_start(client)
        with pytest.raises(TimeoutError):
            connect(client, port, timeout=QUIET)
        sock.sendall(b"late")
        sock.settimeout(QUIET)
        with pytest.raises(TimeoutError):
            sock.recv(4)
        lab.dead_zone_end(client)
        sock.settimeout(DEADLINE)
        assert sock.recv(4) == b"late"  # TCP retransmitted it once the zone ended
    fresh, _ = connect(client, port)
    fresh.close()
    assert [f.kind for f in lab.faults] == ["dead_zone_start", "dead_zone_end"]
    assert all(f.target == client for f in lab.faults)


def test_link_down_then_up(lab: NetLab, port: int) -> None:
    client = lab.clients[0]
    lab.link_down(client)
    with pytest.raises(OSError):  # network unreachable, or silence
        connect(client, port, timeout=QUIET)
    lab.link_up(client)
    sock, peer = connect(client, port)
    with sock:
        assert peer == lab.address(client)
        assert echo(sock, b"up") == b"up"


def test_handoff_kills_old_connections_silently(lab: NetLab, port: int) -> None:
    client = lab.clients[0]
    old_sock, old = connect(client, port)
    with old_sock:
        new = lab.handoff(client)
        assert (old, new) == ("10.77.1.2", "10.77.1.3")
        assert lab.address(client) == new
        old_sock.sendall(b"lost")
        old_sock.settimeout(QUIET)
        with pytest.raises(TimeoutError):  # no data, no EOF, no reset: silence
            old_sock.recv(4)
        new_sock, peer = connect(client, port)
        with new_sock:
            assert peer == new
            assert echo(new_sock, b"new") == b"new"
    assert lab.handoff(client) == "10.77.1.4"
    assert [(f.kind, f.detail) for f in lab.faults] == [
        ("handoff", "10.77.1.3"),
        ("handoff", "10.77.1.4"),
    ]


def test_close_removes_everything_even_when_the_body_raises() -> None:
    with pytest.raises(RuntimeError, match="boom"), NetLab(clients=2) as lab:
        created = [lab.server_ns, *lab.clients]
        raise RuntimeError("boom")
    assert not set(created) & set(namespaces())
    lab.close()  # idempotent
    with pytest.raises(LabSetupError) as info:
        lab.link_down(lab.clients[0])  # its namespace is gone
    assert info.value.argv[:3] == ["ip", "-n", lab.clients[0]]
    assert info.value.stderr


def test_unknown_client_is_refused(lab: NetLab) -> None:
    with pytest.raises(ValueError, match="not a client"):
        lab.set_loss("elsewhere", 10)


def hold_lab(mode: str) -> tuple[subprocess.Popen[str], str]:
    """Start a process holding a NetLab; return it and the lab's prefix once it is set up."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LAB, mode], stdout=subprocess.PIPE, text=True
    )
    prefix = read_line(proc)
    assert prefix.startswith(f"tdl{proc.pid}_")
    assert sum(ns.startswith(prefix) for ns in namespaces()) == 3
    return proc, prefix


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_leaves_nothing_behind(signum: signal.Signals) -> None:
    proc, prefix = hold_lab("unwind")
    proc.send_signal(signum)
    assert proc.wait(DEADLINE) != 0
    assert proc.stdout is not None
    proc.stdout.close()
    assert not [ns for ns in namespaces() if ns.startswith(prefix)]


def test_sweep_orphans_removes_namespaces_of_dead_runs(lab: NetLab) -> None:
    proc, prefix = hold_lab("plain")
    proc.kill()  # SIGKILL: no cleanup runs
    assert proc.wait(DEADLINE) == -signal.SIGKILL
    assert proc.stdout is not None
    proc.stdout.close()
    assert sum(ns.startswith(prefix) for ns in namespaces()) == 3
    swept = sweep_orphans()
    assert sorted(ns for ns in swept if ns.startswith(prefix)) == sorted(
        [f"{prefix}s", f"{prefix}c1", f"{prefix}c2"]
    )
    remaining = namespaces()
    assert not [ns for ns in remaining if ns.startswith(prefix)]
    assert {lab.server_ns, *lab.clients} <= set(remaining)  # a live run is left alone
