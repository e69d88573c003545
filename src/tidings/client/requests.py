"""Requests to the relay that get one answer each, matched by request id (GET_DEVICES,
LINK_CODE_REQUEST, PREKEY_FETCH, PREKEYS_UPLOAD; protocol §6).

Ids start at 1 and grow per client; an answer with id 0 answers nothing (the relay's unsolicited
DEVICES). A REQUEST_FAILED fails its request with :class:`~tidings.errors.RefusedError`; a lost
connection fails every pending one with :class:`~tidings.errors.ConnectionBroken`, since the
relay forgets a connection's requests with it.
"""

from __future__ import annotations

import asyncio

from ..errors import ConnectionBroken, RefusedError
from ..wire import RequestFailed

__all__ = ["Requests"]


class Requests:
    """The pending requests of one client."""

    def __init__(self) -> None:
        self._pending: dict[int, asyncio.Future[object]] = {}
        self._last_id = 0

    def new(self) -> tuple[int, asyncio.Future[object]]:
        """A fresh request id and the future its answer resolves."""
        self._last_id += 1
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._pending[self._last_id] = fut
        return self._last_id, fut

    def answered(self, request_id: int, frame: object) -> None:
        """``frame`` answers request ``request_id`` (an unknown id is ignored)."""
        fut = self._pending.pop(request_id, None)
        if fut is not None and not fut.done():
            fut.set_result(frame)

    def failed(self, frame: RequestFailed) -> None:
        """The relay refused request ``frame.request_id``."""
        fut = self._pending.pop(frame.request_id, None)
        if fut is not None and not fut.done():
            fut.set_exception(RefusedError(frame.code, frame.reason, frame.retry_after))

    def disconnected(self, exc: ConnectionBroken) -> None:
        """The connection is gone: every pending request fails with ``exc``."""
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(exc)
