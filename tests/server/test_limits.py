"""The relay's limits against hostile peers (issue 8 "Hardening"): the pure parts of
``tidings.server.limits``, then each limit over real connections.

Each limit is shown three ways: a burst over it is refused with a sensible ``retry_after``, traffic
under it passes, and it recovers once the window has passed. The relay's clocks are the fake
``relays.clock``: ``advance`` lets time pass on both, ``step`` moves the wall clock alone (an NTP
step), which no limit may notice. Raw devices say where they come from in an ``X-Forwarded-For``
header, trusted by relays started with ``proxy_header="x-forwarded-for"``.
"""

from __future__ import annotations

import asyncio
import math
import os
from dataclasses import dataclass

import pytest
from multidict import CIMultiDict
from picows import ws_connect

from tests.harness import SILENT, TIMEOUT, ClientLab, RawPeer, RelayLab, send_sealed, wait_closed
from tests.server.test_prekeys import kem, one_time, signed
from tidings.errors import RefusedError
from tidings.net.channel import Channel
from tidings.net.ws import ChannelConnection
from tidings.noise import PipesInitiator, generate_keypair
from tidings.server.app import Relay
from tidings.server.config import ServerConfig
from tidings.server.limits import (
    LINK_CODES_PER_HOUR,
    Limits,
    address_key,
    client_address,
    decode_key,
    encode_key,
)
from tidings.server.session import PREKEY_FETCH_BURST, PREKEY_FETCH_WINDOW
from tidings.store import DeviceRef, PreKeyCounts
from tidings.wire import (
    PROLOGUE,
    PROTOCOL_VERSION,
    Devices,
    ErrorCode,
    Frame,
    GetDevices,
    Hello,
    LinkCode,
    LinkCodeRequest,
    PrekeyBundle,
    PrekeyFetch,
    PrekeysUpload,
    Refused,
    Register,
    Registered,
    RequestFailed,
    Send,
    Sent,
    Target,
    Welcome,
)

HOUR = 3600.0
DAY = 24 * HOUR
IDENTITY = b"\x05" + bytes(range(32))
#: Two client addresses (RFC 5737 documentation ranges).
HOME, CAFE = "203.0.113.7", "198.51.100.20"
#: Relay settings under which the raw devices' X-Forwarded-For header names their address.
BEHIND_PROXY = {"proxy_header": "x-forwarded-for"}


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),  # the same /64: one budget
        ("fe80::1%eth0", "fe80::/64"),
        ("not an address", None),
        ("", None),
        (None, None),
    ],
)
def test_address_keys(address: str | None, key: str | None) -> None:
    assert address_key(address) == key


def test_the_client_address_comes_from_the_proxy_only_when_configured() -> None:
    headers = CIMultiDict([("X-Forwarded-For", "10.9.9.9, 203.0.113.7")])
    assert client_address("127.0.0.1", headers, "none") == "127.0.0.1"
    # The last entry is the one the proxy added; the client wrote the ones before it.
    assert client_address("127.0.0.1", headers, "x-forwarded-for") == "203.0.113.7"
    headers.add("X-Forwarded-For", "198.51.100.20")
    assert client_address("127.0.0.1", headers, "x-forwarded-for") == "198.51.100.20"
    assert client_address("127.0.0.1", CIMultiDict(), "x-real-ip") == "127.0.0.1"
    assert client_address("127.0.0.1", None, "x-real-ip") == "127.0.0.1"


def test_a_budget_of_zero_is_off_and_no_address_passes_address_budgets() -> None:
    limits = Limits(ServerConfig(address_registrations_per_hour=0))
    assert all(limits.register(HOME, 0.0) == 0.0 for _ in range(100))
    limits = Limits(ServerConfig(address_registrations_per_hour=1))
    assert limits.register(None, 0.0) == limits.register(None, 0.0) == 0.0
    assert limits.register(HOME, 0.0) == 0.0
    assert limits.register(HOME, 0.0) == pytest.approx(HOUR)


def test_every_token_taken_is_reported_for_the_other_nodes_and_refusals_are_not() -> None:
    limits = Limits(ServerConfig(address_registrations_per_hour=1))
    taken: list[tuple[str, object]] = []
    limits.on_take = lambda name, key: taken.append((name, key))
    a, b = DeviceRef("a", 1), DeviceRef("b", 1)
    assert limits.register(HOME, 0.0) == 0.0
    assert limits.register(HOME, 0.0) > 0  # refused: nothing taken, nothing reported
    assert limits.prekey_fetch(a, b, None, False, 0.0) == 0.0  # no address: its budget skipped
    assert taken == [("registrations", HOME), ("prekey_pairs", (a, b))]
    assert [decode_key(name, encode_key(key)) for name, key in taken] == [HOME, (a, b)]


