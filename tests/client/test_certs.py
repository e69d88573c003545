"""Device certificates and last seen (issue 13, docs/protocol.md §6.31), with real clients and a
real relay: alice.1 links alice.2 and certifies it, bob sees "certified by device 1"; a device
linked without the code's secret is flagged by the issuer, and a forged certificate is refused
and flagged by a contact."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.harness import ClientLab, Peer, RelayLab, is_status
from tidings.client import DeviceCertification
from tidings.client.certs import CERTIFIED, INVALID, UNCERTIFIED
from tidings.client.migrations import MIGRATIONS
from tidings.client.own_devices import THIS_DEVICE
from tidings.client.store import SCHEMA_VERSION, ClientStore, DeviceMark
from tidings.client.store._sql import statements
from tidings.delivery import ContentError, DeviceInfo, Status, parse_content
from tidings.e2e import IdentityKeyPair
from tidings.e2e.certificate import DeviceCertificate
from tidings.errors import RefusedError
from tidings.refs import DeviceRef
from tidings.server.core_certs import LAST_SEEN_GRANULARITY
from tidings.wire import DeviceDetails, DeviceQuery, ErrorCode

ALICE2 = DeviceRef("alice", 2)


def is_mark(device: DeviceRef, status: str):  # type: ignore[no-untyped-def]
    return lambda e: (
        isinstance(e, DeviceCertification) and e.device == device and e.status == status
    )


async def reach_all_of_alice(bob: Peer) -> None:
    """bob sends to alice, so he holds sessions (and pinned keys) with each of her devices."""
    mid = await bob.client.send("alice", "hi")
    for device in (DeviceRef("alice", 1), ALICE2):
        await bob.until(is_status(mid, Status.DELIVERED, device))


async def test_a_linked_device_is_certified_and_a_contact_checks_it(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    alice1 = await clients.new("alice")
    bob = await clients.new("bob")
    code, _ = await alice1.client.link_code()
    assert len(code) == 32  # the relay's half and the link secret
    alice2 = await clients.start(await clients.register("alice", link_code=code))
    event = await alice1.until(is_mark(ALICE2, CERTIFIED))
    assert isinstance(event, DeviceCertification) and event.issuer == 1
    await alice1.client.publish_certificates()  # (the client does it by itself too)
    assert alice1.client.store.unpublished_certificates() == []

    await reach_all_of_alice(bob)
    views = await bob.client.device_details("alice")
    assert [(v.device.device_id, v.mark.status, v.mark.issuer) for v in views] == [
        (1, UNCERTIFIED, None),  # an account's first device: nobody to vouch for it
        (2, CERTIFIED, 1),
    ]
    assert all(v.online for v in views)
    for v in views:  # recorded when it connected, rounded down to the hour
        assert v.last_seen is not None and v.last_seen % LAST_SEEN_GRANULARITY == 0
    await bob.until(is_mark(ALICE2, CERTIFIED))
    assert bob.client.store.device_marks("alice")[2].status == CERTIFIED

    own = await alice2.client.device_details("alice")
    assert [v.mark.status for v in own] == [UNCERTIFIED, THIS_DEVICE]


async def test_a_device_linked_without_the_secret_is_flagged_by_the_issuer(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    alice1 = await clients.new("alice")
    code, _ = await alice1.client.link_code()
    forged = code[:16] + bytes(16)  # the relay's half (a leak), not the secret
    await clients.start(await clients.register("alice", link_code=forged))
    event = await alice1.until(is_mark(ALICE2, INVALID))
    assert isinstance(event, DeviceCertification) and "link proof" in event.reason
    assert alice1.client.store.unpublished_certificates() == []  # nothing signed
    views = await alice1.client.device_details("alice")
    assert views[1].mark.status == INVALID and "link proof" in views[1].mark.reason


async def test_a_forged_certificate_is_refused_and_flagged(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    alice1 = await clients.new("alice")
    bob = await clients.new("bob")
    code, _ = await alice1.client.link_code()
    alice2 = await clients.start(await clients.register("alice", link_code=code[:16]))
    await reach_all_of_alice(bob)  # an old-style code: linked, not certified
    views = await bob.client.device_details("alice")
    assert views[1].mark.status == UNCERTIFIED

    # alice.2 (or the relay) claims device 1 vouched for it, signing with its own key
    e2e = alice2.client.store.e2e_identity()
    assert e2e is not None
    pair = IdentityKeyPair(e2e.identity_seed)
    cert = DeviceCertificate.issue(pair, "alice", 1, 2, pair.public.raw, 1_700_000_000)
    answer = await alice2.client._session.request(
        lambda rid: DeviceQuery(rid, "alice", (2, cert.serialize()))
    )
    assert isinstance(answer, DeviceDetails) and answer.devices[1].certificate
    views = await bob.client.device_details("alice")
    assert views[1].mark.status == INVALID
    assert views[1].mark.reason == "the signature does not verify with device 1's key"
    await bob.until(is_mark(ALICE2, INVALID))


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION))
def test_a_store_of_every_earlier_version_gains_the_certificate_tables(
    tmp_path: Path, version: int
) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    for n, script in enumerate(MIGRATIONS[:version], 1):
        for stmt in statements(script):
            db.execute(stmt)
        db.execute(f"PRAGMA user_version = {n}")
    db.close()
    with ClientStore(path) as store:
        assert store.link_proof() is None and store.device_marks("bob") == {}
        store.put_link_secret(b"c" * 8, b"s" * 16, 100.0)
        assert store.link_secret(b"c" * 8, 99.0) == b"s" * 16
        assert store.link_secret(b"c" * 8, 100.0) is None  # expired
        mark = DeviceMark("bob", 2, CERTIFIED, 1, "", b"k" * 32, 5.0)
        store.set_device_mark(mark)
        assert store.device_marks("bob") == {2: mark}


def test_the_issuer_keeps_a_certificate_until_the_relay_has_it(tmp_path: Path) -> None:
    with ClientStore(tmp_path / "s.db") as store:
        store.put_link_secret(b"c" * 8, b"s" * 16, 100.0)
        mark = DeviceMark("alice", 2, CERTIFIED, 1, "", b"k" * 32, 5.0)
        store.certify(mark, b"cert", b"c" * 8)
        assert store.link_secret(b"c" * 8, 0.0) is None  # one code, one device
        assert store.unpublished_certificates() == [(2, b"cert")]
        store.certificate_published(2, b"other")  # not this one: still waiting
        assert store.unpublished_certificates() == [(2, b"cert")]
        store.certificate_published(2, b"cert")
        assert store.unpublished_certificates() == []
        assert store.device_marks("alice") == {2: mark}


def test_device_info_carries_a_link_proof_or_nothing() -> None:
    plain = DeviceInfo("laptop")
    assert plain.serialize() == bytes.fromhex("930107a66c6170746f70")  # as before
    proved = DeviceInfo("laptop", bytes(range(40)))
    assert parse_content(proved.serialize()) == proved
    for bad in (bytes(39), bytes(41), "x" * 40):
        with pytest.raises(ContentError):
            DeviceInfo("laptop", bad)  # type: ignore[arg-type]
    with pytest.raises(ContentError):  # one encoding: no proof is no field
        parse_content(bytes.fromhex("940107a66c6170746f70c0"))


async def test_the_relay_stores_certificates_for_own_devices_only(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    alice = await clients.new("alice")
    bob = await clients.new("bob")
    for account, device_id, code in (
        ("bob", 1, ErrorCode.NOT_OWN_DEVICE),  # another account's device
        ("alice", 7, ErrorCode.UNKNOWN_DEVICE),  # no such device
    ):
        with pytest.raises(RefusedError) as refused:
            await alice.client._session.request(
                lambda rid, a=account, d=device_id: DeviceQuery(rid, a, (d, b"x"))  # type: ignore[misc]
            )
        assert refused.value.code == code
    views = await bob.client.device_details("alice")  # nothing was stored
    assert [v.mark.status for v in views] == [UNCERTIFIED]
    assert alice.client.connected  # a refusal keeps the connection


async def test_a_contact_checks_a_new_device_when_it_builds_a_session_with_it(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    alice1 = await clients.new("alice")
    bob = await clients.new("bob")
    first = await bob.client.send("alice", "before")
    await bob.until(is_status(first, Status.DELIVERED, DeviceRef("alice", 1)))
    code, _ = await alice1.client.link_code()
    await clients.start(await clients.register("alice", link_code=code[:16]))  # an old code
    await bob.client.send("alice", "after")  # a session with alice.2: its certificate checked
    event = await bob.until(is_mark(ALICE2, UNCERTIFIED))
    assert isinstance(event, DeviceCertification) and event.issuer is None
