"""A user-space TCP fault proxy, for machines where the lab cannot use network namespaces.

Put a :class:`FaultProxy` between a client and the relay: the client connects to
``127.0.0.1:<proxy.port>`` and the proxy opens one upstream connection per client connection.
Faults are switched at run time and take effect at once, on existing and new connections:
latency, a stall (blackhole that buffers), a throttle, resets, half-open connections and
refused connects.

Invariants:
    * Each direction of each connection is one reader task and one writer task joined by a FIFO
      queue, so bytes are delivered in order, at most once, or not at all (reset, half-open).
    * Buffering is bounded: at most ``MAX_QUEUED_CHUNKS`` chunks of at most ``READ_CHUNK`` bytes
      (1 MiB) wait per direction; beyond that the proxy stops reading and TCP flow control
      pushes back on the sender, as a congested path would.
    * Nothing polls: tasks wait on socket I/O, the queue, or a change of the fault settings
      (with a deadline when latency or the throttle sets one).
    * A half-open connection is never closed by the proxy and never forwards another byte
      (nor EOF, nor reset) until :meth:`FaultProxy.close`: only an application keepalive can
      notice it.
    * Every fault applied is appended to :attr:`FaultProxy.faults` with its timestamp.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tidings.lab.netns import FaultEvent

__all__ = ["MAX_QUEUED_CHUNKS", "READ_CHUNK", "THROTTLE_SLICES_PER_SECOND", "FaultProxy"]

READ_CHUNK = 64 * 1024
"""Bytes read from a socket at once (the size of asyncio's own stream buffer)."""
MAX_QUEUED_CHUNKS = 16
"""Chunks held per direction: 1 MiB, enough for a multi-second stall of a messaging session
without letting one connection hold unbounded memory."""
THROTTLE_SLICES_PER_SECOND = 20
"""A throttled direction writes ``rate / 20`` bytes every 50 ms: smooth, yet few wake-ups."""

_LISTEN_BACKLOG = 128


@dataclass(slots=True)
class _Chunk:
    data: bytes  # b"" is the sender's EOF
    at: float  # loop time it was read


@dataclass(eq=False, slots=True)
class _Link:
    """One proxied connection: the client side, the upstream side, and their four tasks."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    queues: tuple[asyncio.Queue[_Chunk], asyncio.Queue[_Chunk]] = field(
        default_factory=lambda: (
            asyncio.Queue(MAX_QUEUED_CHUNKS),
            asyncio.Queue(MAX_QUEUED_CHUNKS),
        )
    )
    readers: list[asyncio.Task[None]] = field(default_factory=list)
    writers: list[asyncio.Task[None]] = field(default_factory=list)
    blackholed: bool = False
    eofs_delivered: int = 0


def _abort(writer: asyncio.StreamWriter, *, rst: bool) -> None:
    """Close at once; with ``rst``, SO_LINGER 0 makes the kernel send a TCP RST, not a FIN."""
    sock = writer.get_extra_info("socket")
    if rst and sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # SO_REUSEADDR (set by create_server) lets refuse(False) listen again on the same port.
    return socket.create_server((host, port), family=family, backlog=_LISTEN_BACKLOG)


class FaultProxy:
    """An asyncio TCP proxy to one upstream address, with faults switchable at run time.

    Call order: ``port = await proxy.start()``, then any fault methods (synchronous, from the
    proxy's event loop), then ``await proxy.close()``.

    Attributes:
        faults: every fault applied so far, in order.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Configure the proxy; nothing listens before :meth:`start`.

        Args:
            upstream_host: where to connect for each accepted connection.
            upstream_port: the upstream port.
            listen_host: the address to listen on.
            listen_port: the port to listen on; 0 picks a free one.
            clock: the clock of :attr:`faults` timestamps (the lab's clock).
        """
        self.upstream = (upstream_host, upstream_port)
        self.listen_host = listen_host
        self.port = listen_port
        self.faults: list[FaultEvent] = []
        self._clock = clock
        self._server: asyncio.Server | None = None
        self._relisten: asyncio.Task[None] | None = None
        self._links: set[_Link] = set()
        self._pending: set[asyncio.Task[None]] = set()
        self._latency = 0.0
        self._stalled = False
        self._rate: int | None = None
        self._refusing = False
        self._closed = False
        self._changed = asyncio.Event()

    async def start(self) -> int:
        """Start listening; return the listening port."""
        sock = _listen(self.listen_host, self.port)
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._accept, sock=sock)
        return self.port

    async def close(self) -> None:
        """Stop listening and close every connection, half-open ones included."""
        self._closed = True
        if self._relisten is not None:
            await asyncio.gather(self._relisten, return_exceptions=True)
        if self._server is not None:
            self._server.close()
        tasks = list(self._pending)
        for link in list(self._links):
            tasks += link.readers + link.writers
            self._finish(link, rst=False)
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # Faults.

    def _record(self, kind: str, detail: str = "") -> None:
        self.faults.append(
            FaultEvent(self._clock(), kind, f"{self.listen_host}:{self.port}", detail)
        )

    def _notify(self) -> None:
        """Wake every writer so it re-reads the fault settings."""
        self._changed.set()
        self._changed = asyncio.Event()

    def latency(self, seconds: float) -> None:
        """Delay every chunk by ``seconds`` in each direction (counted from when it was read)."""
        if seconds < 0:
            raise ValueError(f"latency must be >= 0, not {seconds}")
        self._latency = seconds
        self._record("latency", f"{seconds} s")
        self._notify()

    def stall(self) -> None:
        """Stop delivering (keep reading into the bounded buffers) until :meth:`resume`."""
        self._stalled = True
        self._record("stall")
        self._notify()

    def resume(self) -> None:
        """End a stall: buffered bytes are delivered, in order."""
        self._stalled = False
        self._record("resume")
        self._notify()

    def throttle(self, bytes_per_second: int | None) -> None:
        """Limit each direction of each connection to ``bytes_per_second``; ``None`` lifts it."""
        if bytes_per_second is not None and bytes_per_second <= 0:
            raise ValueError(f"throttle must be > 0 bytes/s or None, not {bytes_per_second}")
        self._rate = bytes_per_second
        self._record("throttle", "off" if bytes_per_second is None else f"{bytes_per_second} B/s")
        self._notify()

    def reset_all(self) -> None:
        """Abort every current connection (half-open ones too) with a TCP RST on both sides.

        Bytes the proxy still buffers are lost, as in a middlebox that drops its state.
        """
        for link in list(self._links):
            self._finish(link, rst=True)
        self._record("reset_all")

    def half_open(self) -> None:
        """Make every current connection half-open: forward nothing more, close nothing.

        Both peers still believe they are connected; what they send is read and discarded (it
        vanishes as on a dead path), and their EOFs and resets are not passed on.
        """
        for link in self._links:
            link.blackholed = True
            for task in link.writers:
                task.cancel()
            for queue in link.queues:  # unblocks a reader waiting on a full queue
                while not queue.empty():
                    queue.get_nowait()
        self._record("half_open")

    def refuse(self, refusing: bool) -> None:
        """Refuse new connections (stop listening: connects get ECONNREFUSED), or accept again.

        Existing connections are not affected.
        """
        if refusing == self._refusing or self._closed:
            return
        self._refusing = refusing
        if refusing:
            if self._server is not None:
                self._server.close()
        else:
            # The socket listens now; the task only hands it to the event loop.
            sock = _listen(self.listen_host, self.port)
            self._relisten = asyncio.create_task(self._serve(sock))
        self._record("refuse", "on" if refusing else "off")

    async def _serve(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_server(self._accept, sock=sock)

    # Connections.

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pending.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _abort(writer, rst=True)  # the upstream refused: so does the proxy
            return
        finally:
            self._pending.discard(task)
        if self._closed:
            _abort(writer, rst=False)
            _abort(up_writer, rst=False)
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        to_up, to_client = link.queues
        link.readers = [
            asyncio.create_task(self._read(link, reader, to_up)),
            asyncio.create_task(self._read(link, up_reader, to_client)),
        ]
        link.writers = [
            asyncio.create_task(self._write(link, to_up, up_writer)),
            asyncio.create_task(self._write(link, to_client, writer)),
        ]

    def _finish(self, link: _Link, *, rst: bool) -> None:
        """Close both sides of ``link`` at once and stop its tasks (except the caller)."""
        self._links.discard(link)
        current = asyncio.current_task()
        for task in link.readers + link.writers:
            if task is not current:
                task.cancel()
        _abort(link.client, rst=rst)
        _abort(link.upstream, rst=rst)

    async def _read(
        self, link: _Link, source: asyncio.StreamReader, queue: asyncio.Queue[_Chunk]
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await source.read(READ_CHUNK)
            except OSError:
                if not link.blackholed:
                    self._finish(link, rst=True)  # pass the reset on
                return
            if link.blackholed:
                if not data:
                    return
                continue  # half-open: what is sent vanishes
            await queue.put(_Chunk(data, loop.time()))
            if not data:
                return

    async def _write(
        self, link: _Link, queue: asyncio.Queue[_Chunk], sink: asyncio.StreamWriter
    ) -> None:
        while True:
            chunk = await queue.get()
            try:
                if not chunk.data:
                    await self._hold(chunk.at)
                    sink.write_eof()
                    break
                await self._deliver(chunk, sink)
            except OSError:
                self._finish(link, rst=True)
                return
        link.eofs_delivered += 1
        if link.eofs_delivered == 2:  # both directions ended cleanly
            self._links.discard(link)
            sink.close()
            (link.client if sink is link.upstream else link.upstream).close()

    async def _wait_change(self, timeout: float | None) -> None:
        """Wait until a fault setting changes, or ``timeout`` seconds pass."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._changed.wait()

    async def _hold(self, read_at: float) -> None:
        """Wait while stalled, and until the chunk read at ``read_at`` has had its latency."""
        loop = asyncio.get_running_loop()
        while True:
            if self._stalled:
                await self._wait_change(None)
                continue
            delay = read_at + self._latency - loop.time()
            if delay <= 0:
                return
            await self._wait_change(delay)

    async def _deliver(self, chunk: _Chunk, sink: asyncio.StreamWriter) -> None:
        """Write one chunk, in throttle-sized slices, honouring stalls between slices."""
        data = chunk.data
        while data:
            await self._hold(chunk.at)
            rate = self._rate
            size = len(data) if rate is None else max(1, rate // THROTTLE_SLICES_PER_SECOND)
            piece, data = data[:size], data[size:]
            sink.write(piece)
            await sink.drain()
            if rate is not None:
                await self._wait_change(len(piece) / rate)
