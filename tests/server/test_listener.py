"""The relay's accept loop: connection caps answered TOO_MANY_CONNECTIONS, and running out of
file descriptors (a real EMFILE) pausing accepting instead of spinning.

In the process, on loopback; nothing sleeps: the tests wait on client events, closed
connections, and the listener's own pauses.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import socket
from collections.abc import Iterator

import pytest

from tests.harness import TIMEOUT, ClientLab, RelayLab, open_raw, send_sealed, wait_closed
from tidings.client.events import Disconnected
from tidings.net.timers import VirtualTimers
from tidings.noise import generate_keypair
from tidings.server.admission import Admission, Caps
from tidings.server.app import Relay
from tidings.server.listener import Listener, bind
from tidings.server.metrics import Metrics
from tidings.wire import PROTOCOL_VERSION, ErrorCode, Hello


def refused(relay: Relay, cap: str) -> float | None:
    return relay.metrics.registry.get_sample_value(
        "tidings_connections_refused_total", {"cap": cap}
    )


def server_side(relay: Relay) -> list[asyncio.Event]:
    """The relay's sessions' "disconnected" events."""
    return [s.conn.disconnected for s in relay._all if s.conn is not None]


async def test_a_device_over_the_total_cap_is_told_and_gets_in_when_one_leaves(
    relays: RelayLab, clients: ClientLab
) -> None:
    first = await relays.start()
    assert first.address is not None
    port = first.address[1]
    alice_home, bob_home = await clients.register("alice"), await clients.register("bob")
    await first.stop()
    relay = await relays.start(port=port, max_connections=1)
    alice = await clients.start(alice_home)
    (alice_on_relay,) = server_side(relay)
    bob = await clients.start(bob_home, connect=False)
    told = await bob.until(lambda e: isinstance(e, Disconnected))
    assert isinstance(told, Disconnected)
    assert told.code == ErrorCode.TOO_MANY_CONNECTIONS and not told.fatal
    assert (refused(relay, "total") or 0) >= 1
    errors = relay.metrics.registry.get_sample_value(
        "tidings_errors_total", {"code": "too_many_connections"}
    )
    assert errors is not None and errors >= 1
    ok, details = relay.health()
    assert ok and details["connections_limit"] == 1  # at the cap, still healthy

    await alice.client.close()
    async with asyncio.timeout(TIMEOUT):
        await alice_on_relay.wait()
    bob.client.reconnect_now()
    await bob.client.wait_connected(TIMEOUT)


async def test_a_connection_over_the_per_address_cap_is_told_too_many_connections(
    relays: RelayLab,
) -> None:
    relay = await relays.start(max_connections_per_ip=1)
    keys = [generate_keypair(os.urandom)[0] for _ in range(3)]
    first, _ = await open_raw(relay.url, keys[0])
    second, peer = await open_raw(relay.url, keys[1])
    await wait_closed(second)
    assert peer.closed is not None and peer.closed.by_peer
    assert peer.closed.code == ErrorCode.TOO_MANY_CONNECTIONS
    assert "per address" in peer.closed.reason
    assert refused(relay, "per_address") == 1 and refused(relay, "total") == 0

    (on_relay,) = server_side(relay)
    first.close()
    async with asyncio.timeout(TIMEOUT):
        await on_relay.wait()
    third, peer = await open_raw(relay.url, keys[2])  # served now: it gets as far as HELLO
    send_sealed(third, Hello(PROTOCOL_VERSION, 0))
    await wait_closed(third)
    assert peer.closed is not None and peer.closed.code == ErrorCode.UNKNOWN_DEVICE


# --------------------------------------------------------------------- out of descriptors


class ObservedListener(Listener):
    """A listener that counts its readiness callbacks and its pauses for want of resources."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.readable_calls = 0
        self.resource_pauses = 0
        self.paused = asyncio.Event()
        self.admitted = asyncio.Event()
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def _on_readable(self, listening: socket.socket) -> None:
        self.readable_calls += 1
        super()._on_readable(listening)
        if self.admission.admitted:
            self.admitted.set()

    def _out_of_resources(self, exc: OSError) -> None:
        self.resource_pauses += 1
        self.paused.set()
        super()._out_of_resources(exc)


@contextlib.contextmanager
def out_of_descriptors() -> Iterator[None]:
    """Use up every file descriptor this process may open (a lowered soft limit, filled with
    duplicates) for the ``with`` block."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 16, hard))
    spare: list[int] = []
    try:
        for _ in range(64):  # bounded: the limit leaves 16 free
            try:
                spare.append(os.dup(0))
            except OSError as exc:
                assert exc.errno == errno.EMFILE
                break
        yield
    finally:
        for fd in spare:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_running_out_of_descriptors_pauses_accepting_logs_once_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "tidings.server")
    timers = VirtualTimers()
    listener = ObservedListener(
        bind("127.0.0.1", 0),
        Admission(Caps(10)),
        lambda request, cap: None,
        Metrics(),
        retry_delay=0.5,
        clock=lambda: 0.0,  # every line after the first falls in the same interval
        timers=timers,
    )
    port = listener.sockets[0].getsockname()[1]
    clients = [socket.socket() for _ in range(3)]  # their descriptors exist before the limit
    try:
        with out_of_descriptors():
            for client in clients:
                client.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    client.connect(("127.0.0.1", port))
            # accept() fails with EMFILE, again after each pause (on virtual time): a few rounds.
            for round_ in range(5):
                if round_:
                    listener.paused.clear()
                    timers.advance(0.49)
                    assert not listener.accepting  # not before the retry delay
                    timers.advance(0.01)
                async with asyncio.timeout(TIMEOUT):
                    await listener.paused.wait()
            assert listener.admission.open == 0
            assert not listener.accepting
        # Descriptors are back: the next retry accepts the connections that waited.
        timers.advance(0.5)
        async with asyncio.timeout(TIMEOUT):
            await listener.admitted.wait()
    finally:
        listener.close()
        for client in clients:
            client.close()
    # No spin: one accept() attempt per pause (plus the ones that succeed), not thousands.
    assert listener.readable_calls <= listener.resource_pauses + 3
    lines = [r for r in caplog.records if "cannot accept connections" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert "too many open files" in lines[0].getMessage()
    metric = listener._metrics.registry.get_sample_value(
        "tidings_accept_pauses_total", {"reason": "resources"}
    )
    assert metric == listener.resource_pauses >= 5


def test_bind_clamps_the_mss_of_non_loopback_listeners_only() -> None:
    """``tcp_mss`` (the lab's mtu-black-hole): a wildcard listener advertises 1,220, a loopback
    one keeps the kernel's choice (its 64 KiB MTU has no black hole)."""
    (wild,) = bind("0.0.0.0", 0, mss=1220)
    (loop,) = bind("127.0.0.1", 0, mss=1220)
    try:
        assert wild.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG) == 1220
        assert loop.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG) != 1220
    finally:
        wild.close()
        loop.close()
