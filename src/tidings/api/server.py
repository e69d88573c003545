"""The local API's server: JSON-RPC 2.0 lines on a Unix socket in the device home.

One :class:`ApiServer` next to one running :class:`~tidings.client.Client` (``tidings daemon``).
The socket (``api.sock``, mode 0600 like every file of the home) admits the home's owner only;
the device lock guarantees that this process is the only one running the device, so a socket
file left by a killed daemon is stale and replaced.

Per connection, requests are answered in order. ``subscribe`` starts a stream of
``{"method": "event", "params": {…}}`` notifications on that connection (the forms of
:func:`tidings.api.forms.event_json`), from the moment it is answered; ``unsubscribe`` ends it.
A subscriber that stops reading is cut off once :data:`MAX_UNREAD_BYTES` wait for it, rather
than buffered without end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from ..client import Client
from ..client.events import EventStream
from . import unixsock
from .forms import event_json
from .methods import METHODS, call
from .rpc import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    MAX_LINE,
    METHOD_NOT_FOUND,
    ApiError,
    Request,
    error_line,
    notification_line,
    parse_request,
    result_line,
)

__all__ = ["MAX_API_CLIENTS", "MAX_UNREAD_BYTES", "SOCKET_NAME", "ApiServer"]

log = logging.getLogger("tidings.api")

#: The socket's name in the device home.
SOCKET_NAME = "api.sock"
#: Connections served at once: a terminal, a web front end, scripts; more is a runaway loop.
MAX_API_CLIENTS = 32
#: Bytes of answers and events a connection may leave unread before it is cut off (a
#: subscriber that stopped reading must not pin the daemon's memory): ~4,000 events.
MAX_UNREAD_BYTES = 1024 * 1024


class ApiServer:
    """Serves ``client`` on ``home/api.sock`` (see the module docstring)."""

    def __init__(self, client: Client, home: Path) -> None:
        self.client = client
        self.path = home / SOCKET_NAME
        self._server: asyncio.Server | None = None
        self._conns: set[_Connection] = set()

    async def start(self) -> None:
        """Listen (a stale socket file from a killed daemon is replaced)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = unixsock.bind(self.path)
        self._server = await asyncio.start_unix_server(self._accept, sock=sock, limit=MAX_LINE)

    async def close(self) -> None:
        """Stop listening, end every connection, remove the socket file."""
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if self._server is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5.0):
                    await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._conns) >= MAX_API_CLIENTS:
            error = ApiError(
                INVALID_REQUEST, f"too many API connections (at most {MAX_API_CLIENTS})"
            )
            writer.write(error_line(None, error))
            writer.close()
            return
        conn = _Connection(self.client, reader, writer)
        self._conns.add(conn)
        try:
            await conn.serve()
        finally:
            self._conns.discard(conn)
            conn.close()


class _Connection:
    """One API client: its requests in order, and its subscription."""

    def __init__(
        self, client: Client, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.client = client
        self.reader = reader
        self.writer = writer
        self._events: EventStream | None = None
        self._pump: asyncio.Task[None] | None = None

    async def serve(self) -> None:
        while True:
            try:
                line = await self.reader.readline()
            except (ValueError, asyncio.LimitOverrunError):  # longer than MAX_LINE
                self._write(error_line(None, ApiError(INVALID_REQUEST, "line too long")))
                return
            except ConnectionError:
                return
            if not line:
                return  # the client closed
            if not line.strip():
                continue
            try:
                request = parse_request(line)
            except ApiError as exc:
                self._write(error_line(exc.request_id, exc))
                continue
            answer = await self._handle(request)
            if not request.is_notification and answer is not None:
                self._write(answer)
            if self.writer.is_closing():
                return

    async def _handle(self, request: Request) -> bytes | None:
        try:
            if request.method == "subscribe":
                result: Any = self._subscribe()
            elif request.method == "unsubscribe":
                result = self._unsubscribe()
            else:
                method = METHODS.get(request.method)
                if method is None:
                    raise ApiError(METHOD_NOT_FOUND, f"no method {request.method!r}")
                result = await call(self.client, method, request.params)
        except ApiError as exc:
            return error_line(request.id, exc)
        except Exception as exc:  # a bug: answer, log, keep serving
            log.exception("! API method %s failed", request.method)
            return error_line(request.id, ApiError(INTERNAL_ERROR, f"internal error: {exc}"))
        return result_line(request.id, result)

    def _subscribe(self) -> dict[str, Any]:
        if self._events is None:
            self._events = self.client.events()  # registered now: nothing after this is missed
            self._pump = asyncio.ensure_future(self._forward(self._events))
        return {"subscribed": True}

    def _unsubscribe(self) -> dict[str, Any]:
        self._stop_events()
        return {"subscribed": False}

    async def _forward(self, events: EventStream) -> None:
        async for event in events:
            self._write(notification_line("event", event_json(event)))
            if self.writer.is_closing():
                return

    def _write(self, line: bytes) -> None:
        if self.writer.is_closing():
            return
        transport = self.writer.transport
        if transport.get_write_buffer_size() + len(line) > MAX_UNREAD_BYTES:
            log.warning("! an API client stopped reading; closing its connection")
            self.close()
            return
        self.writer.write(line)

    def _stop_events(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None

    def close(self) -> None:
        self._stop_events()
        if not self.writer.is_closing():
            self.writer.close()
