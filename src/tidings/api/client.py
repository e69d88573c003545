"""A client of the local API (for scripts, the tests and the CLI): ``await ApiClient.open(home)``.

::

    api = await ApiClient.open(Path("~/.tidings-alice").expanduser())
    mid = (await api.call("send", to="bob", text="hi"))["message_id"]
    await api.call("subscribe")
    event = await api.next_event(30)      # {"event": "status", "message_id": …, …}
    await api.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from . import unixsock
from .rpc import MAX_LINE, ApiError
from .server import SOCKET_NAME

__all__ = ["ApiClient"]


class ApiClient:
    """One connection to a daemon's API."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        #: Answers that match no call() (to lines sent with send_line/send_raw).
        self._raw: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._closed = asyncio.Event()
        self._task = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, home: Path) -> ApiClient:
        """Connect to the daemon of the device in ``home``.

        Raises:
            OSError: no daemon serves that home (``FileNotFoundError``: no socket;
                ``ConnectionRefusedError``: a stale one).
        """
        sock = unixsock.connect(home / SOCKET_NAME)
        sock.setblocking(False)
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_LINE)
        return cls(reader, writer)

    async def call(self, method: str, **params: Any) -> Any:
        """Call ``method`` with named ``params``; its result.

        Raises:
            ApiError: the error answer (``code``, ``message``, ``data``).
            ConnectionError: the daemon closed the connection.
        """
        self._ids += 1
        rid = self._ids
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        self.send_line({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        return await fut

    def send_line(self, obj: Any) -> None:
        """Write one raw JSON line (for tests of malformed requests)."""
        self._writer.write(json.dumps(obj).encode() + b"\n")

    def send_raw(self, data: bytes) -> None:
        """Write raw bytes."""
        self._writer.write(data)

    def pending_events(self) -> int:
        """Event notifications received and not yet taken."""
        return self._events.qsize()

    async def next_event(self, timeout: float | None = None) -> dict[str, Any]:
        """The next event notification's params (after ``subscribe``)."""
        async with asyncio.timeout(timeout):
            return await self._events.get()

    async def next_answer(self, timeout: float | None = None) -> dict[str, Any]:
        """The next answer to a line sent with :meth:`send_line` (a whole response object)."""
        async with asyncio.timeout(timeout):
            return await self._raw.get()

    async def wait_closed(self, timeout: float | None = None) -> None:
        """Until the daemon closes the connection."""
        async with asyncio.timeout(timeout):
            await self._closed.wait()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task

    async def _read(self) -> None:
        try:
            while line := await self._reader.readline():
                msg = json.loads(line)
                if "method" in msg:
                    if msg["method"] == "event":
                        self._events.put_nowait(msg["params"])
                    continue
                rid = msg.get("id")
                fut = self._pending.pop(rid, None) if isinstance(rid, int) else None
                if fut is None:
                    self._raw.put_nowait(msg)
                elif "error" in msg:
                    err = msg["error"]
                    fut.set_exception(ApiError(err["code"], err["message"], err.get("data")))
                else:
                    fut.set_result(msg.get("result"))
        except (ConnectionError, ValueError):
            pass
        finally:
            self._closed.set()
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("the daemon closed the connection"))
