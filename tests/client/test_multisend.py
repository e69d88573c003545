"""A multi-recipient send through a real relay (issue 12): a real client's session sends one
MULTI_SEND to 3 devices of 2 accounts; each device (a raw peer speaking frames by hand) gets its
part followed by the shared ciphertext and acks; then the relay's SQLite database holds no
shared body and no item any more."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.harness import ClientLab, RawPeer, RelayLab, open_raw, send_sealed
from tidings.net.ws import ChannelConnection
from tidings.noise import generate_keypair
from tidings.wire import (
    PROTOCOL_VERSION,
    AccountRefusal,
    Ack,
    Deliver,
    Devices,
    ErrorCode,
    GetDevices,
    Hello,
    LinkCode,
    LinkCodeRequest,
    MultiAccount,
    MultiDevice,
    Register,
    Registered,
    Welcome,
)

SHARED = os.urandom(3000)  # e.g. a sealed-sender v2 shared part: E || ciphertext


@pytest.fixture
async def labs(tmp_path: Path) -> AsyncIterator[tuple[RelayLab, ClientLab]]:
    relays = RelayLab(tmp_path)
    await relays.start()
    clients = ClientLab(tmp_path, relays)
    yield relays, clients
    await clients.close()
    await relays.close()


class Device:
    """A device registered and connected by hand."""

    def __init__(self, conn: ChannelConnection, peer: RawPeer) -> None:
        self.conn, self.peer = conn, peer

    @classmethod
    async def register(cls, url: str, account: str, code: bytes | None = None) -> Device:
        private, _ = generate_keypair(os.urandom)
        conn, peer = await open_raw(url, private)
        send_sealed(conn, Register(PROTOCOL_VERSION, account, "raw", code))
        await peer.frame(Registered)
        send_sealed(conn, Hello(PROTOCOL_VERSION, 0))
        await peer.frame(Welcome)
        return cls(conn, peer)

    async def synced(self, account: str) -> None:
        """Ask for a device list and wait for it: every frame before it was decided, and
        (the store runs operations in order) every write before it is committed."""
        send_sealed(self.conn, GetDevices(99, account))
        await self.peer.frame(Devices)


def count(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(sql).fetchone()[0])


async def test_a_multi_send_reaches_three_devices_of_two_accounts_and_leaves_nothing(
    labs: tuple[RelayLab, ClientLab], tmp_path: Path
) -> None:
    relays, clients = labs
    url = relays.relays[-1].url
    alice = await clients.new("alice")
    bob1 = await Device.register(url, "bob")
    send_sealed(bob1.conn, LinkCodeRequest(1))
    code = await bob1.peer.frame(LinkCode)
    bob2 = await Device.register(url, "bob", code.code)
    carol = await Device.register(url, "carol")
    session = alice.client._session
    mid = os.urandom(16)

    # A stale view of bob's devices first: refused for bob, nothing stored.
    only_bob1 = MultiAccount("bob", (MultiDevice(1, b"\x22" + b"1" * 48),))
    carols = MultiAccount("carol", (MultiDevice(1, b"\x22" + b"c" * 48),))
    refused = await session.multi_send(mid, SHARED, [only_bob1, carols])
    assert refused.code == ErrorCode.RECIPIENTS_REFUSED
    assert refused.refusals == (AccountRefusal("bob", ErrorCode.DEVICE_MISMATCH, (2,), ()),)
    db = tmp_path / "relay.db"
    assert count(db, "SELECT count(*) FROM shared_bodies") == 0

    bobs = MultiAccount(
        "bob", (MultiDevice(1, b"\x22" + b"1" * 48), MultiDevice(2, b"\x22" + b"2" * 48))
    )
    sent = await session.multi_send(mid, SHARED, [bobs, carols])
    assert (sent.code, sent.duplicate) == (0, False)
    again = await session.multi_send(mid, SHARED, [bobs, carols])  # a retry: nothing twice
    assert (again.code, again.duplicate) == (0, True)
    assert count(db, "SELECT count(*) FROM shared_bodies") == 1
    assert count(db, "SELECT count(*) FROM inbox WHERE shared_id IS NOT NULL") == 3
    # Stored once: the shared part's bytes are in the database once, not per device.
    assert count(db, "SELECT sum(length(body)) FROM shared_bodies") == len(SHARED)

    for device, part in ((bob1, b"1"), (bob2, b"2"), (carol, b"c")):
        deliver = await device.peer.frame(Deliver)
        assert deliver.payload == b"\x22" + part * 48 + SHARED
        assert (deliver.sender_account, deliver.message_id) == ("alice", mid)
        send_sealed(device.conn, Ack(deliver.seq))
        await device.synced("bob")
    assert count(db, "SELECT count(*) FROM shared_bodies") == 0
    assert count(db, "SELECT count(*) FROM inbox") == 0
