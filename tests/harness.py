"""Shared helpers of the in-process integration tests (tests/server/, tests/client/).

Everything runs in the test's event loop: a real :class:`~tidings.server.app.Relay` on loopback
WebSockets with a :class:`~tidings.store.SQLiteStore` under ``tmp_path``, real
:class:`~tidings.client.Client` instances, and *raw* connections (a bare Noise channel driven by
the test) for what a well-behaved client never sends.

Tests never sleep (CONVENTIONS §11): they wait on events with a deadline — :func:`until` for
client events, :meth:`RawPeer.frame` for frames, ``conn.disconnected`` for a closed connection,
:meth:`ObservedRelay.wait_refused` for the relay's refusals. Time on the relay is a
:class:`FakeClock` the test moves (CONVENTIONS §12: fakes over mocks).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from tidings.client import Client, register
from tidings.client.client import EventStream
from tidings.client.connect import open_channel
from tidings.client.events import ClientEvent, MessageReceived, StatusChanged
from tidings.delivery import Status
from tidings.net.channel import (
    Channel,
    ChannelClosed,
    Event,
    FrameReceived,
    HandshakeDone,
    KeepaliveParams,
)
from tidings.net.ws import ChannelConnection
from tidings.noise import PipesInitiator
from tidings.server.app import Relay, load_or_create_key
from tidings.server.config import ServerConfig
from tidings.server.datadir import load_or_create_push_key
from tidings.store import DeviceRef, SQLiteStore
from tidings.wire import PROLOGUE, ErrorCode, Frame

#: Default wait for anything that should happen "at once" on loopback. Generous: a loaded CI
#: machine is slow, and a passing test never waits this long.
TIMEOUT = 5.0

#: A raw client that never pings: it is silent unless the test makes it speak.
SILENT = KeepaliveParams(ping_interval=None, dead_after=600.0, handshake_timeout=10.0)

F = TypeVar("F", bound=Frame)


# ------------------------------------------------------------------------------------ time


class FakeClock:
    """The relay's injectable clocks, wall (call it) and :meth:`monotonic`, frozen until the test
    moves them: :meth:`advance` lets time pass, :meth:`step` sets the wall clock alone."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start
        self.mono = 1000.0  # a monotonic clock's origin is arbitrary

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass: both clocks move forward."""
        self.now += seconds
        self.mono += seconds

    def step(self, seconds: float) -> None:
        """Step the wall clock by ``seconds`` (back if negative), as NTP or an operator setting
        the date does; no time passes on the monotonic clock."""
        self.now += seconds


class FixedRandom(random.Random):
    """A ``random.Random`` whose ``random()`` is a constant: retry delays become exact.

    With ``0.0`` an outbox retry waits exactly the server's ``retry_after``; with ``1.0`` every
    backoff is its ceiling.
    """

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


# ------------------------------------------------------------------------------------ events


async def until(
    stream: EventStream,
    predicate: Callable[[ClientEvent], bool],
    timeout: float = TIMEOUT,
    seen: list[ClientEvent] | None = None,
) -> ClientEvent:
    """The first event of ``stream`` that satisfies ``predicate``, within ``timeout`` seconds.

    Events consumed on the way (the match included) are appended to ``seen`` if given.

    Raises:
        TimeoutError: no such event in time.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError(f"no matching event within {timeout} s (seen: {seen})")
        event = await stream.next(remaining)
        if seen is not None:
            seen.append(event)
        if predicate(event):
            return event


