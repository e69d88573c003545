"""The user-space fault proxy, between a real client socket and a real echo server on loopback.

Nothing sleeps: every wait is on real I/O with a deadline (``asyncio.wait_for``). Timing
assertions are lower bounds only, so a slow machine cannot make them flaky.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from tidings.lab.proxy import MAX_QUEUED_CHUNKS, READ_CHUNK, FaultProxy

DEADLINE = 2.0  # seconds an expected event may take
QUIET = 0.3  # seconds we watch for something that must not happen


@dataclass
class Echo:
    """An echo server that also reports whether it saw an EOF or an error."""

    server: asyncio.Server
    port: int
    peer_eof: asyncio.Event
    connections: int = 0


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    peer_eof = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        writers.append(writer)
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            peer_eof.set()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state = Echo(server, server.sockets[0].getsockname()[1], peer_eof)
    yield state
    server.close()
    for writer in writers:
        writer.transport.abort()
    await server.wait_closed()


@pytest.fixture
async def proxy(echo: Echo) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy("127.0.0.1", echo.port)
    await proxy.start()
    yield proxy
    await proxy.close()


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def conn(proxy: FaultProxy) -> AsyncIterator[Conn]:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    yield reader, writer
    writer.transport.abort()


async def roundtrip(conn: Conn, data: bytes, timeout: float = DEADLINE) -> bytes:
    reader, writer = conn
    writer.write(data)
    await writer.drain()
    async with asyncio.timeout(timeout):
        return await reader.readexactly(len(data))


async def test_forwards_both_ways(proxy: FaultProxy, conn: Conn) -> None:
    assert await roundtrip(conn, b"hello") == b"hello"
    big = bytes(range(256)) * 4096  # 1 MiB: more than the proxy buffers, so flow control works
    assert len(big) >= MAX_QUEUED_CHUNKS * READ_CHUNK
    assert await roundtrip(conn, big) == big
    assert proxy.faults == []


async def test_eof_is_forwarded(echo: Echo, conn: Conn) -> None:
    reader, writer = conn
    writer.write(b"last")
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), DEADLINE) == b"last"  # echo, then its EOF
    async with asyncio.timeout(DEADLINE):
        await echo.peer_eof.wait()


async def test_latency_delays_each_direction(proxy: FaultProxy, conn: Conn) -> None:
    proxy.latency(0.15)
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await roundtrip(conn, b"x") == b"x"
    assert loop.time() - start >= 2 * 0.15 - 0.01
    proxy.latency(0)
    assert [f.kind for f in proxy.faults] == ["latency", "latency"]
    assert proxy.faults[0].detail == "0.15 s"


async def test_stall_buffers_until_resume(proxy: FaultProxy, conn: Conn) -> None:
    reader, writer = conn
    proxy.stall()
    writer.write(b"held")
    await writer.drain()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(QUIET):
            await reader.read(1)
    proxy.resume()
    assert await asyncio.wait_for(reader.readexactly(4), DEADLINE) == b"held"
    assert await roundtrip(conn, b"again") == b"again"


async def test_reset_all_resets_the_client(proxy: FaultProxy, conn: Conn) -> None:
    assert await roundtrip(conn, b"up") == b"up"
    proxy.reset_all()
    reader, _ = conn
    with pytest.raises(ConnectionResetError):
        async with asyncio.timeout(DEADLINE):
            await reader.read(1)
    fresh = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        assert await roundtrip(fresh, b"new") == b"new"
    finally:
        fresh[1].transport.abort()


async def test_half_open_forwards_nothing_and_closes_nothing(
    echo: Echo, proxy: FaultProxy, conn: Conn
) -> None:
    assert await roundtrip(conn, b"up") == b"up"
    proxy.half_open()
    reader, writer = conn
    writer.write(b"into the void")
    await writer.drain()
    with pytest.raises(TimeoutError):  # neither bytes nor EOF
        async with asyncio.timeout(QUIET):
            await reader.read(1)
    writer.write_eof()  # the client's FIN vanishes too: the server never sees an EOF
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(QUIET):
            await echo.peer_eof.wait()
    assert not reader.at_eof()
    fresh = await asyncio.open_connection("127.0.0.1", proxy.port)  # new connections still work
    try:
        assert await roundtrip(fresh, b"new") == b"new"
    finally:
        fresh[1].transport.abort()


async def test_refuse_then_accept_again(echo: Echo, proxy: FaultProxy, conn: Conn) -> None:
    proxy.refuse(True)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", proxy.port)
    assert await roundtrip(conn, b"existing") == b"existing"  # not affected
    proxy.refuse(False)
    fresh = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        assert await roundtrip(fresh, b"back") == b"back"
    finally:
        fresh[1].transport.abort()
    assert [f.detail for f in proxy.faults] == ["on", "off"]


async def test_throttle_bounds_the_rate(proxy: FaultProxy, conn: Conn) -> None:
    rate = 40_000
    proxy.throttle(rate)
    data = b"t" * 12_000  # one direction alone needs >= (12000 - one slice) / rate = 0.25 s
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await roundtrip(conn, data) == data
    assert loop.time() - start >= 0.25
    proxy.throttle(None)
    assert await roundtrip(conn, data) == data


async def test_upstream_down_resets_the_client(echo: Echo, proxy: FaultProxy) -> None:
    echo.server.close()
    await echo.server.wait_closed()
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        with pytest.raises(ConnectionResetError):
            async with asyncio.timeout(DEADLINE):
                await reader.read(1)
    finally:
        writer.transport.abort()


async def test_close_closes_half_open_connections(echo: Echo) -> None:
    proxy = FaultProxy("127.0.0.1", echo.port)
    port = await proxy.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert await roundtrip((reader, writer), b"up") == b"up"
        proxy.half_open()
        async with asyncio.timeout(DEADLINE):
            await proxy.close()
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(reader.read(1), DEADLINE) == b""
    finally:
        writer.transport.abort()
