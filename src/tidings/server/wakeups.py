"""The relay's push wake-ups: the asyncio adapter of :class:`~.wake_schedule.WakeScheduler`.

:class:`WakeUps` keeps the scheduler's decisions durable (every changed
:class:`~tidings.store.PushSubscription` is written to the store, in order, before it is acted
on) and makes the POSTs it asks for: an RFC 8030 push message whose body is RFC 8291
``aes128gcm`` of a random nonce and nothing else (no sender, no text, no ids), with ``TTL``,
``Urgency``, ``Topic`` (one pending wake-up per device at the push service too) and VAPID
``Authorization`` (RFC 8292). It makes no decision of its own: what to send when, retries and
dead endpoints are the scheduler's.

Endpoints are checked twice against the SSRF rules of :mod:`tidings.push.endpoint`: when a
device registers one (its host resolved here), and on every connection the POSTs make (the
connector's resolver checks what it resolved), so a host that answered a public address at
registration cannot be pointed at the relay's loopback later.

Inputs: :meth:`register` / :meth:`unregister` / :meth:`status` (a device's requests, through its
session), :meth:`queued` (an item for a device without a connection), :meth:`connected` (a
device opened a session). Start with :meth:`start` (loads the stored state, resumes pending
wake-ups, and wakes devices whose queue holds items but whose flag a crash kept from being
stored), stop with :meth:`stop`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from cryptography.hazmat.primitives.asymmetric import ec

from ..errors import StoreError
from ..push import vapid, webpush
from ..push.endpoint import EndpointRefused, check_endpoint, endpoint_host
from ..store import DeviceRef, PushSubscription, Store
from ..wire import PushState
from .config import ServerConfig
from .core_actions import PushInfo
from .metrics import Metrics
from .wake_schedule import DEFAULT_TIMING, WakeScheduler, WakeTiming

__all__ = [
    "NONCE_LEN",
    "PUSH_CONNECT_TIMEOUT",
    "PUSH_MAX_IN_FLIGHT",
    "PUSH_REQUEST_TIMEOUT",
    "PUSH_RESOLVE_TIMEOUT",
    "PUSH_TTL",
    "TOPIC",
    "URGENCY",
    "WAKE_PAD",
    "PushAnswer",
    "WakeUps",
]

log = logging.getLogger("tidings.server")

#: Seconds the push service keeps a wake-up for a device it cannot reach (RFC 8030 §5.2 TTL): a
#: day covers a phone off overnight; past it the scheduler sends a new one (``rewake_after``).
PUSH_TTL = 24 * 3600
#: RFC 8030 §5.3: "high" is for what a person waits for. A message is; push services (FCM on
#: Android in Doze) hold lower urgencies back for minutes, the "nothing until I open the app".
URGENCY = "high"
#: RFC 8030 §5.4: a newer message with the same topic replaces one the push service still holds
#: for the subscription, so a device never gets a backlog of wake-ups. Each subscription is one
#: device's: one constant topic coalesces per device. (At most 32 base64url characters.)
TOPIC = "tidings-wake"
#: Bytes of the random nonce that is the whole plaintext: a push service or an observer of the
#: device's network learns only that a wake-up came.
NONCE_LEN = 16
#: Plaintext bytes every record is padded to (a constant size: no wake-up looks different).
WAKE_PAD = 64
#: Seconds to open a connection to a push service: a healthy one answers in well under one.
PUSH_CONNECT_TIMEOUT = 10.0
#: Seconds for a whole POST: past it the attempt counts as failed and is retried with backoff.
PUSH_REQUEST_TIMEOUT = 30.0
#: Seconds to resolve a registered endpoint's host (the registration waits for it).
PUSH_RESOLVE_TIMEOUT = 5.0
#: POSTs in flight at once: bounds sockets and memory when a relay wakes thousands together.
PUSH_MAX_IN_FLIGHT = 64
#: Bytes of a push service's answer read at most (its body says nothing the relay uses).
MAX_ANSWER = 4096


@dataclass(frozen=True, slots=True)
class PushAnswer:
    """What a POST came to: the HTTP ``status`` (0: no answer — a timeout, a refused or failed
    connection, an address the rules refuse) and the seconds of its ``Retry-After``."""

    status: int
    retry_after: float = 0.0


class _CheckedResolver(AbstractResolver):
    """aiohttp's resolver, refusing what the SSRF rules refuse (checked on every connection)."""

    def __init__(self, allow_private: bool) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        try:
            check_endpoint("https://x/", [r["host"] for r in results], self._allow_private)
        except EndpointRefused as exc:
            raise OSError(f"push endpoint {host}: {exc}") from None
        return results

    async def close(self) -> None:
        await self._inner.close()