async def until_all(
    stream: EventStream,
    predicate: Callable[[ClientEvent], bool],
    count: int,
    timeout: float = TIMEOUT,
    seen: list[ClientEvent] | None = None,
) -> list[ClientEvent]:
    """The first ``count`` events of ``stream`` satisfying ``predicate``, within ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    found: list[ClientEvent] = []
    while len(found) < count:
        event = await until(stream, predicate, max(deadline - loop.time(), 0.0), seen)
        found.append(event)
    return found


def is_received(mid: bytes | None = None) -> Callable[[ClientEvent], bool]:
    """Predicate: a MessageReceived (of message ``mid``, if given)."""

    def check(e: ClientEvent) -> bool:
        return isinstance(e, MessageReceived) and (mid is None or e.message.message_id == mid)

    return check


def is_status(
    mid: bytes, status: Status, device: DeviceRef | None = None
) -> Callable[[ClientEvent], bool]:
    """Predicate: message ``mid`` reached ``status`` (at ``device``, if given)."""

    def check(e: ClientEvent) -> bool:
        return (
            isinstance(e, StatusChanged)
            and e.message_id == mid
            and e.status is status
            and (device is None or e.device == device)
        )

    return check


def statuses_of(events: list[ClientEvent], mid: bytes) -> list[tuple[DeviceRef | None, Status]]:
    """The (device, status) of every StatusChanged of ``mid`` in ``events``, in order."""
    return [
        (e.device, e.status) for e in events if isinstance(e, StatusChanged) and e.message_id == mid
    ]


# ------------------------------------------------------------------------------------ relay


class ObservedRelay(Relay):
    """A real relay that also records the refusals it sends, so tests can wait on them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refusals: list[ErrorCode] = []
        self._refused = asyncio.Event()
        self.stopped = False

    def metrics_refused(self, code: ErrorCode) -> None:
        super().metrics_refused(code)
        self.refusals.append(code)
        self._refused.set()

    async def wait_refused(self, code: ErrorCode, count: int = 1, timeout: float = TIMEOUT) -> None:
        """Wait until the relay refused ``count`` sends with ``code`` in total."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.refusals.count(code) < count:
            self._refused.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{code.name} x{count} not seen; refusals: {self.refusals}")
            async with asyncio.timeout(remaining):
                await self._refused.wait()

    async def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            await super().stop()

    @property
    def url(self) -> str:
        assert self.address is not None
        return f"ws://127.0.0.1:{self.address[1]}/v1"


class RelayLab:
    """Starts relays on one data directory (database and key), with one shared fake clock."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.clock = FakeClock()
        self.key = load_or_create_key(tmp / "server.key")
        #: The VAPID key, kept across restarts as ``push.key`` is.
        self.push_key = load_or_create_push_key(tmp / "push.key")
        #: More keyword arguments of the relays (e.g. the push sender's timing).
        self.relay_options: dict[str, Any] = {}
        self.relays: list[ObservedRelay] = []

    async def start(self, **overrides: Any) -> ObservedRelay:
        """Start a relay; ``overrides`` are ServerConfig fields (port 0 and no metrics unless
        given). A second call reuses the same database and key: a restart."""
        fields: dict[str, Any] = {
            "data_dir": self.tmp / "relay",
            "port": 0,
            "metrics_port": 0,
            "log_level": "warning",
        }
        fields.update(overrides)
        relay = ObservedRelay(
            ServerConfig(**fields),
            SQLiteStore(self.tmp / "relay.db"),
            self.key,
            clock=self.clock,
            monotonic=self.clock.monotonic,
            push_key=self.push_key,
            **self.relay_options,
        )
        await relay.start()
        self.relays.append(relay)
        return relay

    async def close(self) -> None:
        for relay in self.relays:
            await relay.stop()


@dataclass
class Peer:
    """A started client with its event stream (created before start: nothing is missed)."""

    client: Client
    events: EventStream
    home: Path
    seen: list[ClientEvent] = field(default_factory=list)

    @property
    def me(self) -> DeviceRef:
        return self.client.me

    async def until(
        self, predicate: Callable[[ClientEvent], bool], timeout: float = TIMEOUT
    ) -> ClientEvent:
        """Like :func:`until`, recording every consumed event in :attr:`seen`."""
        return await until(self.events, predicate, timeout, self.seen)

    async def until_all(
        self, predicate: Callable[[ClientEvent], bool], count: int, timeout: float = TIMEOUT
    ) -> list[ClientEvent]:
        """Like :func:`until_all`, recording every consumed event in :attr:`seen`."""
        return await until_all(self.events, predicate, count, timeout, self.seen)