def test_tokens_another_node_took_are_taken_here() -> None:
    limits = Limits(ServerConfig(rate_per_second=1.0, rate_burst=3))
    limits.apply("sends", "bob", 3.0, 0.0)
    assert limits.send("bob", False, 0.0) == pytest.approx(1.0)
    assert limits.send("ann", False, 0.0) == 0.0
    limits.apply("one_time", ["bob", 1], 1.0, 0.0)
    limits.apply("prekey_pairs", [["a", 1], ["b", 2]], 1.0, 0.0)
    off = Limits(ServerConfig(address_registrations_per_hour=0))
    off.apply("registrations", HOME, 5.0, 0.0)  # off here: nothing to take
    assert off.register(HOME, 0.0) == 0.0
    for name, key, count in [
        ("nope", "x", 1.0),
        ("sends", "", 1.0),
        ("sends", ["bob"], 1.0),
        ("one_time", ["bob", True], 1.0),
        ("prekey_pairs", [["a", 1]], 1.0),
        ("sends", "bob", 0.0),
        ("sends", "bob", "1"),
    ]:
        with pytest.raises(ValueError):
            limits.apply(name, key, count, 0.0)


def test_a_new_account_never_gets_more_than_an_established_one() -> None:
    limits = Limits(ServerConfig(rate_per_second=1.0, rate_burst=2))
    assert [limits.send("a", True, 0.0) for _ in range(3)][:2] == [0.0, 0.0]
    assert limits.send("a", True, 0.0) == pytest.approx(1.0)
    assert limits.is_new(created_at=1000.0, wall_now=1000.0 + DAY - 1)
    assert not limits.is_new(created_at=1000.0, wall_now=1000.0 + DAY)


# --------------------------------------------------------------------------- raw devices


@dataclass
class Device:
    """A registered device on a raw connection, its session open (WELCOME received)."""

    conn: ChannelConnection
    peer: RawPeer
    ref: DeviceRef
    private: bytes
    address: str | None

    def send(self, *frames: Frame) -> None:
        send_sealed(self.conn, *frames)

    async def ask(self, frame: Frame) -> Frame:
        """Send ``frame``; return the answer naming its request id (other frames skipped)."""
        self.send(frame)
        while True:
            answer = await self.peer.frame(Frame)
            if getattr(answer, "request_id", None) == getattr(frame, "request_id", -1):
                return answer

    async def fetch(self, target: Device) -> Frame:
        return await self.ask(PrekeyFetch(next_id(), target.ref.account, target.ref.device_id))

    async def lookup(self, account: str) -> Frame:
        return await self.ask(GetDevices(next_id(), account))

    async def upload(self, one: int, kems: int, last_resort: bool = True) -> None:
        keys = kem(*range(1, kems + 1), last_resort=999 if last_resort else None)
        upload = PrekeysUpload(next_id(), IDENTITY, signed(), one_time(*range(1, one + 1)), keys)
        await self.ask(upload)


_ids = iter(range(1, 1 << 30))


def next_id() -> int:
    return next(_ids)


def url_of(relay: Relay) -> str:
    assert relay.address is not None
    return f"ws://127.0.0.1:{relay.address[1]}/v1"


async def open_from(
    relay: Relay, address: str | None, private: bytes | None = None
) -> tuple[ChannelConnection, RawPeer]:
    """A raw channel (handshake done, with a new key unless ``private`` is given) that, behind
    the proxy, comes from ``address``."""
    if private is None:
        private, _ = generate_keypair(os.urandom)
    peer = RawPeer()

    def make_channel(now: float) -> Channel:
        assert private is not None
        initiator = PipesInitiator(private, server_static=None, prologue=PROLOGUE, rng=os.urandom)
        return Channel(initiator, SILENT, now)

    class Conn(ChannelConnection):
        def after_connect(self) -> None:
            assert self.channel is not None
            self.channel.start()

    # What a proxy sends: the client's own (forged) entry first, the proxy's last.
    headers = {"X-Forwarded-For": f"10.9.9.9, {address}"} if address else None
    _, listener = await ws_connect(
        lambda: Conn(make_channel, peer), url_of(relay), extra_headers=headers
    )
    assert isinstance(listener, Conn)
    await peer.handshake.wait()
    return listener, peer


