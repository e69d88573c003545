"""The TCP fault proxy on its own event loop thread, for the synchronous scenario scripts.

:class:`ThreadedProxy` starts a :class:`~tidings.lab.proxy.FaultProxy` on a private asyncio loop
in a daemon thread and lets the (blocking) lab controller drive it: every fault method runs on
the proxy's loop, and the call returns once it has taken effect.

Invariants: :meth:`ThreadedProxy.close` closes every proxied connection, stops the loop and
joins the thread; it is idempotent.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .proxy import FaultProxy

__all__ = ["CALL_TIMEOUT", "ThreadedProxy"]

#: Seconds a call into the proxy's loop may take (they are all quick).
CALL_TIMEOUT = 10.0

T = TypeVar("T")


class ThreadedProxy:
    """A started FaultProxy to ``upstream_host:upstream_port``, on ``127.0.0.1:port``."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="lab-proxy", daemon=True
        )
        self._thread.start()
        self.proxy = FaultProxy(upstream_host, upstream_port)
        self._closed = False
        self.port = self._run(self.proxy.start())

    @property
    def url(self) -> str:
        """The relay URL through the proxy."""
        return f"ws://127.0.0.1:{self.port}/v1"

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CALL_TIMEOUT)

    def call(self, method: Callable[..., None], *args: Any) -> None:
        """Run one of the proxy's fault methods on its loop (e.g. ``proxy.half_open``)."""

        async def go() -> None:
            method(*args)

        self._run(go())

    def close(self) -> None:
        """Close the proxy and its connections, stop the loop, join the thread."""
        if self._closed:
            return
        self._closed = True
        try:
            self._run(self.proxy.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CALL_TIMEOUT)
            self._loop.close()
