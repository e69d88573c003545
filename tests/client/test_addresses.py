"""A relay named by a host name: which addresses a client tries (``RelayAddresses``, sans-I/O)
and the staggered connect that tries them (``connect_first``, real loopback sockets)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tidings.client import connect
from tidings.client.addresses import RelayAddresses
from tidings.client.connect import connect_first


def test_the_resolver_answer_comes_first_then_the_last_good_address() -> None:
    a = RelayAddresses("relay.example.test")
    assert not a.literal
    assert a.plan(["10.0.0.1", "10.0.0.1", "10.0.0.2"]) == ["10.0.0.1", "10.0.0.2"]
    assert a.plan(None) == []  # nothing known yet: the attempt fails, the client backs off
    a.confirm("10.0.0.1")
    assert a.plan(["10.9.9.9"]) == ["10.9.9.9", "10.0.0.1"]  # a stale answer, then the good one
    assert a.plan(["10.0.0.1"]) == ["10.0.0.1"]
    assert a.plan(None) == ["10.0.0.1"]  # timeout or SERVFAIL: the last good address
    a.confirm("10.0.0.2")  # the relay moved and proved it there
    assert a.plan(None) == ["10.0.0.2"]


def test_an_address_literal_is_never_resolved() -> None:
    a = RelayAddresses("127.0.0.1")
    assert a.literal and a.plan(None) == ["127.0.0.1"]
    a.confirm("10.0.0.1")
    assert a.last_good is None and a.plan(["10.0.0.9"]) == ["127.0.0.1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connect_first_skips_a_refusing_address() -> None:
    with socket.create_server(("127.0.0.2", 0)) as server:
        port = server.getsockname()[1]
        sock, address = await connect_first(["127.0.0.3", "127.0.0.2"], port)
        with sock:
            assert address == "127.0.0.2" and sock.getpeername()[0] == "127.0.0.2"


async def test_connect_first_raises_the_first_error_when_every_address_fails() -> None:
    port = _free_port()
    with pytest.raises(ConnectionRefusedError):
        await connect_first(["127.0.0.1", "127.0.0.4"], port)


async def test_a_cancelled_connect_first_leaves_no_attempt_running() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        task = asyncio.ensure_future(connect_first(["127.0.0.1"], port))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def _hanging_server() -> tuple[socket.socket, list[socket.socket]]:
    """A loopback listener whose accept queue is full: the kernel drops further SYNs, so a
    connect to it hangs (as to a stale address that black-holes them)."""
    server = socket.create_server(("127.0.0.5", 0), backlog=0)
    fillers = []
    for _ in range(2):  # Linux queues backlog + 1
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(server.getsockname())
        fillers.append(filler)
    return server, fillers


async def test_once_the_last_good_address_fails_a_hanging_one_gets_only_the_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    grace = 0.3
    monkeypatch.setattr(connect, "TRUSTED_FAILED_GRACE", grace)
    server, fillers = _hanging_server()
    port = server.getsockname()[1]
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        with pytest.raises(ConnectionRefusedError):  # the last good one's error
            await connect_first(["127.0.0.5", "127.0.0.6"], port, trusted="127.0.0.6")
        took = loop.time() - started
        assert grace - 0.05 <= took < grace + 2.0  # not the connect timeout
    finally:
        for s in [server, *fillers]:
            s.close()
