"""Whether the relay's store can write: what ``/healthz`` says, what is logged, when to retry.

When the store cannot write (disk full, I/O error: :class:`~tidings.errors.StoreUnavailable`),
every request that needs a write fails, and would log a traceback each. Instead the session
answers STORE_UNAVAILABLE and reports here; :class:`StoreWatch` logs the condition at most once
per :data:`~tidings.server.logs.REPEAT_LOG_INTERVAL` with the number of failed requests, counts
it, and probes the store with a tiny write every :data:`STORE_PROBE_INTERVAL` until one
succeeds, so ``/healthz`` turns green again even when no client writes (a load balancer that took
the relay out of service sends no traffic to clear it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from ..errors import StoreError, StoreUnavailable
from ..store import Store
from .logs import Throttle
from .metrics import Metrics

__all__ = ["STORE_HEARTBEAT_INTERVAL", "STORE_PROBE_INTERVAL", "STORE_RETRY_AFTER", "StoreWatch"]

log = logging.getLogger("tidings.server")

#: Seconds between probe writes while the store cannot write: ``/healthz`` turns green within
#: this long after an operator freed space, and one page written per 5 s costs nothing.
STORE_PROBE_INTERVAL = 5.0
#: Seconds between probes of a store on the network (PostgreSQL) while it is healthy: such a
#: database can go away while no client writes, and ``/healthz`` (a load balancer's check) must
#: say so within seconds; one tiny ``UPDATE`` per 5 s per node costs the database nothing.
STORE_HEARTBEAT_INTERVAL = 5.0
#: Seconds a sender is asked to wait (REFUSED ``retry_after``) when the store cannot write: the
#: probe interval, so that retries come soon after the store recovered, and not before.
STORE_RETRY_AFTER = STORE_PROBE_INTERVAL


class StoreWatch:
    """The relay's view of its store's health. Call :meth:`failed` for each request that failed
    with :class:`StoreUnavailable`; :meth:`close` on shutdown."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        *,
        probe_interval: float = STORE_PROBE_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._metrics = metrics
        #: Seconds between probes while unavailable (tests shorten it).
        self.probe_interval = probe_interval
        self._clock = clock
        self._throttle = Throttle()
        self._probing: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None

    def start_heartbeat(self, interval: float) -> None:
        """Probe the store every ``interval`` seconds while it is healthy too (a database on
        the network): a failed probe counts as a failed request (:meth:`failed`)."""
        if self._heartbeat is None:
            self._heartbeat = asyncio.ensure_future(self._beat(interval))

    @property
    def state(self) -> str:
        """``"ok"``, ``"full"`` or ``"error: …"`` (what the last write said)."""
        return self.store.stats.unavailable or "ok"

    def failed(self, exc: StoreUnavailable) -> None:
        """A request failed because the store cannot write."""
        self._metrics.store_unavailable.inc()
        self._metrics.store_writable.set(0)
        if count := self._throttle.hit(self._clock()):
            log.error(
                "! store unavailable: %s: answering STORE_UNAVAILABLE until a write succeeds "
                "(requests failed since the last such line: %d)",
                exc.state,
                count,
                extra={"event": "store.unavailable"},
            )
        if self._probing is None or self._probing.done():
            self._probing = asyncio.ensure_future(self._probe_until_writable())

    async def close(self) -> None:
        """Stop probing."""
        for task in (self._probing, self._heartbeat):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _beat(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if self.store.stats.unavailable is not None:
                continue  # the probing after a failure is on it
            try:
                await self.store.probe()
            except StoreUnavailable as exc:
                self.failed(exc)
            except StoreError:
                return  # closed: shutting down

    async def _probe_until_writable(self) -> None:
        while self.store.stats.unavailable is not None:
            await asyncio.sleep(self.probe_interval)
            try:
                await self.store.probe()
            except StoreUnavailable:
                continue
            except StoreError:
                return  # closed: shutting down
        self._metrics.store_writable.set(1)
        log.info("= store writable again", extra={"event": "store.writable"})
