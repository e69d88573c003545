"""Nothing is written to a connection the network already broke.

After a relay is killed, a client that keeps sending (the outbox flushes each send at once) used
to log asyncio's "write() called after connection lost." warning for every write between the
moment its transport failed and the moment picows reported the loss (hundreds per client after
a kill -9). Here the relay side of a real loopback connection is reset (SO_LINGER 0: an RST, as
a killed process with unread data sends), then the client writes as the outbox does.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct

import pytest

from tests.harness import TIMEOUT, RelayLab, open_raw, wait_closed
from tidings.client import register
from tidings.net.channel import ChannelState
from tidings.wire import PROTOCOL_VERSION, GetDevices, Hello, Welcome


async def test_no_write_after_the_relay_side_was_reset(
    relays: RelayLab, caplog: pytest.LogCaptureFixture
) -> None:
    relay = await relays.start()
    bob = await register(relays.tmp / "bob", relay.url, "bob")
    conn, peer = await open_raw(relay.url, bob.noise_private_key)
    conn.send_frame(Hello(PROTOCOL_VERSION, 0))
    await peer.frame(Welcome)
    (session,) = relay._all
    assert session.conn is not None and session.conn.transport is not None
    server_side = session.conn.transport.underlying_transport
    sock = server_side.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    server_side.abort()  # the relay's end is gone: an RST
    async with asyncio.timeout(TIMEOUT):
        await session.conn.disconnected.wait()

    with caplog.at_level(logging.WARNING):
        for i in range(50):  # the outbox: one send, one flush, without yielding
            conn.send_frame(GetDevices(i, "bob"))
            conn.flush()
        await wait_closed(conn)
    lost = [r for r in caplog.records if "after connection lost" in r.getMessage()]
    assert lost == []
    assert conn.channel is not None and conn.channel.state is ChannelState.CLOSED
    assert peer.closed is not None and not peer.closed.by_peer
