"""The relay's prekey service over real connections: upload, fetch, fallback, notices, limits.

Every device here is a raw connection (tests.harness.open_raw) that registers and says HELLO
itself, so the tests control each frame. The relay's clock is the fake ``relays.clock``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import msgpack
import pytest

from tests.harness import RawPeer, RelayLab, open_raw, send_plaintext, send_sealed, wait_closed
from tidings.e2e import prekeys as e2e_prekeys
from tidings.net.ws import ChannelConnection
from tidings.noise import generate_keypair
from tidings.server.app import Relay
from tidings.server.session import MAX_STORED_PREKEYS, PREKEY_FETCH_BURST, PREKEY_LOW_WATERMARK
from tidings.store import DeviceRef, PreKeyCounts
from tidings.wire import (
    MAX_PREKEYS_PER_UPLOAD,
    PROTOCOL_VERSION,
    ErrorCode,
    Frame,
    FrameType,
    Hello,
    KemKey,
    LinkCode,
    LinkCodeRequest,
    OneTimeKey,
    PrekeyBundle,
    PrekeyFetch,
    PrekeysLow,
    PrekeysStored,
    PrekeysUpload,
    Register,
    Registered,
    RequestFailed,
    SignedKey,
    Welcome,
)
from tidings.wire.limits import KEM_PUBLIC_KEY_LEN

IDENTITY = b"\x05" + bytes(range(32))
SIG = bytes(range(64))


def signed(key_id: int = 1) -> SignedKey:
    return SignedKey(key_id, bytes([key_id % 256]) * 32, SIG)


def one_time(*ids: int) -> tuple[OneTimeKey, ...]:
    return tuple(OneTimeKey(i, i.to_bytes(32, "big")) for i in ids)


def kem(*ids: int, last_resort: int | None = None) -> tuple[KemKey, ...]:
    keys = [KemKey(i, i.to_bytes(KEM_PUBLIC_KEY_LEN, "big"), SIG, False) for i in ids]
    if last_resort is not None:
        keys.append(KemKey(last_resort, bytes(KEM_PUBLIC_KEY_LEN), SIG, True))
    return tuple(keys)


@dataclass
class Device:
    """A registered device on a raw connection, its session open (WELCOME received)."""

    conn: ChannelConnection
    peer: RawPeer
    ref: DeviceRef
    private: bytes

    def send(self, *frames: Frame) -> None:
        send_sealed(self.conn, *frames)

    async def ask(self, frame: Frame) -> Frame:
        """Send ``frame``; return the answer naming its request id (other frames skipped)."""
        self.send(frame)
        while True:
            answer = await self.peer.frame(Frame)
            if getattr(answer, "request_id", None) == getattr(frame, "request_id", -1):
                return answer

    async def upload(
        self,
        one: tuple[OneTimeKey, ...] = (),
        kems: tuple[KemKey, ...] = (),
        spk: SignedKey | None = None,
        identity: bytes = IDENTITY,
    ) -> Frame:
        upload = PrekeysUpload(next_id(), identity, spk or signed(), one, kems)
        return await self.ask(upload)

    async def fetch(self, target: DeviceRef) -> Frame:
        return await self.ask(PrekeyFetch(next_id(), target.account, target.device_id))


_ids = iter(range(1, 1 << 30))


def next_id() -> int:
    return next(_ids)


async def connect(relay: Relay, private: bytes) -> tuple[ChannelConnection, RawPeer]:
    conn, peer = await open_raw(relay_url(relay), private)
    send_sealed(conn, Hello(PROTOCOL_VERSION, 0))
    await peer.frame(Welcome)
    return conn, peer


def relay_url(relay: Relay) -> str:
    assert relay.address is not None
    return f"ws://127.0.0.1:{relay.address[1]}/v1"


async def new_device(relay: Relay, account: str, link_code: bytes | None = None) -> Device:
    private, _ = generate_keypair(os.urandom)
    conn, peer = await open_raw(relay_url(relay), private)
    send_sealed(conn, Register(PROTOCOL_VERSION, account, "raw", link_code))
    registered = await peer.frame(Registered)
    send_sealed(conn, Hello(PROTOCOL_VERSION, 0))
    await peer.frame(Welcome)
    return Device(conn, peer, DeviceRef(registered.account, registered.device_id), private)


async def link(relay: Relay, existing: Device) -> Device:
    existing.send(LinkCodeRequest(next_id()))
    code = await existing.peer.frame(LinkCode)
    return await new_device(relay, existing.ref.account, code.code)


def bundle(frame: Frame) -> PrekeyBundle:
    assert isinstance(frame, PrekeyBundle), frame
    return frame


def failed(frame: Frame, code: ErrorCode) -> RequestFailed:
    assert isinstance(frame, RequestFailed), frame
    assert frame.code == code, frame
    return frame


async def frames_until(peer: RawPeer, kind: type[Frame]) -> list[Frame]:
    """Every frame received up to and including the first of ``kind``."""
    seen = []
    while True:
        frame = await peer.frame(Frame)
        seen.append(frame)
        if isinstance(frame, kind):
            return seen


# --------------------------------------------------------------------------- upload and fetch


async def test_each_one_time_prekey_is_handed_out_once_then_the_last_resort(
    relays: RelayLab,
) -> None:
    relay = await relays.start()
    alice, bob = await new_device(relay, "alice"), await new_device(relay, "bob")
    stored = await bob.upload(one_time(1, 2), kem(11, 12, last_resort=99))
    assert isinstance(stored, PrekeysStored)
    assert (stored.one_time_count, stored.kem_count) == (2, 2)
    first, second, third = [bundle(await alice.fetch(bob.ref)) for _ in range(3)]
    for b in (first, second, third):
        assert (b.account, b.device_id, b.identity_key) == ("bob", 1, IDENTITY)
        assert b.signed_prekey == signed()
    assert (first.one_time, first.kem_prekey) == (one_time(1)[0], kem(11)[0])
    assert (second.one_time, second.kem_prekey) == (one_time(2)[0], kem(12)[0])
    # Nothing one-time left: no one-time prekey, and the last-resort KEM prekey again.
    assert third.one_time is None
    assert third.kem_prekey == kem(last_resort=99)[-1]
    assert bundle(await alice.fetch(bob.ref)).kem_prekey == third.kem_prekey
    assert await relay.store.prekey_counts(bob.ref) == PreKeyCounts(0, 0)


async def test_a_full_upload_of_100_kem_prekeys_goes_through(relays: RelayLab) -> None:
    relay = await relays.start()
    bob = await new_device(relay, "bob")
    ids = range(1, MAX_PREKEYS_PER_UPLOAD + 1)
    stored = await bob.upload(one_time(*ids), kem(*ids[:-1], last_resort=ids[-1]))
    assert isinstance(stored, PrekeysStored)
    assert (stored.one_time_count, stored.kem_count) == (100, 99)


async def test_concurrent_fetches_never_hand_out_the_same_key(relays: RelayLab) -> None:
    relay = await relays.start()
    bob = await new_device(relay, "bob")
    fetchers = [await new_device(relay, name) for name in ("alice", "carol")]
    await bob.upload(one_time(*range(1, 11)), kem(*range(1, 11), last_resort=99))
    # Each fetcher pipelines 5 fetches, both at once: 10 fetches race for 10 keys.
    for fetcher in fetchers:
        fetcher.send(*(PrekeyFetch(n, "bob", 1) for n in range(5)))
    answers = [[await f.peer.frame(PrekeyBundle) for _ in range(5)] for f in fetchers]
    bundles = [b for answer in answers for b in answer]
    assert sorted(b.one_time.key_id for b in bundles if b.one_time) == list(range(1, 11))
    assert sorted(b.kem_prekey.key_id for b in bundles) == list(range(1, 11))


async def test_a_linked_device_fetches_its_sibling(relays: RelayLab) -> None:
    relay = await relays.start()
    alice1 = await new_device(relay, "alice")
    alice2 = await link(relay, alice1)
    await alice1.upload(one_time(1), kem(1))
    assert bundle(await alice2.fetch(alice1.ref)).one_time == one_time(1)[0]


# --------------------------------------------------------------------------- refusals


async def test_unknown_devices_and_devices_without_prekeys(relays: RelayLab) -> None:
    relay = await relays.start()
    alice, bob = await new_device(relay, "alice"), await new_device(relay, "bob")
    failed(await alice.fetch(DeviceRef("nobody", 1)), ErrorCode.NO_SUCH_ACCOUNT)
    failed(await alice.fetch(DeviceRef("bob", 2)), ErrorCode.NO_SUCH_ACCOUNT)
    failed(await alice.fetch(bob.ref), ErrorCode.NO_PREKEYS)
    # One-time prekeys but no KEM prekey: no bundle, and nothing was taken.
    await bob.upload(one_time(1, 2))
    failed(await alice.fetch(bob.ref), ErrorCode.NO_PREKEYS)
    assert await relay.store.prekey_counts(bob.ref) == PreKeyCounts(2, 0)
    assert alice.peer.closed is None  # REQUEST_FAILED leaves the connection open


async def test_a_changed_identity_key_is_refused_and_changes_nothing(relays: RelayLab) -> None:
    relay = await relays.start()
    alice, bob = await new_device(relay, "alice"), await new_device(relay, "bob")
    await bob.upload(one_time(1), kem(1), spk=signed(1))
    again = await bob.upload(one_time(1), kem(2), spk=signed(2))  # same identity: fine
    assert isinstance(again, PrekeysStored)
    refused = failed(
        await bob.upload(one_time(5), kem(5), spk=signed(3), identity=b"\x05" + bytes(32)),
        ErrorCode.INVALID_FIELD,
    )
    assert refused.reason == "identity key changed: re-register the device"
    assert await relay.store.prekey_counts(bob.ref) == PreKeyCounts(1, 2)
    fetched = bundle(await alice.fetch(bob.ref))
    assert (fetched.identity_key, fetched.signed_prekey) == (IDENTITY, signed(2))


def upload_body(**changes: object) -> bytes:
    """A PREKEYS_UPLOAD body packed by hand, with fields a frame could not be built with."""
    fields: dict[str, object] = {
        "identity": IDENTITY,
        "signed": [1, bytes(32), SIG],
        "one_time": [[1, bytes(32)]],
        "kem": [[1, bytes(KEM_PUBLIC_KEY_LEN), SIG, True]],
    }
    fields.update(changes)
    values = [int(FrameType.PREKEYS_UPLOAD), 1, *fields.values()]
    body: bytes = msgpack.packb(values, use_bin_type=True)
    return len(body).to_bytes(4, "big") + body


@pytest.mark.parametrize(
    "body",
    [
        upload_body(identity=bytes(31)),
        upload_body(signed=[1, bytes(32), bytes(63)]),
        upload_body(one_time=[[i, bytes(32)] for i in range(MAX_PREKEYS_PER_UPLOAD + 1)]),
        upload_body(one_time=[[1, bytes(33)]]),
        upload_body(kem=[[1, bytes(KEM_PUBLIC_KEY_LEN - 1), SIG, True]]),
        upload_body(kem=[[1, bytes(KEM_PUBLIC_KEY_LEN), SIG, True]] * 2),
        upload_body(one_time=[[2**32, bytes(32)]]),
    ],
    ids=[
        "identity-31",
        "signature-63",
        "101-one-time",
        "one-time-33",
        "kem-1567",
        "kem-id-twice",
        "key-id-over-32-bits",
    ],
)
async def test_an_upload_with_bad_sizes_closes_and_stores_nothing(
    relays: RelayLab, body: bytes
) -> None:
    relay = await relays.start()
    bob = await new_device(relay, "bob")
    send_plaintext(bob.conn, body)
    await wait_closed(bob.conn)
    assert bob.peer.closed is not None and bob.peer.closed.code == ErrorCode.INVALID_FIELD
    assert await relay.store.prekey_counts(bob.ref) is None


async def test_a_device_cannot_hoard_more_than_the_stored_limit(relays: RelayLab) -> None:
    relay = await relays.start()
    bob = await new_device(relay, "bob")
    batches = MAX_STORED_PREKEYS // MAX_PREKEYS_PER_UPLOAD
    for n in range(batches):
        start = n * MAX_PREKEYS_PER_UPLOAD
        await bob.upload(one_time(*range(start, start + MAX_PREKEYS_PER_UPLOAD)))
    failed(await bob.upload(one_time(10**6)), ErrorCode.INVALID_FIELD)
    assert await relay.store.prekey_counts(bob.ref) == PreKeyCounts(MAX_STORED_PREKEYS, 0)


async def test_prekey_frames_before_hello_are_unexpected(relays: RelayLab) -> None:
    relay = await relays.start()
    private, _ = generate_keypair(os.urandom)
    conn, peer = await open_raw(relay_url(relay), private)
    send_sealed(conn, PrekeyFetch(1, "bob", 1))
    await wait_closed(conn)
    assert peer.closed is not None and peer.closed.code == ErrorCode.UNEXPECTED_FRAME


# --------------------------------------------------------------------------- rate limit


async def test_the_seventh_fetch_in_ten_minutes_is_rate_limited(relays: RelayLab) -> None:
    relay = await relays.start()
    alice, bob, carol = [await new_device(relay, n) for n in ("alice", "bob", "carol")]
    await bob.upload(one_time(*range(1, 21)), kem(last_resort=99))
    await carol.upload((), kem(last_resort=98))
    for _ in range(PREKEY_FETCH_BURST):
        bundle(await alice.fetch(bob.ref))
    limited = failed(await alice.fetch(bob.ref), ErrorCode.RATE_LIMITED)
    assert limited.retry_after == pytest.approx(600 / PREKEY_FETCH_BURST)
    # The limit is per (fetching device, target): other pairs are not affected.
    bundle(await alice.fetch(carol.ref))
    bundle(await carol.fetch(bob.ref))
    assert await relay.store.prekey_counts(bob.ref) == PreKeyCounts(13, 0)  # refusal took none
    relays.clock.advance(limited.retry_after)
    bundle(await alice.fetch(bob.ref))
    failed(await alice.fetch(bob.ref), ErrorCode.RATE_LIMITED)


# --------------------------------------------------------------------------- low watermark


async def test_the_owner_is_told_when_a_fetch_leaves_few_prekeys(relays: RelayLab) -> None:
    relay = await relays.start()
    alice, bob = await new_device(relay, "alice"), await new_device(relay, "bob")
    n = PREKEY_LOW_WATERMARK + 1
    await bob.upload(one_time(*range(n)), kem(*range(n)))
    await alice.fetch(bob.ref)  # leaves exactly the watermark: no notice
    await alice.fetch(bob.ref)  # leaves one fewer: notice
    low = await bob.peer.frame(PrekeysLow)
    assert (low.one_time_left, low.kem_left) == (n - 2, n - 2)
    # After a replenishing upload the owner is not told again.
    await bob.upload(one_time(*range(100, 110)), kem(*range(100, 110)))
    bundle(await alice.fetch(bob.ref))
    # A marker: bob's frames come in order, so a notice would arrive before its answer.
    bob.send(PrekeyFetch(next_id(), "nobody", 1))
    seen = await frames_until(bob.peer, RequestFailed)
    assert not any(isinstance(f, PrekeysLow) for f in seen)


async def test_hello_tells_a_device_whose_prekeys_are_low(relays: RelayLab) -> None:
    relay = await relays.start()
    bob, carol = await new_device(relay, "bob"), await new_device(relay, "carol")
    await bob.upload(one_time(1, 2), kem(last_resort=9))
    bob.conn.close()
    await wait_closed(bob.conn)
    conn, peer = await open_raw(relay_url(relay), bob.private)
    send_sealed(conn, Hello(PROTOCOL_VERSION, 0))
    seen = await frames_until(peer, PrekeysLow)
    assert isinstance(seen[0], Welcome)
    assert seen[-1] == PrekeysLow(2, 0)
    # A device that never uploaded prekeys is not told anything.
    carol.conn.close()
    await wait_closed(carol.conn)
    conn, peer = await open_raw(relay_url(relay), carol.private)
    send_sealed(conn, Hello(PROTOCOL_VERSION, 0), PrekeyFetch(1, "nobody", 1))
    seen = await frames_until(peer, RequestFailed)
    assert not any(isinstance(f, PrekeysLow) for f in seen)


def test_the_relay_uses_the_e2e_sizes_and_upkeep() -> None:
    # The relay treats key material as opaque bytes, but of the sizes the e2e layer makes.
    assert MAX_PREKEYS_PER_UPLOAD == e2e_prekeys.MAX_ONE_TIME_PREKEYS_PER_UPLOAD
    assert PREKEY_LOW_WATERMARK == e2e_prekeys.PREKEY_LOW_WATERMARK
    assert len(SIG) == e2e_prekeys.SIGNATURE_LEN