class ClientLab:
    """Registers devices and starts clients against the lab's current relay."""

    def __init__(self, tmp: Path, relays: RelayLab) -> None:
        self.tmp = tmp
        self.relays = relays
        self.clients: list[Client] = []
        self._homes = 0

    @property
    def url(self) -> str:
        return self.relays.relays[-1].url

    def new_home(self, name: str) -> Path:
        self._homes += 1
        return self.tmp / f"home-{self._homes}-{name}"

    async def register(self, account: str, link_code: bytes | None = None, name: str = "") -> Path:
        """Register a device (a new account, or a linked device with ``link_code``)."""
        home = self.new_home(account)
        await register(home, self.url, account, name or f"{account}-device", link_code)
        return home

    def open(self, home: Path, **kwargs: Any) -> Client:
        """A Client on ``home`` (not started); closed at teardown.

        It gives no profile key to anyone unless asked (``share_profile_key=True``): most
        tests count what a send queues, and sealed sender's PROFILE_KEY with the first message
        to each contact would be one item more (tests/client/test_sealed_keys.py asks)."""
        kwargs.setdefault("share_profile_key", False)
        client = Client(home, **kwargs)
        self.clients.append(client)
        return client

    async def start(self, home: Path, *, connect: bool = True, **kwargs: Any) -> Peer:
        """Open and start a client on ``home``; wait until it is connected if ``connect``."""
        client = self.open(home, **kwargs)
        peer = Peer(client, client.events(), home)
        await client.start()
        if connect:
            await client.wait_connected(TIMEOUT)
        return peer

    async def new(self, account: str, **kwargs: Any) -> Peer:
        """Register ``account`` and start its device 1."""
        return await self.start(await self.register(account), **kwargs)

    async def link(self, existing: Peer, **kwargs: Any) -> Peer:
        """Link a new device to ``existing``'s account and start it."""
        async with asyncio.timeout(TIMEOUT):
            code, _ = await existing.client.link_code()
        home = await self.register(existing.me.account, link_code=code)
        return await self.start(home, **kwargs)

    async def close(self) -> None:
        for client in self.clients:
            with contextlib.suppress(Exception):
                await client.close()


# ------------------------------------------------------------------------------------ raw peers


