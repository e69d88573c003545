"""Opening a connection to a relay, registering a device, and watching TCP acknowledgements.

``register()`` is the one-shot flow that creates this device's identity: it generates the Noise
static key, connects, sends REGISTER (with a link code to join an existing account), and saves
the identity only once the server answered REGISTERED. It then creates the device's end-to-end
identity key and prekeys and uploads them on the same connection (HELLO, PREKEYS_UPLOAD), so
other devices can start sessions with it at once; if that upload fails, the client uploads them
when it first connects.

A relay named by a host name is resolved on every attempt and the addresses are tried in the
order :class:`~tidings.client.addresses.RelayAddresses` plans (the resolver's, then the last
good one), each :data:`ATTEMPT_DELAY` after the previous one if that one is still trying, as
RFC 8305 ("Happy Eyeballs") staggers them: a resolver that is down, failing or stale costs a
device at most a lookup and an attempt delay, never its relay.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlparse

from picows import WSError, ws_connect

from ..errors import ConfigError, ConnectionBroken, HandshakeError, RefusedError, RelayUnreachable
from ..net.channel import (
    Channel,
    ChannelClosed,
    Event,
    FrameReceived,
    HandshakeDone,
    KeepaliveParams,
)
from ..net.timers import Timers
from ..net.ws import MAX_WS_FRAME, ChannelConnection, tcp_bytes_acked, tcp_unacked_bytes
from ..noise import PipesInitiator, generate_keypair
from ..wire import (
    PROLOGUE,
    PROTOCOL_VERSION,
    Hello,
    PrekeysStored,
    PrekeysUpload,
    Register,
    Registered,
    RequestFailed,
    Welcome,
)
from .addresses import RelayAddresses
from .certs import save_link_proof, split_link_code
from .config import DEFAULT_KEEPALIVE_SECONDS, DEFAULT_KEEPALIVE_TIMEOUT_SECONDS, HANDSHAKE_TIMEOUT
from .home import DB_NAME as DB_NAME
from .home import prepare_home
from .prekeys import DeviceKeys
from .relays import parse_relay_urls
from .sealed_keys import new_profile_key
from .store import ClientStore, Identity

#: Client keepalive by default: ping after 5 s of silence, declare the connection dead after 10 s.
#: A dead WiFi link or a handoff is noticed in ≤ 10 s instead of TCP's minutes of retransmissions
#: (G7). A device's own timing is its :class:`~tidings.client.config.ClientConfig`.
CLIENT_KEEPALIVE = KeepaliveParams(
    ping_interval=DEFAULT_KEEPALIVE_SECONDS,
    dead_after=DEFAULT_KEEPALIVE_TIMEOUT_SECONDS,
    handshake_timeout=HANDSHAKE_TIMEOUT,
)

#: Seconds to wait for the TCP + WebSocket connection to open.
CONNECT_TIMEOUT = 10.0
#: The path the relay answers WebSocket upgrades on (the server's ``WS_PATH``): a URL without
#: it gets a 404, and the error says which URL to use.
RELAY_PATH = "/v1"

#: Seconds to wait for the resolver: glibc's own per-try timeout. A resolver silent for longer
#: is down, and the last good address is tried instead.
RESOLVE_TIMEOUT = 5.0

#: Seconds before the next address is tried while the previous attempt is still connecting
#: (RFC 8305 §5's recommended "Connection Attempt Delay"): a stale address that black-holes
#: SYNs costs a quarter second, not the connect timeout.
ATTEMPT_DELAY = 0.25


async def resolve(host: str, port: int) -> list[str]:
    """The addresses of ``host`` (the system resolver, at most :data:`RESOLVE_TIMEOUT`).

    Raises:
        OSError: the resolver failed (``socket.gaierror``: no such name, SERVFAIL, …).
        RelayUnreachable: it did not answer in time.
    """
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        reason = f"the resolver did not answer for {host!r} within {RESOLVE_TIMEOUT:g} s"
        raise RelayUnreachable(host, reason) from None
    return [str(info[4][0]) for info in infos]


async def _connect_one(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (address, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _close_won(task: asyncio.Task[socket.socket]) -> None:
    """A losing attempt that connected anyway: close its socket."""
    if not task.cancelled() and task.exception() is None:
        task.result().close()


async def connect_first(
    addresses: list[str], port: int, trusted: str | None = None
) -> tuple[socket.socket, str]:
    """Connect to the first of ``addresses`` that answers, starting each next one
    :data:`ATTEMPT_DELAY` after the previous (or at once when it failed); the others are
    cancelled (RFC 8305 §5). Once ``trusted`` (the last good address) has failed, the attempts
    still running get :data:`TRUSTED_FAILED_GRACE` more seconds, not the whole connect timeout.

    Raises:
        OSError: every address failed, or ``trusted`` did and the rest did not answer within
            the grace (the first error).
    """
    pending: dict[asyncio.Task[socket.socket], str] = {}
    errors: list[BaseException] = []
    queue = list(addresses)
    give_up: float | None = None  # the loop time after which the rest is not waited for
    loop = asyncio.get_running_loop()
    try:
        while queue or pending:
            if queue:
                address = queue.pop(0)
                pending[asyncio.ensure_future(_connect_one(address, port))] = address
            wait = ATTEMPT_DELAY if queue else None
            if give_up is not None:
                left = max(0.0, give_up - loop.time())
                wait = left if wait is None else min(wait, left)
            done, _ = await asyncio.wait(pending, timeout=wait, return_when="FIRST_COMPLETED")
            for task in done:
                address = pending.pop(task)
                exc = task.exception()
                if exc is None:
                    return task.result(), address
                errors.append(exc)
                if address == trusted:
                    give_up = loop.time() + TRUSTED_FAILED_GRACE
            if give_up is not None and not done and not queue and loop.time() >= give_up:
                break
    finally:
        for task in pending:
            task.cancel()
            task.add_done_callback(_close_won)
    if errors and isinstance(errors[0], OSError):
        raise errors[0]
    raise OSError(f"no address could be connected ({errors[0] if errors else 'none'})")


#: Seconds the other attempts still get once the last good address failed (the relay is down
#: or restarting there): an unproven address that answers at all does so in one round trip
#: (plus a lost SYN's 1 s retransmission); a stale one that black-holes SYNs then costs 2 s, not
#: the rest of the connect timeout, and the backoff tries both again soon.
TRUSTED_FAILED_GRACE = 2.0


def peer_address(conn: ChannelConnection) -> str | None:
    """The IP address ``conn`` is connected to, if it is still known."""
    if conn.transport is None:
        return None
    peer = conn.transport.underlying_transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else None


async def open_channel(
    url: str,
    handler: object,
    static_private: bytes | None,
    server_key: bytes | None,
    keepalive: KeepaliveParams = CLIENT_KEEPALIVE,
    rng: Callable[[int], bytes] = os.urandom,
    addresses: RelayAddresses | None = None,
    timers: Timers | None = None,
) -> ChannelConnection:
    """Connect and start the Noise handshake; ``handler`` gets the channel's events.

    ``static_private`` ``None``: an *unidentified* session (Noise NK to the pinned
    ``server_key``, docs/protocol.md §14.1), which proves no key of this device.

    ``timers``: where the connection's deadlines run (default: the loop's own, on the
    monotonic clock; tests pass a :class:`~tidings.net.timers.VirtualTimers`).

    With ``addresses`` (the caller's, kept across attempts), a host name is resolved here and
    the addresses tried as :class:`~tidings.client.addresses.RelayAddresses` plans; the caller
    confirms an address once its handshake succeeded (:func:`peer_address`). Without, the host
    is resolved as the WebSocket library does (registration: a first contact has no last good
    address anyway).

    A ``wss://`` URL is verified against the system's trust store (``ssl.create_default_context``:
    certificate chain and host name; ``SSL_CERT_FILE`` names another CA bundle, e.g. a private
    CA). The Noise handshake that follows authenticates the relay either way (its pinned key).

    Raises:
        RelayUnreachable: no connection could be opened; ``reason`` says why in one line.
    """

    def make_channel(now: float) -> Channel:
        initiator = PipesInitiator(
            static_private, server_static=server_key, prologue=PROLOGUE, rng=rng
        )
        return Channel(initiator, keepalive, now)

    class _Conn(ChannelConnection):
        def after_connect(self) -> None:
            assert self.channel is not None
            self.channel.start()

    parsed = urlparse(url)
    tls = ssl.create_default_context() if parsed.scheme == "wss" else None
    port = parsed.port or (443 if tls is not None else 80)

    async def planned_socket(_: object) -> socket.socket | None:
        if addresses is None or addresses.literal:
            return None  # picows connects by itself
        try:
            resolved: list[str] | None = await resolve(addresses.host, port)
            failure: Exception | None = None
        except (OSError, RelayUnreachable) as exc:
            resolved, failure = None, exc
        plan = addresses.plan(resolved)
        if not plan:
            assert failure is not None
            raise failure
        sock, _ = await connect_first(plan, port, trusted=addresses.last_good)
        return sock

    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            _, listener = await ws_connect(
                lambda: _Conn(make_channel, handler, timers),  # type: ignore[arg-type]
                url,
                socket_factory=planned_socket,
                ssl_context=tls,
                use_aiofastnet=False,  # its TLS transport logs a broken traceback on failures
                websocket_handshake_timeout=CONNECT_TIMEOUT,
                read_buffer_init_size=4096,
                max_frame_size=MAX_WS_FRAME,  # picows' default is 10 MiB: refuse from the header
            )
    except RelayUnreachable as exc:
        raise RelayUnreachable(url, exc.reason) from exc
    except (OSError, WSError, TimeoutError, EOFError) as exc:
        raise RelayUnreachable(url, why_unreachable(exc, url)) from exc
    if not isinstance(listener, ChannelConnection):
        # picows returns no listener when the server cut the connection during the upgrade.
        raise RelayUnreachable(url, "the server closed the connection during the WebSocket upgrade")
    return listener


def why_unreachable(exc: BaseException, url: str) -> str:
    """One line for people: why a connection to ``url`` could not be opened."""
    parsed = urlparse(url)
    host = parsed.hostname or url
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or str(exc)
        return (
            f"TLS: the certificate of {host} is not trusted ({detail}); "
            "set SSL_CERT_FILE to a CA bundle that has its issuer"
        )
    if isinstance(exc, ssl.SSLError):
        detail = exc.reason or exc.strerror or type(exc).__name__
        return f"TLS handshake failed ({detail}): is this a TLS (wss://) endpoint?"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host {host!r} ({exc.strerror})"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {parsed.netloc} (is the relay running?)"
    if isinstance(exc, TimeoutError):
        if parsed.scheme == "wss":
            return (
                f"no answer within {CONNECT_TIMEOUT:g} s (if the relay has no TLS in front of "
                "it, use ws://)"
            )
        return f"no answer within {CONNECT_TIMEOUT:g} s"
    if isinstance(exc, WSError):
        hint = ""
        if "404" in str(exc) and parsed.path.rstrip("/") != RELAY_PATH:
            # the relay answers only on its path: `ws://host:7400` was typed for `…/v1`
            fixed = parsed._replace(path=RELAY_PATH).geturl()
            hint = f"; the relay listens on {RELAY_PATH}: try {fixed}"
        return f"the WebSocket upgrade failed ({exc}){hint}"
    if isinstance(exc, EOFError | ConnectionResetError | BrokenPipeError) or (
        isinstance(exc, OSError) and not exc.strerror and not str(exc)
    ):
        hint = " (a TLS endpoint? use wss://)" if parsed.scheme == "ws" else ""
        if parsed.scheme == "wss":
            hint = " (not a TLS endpoint? use ws://)"
        return f"the server closed the connection before the WebSocket upgrade{hint}"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return str(exc) or type(exc).__name__


class _Registrar:
    """Channel handler for the one-shot registration flow."""

    def __init__(self, frame: Register) -> None:
        self.frame = frame
        self.done: asyncio.Future[tuple[Registered, bytes]] = (
            asyncio.get_running_loop().create_future()
        )
        self.server_key = b""
        #: The answer to the prekey upload (PREKEYS_STORED, or REQUEST_FAILED).
        self.uploaded: asyncio.Future[PrekeysStored | RequestFailed] = (
            asyncio.get_running_loop().create_future()
        )
        self.welcomed = asyncio.Event()

    def on_channel_event(self, conn: ChannelConnection, event: Event) -> None:
        if isinstance(event, HandshakeDone):
            self.server_key = event.remote_static
            conn.send_frame(self.frame)
        elif isinstance(event, FrameReceived) and isinstance(event.frame, Registered):
            if not self.done.done():
                self.done.set_result((event.frame, self.server_key))
        elif isinstance(event, FrameReceived) and isinstance(event.frame, Welcome):
            self.welcomed.set()
        elif isinstance(event, FrameReceived) and isinstance(
            event.frame, PrekeysStored | RequestFailed
        ):
            if not self.uploaded.done():
                self.uploaded.set_result(event.frame)
        elif isinstance(event, ChannelClosed):
            self._lost()
            if not self.done.done():
                exc: Exception = RefusedError(event.code, event.reason)
                if not event.by_peer and event.code == 19:
                    exc = HandshakeError(event.reason)
                self.done.set_exception(exc)

    def on_disconnected(self, conn: ChannelConnection) -> None:
        self._lost()
        if not self.done.done():
            self.done.set_exception(ConnectionBroken("connection lost during registration"))

    def _lost(self) -> None:
        """The connection is over: stop waiting for the prekey upload."""
        self.welcomed.set()
        if not self.uploaded.done():
            self.uploaded.set_exception(ConnectionBroken("connection lost"))
            self.uploaded.exception()  # retrieved: the upload is optional here


async def register(
    home: Path,
    url: str | Sequence[str],
    account: str,
    device_name: str = "",
    link_code: bytes | None = None,
    server_key: bytes | None = None,
) -> Identity:
    """Register a new device and save its identity in ``home``.

    Without ``link_code`` this creates ``account`` (device 1); with one (from ``tidings
    link-code`` on an existing device) it adds a device to the account.

    ``url`` may be several URLs of one relay (its nodes; a string may list them comma-separated),
    preferred first: all are kept, and the registration goes to the first one that can be
    reached (an attempt that could not connect sent nothing, so the next one is safe).

    The home is made 0700 and its files 0600 (:mod:`tidings.client.home`).

    Raises:
        ConfigError: ``home`` already holds an identity or cannot be created, or a URL is
            invalid (then nothing is created).
        RefusedError: the server refused (account exists, invalid link code, …).
        ConnectionBroken: the server cannot be reached (:class:`RelayUnreachable`: at none of
            the URLs; the reason is the first URL's).
    """
    urls = parse_relay_urls([url] if isinstance(url, str) else url)
    with ClientStore(prepare_home(home, create=True)) as store:
        if store.get_identity() is not None:
            raise ConfigError(f"{home} already holds a registered device")
        private, _ = generate_keypair(os.urandom)
        relay_code = None if link_code is None else split_link_code(link_code)[0]
        frame = Register(PROTOCOL_VERSION, account, device_name or account, relay_code)
        registrar = _Registrar(frame)
        conn, used = await _open_first(urls, registrar, private, server_key)
        try:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    registered, key = await registrar.done
            except TimeoutError:
                raise RelayUnreachable(
                    used, f"no answer to the registration within {CONNECT_TIMEOUT:g} s"
                ) from None
            identity = Identity(
                private,
                registered.account,
                registered.device_id,
                frame.device_name,
                urls[0],
                key,
                alternate_urls=urls[1:],
            )
            store.save_identity(identity)
            DeviceKeys.create(store, time.time())
            if link_code is None:  # the account's profile key (sealed sender, protocol §14.1)
                store.set_profile_key(new_profile_key(identity.device_id, time.time()))
            if link_code is not None:  # its proof of the code's secret (protocol §6.31)
                save_link_proof(store, link_code, identity.account, identity.device_id)
            await _upload_prekeys(conn, registrar, store)
        finally:
            conn.close()
        return identity


async def _open_first(
    urls: Sequence[str], registrar: _Registrar, private: bytes, server_key: bytes | None
) -> tuple[ChannelConnection, str]:
    """The registration's connection: to the first of ``urls`` that can be reached."""
    first: RelayUnreachable | None = None
    for url in urls:
        try:
            return await open_channel(url, registrar, private, server_key), url
        except RelayUnreachable as exc:
            first = first or exc
    assert first is not None
    raise first


async def _upload_prekeys(
    conn: ChannelConnection, registrar: _Registrar, store: ClientStore
) -> None:
    """Upload the new device's prekeys on the registration connection. A failure is left for
    the client's first connection, which uploads whatever is not uploaded yet."""
    keys = DeviceKeys(store)
    upload: PrekeysUpload
    upload, sent = keys.upload(1)
    try:
        conn.send_frame(Hello(PROTOCOL_VERSION, 0))
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await registrar.welcomed.wait()
        conn.send_frame(upload)
        async with asyncio.timeout(CONNECT_TIMEOUT):
            answer = await registrar.uploaded
    except (TimeoutError, ConnectionBroken, RefusedError):
        return
    if isinstance(answer, PrekeysStored):
        store.mark_uploaded(sent)


class TcpAckWatcher:
    """Finds when the server's TCP stack acknowledged the bytes of a write (Linux TCP_INFO).

    After a write, the bytes are acknowledged once ``tcpi_bytes_acked`` has grown by what was
    queued in the kernel (SIOCOUTQ) at the time of the write. Polls every ``POLL`` seconds while
    writes are outstanding, for at most ``GIVE_UP`` seconds each.
    """

    POLL = 0.001
    GIVE_UP = 5.0

    def __init__(
        self, on_acked: Callable[[list[bytes], float], None], clock: Callable[[], float] = time.time
    ) -> None:
        self._on_acked = on_acked
        self._clock = clock  # the wall clock the ack time is reported on (a trace time)
        self._pending: list[tuple[int, list[bytes], float]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sock: object | None = None
        self.available = True

    def written(self, conn: ChannelConnection, ids: list[bytes]) -> None:
        """``ids`` were just written on ``conn``."""
        if not self.available or conn.transport is None or conn.transport.is_disconnected:
            return
        transport = conn.transport.underlying_transport
        if transport.is_closing():
            return
        sock = transport.get_extra_info("socket")
        acked = tcp_bytes_acked(sock) if sock is not None else None
        queued = tcp_unacked_bytes(sock) if sock is not None else None
        if acked is None or queued is None:
            if sock is None or sock.fileno() >= 0:
                self.available = False  # no TCP_INFO here (not Linux): say "unavailable"
            return
        self._sock = sock
        target = acked + queued + transport.get_write_buffer_size()
        self._pending.append((target, ids, time.monotonic()))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.POLL, self._poll)

    def reset(self) -> None:
        """The connection is gone: forget outstanding writes."""
        self._pending.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def poll_now(self) -> None:
        """Check at once (call before handling an answer, so the TCP ack is seen first)."""
        if self._pending:
            if self._timer is not None:
                self._timer.cancel()
            self._poll()

    def _poll(self) -> None:
        self._timer = None
        acked = tcp_bytes_acked(self._sock) if self._sock is not None else None  # type: ignore[arg-type]
        now = time.monotonic()
        keep = []
        for target, ids, since in self._pending:
            if acked is not None and acked >= target:
                self._on_acked(ids, self._clock())
            elif now - since < self.GIVE_UP:
                keep.append((target, ids, since))
        self._pending = keep
        if keep:
            self._timer = asyncio.get_running_loop().call_later(self.POLL, self._poll)
