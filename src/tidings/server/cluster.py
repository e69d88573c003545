"""Several relay nodes on one PostgreSQL database: the asyncio adapter of :mod:`.hints` on Redis.

The database is the truth; Redis carries hints only (docs/nodes.md). A :class:`Cluster`:

- **publishes** what its node's commits mean for devices that have no session on it (items
  queued, a device unlinked, an account's device set changed), coalesced in a
  :class:`~.hints.HintBatch` and flushed by one writer task: everything that arrived while the
  previous round trip was in flight goes in the next one, so a commit batch of 64 sends costs
  one PUBLISH (a Redis publish costs the Python client ~36 µs), whatever the number of devices;
- **subscribes** to the same channel: a device named in another node's hint that has a live
  session here gets :meth:`~.session.Session.recheck` (it reads the store past its cursor),
  an unlinked one is closed, device sets are announced to the account's sessions here;
- keeps a **presence record** per device connected here (``tidings:presence:…`` → this node's
  token, expiring after :data:`~.hints.PRESENCE_TTL`, refreshed every
  :data:`~.hints.PRESENCE_REFRESH`): :meth:`connected_elsewhere` is what keeps the push
  wake-ups of one node from waking a device that is connected to another;
- while Redis is **down**, **polls**: every :data:`~.hints.POLL_INTERVAL` one read of
  ``devices.last_seq`` for the devices connected here, and a recheck of those behind; one more
  poll right after Redis is back (hints published meanwhile are lost). It reconnects with
  :class:`~.hints.Backoff`, and logs each change of state once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from typing import Protocol

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..errors import StoreError
from ..store import DeviceRef
from ..store.pg_errors import redact
from . import hints as h
from .limits import encode_key
from .logs import Throttle
from .metrics import Metrics

__all__ = [
    "POLL_BATCH",
    "REDIS_COMMAND_TIMEOUT",
    "REDIS_CONNECT_TIMEOUT",
    "TAKES_FLUSH_DELAY",
    "Cluster",
    "ClusterHost",
    "LiveSession",
]

log = logging.getLogger("tidings.server")

#: Seconds to open a connection to Redis: on a LAN it takes a millisecond; past 2 s it is down.
REDIS_CONNECT_TIMEOUT = 2.0
#: Seconds for one command (a publish, a presence round trip): the same reasoning.
REDIS_COMMAND_TIMEOUT = 2.0
#: Devices per ``last_seq`` read of a poll: one statement of bounded size per 1,000 devices.
POLL_BATCH = 1000
#: Seconds rate-limit takes may wait for a flush: they ride along with the next hint of items
#: or presence, or go on their own after this long. A client spreading requests over several
#: nodes gains at most what it takes in that time, and a node taking tokens all the time
#: publishes at most 20 take-only messages a second, not one per request.
TAKES_FLUSH_DELAY = 0.05
#: Presence records per pipeline of a refresh: bounds one round trip's size.
REFRESH_BATCH = 1000

#: Drop a presence record only if it is still this node's (the device may have moved on).
_DROP = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end"


class LiveSession(Protocol):
    """What the cluster needs of a session (:class:`~.session.Session`)."""

    @property
    def sent_upto(self) -> int: ...
    def recheck(self) -> None: ...


class ClusterHost(Protocol):
    """What the cluster needs of its relay (:class:`~.app.Relay`)."""

    @property
    def live(self) -> Mapping[DeviceRef, LiveSession]: ...
    def evict_local(self, device: DeviceRef) -> None: ...
    def announce_local(self, account: str, device_ids: tuple[int, ...]) -> None: ...
    def apply_takes(self, takes: Sequence[tuple[str, object, float]]) -> int: ...
    def reload_push(self, devices: Sequence[DeviceRef] | None) -> None: ...


LastSeqs = Callable[[Sequence[DeviceRef]], Awaitable[dict[DeviceRef, int]]]


class Cluster:
    """This node's link to the others (see the module docstring). :meth:`start`, then the
    relay's calls, then :meth:`stop`."""

    def __init__(
        self,
        host: ClusterHost,
        url: str,
        node_id: str,
        last_seqs: LastSeqs,
        metrics: Metrics,
        *,
        poll_interval: float = h.POLL_INTERVAL,
        presence_refresh: float = h.PRESENCE_REFRESH,
        random: Callable[[], float] | None = None,
    ) -> None:
        self._host = host
        self._url = url
        self.node_id = node_id
        #: This process's token: its presence value and its messages' sender (two nodes given
        #: the same id by mistake still tell each other's hints from their own).
        self.token = f"{node_id}#{os.urandom(4).hex()}"
        self._last_seqs = last_seqs
        self._metrics = metrics
        #: Seconds between polls while Redis is down (tests shorten or lengthen it).
        self.poll_interval = poll_interval
        self._refresh = presence_refresh
        self._backoff = h.Backoff(random or (lambda: os.urandom(1)[0] / 256))
        self._batch = h.HintBatch(self.token)
        self._dirty = asyncio.Event()
        self._polling = asyncio.Event()  # set while Redis is down
        self._changed = asyncio.Event()  # set at each change between up and down
        self._first = asyncio.Event()  # the first connection attempt ended
        self._client: Redis | None = None
        self._up = False
        self._polled: dict[DeviceRef, int] = {}  # last_seq at the last recheck a poll caused
        self._store_throttle = Throttle()
        self._tasks: list[asyncio.Task[None]] = []
        self._sweeps: set[asyncio.Task[None]] = set()
        self._writing = False
        self._settled: list[asyncio.Future[None]] = []
        self._takes_timer: asyncio.TimerHandle | None = None

    # ---------------------------------------------------------------- life cycle

    async def start(self) -> None:
        """Connect (one attempt: without Redis the node starts polling, and keeps trying)."""
        self._polling.set()
        self._tasks = [
            asyncio.ensure_future(self._supervise()),
            asyncio.ensure_future(self._poll_loop()),
        ]
        await self._first.wait()

    async def stop(self) -> None:
        """Write what is queued (the dropped presence of the sessions closed on shutdown: other
        nodes may push those devices at once), then disconnect; records left expire by
        themselves."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REDIS_COMMAND_TIMEOUT):
                await self.settle()
        if self._takes_timer is not None:
            self._takes_timer.cancel()
        tasks = [*self._tasks, *self._sweeps]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def state(self) -> str:
        """``"up"``, or ``"down (polling)"`` (what ``/healthz`` says)."""
        return "up" if self._up else "down (polling)"

    # ---------------------------------------------------------------- the relay's calls

    def items(self, devices: Iterable[DeviceRef]) -> None:
        """Items were committed for ``devices``, none of which has a session here."""
        if self._up:
            self._batch.items.update(devices)
            self._dirty.set()

    def evicted(self, device: DeviceRef) -> None:
        """``device`` was unlinked: its session on another node must close."""
        if self._up:
            self._batch.evict.add(device)
            self._dirty.set()

    def announced(self, account: str, device_ids: tuple[int, ...]) -> None:
        """``account``'s device set is now ``device_ids``."""
        if self._up:
            self._batch.devices[account] = device_ids
            self._dirty.set()

    def took(self, name: str, key: Hashable) -> None:
        """A request here took a token of rate-limit budget ``name`` for ``key``: the other
        nodes take it too (the limits are the relay's, not the node's). While Redis is down
        each node's budgets are its own."""
        if self._up:
            self._batch.took(name, key, encode_key(key))
            if self._takes_timer is None:
                loop = asyncio.get_running_loop()
                self._takes_timer = loop.call_later(TAKES_FLUSH_DELAY, self._flush_takes)

    def _flush_takes(self) -> None:
        self._takes_timer = None
        if self._batch.takes:
            self._dirty.set()

    def push_changed(self, device: DeviceRef) -> None:
        """This node changed ``device``'s push subscription in the store: the other nodes
        read it again."""
        if self._up:
            self._batch.push.add(device)
            self._dirty.set()

    def attached(self, device: DeviceRef) -> None:
        """``device`` connected here."""
        if self._up:
            self._batch.attached(device)
            self._dirty.set()

    def detached(self, device: DeviceRef) -> None:
        """``device``'s session here closed."""
        self._polled.pop(device, None)
        if self._up:
            self._batch.detached(device)
            self._dirty.set()

    async def connected_elsewhere(self, device: DeviceRef) -> bool:
        """Whether a presence record says ``device`` is connected to another node. ``False``
        when Redis cannot say: a wake-up too many costs a push, one too few a message."""
        client = self._client
        if client is None:
            return False
        try:
            value = await client.get(h.presence_key(device))
        except (RedisError, OSError):
            return False
        if isinstance(value, bytes):
            value = value.decode()
        return value is not None and value != self.token

    async def settle(self) -> None:
        """Wait until what this node queued for Redis before the call is written (or Redis is
        down): tests use it instead of waiting for a time. Rate-limit takes go at once."""
        if self._up and self._batch.takes:
            self._dirty.set()
        while self._up and (self._dirty.is_set() or self._writing):
            waiter = asyncio.get_running_loop().create_future()
            self._settled.append(waiter)
            await waiter

    def _wake_settled(self) -> None:
        waiters, self._settled = self._settled, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # ---------------------------------------------------------------- connection

    async def _supervise(self) -> None:
        reason = ""
        while True:
            try:
                await self._connected()
            except (RedisError, OSError) as exc:
                reason = str(exc) or type(exc).__name__
            except Exception:  # a bug must not end the reconnecting for good
                log.exception("! redis: the link to the other nodes failed")
                reason = "internal error"
            self._down(reason)
            self._first.set()
            await asyncio.sleep(self._backoff.next())

    async def _connected(self) -> None:
        """One connection's life: subscribe, write the presence of every device here, then
        read, write and refresh until something fails."""
        client = _connect(self._url, REDIS_COMMAND_TIMEOUT)
        # The subscriber waits for messages without a timeout; a dead server closes the socket
        # (a partition is noticed by the writer's and the refresh's commands instead).
        listener = _connect(self._url, None)
        pubsub = listener.pubsub(ignore_subscribe_messages=True)
        tasks: list[asyncio.Task[None]] = []
        try:
            await pubsub.subscribe(h.HINT_CHANNEL)
            await self._write_presence(client, list(self._host.live))
            self._client = client
            self._backoff.reset()
            self._batch.clear()
            self._set_up()
            tasks = [
                asyncio.ensure_future(self._read(pubsub)),
                asyncio.ensure_future(self._write(client)),
                asyncio.ensure_future(self._refresh_loop(client)),
            ]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises what ended it
        finally:
            self._client = None
            self._writing = False
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for close in (pubsub.aclose, client.aclose, listener.aclose):
                with contextlib.suppress(RedisError, OSError):
                    await close()

    def _set_up(self) -> None:
        self._up = True
        self._polling.clear()
        self._changed.set()
        self._metrics.redis_up.set(1)
        log.info("= redis up: %s (hints on)", redact(self._url), extra={"event": "redis.up"})
        if self._first.is_set():  # back after an outage (at start the relay loads them all)
            # Push subscriptions other nodes changed meanwhile were not hinted: read them all.
            self._host.reload_push(None)
        self._first.set()
        # Hints published while this node was not subscribed are lost: look once.
        sweep = asyncio.ensure_future(self._sweep())
        self._sweeps.add(sweep)
        sweep.add_done_callback(self._sweeps.discard)

    def _down(self, reason: str) -> None:
        if self._up or not self._first.is_set():
            log.warning(
                "! redis down: %s: %s; polling the store every %g s until it is back",
                redact(self._url),
                reason,
                self.poll_interval,
                extra={"event": "redis.down"},
            )
        if self._up:
            self._changed.set()
        self._up = False
        self._batch.clear()
        self._polling.set()
        self._metrics.redis_up.set(0)
        self._wake_settled()

    # ---------------------------------------------------------------- the three loops

    async def _read(self, pubsub: PubSub) -> None:
        async for message in pubsub.listen():
            data = message.get("data")
            if isinstance(data, bytes):
                self._received(data)

    def _received(self, data: bytes) -> None:
        try:
            hint = h.decode(data)
        except h.HintError as exc:
            log.warning("! redis: ignored a message on %s: %s", h.HINT_CHANNEL, exc)
            return
        if hint.sender == self.token:
            return
        self._metrics.hints_received.inc()
        live = self._host.live
        for ref in hint.items:
            session = live.get(ref)
            if session is not None:
                self._metrics.hints_woken.inc()
                session.recheck()
        for ref in hint.evict:
            self._host.evict_local(ref)
        for account, ids in hint.devices:
            self._host.announce_local(account, ids)
        if hint.takes and (refused := self._host.apply_takes(hint.takes)):
            log.warning("! redis: ignored %d rate-limit takes of %s", refused, hint.sender)
        if hint.push:
            self._host.reload_push(hint.push)

    async def _write(self, client: Redis) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            hints, present, absent = self._batch.take()
            self._writing = True
            async with client.pipeline(transaction=False) as pipe:
                for hint in hints:
                    pipe.publish(h.HINT_CHANNEL, h.encode(hint))
                ttl = int(h.PRESENCE_TTL)
                for ref in present:
                    pipe.set(h.presence_key(ref), self.token, ex=ttl)
                for ref in absent:
                    pipe.eval(_DROP, 1, h.presence_key(ref), self.token)
                await pipe.execute()
            self._writing = False
            self._wake_settled()
            self._metrics.hint_publishes.inc(len(hints))
            self._metrics.hinted_devices.inc(sum(len(x.items) for x in hints))

    async def _refresh_loop(self, client: Redis) -> None:
        while True:
            await asyncio.sleep(self._refresh)
            await self._write_presence(client, list(self._host.live))

    async def _write_presence(self, client: Redis, devices: list[DeviceRef]) -> None:
        ttl = int(h.PRESENCE_TTL)
        for start in range(0, len(devices), REFRESH_BATCH):
            async with client.pipeline(transaction=False) as pipe:
                for ref in devices[start : start + REFRESH_BATCH]:
                    pipe.set(h.presence_key(ref), self.token, ex=ttl)
                await pipe.execute()

    # ---------------------------------------------------------------- polling

    async def _poll_loop(self) -> None:
        while True:
            await self._polling.wait()
            await self._sweep()
            self._changed.clear()
            try:  # the next poll, or at once when Redis comes back (or goes again)
                async with asyncio.timeout(self.poll_interval):
                    await self._changed.wait()
            except TimeoutError:
                pass

    async def _sweep(self) -> None:
        """Recheck every session here that the store has items past (one read per
        :data:`POLL_BATCH` devices)."""
        live = dict(self._host.live)
        refs = list(live)
        self._metrics.polls.inc()
        for start in range(0, len(refs), POLL_BATCH):
            chunk = refs[start : start + POLL_BATCH]
            try:
                seqs = await self._last_seqs(chunk)
            except StoreError as exc:
                if count := self._store_throttle.hit(asyncio.get_running_loop().time()):
                    log.warning("! poll for items failed (%d times): %s", count, exc)
                return
            for ref in chunk:
                session = self._host.live.get(ref)
                if session is not live[ref]:
                    continue  # closed or replaced meanwhile: the new one reads at HELLO
                last = seqs.get(ref, 0)
                if last > session.sent_upto and last > self._polled.get(ref, 0):
                    self._polled[ref] = last
                    session.recheck()


def _connect(url: str, timeout: float | None) -> Redis:
    """A client of the Redis at ``url`` that does not retry by itself (the cluster does, with
    its backoff, and polls meanwhile)."""
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )
