"""The pure decisions of sealed sending (tidings.client.sealed_send), the tags in the store,
and the unidentified link (tidings.client.unidentified) against a fake relay side."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.client.sealed_fakes import TRUST_ROOT, FakeCredentials, FakeUnidentified
from tests.e2e.libsignal_fixture import identity, seeded_rng
from tidings.client.sealed_send import Route, build_sealed, route
from tidings.client.store import ClientStore
from tidings.client.unidentified import MAX_UNIDENTIFIED_FAILURES, UnidentifiedLink
from tidings.delivery import ContentKind
from tidings.e2e.sealed_payload import open_payload
from tidings.errors import RelayUnreachable
from tidings.net.ws import ChannelConnection
from tidings.refs import DeviceRef
from tidings.wire import ErrorCode, SealedDevice, SealedSend, SealedSent, TagQuery

NOW = 1_800_000_000.0
ALICE = identity(b"alice.1")
BOB1, BOB2 = identity(b"bob.1"), identity(b"bob.2")
MID = bytes(range(16))
TAG = b"T" * 16


def creds(expires: float = NOW + 3600) -> FakeCredentials:
    c = FakeCredentials("alice", 1, ALICE, expires)
    c.keys["bob"] = b"k" * 16
    return c


# ------------------------------------------------------------------ which entries go sealed


def test_an_entry_for_another_account_goes_sealed_with_its_key_and_a_valid_certificate() -> None:
    c = creds()
    r = route("bob", "alice", c, None, None, NOW)
    assert r.sealed and r.access_key == b"k" * 16 and r.certificate is c.cert


@pytest.mark.parametrize(
    ("recipient", "unsealed", "unsupported", "now", "reason", "fallback"),
    [
        ("alice", None, None, NOW, "own account", False),  # own copies, notes to self
        ("carol", None, None, NOW, "no access key", False),  # not a contact's key
        ("bob", None, None, NOW + 3600, "no valid sender certificate", False),  # expired
        ("bob", "ACCESS_DENIED: x", None, NOW, "ACCESS_DENIED: x", True),  # fell back: stays
        ("bob", None, "the relay does not accept", NOW, "the relay does not accept", True),
    ],
)
def test_what_goes_as_a_normal_send(
    recipient: str,
    unsealed: str | None,
    unsupported: str | None,
    now: float,
    reason: str,
    fallback: bool,
) -> None:
    r = route(recipient, "alice", creds(), unsealed, unsupported, now)
    assert r == Route(False, reason, fallback=fallback)


def test_no_credentials_is_todays_path() -> None:
    assert route("bob", "alice", None, None, None, NOW) == Route(False, "no sealed credentials")


# ------------------------------------------------------------------ the frames


def test_each_recipient_device_gets_the_envelope_sealed_with_the_message_id_own_copies_a_send() -> (
    None
):
    c = creds()
    chosen = route("bob", "alice", c, None, None, NOW)
    targets = [DeviceRef("bob", 1), DeviceRef("bob", 2), DeviceRef("alice", 2)]
    payloads = {t: b"\x01envelope for " + str(t).encode() for t in targets}
    keys = {DeviceRef("bob", 1): BOB1, DeviceRef("bob", 2): BOB2}
    sealed, own = build_sealed(
        MID, "bob", targets, payloads, TAG, chosen, ALICE,
        lambda d: keys[d].public.raw, seeded_rng(b"s"),
    )  # fmt: skip
    assert (sealed.tag, sealed.recipient, sealed.access_key) == (TAG, "bob", b"k" * 16)
    assert [d.device_id for d in sealed.devices] == [1, 2]
    for d in sealed.devices:
        ref = DeviceRef("bob", d.device_id)
        opened = open_payload(d.payload, keys[ref], TRUST_ROOT.public, int(NOW * 1000))
        assert (opened.account, opened.device, opened.message_id) == ("alice", 1, MID)
        assert opened.envelope == payloads[ref]
        assert MID not in d.payload  # the message id is inside only
    # the own copies: a send to this account, same id, nothing of the sealed one in it
    assert own is not None and own.message_id == MID and own.recipient == "alice"
    assert [(t.account, t.device_id) for t in own.targets] == [("alice", 2)]
    assert TAG not in own.targets[0].payload


def test_no_own_copies_no_send_and_an_unpinned_device_cannot_be_sealed() -> None:
    chosen = route("bob", "alice", creds(), None, None, NOW)
    targets = [DeviceRef("bob", 1)]
    payloads = {targets[0]: b"\x01x"}
    _, own = build_sealed(
        MID,
        "bob",
        targets,
        payloads,
        TAG,
        chosen,
        ALICE,
        lambda d: BOB1.public.raw,
        seeded_rng(b""),
    )
    assert own is None
    with pytest.raises(ValueError, match="pinned"):
        build_sealed(
            MID, "bob", targets, payloads, TAG, chosen, ALICE, lambda d: None, seeded_rng(b"")
        )


# ------------------------------------------------------------------ tags in the store


def test_a_tag_is_chosen_once_and_kept_across_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with ClientStore(path) as store:
        store.enqueue(MID, "bob", b"x", ContentKind.RECEIPT, NOW)
        first = store.put_sealed_tag(MID, "bob", TAG, NOW, "to bob: 1 device(s)")
        again = store.put_sealed_tag(MID, "bob", b"U" * 16, NOW + 1, "to bob")
        assert first.tag == again.tag == TAG and first.unsealed is None
        assert [p.point for p in store.trace(MID)] == ["sealed"]  # traced once
    with ClientStore(path) as store:  # a restart: the same tag
        assert store.sealed_records()[MID].tag == TAG
        store.mark_unsealed(MID, "ACCESS_DENIED: wrong key", NOW + 2)
        record = store.sealed_record(MID)
        assert record is not None and record.unsealed == "ACCESS_DENIED: wrong key"
        trace = store.trace(MID)
        assert (trace[-1].point, trace[-1].detail) == ("unsealed", "ACCESS_DENIED: wrong key")
        store.sealed_stored(MID, keep=True)  # an unsealed one is not asked about
        assert store.tags_to_ask(10) == []


# ------------------------------------------------------------------ the unidentified link


def sealed_send(tag: bytes = TAG) -> SealedSend:
    return SealedSend(tag, "bob", b"k" * 16, (SealedDevice(1, b"\x11sealed"),))


def ok(tag: bytes = TAG) -> SealedSent:
    return SealedSent(tag, "bob", 0, NOW, False, "", 0.0)


def link(fake: FakeUnidentified, got: list[object], idle: float = 30.0) -> UnidentifiedLink:
    return UnidentifiedLink(
        lambda: "ws://relay/v1",
        lambda: b"K" * 32,
        got.append,
        got.append,
        fake,
        lambda: 0.5,
        idle=idle,
        backoff=(0.001, 0.002),
    )


async def test_the_link_opens_on_demand_to_the_pinned_key_and_closes_when_idle() -> None:
    fake, got = FakeUnidentified(), list[object]()
    unid = link(fake, got, idle=0.001)
    assert fake.conns == []  # nothing to send: no connection
    unid.send([sealed_send()])
    await fake.wait(lambda: fake.sealed())
    assert fake.keys == [b"K" * 32] and unid.pending == 1
    fake.conn.answer(ok())
    assert got == [ok()] and unid.pending == 0
    await fake.wait(lambda: fake.conn.closed)  # idle: closed
    await unid.close()


async def test_a_lost_link_reconnects_and_sends_what_awaits_an_answer_again() -> None:
    fake, got = FakeUnidentified(), list[object]()
    unid = link(fake, got)
    unid.send([sealed_send(), TagQuery(1, (b"Q" * 16,))])
    await fake.wait(lambda: len(fake.frames) == 2)
    fake.conn.close()  # lost before the answers
    await fake.wait(lambda: len(fake.conns) == 2 and len(fake.frames) == 4)
    assert fake.frames[2:] == fake.frames[:2]  # the same tag: the relay stores it once
    fake.conn.answer(ok())
    assert unid.pending == 1  # the query still waits
    await unid.close()


async def test_a_relay_that_closes_unexpected_frame_does_not_take_sealed_sends() -> None:
    from tidings.net.channel import ChannelClosed

    fake, got = FakeUnidentified(), list[object]()
    unid = link(fake, got)
    unid.send([sealed_send()])
    await fake.wait(lambda: fake.sealed())
    unid.on_channel_event(
        fake.conn,  # type: ignore[arg-type]
        ChannelClosed(int(ErrorCode.UNEXPECTED_FRAME), "not on this session", by_peer=True),
    )
    assert got == ["the relay does not accept sealed sends (not on this session)"]
    assert unid.pending == 0
    fake.conn.close()
    await unid.close()


async def test_a_link_that_cannot_connect_gives_up_after_a_few_attempts() -> None:
    got: list[object] = []
    attempts: list[str] = []

    async def unreachable(url: str, handler: object, key: bytes) -> ChannelConnection:
        attempts.append(url)
        raise RelayUnreachable(url, "connection refused")

    unid = UnidentifiedLink(
        lambda: "ws://relay/v1",
        lambda: b"K" * 32,
        got.append,
        got.append,
        unreachable,
        lambda: 0.5,
        backoff=(0.001, 0.002),
    )
    unid.send([sealed_send()])
    task = unid._task
    assert task is not None
    async with asyncio.timeout(5):
        await task
    assert len(attempts) == MAX_UNIDENTIFIED_FAILURES
    assert got == [f"no unidentified connection after {MAX_UNIDENTIFIED_FAILURES} attempts"]
    assert unid.pending == 0  # what waited goes another way (the client: unsealed)