class RawPeer:
    """Handler of a raw channel: collects frames, notes the handshake and the close."""

    def __init__(self) -> None:
        self.frames: asyncio.Queue[Frame] = asyncio.Queue()
        self.handshake = asyncio.Event()
        self.closed: ChannelClosed | None = None
        self.conn: ChannelConnection | None = None

    def on_channel_event(self, conn: ChannelConnection, event: Event) -> None:
        self.conn = conn
        if isinstance(event, HandshakeDone):
            self.handshake.set()
        elif isinstance(event, FrameReceived):
            self.frames.put_nowait(event.frame)
        elif isinstance(event, ChannelClosed):
            self.closed = event

    def on_disconnected(self, conn: ChannelConnection) -> None:
        self.conn = conn

    async def frame(self, kind: type[F], timeout: float = TIMEOUT) -> F:
        """The next frame of type ``kind`` (frames of other types before it are skipped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            async with asyncio.timeout(max(deadline - loop.time(), 0)):
                frame = await self.frames.get()
            if isinstance(frame, kind):
                return frame


class DeafConnection(ChannelConnection):
    """A client channel connection that can stop reading: once ``deaf``, it ignores every
    WebSocket message but a close, so it answers no PING (a peer that went silent)."""

    deaf = False

    def after_connect(self) -> None:
        assert self.channel is not None
        self.channel.start()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if self.deaf and frame.msg_type != WSMsgType.CLOSE:
            return
        super().on_ws_frame(transport, frame)


async def open_raw(
    url: str,
    private: bytes,
    server_key: bytes | None = None,
    keepalive: KeepaliveParams = SILENT,
) -> tuple[ChannelConnection, RawPeer]:
    """A raw client channel (``open_channel`` with a :class:`RawPeer`), handshake done."""
    peer = RawPeer()
    conn = await open_channel(url, peer, private, server_key, keepalive)
    async with asyncio.timeout(TIMEOUT):
        await peer.handshake.wait()
    return conn, peer


async def open_deaf(
    url: str, private: bytes, keepalive: KeepaliveParams = SILENT
) -> tuple[DeafConnection, RawPeer]:
    """Like :func:`open_raw`, on a :class:`DeafConnection`."""
    peer = RawPeer()

    def make_channel(now: float) -> Channel:
        initiator = PipesInitiator(private, server_static=None, prologue=PROLOGUE, rng=os.urandom)
        return Channel(initiator, keepalive, now)

    _, listener = await ws_connect(lambda: DeafConnection(make_channel, peer), url)
    assert isinstance(listener, DeafConnection)
    async with asyncio.timeout(TIMEOUT):
        await peer.handshake.wait()
    return listener, peer


def send_sealed(conn: ChannelConnection, *frames: Frame) -> list[bytes]:
    """Encrypt ``frames`` on ``conn``'s channel, write them, and return the Noise messages
    written (to replay them later)."""
    channel, transport = conn.channel, conn.transport
    assert channel is not None and transport is not None
    for frame in frames:
        channel.send_frame(frame)
    messages = channel.data_to_send()
    for message in messages:
        transport.send(WSMsgType.BINARY, message)
    return messages


def send_plaintext(conn: ChannelConnection, plaintext: bytes) -> None:
    """Encrypt raw stream bytes (not a valid frame) into one authentic Noise message and write
    it. Reaches into the channel's Noise transport: no public API lets a well-behaved peer send
    bytes that are not frames, which is the point of the tests that use it."""
    channel, transport = conn.channel, conn.transport
    assert channel is not None and transport is not None
    noise = channel._transport
    assert noise is not None, "handshake not complete"
    transport.send(WSMsgType.BINARY, noise.encrypt(plaintext))


def send_ws(conn: ChannelConnection, data: bytes) -> None:
    """Write ``data`` as one binary WebSocket message, bypassing the channel."""
    assert conn.transport is not None
    conn.transport.send(WSMsgType.BINARY, data)


async def wait_closed(conn: ChannelConnection, timeout: float = TIMEOUT) -> None:
    """Wait until the connection's WebSocket is gone."""
    async with asyncio.timeout(timeout):
        await conn.disconnected.wait()


class WSProbe(WSListener):
    """A bare WebSocket client: no Noise at all, for garbage before the handshake."""

    def __init__(self) -> None:
        super().__init__()
        self.transport: WSTransport | None = None
        self.disconnected = asyncio.Event()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.disconnected.set()


async def open_probe(url: str) -> WSProbe:
    """A connected :class:`WSProbe`."""
    _, listener = await ws_connect(WSProbe, url)
    assert isinstance(listener, WSProbe)
    return listener


# ------------------------------------------------------------------------------------ misc


class TcpHolder:
    """A plain TCP listener that hands each accepted connection to the test (which decides
    what the "server" answers, if anything): a relay port where no relay answers."""

    def __init__(self) -> None:
        self.accepted: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()
        self._server: asyncio.Server | None = None

    async def start(self, port: int = 0) -> int:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.accepted.put_nowait(writer)

        self._server = await asyncio.start_server(accept, "127.0.0.1", port)
        return int(self._server.sockets[0].getsockname()[1])

    async def next(self, timeout: float = TIMEOUT) -> asyncio.StreamWriter:
        """The next accepted connection."""
        async with asyncio.timeout(timeout):
            return await self.accepted.get()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        while not self.accepted.empty():
            self.accepted.get_nowait().close()


def free_port() -> int:
    """A TCP port that was free a moment ago (for settings where 0 means "off")."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def http_get(host: str, port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 GET over a raw asyncio socket: (status, headers, body)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), TIMEOUT)  # the server closes after answering
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("ascii").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split(" ")[1]), headers, body