class WakeUps:
    """The relay's push sender (see the module docstring).

    Args:
        config: ``push_allow_private`` and ``push_contact``.
        store: where the subscriptions and their wake-up state live.
        metrics: ``tidings_push_*``.
        vapid_key: the relay's VAPID key (``push.key`` in its data directory).
        clock: the relay's wall clock (the state is stored, so it must survive a restart).
        random_bytes: nonces, and the messages' ephemeral keys and salts.
        timing: the scheduler's waits.
        request_timeout: :data:`PUSH_REQUEST_TIMEOUT` (tests shorten it).
    """

    def __init__(
        self,
        config: ServerConfig,
        store: Store,
        metrics: Metrics,
        vapid_key: ec.EllipticCurvePrivateKey,
        *,
        clock: Callable[[], float],
        random_bytes: Callable[[int], bytes],
        timing: WakeTiming = DEFAULT_TIMING,
        request_timeout: float = PUSH_REQUEST_TIMEOUT,
    ) -> None:
        self._config = config
        self._store = store
        self._metrics = metrics
        self._vapid = vapid_key
        #: The relay's VAPID public key (PUSH_STATUS): subscriptions are made for it.
        self.vapid_public = webpush.public_bytes(vapid_key)
        self._clock = clock
        self._random_bytes = random_bytes
        self.scheduler = WakeScheduler(timing, lambda: random_bytes(4)[0] / 256)
        self._request_timeout = request_timeout
        self._session: aiohttp.ClientSession | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._posts: set[asyncio.Task[None]] = set()  # attempts: cancelled on stop
        self._writes: set[asyncio.Task[None]] = set()  # state writes: waited for on stop
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(PUSH_MAX_IN_FLIGHT)
        #: Set at the next change of the wake-up state, then replaced (see :meth:`changed`).
        self._change = asyncio.Event()
        #: Whether a device is connected to another relay node (the cluster's presence
        #: records), or ``None`` for a node alone: such a device is not woken.
        self.elsewhere: Callable[[DeviceRef], Awaitable[bool]] | None = None
        #: Told of each device whose subscription this node changed in the store (registered,
        #: dropped, marked dead), so that the other nodes read it again (the cluster); ``None``
        #: for a node alone.
        self.on_change: Callable[[DeviceRef], None] | None = None

    # ---------------------------------------------------------------- life cycle

    async def start(self, is_connected: Callable[[DeviceRef], bool]) -> None:
        """Load the stored subscriptions and start sending (the store is open).
        ``is_connected`` says whether a device has a live session now."""
        self.scheduler.load(await self._store.push_subscriptions())
        connector = aiohttp.TCPConnector(
            resolver=_CheckedResolver(self._config.push_allow_private),
            limit=PUSH_MAX_IN_FLIGHT,
            use_dns_cache=False,
        )
        timeout = aiohttp.ClientTimeout(
            total=self._request_timeout, connect=min(PUSH_CONNECT_TIMEOUT, self._request_timeout)
        )
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        self._loop_task = asyncio.ensure_future(self._run(is_connected))

    async def stop(self) -> None:
        """Stop sending (a POST cut short is retried after a restart: its attempt is stored);
        wait for the state writes already queued."""
        if self._loop_task is not None:
            self._loop_task.cancel()
        for task in list(self._posts):
            task.cancel()
        await asyncio.gather(*self._posts, *self._writes, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    # ---------------------------------------------------------------- a device's requests

    async def register(
        self, device: DeviceRef, endpoint: str, p256dh: bytes, auth: bytes, now: float
    ) -> PushInfo:
        """Check ``endpoint`` (SSRF rules), store the subscription; how it stands now.

        Raises:
            EndpointRefused: the relay will not call it (nothing stored).
            StoreError: the store failed (nothing stored).
        """
        allow = self._config.push_allow_private
        host, port = endpoint_host(endpoint, allow)
        try:
            async with asyncio.timeout(PUSH_RESOLVE_TIMEOUT):
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM
                )
        except (OSError, TimeoutError):
            infos = []
        check_endpoint(endpoint, [str(info[4][0]) for info in infos], allow)
        try:  # a key that is no P-256 point could never be encrypted to
            webpush.encrypt(b"", p256dh, auth, self._random_bytes)
        except webpush.WebPushError as exc:
            raise EndpointRefused(f"not a push subscription: {exc}") from None
        sub = PushSubscription(device, endpoint, p256dh, auth, now)
        await self._store.put_push_subscription(sub)
        self.scheduler.subscribe(sub)
        self._changed()
        self._tell(device)
        log.info("= push: %s registered an endpoint on %s", device, host)
        return PushInfo(self.vapid_public, PushState.ACTIVE, endpoint)

    async def unregister(self, device: DeviceRef) -> PushInfo:
        """Drop the device's subscription."""
        await self._store.delete_push_subscription(device)
        self.scheduler.unsubscribe(device)
        self._changed()
        self._tell(device)
        return PushInfo(self.vapid_public, PushState.NONE, "")

    async def status(self, device: DeviceRef) -> PushInfo:
        """How the device's subscription stands."""
        sub = self.scheduler.get(device)
        if sub is None:
            return PushInfo(self.vapid_public, PushState.NONE, "")
        state = PushState.DEAD if sub.dead else PushState.ACTIVE
        return PushInfo(self.vapid_public, state, sub.endpoint)

    # ---------------------------------------------------------------- the relay's events

    def queued(self, device: DeviceRef) -> None:
        """An item was stored for ``device``, which has no live connection."""
        sub = self.scheduler.get(device)
        if sub is None or sub.wake_since is not None:  # the common cases, without the clock
            return
        changed = self.scheduler.queued(device, self._clock())
        if changed is not None:
            self._write(changed)
            self._wake.set()
            self._changed()

    def connected(self, device: DeviceRef) -> bool:
        """``device`` opened a session: its wake-up is done. Whether its subscription is dead
        (the relay then tells it to register a new one)."""
        changed, latency = self.scheduler.connected(device, self._clock())
        if changed is not None:
            self._write(changed)
            if latency >= 0:
                self._metrics.push_wake_latency.observe(latency)
                log.info(
                    "= push: %s connected %.3f s after its wake-up",
                    device,
                    latency,
                    extra={"event": "push.woke", "device": str(device), "latency": latency},
                )
            self._changed()
        sub = self.scheduler.get(device)
        return sub is not None and sub.dead

    def replace(self, device: DeviceRef, sub: PushSubscription | None) -> None:
        """Another node changed ``device``'s subscription: ``sub`` is what the store holds now
        (``None``: none), pending wake-up state included."""
        if sub is None:
            self.scheduler.unsubscribe(device)
        else:
            self.scheduler.load([sub])
        self._wake.set()
        self._changed()

    def _tell(self, device: DeviceRef) -> None:
        if self.on_change is not None:
            self.on_change(device)

    def poke(self) -> None:
        """Look at the schedule again now: the clock moved (tests, the lab's clock file)."""
        self._wake.set()

    # ---------------------------------------------------------------- sending

    async def _run(self, is_connected: Callable[[DeviceRef], bool]) -> None:
        await self._recover(is_connected)
        while True:
            due = self.scheduler.due(self._clock())
            for sub in due:
                self._spawn(self._attempt(sub), self._posts)
            if due:
                self._changed()  # now in flight
            deadline = self.scheduler.next_deadline()
            self._wake.clear()
            wait = None if deadline is None else max(0.0, deadline - self._clock())
            try:
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _recover(self, is_connected: Callable[[DeviceRef], bool]) -> None:
        """Set the flag of every subscribed device whose queue holds items without it: a crash
        came between an item's commit and its flag's. In the background: one read per device,
        while the relay already serves (the pending wake-ups of the store go on meanwhile)."""
        for sub in self.scheduler.subscriptions():
            if sub.dead or sub.wake_since is not None or is_connected(sub.device):
                continue
            try:
                depth = await self._store.queue_depth(sub.device)
            except StoreError as exc:
                log.warning("! push: could not read the queue of %s: %s", sub.device, exc)
                continue
            if depth and not is_connected(sub.device):
                self.queued(sub.device)

    async def _attempt(self, sub: PushSubscription) -> None:
        if self.elsewhere is not None and await self.elsewhere(sub.device):
            # Connected to another node: its session there delivers; this wake-up is done.
            log.info("= push: %s is connected to another node: not woken", sub.device)
            changed, _ = self.scheduler.connected(sub.device, self._clock())
            if changed is not None:
                await self._put(changed)
            self._wake.set()
            self._changed()
            return
        async with self._slots:
            await self._put(sub)  # the attempt is counted before the POST: a crash retries it
            try:
                answer = await self.post(sub)
            except Exception:  # a bug here must not leave the device in flight for ever
                log.exception("! push: waking %s failed", sub.device)
                answer = PushAnswer(0)
        now, sched, metrics = self._clock(), self.scheduler, self._metrics
        if 200 <= answer.status < 300:
            metrics.push_sent.labels(result="accepted").inc()
            log.info("= push: woke %s (attempt %d)", sub.device, sub.wake_attempts)
            changed = sched.accepted(sub, now)
        elif answer.status in (401, 403, 404, 410):
            metrics.push_sent.labels(result="gone").inc()
            log.info("! push: endpoint of %s is gone (%d): marked dead", sub.device, answer.status)
            changed = sched.gone(sub, now)
            if changed is not None:
                await self._put(changed)
                self._tell(sub.device)
                changed = None
        else:
            metrics.push_sent.labels(result="failed").inc()
            what = f"HTTP {answer.status}" if answer.status else "no answer"
            log.info("! push: waking %s failed (%s); retrying", sub.device, what)
            changed = sched.failed(sub, now, answer.retry_after)
        if changed is not None:
            await self._put(changed)
        self._wake.set()
        self._changed()

    async def post(self, sub: PushSubscription) -> PushAnswer:
        """POST one wake-up to ``sub``'s endpoint; what came of it (never raises for the push
        service's or the network's failures)."""
        assert self._session is not None
        now = self._clock()
        nonce = self._random_bytes(NONCE_LEN)
        body = webpush.encrypt(nonce, sub.p256dh, sub.auth, self._random_bytes, pad_to=WAKE_PAD)
        headers = {
            "TTL": str(PUSH_TTL),
            "Urgency": URGENCY,
            "Topic": TOPIC,
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "Authorization": vapid.authorization(
                self._vapid, sub.endpoint, self._config.push_contact, now
            ),
        }
        try:
            async with self._session.post(
                sub.endpoint, data=body, headers=headers, allow_redirects=False
            ) as resp:
                await resp.content.read(MAX_ANSWER)
                return PushAnswer(resp.status, _retry_after(resp.headers.get("Retry-After")))
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            log.debug("push POST to %s failed: %r", sub.device, exc)
            return PushAnswer(0)

    # ---------------------------------------------------------------- machinery

    def changed(self) -> asyncio.Event:
        """An event set at the next change of a device's wake-up state (registered, dropped,
        queued, connected, a POST sent or answered). Take it, look at the state, then wait on
        it: a change in between is not missed."""
        return self._change

    def _changed(self) -> None:
        change, self._change = self._change, asyncio.Event()
        change.set()

    def _write(self, sub: PushSubscription) -> None:
        """Store ``sub`` (in order with every other write of this relay's store)."""
        self._spawn(self._put(sub), self._writes)

    async def _put(self, sub: PushSubscription) -> None:
        try:
            await self._store.put_push_subscription(sub)
        except StoreError as exc:
            log.warning("! push: could not store the wake-up state of %s: %s", sub.device, exc)

    def _spawn(self, coro: Coroutine[object, object, None], tasks: set[asyncio.Task[None]]) -> None:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)


def _retry_after(value: str | None) -> float:
    """Seconds of a ``Retry-After`` header (the delta-seconds form; a date counts as none)."""
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0