async def register_from(relay: Relay, account: str, address: str | None = None) -> Frame | int:
    """REGISTER ``account``: REGISTERED, or the ERROR code the connection was closed with."""
    conn, peer = await open_from(relay, address)
    send_sealed(conn, Register(PROTOCOL_VERSION, account, "raw", None))
    answer = asyncio.ensure_future(peer.frame(Registered))
    closed = asyncio.ensure_future(wait_closed(conn))
    await asyncio.wait({answer, closed}, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    closed.cancel()
    if answer.done():
        conn.close()
        return answer.result()
    answer.cancel()
    assert peer.closed is not None
    return peer.closed.code


async def new_device(relay: Relay, account: str, address: str | None = None) -> Device:
    private, _ = generate_keypair(os.urandom)
    conn, peer = await open_from(relay, address, private)
    send_sealed(conn, Register(PROTOCOL_VERSION, account, "raw", None))
    registered = await peer.frame(Registered)
    send_sealed(conn, Hello(PROTOCOL_VERSION, 0))
    await peer.frame(Welcome)
    ref = DeviceRef(registered.account, registered.device_id)
    return Device(conn, peer, ref, private, address)


async def reconnect(relay: Relay, device: Device) -> Device:
    """``device`` on a new connection to ``relay`` (HELLO again with its key)."""
    device.conn.close()
    conn, peer = await open_from(relay, device.address, device.private)
    send_sealed(conn, Hello(PROTOCOL_VERSION, 0))
    await peer.frame(Welcome)
    return Device(conn, peer, device.ref, device.private, device.address)


def refused(frame: Frame, retry_after: float) -> None:
    """``frame`` is a RATE_LIMITED refusal asking to wait ``retry_after`` seconds."""
    assert isinstance(frame, RequestFailed | Refused), frame
    assert frame.code == ErrorCode.RATE_LIMITED, frame
    assert frame.retry_after == pytest.approx(retry_after, rel=1e-6)


def bundle(frame: Frame) -> PrekeyBundle:
    assert isinstance(frame, PrekeyBundle), frame
    return frame


async def sends(device: Device, to: Device, count: int) -> list[Frame]:
    """Send ``count`` messages to ``to``'s device; return the answers (SENT or REFUSED)."""
    for _ in range(count):
        payload = Target(to.ref.account, to.ref.device_id, b"x")
        device.send(Send(os.urandom(16), to.ref.account, (payload,)))
    answers: list[Frame] = []
    while len(answers) < count:
        frame = await device.peer.frame(Frame)
        if isinstance(frame, Sent | Refused):
            answers.append(frame)
    return answers


def sent(answers: list[Frame]) -> int:
    return sum(isinstance(a, Sent) for a in answers)


def refusal(answers: list[Frame]) -> Refused:
    (first,) = [a for a in answers if isinstance(a, Refused)]
    return first


# --------------------------------------------------------------------------- prekey drain


async def test_past_a_devices_one_time_budget_bundles_come_without_one_time_keys(
    relays: RelayLab,
) -> None:
    relay = await relays.start(device_one_time_prekeys_per_hour=3)
    bob = await new_device(relay, "bob")
    await bob.upload(one=10, kems=10)
    # Four accounts fetch once each (no pair limit is near): the one-time budget is per target.
    fetchers = [await new_device(relay, f"f{i}") for i in range(4)]
    bundles = [bundle(await f.fetch(bob)) for f in fetchers]
    assert [b.one_time is not None for b in bundles] == [True, True, True, False]
    assert [b.kem_prekey.last_resort for b in bundles] == [False, False, False, True]
    # The session still starts from the signed and last-resort keys; the pool is kept.
    assert await relay.store.prekey_counts(bob.ref) == PreKeyCounts(7, 7)
    relays.clock.advance(HOUR / 3)  # one more one-time prekey's worth
    assert bundle(await fetchers[0].fetch(bob)).one_time is not None
    assert bundle(await fetchers[1].fetch(bob)).one_time is None


async def test_without_a_last_resort_key_a_spent_budget_is_rate_limited(
    relays: RelayLab,
) -> None:
    relay = await relays.start(device_one_time_prekeys_per_hour=2)
    carol = await new_device(relay, "carol")
    await carol.upload(one=5, kems=5, last_resort=False)
    alice = await new_device(relay, "alice")
    assert [bundle(await alice.fetch(carol)).one_time is not None for _ in range(2)] == [1, 1]
    refused(await alice.fetch(carol), HOUR / 2)
    assert await relay.store.prekey_counts(carol.ref) == PreKeyCounts(3, 3)
    relays.clock.advance(HOUR / 2)
    bundle(await alice.fetch(carol))


async def test_prekey_fetches_are_limited_per_source_address(relays: RelayLab) -> None:
    relay = await relays.start(address_prekey_fetches_per_hour=4, **BEHIND_PROXY)
    bob = await new_device(relay, "bob", CAFE)
    await bob.upload(one=20, kems=20)
    alice, mallory = await new_device(relay, "alice", HOME), await new_device(relay, "m", HOME)
    for device in (alice, alice, mallory, mallory):
        bundle(await device.fetch(bob))
    # The address is spent for every account behind it, not for another address.
    refused(await alice.fetch(bob), HOUR / 4)
    refused(await mallory.fetch(bob), HOUR / 4)
    carol = await new_device(relay, "carol", CAFE)
    bundle(await carol.fetch(bob))
    relays.clock.advance(HOUR / 4)
    bundle(await alice.fetch(bob))
    refused(await mallory.fetch(bob), HOUR / 4)


async def test_a_new_account_has_a_smaller_prekey_budget(relays: RelayLab) -> None:
    relay = await relays.start(new_account_prekey_fetches_per_hour=3)
    targets = [await new_device(relay, f"t{i}") for i in range(5)]
    for target in targets:
        await target.upload(one=5, kems=5)
    alice = await new_device(relay, "alice")
    for target in targets[:3]:
        bundle(await alice.fetch(target))
    refused(await alice.fetch(targets[3]), HOUR / 3)
    relays.clock.advance(HOUR / 3)
    bundle(await alice.fetch(targets[3]))
    refused(await alice.fetch(targets[4]), HOUR / 3)
    # A day later alice is established: only the per-pair and per-address limits are left.
    relays.clock.advance(DAY)
    alice = await reconnect(relay, alice)
    for target in targets:
        bundle(await alice.fetch(target))


async def test_a_wall_clock_step_moves_no_prekey_budget(relays: RelayLab) -> None:
    relay = await relays.start()
    alice, bob = await new_device(relay, "alice"), await new_device(relay, "bob")
    await bob.upload(one=20, kems=20)
    for _ in range(PREKEY_FETCH_BURST):
        bundle(await alice.fetch(bob))
    per_token = PREKEY_FETCH_WINDOW / PREKEY_FETCH_BURST
    refused(await alice.fetch(bob), per_token)
    relays.clock.step(-HOUR)
    refused(await alice.fetch(bob), per_token)  # a step back is no time passing, nor a freeze
    relays.clock.advance(per_token)
    bundle(await alice.fetch(bob))
    relays.clock.step(+HOUR)
    refused(await alice.fetch(bob), per_token)  # nor is a step forward


# --------------------------------------------------------------------------- enumeration


async def test_lookups_of_other_accounts_are_limited_per_account(relays: RelayLab) -> None:
    relay = await relays.start(account_lookups_per_hour=3)
    alice = await new_device(relay, "alice")
    # Its own account, asked on every connect, costs nothing.
    for _ in range(10):
        assert isinstance(await alice.lookup("alice"), Devices)
    for name in ("bob", "carol", "dave"):
        assert isinstance(await alice.lookup(name), Devices)
    refused(await alice.lookup("erin"), HOUR / 3)
    bob = await new_device(relay, "bob")
    assert isinstance(await bob.lookup("alice"), Devices)  # another account's budget
    relays.clock.advance(HOUR / 3)
    answer = await alice.lookup("erin")
    assert isinstance(answer, Devices) and answer.device_ids == ()
    refused(await alice.lookup("frank"), HOUR / 3)


async def test_lookups_are_limited_per_source_address(relays: RelayLab) -> None:
    relay = await relays.start(address_lookups_per_hour=4, **BEHIND_PROXY)
    alice, bob = await new_device(relay, "alice", HOME), await new_device(relay, "bob", HOME)
    for device, name in ((alice, "x1"), (alice, "x2"), (bob, "x3"), (bob, "x4")):
        assert isinstance(await device.lookup(name), Devices)
    refused(await bob.lookup("x5"), HOUR / 4)
    refused(await alice.lookup("x5"), HOUR / 4)
    carol = await new_device(relay, "carol", CAFE)
    assert isinstance(await carol.lookup("x5"), Devices)
    relays.clock.advance(HOUR / 4)
    assert isinstance(await alice.lookup("x5"), Devices)


async def test_a_rate_limited_lookup_reaches_the_client_as_a_refusal(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start(account_lookups_per_hour=1)
    alice = await clients.new("alice")  # connecting asks for its own devices: not counted
    await clients.register("bob")
    assert await alice.client.devices("bob") == (1,)
    with pytest.raises(RefusedError) as caught:
        await alice.client.devices("carol")
    assert caught.value.code == ErrorCode.RATE_LIMITED
    assert caught.value.retry_after == pytest.approx(HOUR)


# --------------------------------------------------------------------------- registration


async def test_registrations_are_limited_per_source_address(relays: RelayLab) -> None:
    relay = await relays.start(address_registrations_per_hour=3, **BEHIND_PROXY)
    assert isinstance(await register_from(relay, "a1", HOME), Registered)
    assert isinstance(await register_from(relay, "a2", HOME), Registered)
    # A refused REGISTER counts too: probing names costs the same as taking them.
    assert await register_from(relay, "a1", HOME) == ErrorCode.ACCOUNT_EXISTS
    assert await register_from(relay, "a3", HOME) == ErrorCode.RATE_LIMITED
    assert isinstance(await register_from(relay, "b1", CAFE), Registered)
    relays.clock.advance(HOUR / 3)
    assert isinstance(await register_from(relay, "a3", HOME), Registered)
    assert await register_from(relay, "a4", HOME) == ErrorCode.RATE_LIMITED
    assert [d.ref.account for d in await relay.store.devices("a4")] == []


async def test_a_refused_registration_tells_the_person_how_long_to_wait(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start(address_registrations_per_hour=1)
    await clients.register("alice")
    with pytest.raises(RefusedError) as caught:
        await clients.register("bob")
    assert caught.value.code == ErrorCode.RATE_LIMITED
    assert caught.value.reason == (
        f"too many registrations from this address; retry in {math.ceil(HOUR)} s"
    )


# --------------------------------------------------------------------------- new accounts


async def test_a_new_account_has_a_smaller_send_budget_also_after_a_restart(
    relays: RelayLab,
) -> None:
    cfg = {"new_account_rate_per_second": 1.0, "new_account_rate_burst": 2}
    relay = await relays.start(**cfg)
    alice, bob = await new_device(relay, "alice"), await new_device(relay, "bob")
    answers = await sends(alice, bob, 3)
    assert sent(answers) == 2
    refused(refusal(answers), 1.0)
    relays.clock.advance(1.0)
    assert sent(await sends(alice, bob, 1)) == 1
    # The account's age is the store's: a restarted relay still knows alice is new.
    await relay.stop()
    relay = await relays.start(**cfg)
    alice = await reconnect(relay, alice)
    assert sent(await sends(alice, bob, 3)) == 2
    # A day on, alice is established: the normal burst (100).
    relays.clock.advance(DAY)
    alice = await reconnect(relay, alice)
    assert sent(await sends(alice, bob, 20)) == 20


# --------------------------------------------------------------------------- link codes


async def test_link_codes_are_limited_per_account(relays: RelayLab) -> None:
    relay = await relays.start()
    alice = await new_device(relay, "alice")
    for _ in range(LINK_CODES_PER_HOUR):
        assert isinstance(await alice.ask(LinkCodeRequest(next_id())), LinkCode)
    per_token = HOUR / LINK_CODES_PER_HOUR
    refused(await alice.ask(LinkCodeRequest(next_id())), per_token)
    relays.clock.advance(per_token)
    assert isinstance(await alice.ask(LinkCodeRequest(next_id())), LinkCode)


# --------------------------------------------------------------------------- clocks


@pytest.mark.parametrize("step", [-HOUR, HOUR])
async def test_a_wall_clock_step_moves_no_send_budget(relays: RelayLab, step: float) -> None:
    relay = await relays.start(rate_per_second=1.0, rate_burst=2)
    alice, bob = await new_device(relay, "alice"), await new_device(relay, "bob")
    answers = await sends(alice, bob, 3)
    assert sent(answers) == 2
    refused(refusal(answers), 1.0)
    # The wall clock steps by an hour, then one second passes. Stepped back, a wall-clock
    # limiter was frozen for the hour; stepped forward, it refilled to its whole burst. The
    # budget is one token either way: the second that passed.
    relays.clock.step(step)
    relays.clock.advance(1.0)
    assert sent(await sends(alice, bob, 2)) == 1
    relays.clock.advance(2.0)
    answers = await sends(alice, bob, 3)
    assert sent(answers) == 2
    # What people see still follows the wall clock: the stored time is the stepped one.
    assert {a.stored_at for a in answers if isinstance(a, Sent)} == {relays.clock.now}
