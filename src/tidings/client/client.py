"""The asyncio client SDK: a device's durable outbox, its inbox stream, receipts and statuses.

Usage::

    client = Client(home)            # a home registered with tidings.client.register()
    await client.start()             # connects in the background, reconnects by itself
    mid = await client.send("bob", b"hello")   # durable in the outbox before this returns
    async for event in client.events(): ...    # MessageReceived, StatusChanged, …
    await client.close()

The SDK only pumps: the decisions live in the sans-I/O cores — which outbox entries go when
(:class:`~tidings.delivery.OutboxScheduler`), in which order messages are shown
(:class:`~tidings.delivery.Reorderer`), how statuses move (:func:`~tidings.delivery.advance`) —
and everything it learns is committed to the :class:`~tidings.client.store.ClientStore` before
it is acknowledged or reported.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import ClassVar

from ..delivery import (
    ContentKind,
    Receipt,
    ReceiptKind,
    Status,
    direct_conversation,
)
from ..delivery.msgids import new_message_id
from ..errors import ConfigError, StoreError, StoreUnavailable
from ..refs import DeviceRef
from ..wire import (
    Deliver,
    Devices,
    PrekeysLow,
    PushStatus,
    Refused,
    SealedMultiSent,
    SealedSent,
    Sent,
    TagStatus,
    check_account,
)
from .blocking import Blocking
from .clocks import Clocks
from .config import ClientConfig, check_read_receipts
from .connect import open_channel
from .crypto import DeviceCrypto, SafetyNumber
from .disappearing import Disappearing
from .events import (
    ClientEvent,
    Disconnected,
    EventStream,
    PushDead,
    ReadElsewhere,
    StorageFailed,
    TimerChanged,
)
from .group_calls import GroupCalls
from .group_transport import MultiTransport
from .groups import GroupRuntime
from .home import prepare_home
from .inbox import Inbox
from .keysync import KeySync
from .lock import DeviceLock, process_name
from .outbox import Outbox
from .outbox_multi import MultiLink
from .own_devices import OwnDevices
from .prekeys import DeviceKeys
from .sealed_keys import SealedKeys
from .sealed_outbox import TAG_QUERY_INTERVAL
from .sealed_send import SealedCredentials
from .session import FATAL_CODES, Session
from .store import (
    ClientStore,
    ConversationTimer,
    Identity,
    OutboxRequest,
    StoredMessage,
    TraceEntry,
)
from .unidentified import UnidentifiedLink

__all__ = ["FATAL_CODES", "Client", "EventStream"]

log = logging.getLogger("tidings.client")


class Client(OwnDevices, GroupCalls, Blocking):
    """One registered device (see the module docstring for the call order).

    Args:
        home: the device's directory.
        config: the device's settings (keepalive, backoffs, outbox window, read receipts;
            :mod:`tidings.client.config`); the defaults when not given.
        clock: the wall clock, for times shown to people and stored (composed at, trace, the
            server-time estimate).
        monotonic: the clock of every delay (outbox retries, ordering holds, rate limits); it
            must never jump, so a step of the wall clock neither stalls nor hastens them. (The
            keepalive and the reconnect backoff run on the event loop's clock, monotonic too.)
        accept_new_server_key: accept a server whose static key changed.
        rng: the jitter source of the backoffs.
        owner: what this process is, for the message another process that wants this home
            gets (``"tidings listen"``; default: the program's name and arguments).
        sealed: the sealed-sender credentials sends to other accounts go sealed with
            (:attr:`sealed_credentials`); default: this device's own, :attr:`sealed_keys`.
        share_profile_key: give the account's profile key to contacts and own devices
            (sealed sender, :mod:`tidings.client.sealed_keys`); ``False``: give it to nobody
            (no contact can then send to this account sealed; no PROFILE_KEY is queued).

    The home is checked and made owner-only (:mod:`tidings.client.home`); nothing is created
    in a home that holds no device. If the store cannot write (disk full, I/O error: see
    :class:`~tidings.client.events.StorageFailed`) the client reports it once and stops.

    Raises:
        ConfigError: ``home`` holds no registered device (run ``tidings register`` first).
        DeviceBusy: another process (or another open Client) runs this device: the home's lock
            (:mod:`tidings.client.lock`) is held from here until :meth:`close`.
        StoreUnavailable: the store cannot be opened or written.
    """

    def __init__(
        self,
        home: Path,
        *,
        config: ClientConfig | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        accept_new_server_key: bool = False,
        rng: random.Random | None = None,
        owner: str = "",
        sealed: SealedCredentials | None = None,
        share_profile_key: bool = True,
    ) -> None:
        self.home = home
        #: The settings this device runs with.
        self.config = config or ClientConfig()
        db = prepare_home(home)
        # One process per device (DESIGN §9): held until close(), or the process's end.
        self._lock = DeviceLock.acquire(home, owner or process_name())
        try:
            self.store = ClientStore(db)
        except BaseException:
            self._lock.release()
            raise
        identity = self.store.get_identity()
        if identity is None:
            self.store.close()
            self._lock.release()
            raise ConfigError(f"{home} holds no registered device: run `tidings register` first")
        self.me = DeviceRef(identity.account, identity.device_id)
        try:
            DeviceKeys.create(self.store, clock())  # a home registered before end-to-end keys
        except BaseException:
            self.store.close()
            self._lock.release()
            raise
        self.crypto = DeviceCrypto(self.store, self.me, self._emit, clock, monotonic=monotonic)
        self._tasks: set[asyncio.Task[None]] = set()
        self._clock = clock
        self._monotonic = monotonic
        self._rng = rng or random.Random()
        self._queues: list[asyncio.Queue[ClientEvent]] = []
        self._started = False
        #: A store batch is open (see _begin_batch); events wait in _held_events until it commits.
        self._batching = False
        self._held_events: list[ClientEvent] = []
        #: send() calls waiting for the open batch to commit (their messages are in it).
        self._commit_waiters: list[asyncio.Future[None]] = []
        #: Set when the store could not write; the client has stopped (see StorageFailed).
        self.storage_failed: StorageFailed | None = None
        self._session = Session(
            self.store,
            identity,
            self,
            self._emit,
            self.config.keepalive,
            clock,
            accept_new_server_key,
            self._rng,
            self.config.reconnect,
        )
        clocks = Clocks(clock, monotonic)
        #: The unidentified connection of sealed sends (:mod:`tidings.client.unidentified`).
        self.unidentified = UnidentifiedLink(
            lambda: self._session.url,
            lambda: self._session.identity.server_key,
            self._on_unidentified_frame,
            lambda reason: self._outbox.sealed.on_unsupported(reason),
            lambda url, handler, key: open_channel(url, handler, None, key, self.config.keepalive),
            self._rng.random,
            backoff=self.config.reconnect,
            keepalive=self.config.keepalive,
        )
        self._tag_timer: asyncio.TimerHandle | None = None
        self._outbox = Outbox(
            self.store,
            self.me,
            self._emit,
            clocks,
            self._rng.random,
            self._session.current,
            lambda: self._clock() + self._session.server_time_offset,
            self.crypto,
            self._fetch_sessions,
            self.config.outbox_window,
            self.config.outbox_retry,
            MultiLink(self._session.multi_send, lambda: self._session.last_close),
            self.unidentified,
        )
        #: This device's groups; a group message goes as one multi-recipient send (falling
        #: back to pairwise copies on a relay without it: :mod:`tidings.client.group_transport`).
        self.groups_runtime = GroupRuntime(
            self.store,
            self.me,
            self._emit,
            self._outbox.recipients.known_devices,
            MultiTransport(),
            os.urandom,
        )
        self._inbox = Inbox(
            self.store, self.me, self._emit, clocks, self.crypto, self.groups_runtime
        )
        #: The sealed-sender credentials: profile keys, access keys, the sender certificate
        #: (:mod:`tidings.client.sealed_keys`; what a sealed send asks).
        self.sealed_keys = SealedKeys(
            self.store,
            self.me,
            self.crypto.keys.identity.public,
            lambda: self._session.identity.server_key,
            self._session.request,
            lambda: self._session.is_open,
            self._outbox.add_queued,
            self._spawn,
            clock,
            share=share_profile_key,
        )
        self._inbox.blocked = self.sealed_keys.blocked
        # what goes sealed asks these (tidings.client.sealed_outbox)
        self._outbox.sealed.credentials = self.sealed_keys if sealed is None else sealed
        self._inbox.trust_root = lambda: self._session.identity.server_key
        # A device of this account or a member's linked late gets the groups and keys it
        # lacks, without the user (tidings.client.group_sync).
        self._outbox.recipients.on_own_added = self._sync_groups
        self._outbox.multi.catch_up = lambda group_id, message_id, devices: (
            self.groups_runtime.catch_up(group_id, message_id, devices, self._clock())
        )
        self._disappearing = Disappearing(self.store, self._emit, clock)
        #: A sent disappearing message is in the open batch: arm the sweep after its commit.
        self._expiry_started = False
        self._keysync = KeySync(
            self.crypto, self._outbox, self._session.request, self.devices, clocks
        )
        self.store.on_unavailable = self._on_store_unavailable

    # ---------------------------------------------------------------- life cycle

    @property
    def identity(self) -> Identity:
        """This device's identity (account, device id, relay URL, pinned relay key)."""
        return self._session.identity

    @property
    def relay_url(self) -> str:
        """The relay URL this device is connected to (or tries next): one of
        ``identity.server_urls``, the relay's nodes (:mod:`tidings.client.relays`)."""
        return self._session.url

    @property
    def fatal(self) -> Disconnected | None:
        """Set when the relay refused this device for good (or its key changed): the client
        no longer reconnects."""
        return self._session.fatal

    @property
    def sealed_credentials(self) -> SealedCredentials | None:
        """The sealed-sender credentials messages to other accounts go sealed with
        (docs/protocol.md §14.2): :attr:`sealed_keys` unless set; ``None``: every send is a
        normal SEND."""
        return self._outbox.sealed.credentials

    @sealed_credentials.setter
    def sealed_credentials(self, credentials: SealedCredentials | None) -> None:
        self._outbox.sealed.credentials = credentials

    @property
    def connected(self) -> bool:
        """Whether a session with the relay is open now."""
        return self._session.is_open

    @property
    def outbox_size(self) -> int:
        """Entries (messages and receipts) waiting to be stored by the relay."""
        return len(self._outbox)

    @property
    def read_receipts(self) -> bool:
        """Whether this device sends read receipts: the config's ``read_receipts`` when a layer
        set it, else the stored setting (``tidings read-receipts``)."""
        pinned = self.config.read_receipts
        return self.identity.read_receipts if pinned is None else pinned

    def settings(self) -> dict[str, dict[str, object]]:
        """Each effective setting: ``{"value", "source", "where"}`` (:meth:`ClientConfig.describe`;
        ``read_receipts`` from the store has source ``stored``)."""
        out = self.config.describe()
        if self.config.read_receipts is None:
            out["read_receipts"] = {"value": self.read_receipts, "source": "stored", "where": None}
        return out

    def set_read_receipts(self, enabled: bool) -> None:
        """Send read receipts (or not) from now on; stored.

        Raises:
            ConfigError: the config sets ``read_receipts`` to the other value (it would win);
                nothing is stored.
            StoreUnavailable: the store cannot write.
        """
        check_read_receipts(self.config, enabled)
        self._end_batch()
        self.store.set_read_receipts(enabled)
        self._session.identity = self.store.get_identity() or self._session.identity

    @property
    def fatal_message(self) -> str:
        """Why the client stopped connecting for good, in one line for people ("" if not)."""
        return self._session.fatal_message

    @property
    def server_time_offset(self) -> float:
        """The relay's clock minus ours, from the last WELCOME (0 before one)."""
        return self._session.server_time_offset

    async def start(self) -> None:
        """Start connecting (in the background). Returns at once."""
        if not self._started:
            self._started = True
            self._inbox.start()
            self._disappearing.sweep()  # what ran out while the device was stopped
            self._session.start()

    async def wait_connected(
        self, timeout: float | None = None, *, fail_fast: bool = False
    ) -> None:
        """Wait until a session with the server is open.

        Args:
            timeout: seconds to wait at most (``TimeoutError`` after).
            fail_fast: raise :class:`~tidings.errors.RelayUnreachable` as soon as a connection
                attempt fails, instead of waiting through the reconnect backoff (the client
                keeps trying in the background either way).

        Raises:
            TimeoutError: no session opened within ``timeout``.
            RelayUnreachable: ``fail_fast``, and an attempt failed (``reason`` says why).
            ConfigError: the client stopped for good: the relay refused this device, or
                presents another key than the pinned one (:attr:`fatal_message` says which).
            ConnectionBroken: the client was closed.
            StoreUnavailable: the client stopped because its store cannot write.
        """
        await self._session.wait_open(timeout, fail_fast=fail_fast)

    async def close(self) -> None:
        """Disconnect and close the store. What is in the outbox stays there."""
        self._end_batch()
        if self._tag_timer is not None:
            self._tag_timer.cancel()
        await self.unidentified.close()
        await self._session.close()
        self.sealed_keys.on_close()
        for task in list(self._tasks):
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._outbox.close()
        self._inbox.close()
        self._disappearing.close()
        self.store.close()
        self._lock.release()

    def reconnect_now(self) -> None:
        """Skip the backoff wait (e.g. the network came back)."""
        self._session.reconnect_now()

    # ---------------------------------------------------------------- API

    async def send(self, to: str, body: bytes | str) -> bytes:
        """Queue a message to account ``to``; return its id once it is durable in the outbox.

        Raises:
            FrameError: ``to`` is not a valid account name.
            ContentError: the body is too large.
            OutboxFullError: the outbox is full.
            StoreUnavailable: the store cannot write (the message is not queued), now or
                earlier: the client has stopped (:class:`StorageFailed`).
        """
        check_account(to)
        data = body.encode() if isinstance(body, str) else body
        message_id = new_message_id(self._clock(), os.urandom)
        conversation = direct_conversation(self.me.account, to)
        if self.storage_failed is not None:
            raise StoreUnavailable(self.storage_failed.state, self.storage_failed.message)
        # The sends of one turn of the event loop share the turn's transaction (with the
        # frames it handles): one fsync for a burst of sends. Each compose is a savepoint, so
        # a refused one (outbox full, bad body) changes nothing; send() returns once the
        # transaction committed, so the message is durable when it does (G2).
        self._begin_batch()
        try:
            item, message = self.store.compose(message_id, to, conversation, data, self._clock())
        except StoreUnavailable as exc:
            failed = self.storage_failed or StorageFailed(exc.state, str(exc))
            raise StoreUnavailable(failed.state, failed.message) from exc
        self._expiry_started |= message.expires_in > 0
        committed = asyncio.get_running_loop().create_future()
        self._commit_waiters.append(committed)
        try:
            self._outbox.add(item)  # held: nothing of it goes before the commit
            # A contact given no key of ours yet gets it, after the message: a stranger's
            # first message must fit the one slot a recipient's queue may keep for it.
            self._share_profile_key(to)
        except StoreUnavailable:
            pass  # the client stops (StorageFailed); the commit's waiters learn of it
        await committed
        return message_id

    async def mark_read(self, message_ids: Iterable[bytes]) -> int:
        """Record that received messages were displayed; send read receipts if enabled.

        Returns:
            How many messages were newly marked read.
        """
        self._end_batch()
        now = self._clock()
        by_sender: dict[str, list[bytes]] = {}
        keys = []
        for mid in message_ids:
            m = self.store.message(mid)
            if m is None or m.read_at is not None or m.sender == self.me:
                continue
            keys.append(m.key)
            if m.sender.account != self.me.account:
                by_sender.setdefault(m.sender.account, []).append(mid)
        receipts = []
        # this account's other devices learn it too, whatever the read-receipts setting (it
        # says what contacts see, not what the user's own devices see): read-state sync
        synced = [key[1] for key in keys]
        for i in range(0, len(synced), 256):
            content = Receipt(ReceiptKind.READ, tuple(synced[i : i + 256]), now).serialize()
            receipts.append(
                OutboxRequest(
                    new_message_id(now, os.urandom),
                    self.me.account,
                    content,
                    ContentKind.RECEIPT,
                    now,
                )
            )
        if self.read_receipts:
            for account, ids in by_sender.items():
                for i in range(0, len(ids), 256):
                    content = Receipt(ReceiptKind.READ, tuple(ids[i : i + 256]), now).serialize()
                    receipts.append(
                        OutboxRequest(
                            new_message_id(now, os.urandom),
                            account,
                            content,
                            ContentKind.RECEIPT,
                            now,
                        )
                    )
        newly = self.store.mark_read(keys, now, receipts)
        try:
            self._outbox.add_queued(r.message_id for r in receipts)
        except StoreUnavailable:
            pass  # they are queued (committed above); the client stops (StorageFailed)
        self._disappearing.arm()  # a disappearing message's clock starts when it is read
        return len(newly)

    def unseen(self, limit: int = 1_000, after: int = 0) -> list[StoredMessage]:
        """Received messages no UI has displayed yet (see :meth:`mark_seen`), oldest first:
        what to show before anything new, so that nothing received stays hidden (a UI that
        stopped between a commit and its display shows it next time). ``after`` (the last
        page's last ``shown``) gives the next page."""
        return self.store.unseen(limit, after)

    def mark_seen(self, message_ids: Iterable[bytes]) -> int:
        """Record that a UI displayed these received messages (call it after displaying them);
        returns how many were unseen.

        Raises:
            StoreUnavailable: the store cannot write.
        """
        self._end_batch()
        n = self.store.mark_seen(list(message_ids), self._clock())
        self._disappearing.arm()  # a disappearing message's clock starts when it is shown
        return n

    async def set_timer(self, to: str, seconds: int) -> ConversationTimer:
        """Set the disappearing-messages timer of the conversation with account ``to``: what
        either side sends from now on is deleted on every device ``seconds`` after it was
        displayed (sent, for the sender); 0 turns it off. Durable on return; the setting goes
        to the contact's devices and this account's others through the outbox.

        Raises:
            FrameError: ``to`` is not a valid account name.
            ContentError: ``seconds`` is not in 0..MAX_TIMER.
            StoreUnavailable: the store cannot write (nothing changed).
        """
        check_account(to)
        if self.storage_failed is not None:
            raise StoreUnavailable(self.storage_failed.state, self.storage_failed.message)
        self._end_batch()
        conversation = direct_conversation(self.me.account, to)
        now = self._clock()
        timer, request = self.store.set_timer(
            self.me, conversation, seconds, now, new_message_id(now, os.urandom), to
        )
        try:
            self._outbox.add_queued([request.message_id])
            self._share_profile_key(to)
        except StoreUnavailable:
            pass  # it is queued (committed above); the client stops (StorageFailed)
        self._emit(TimerChanged(conversation, timer.seconds, self.me, timer.set_at))
        return ConversationTimer(conversation, timer.seconds, timer.set_at, self.me)

    def timer(self, conversation: str) -> ConversationTimer | None:
        """The conversation's disappearing-messages timer, or ``None`` if none was ever set."""
        return self.store.conversation_timer(conversation)

    def expire_now(self) -> int:
        """Delete the disappearing messages that ran out by now (the device does it on time
        by itself; this is for a UI that wants it at once). Returns how many went."""
        self._end_batch()
        return len(self._disappearing.sweep())

    async def drain(self, timeout: float) -> bool:
        """Wait until the outbox is empty (every message and receipt stored by the relay, or
        failed), at most ``timeout`` seconds. Returns whether it emptied."""
        return await self._outbox.drain(timeout)

    def events(self) -> EventStream:
        """Incoming messages and status changes, as they are committed, from this call on.

        Use as ``async for event in client.events()``; ``stream.close()`` stops it.
        """
        stream = EventStream(self._queues)
        return stream

    def trace(self, message_id: bytes) -> list[TraceEntry]:
        """The confirmation points this device saw for a message, in time order."""
        return self.store.trace(message_id)

    def status(self, message_id: bytes) -> Status | None:
        """The roll-up status of a message this device sent."""
        return self.store.message_status(message_id)

    def identity_key_raw(self) -> bytes:
        """This device's identity public key (raw 32 bytes): what its certificates name."""
        return self.crypto.keys.identity.public.raw

    def safety_number(self, account: str) -> SafetyNumber | None:
        """The safety number with ``account`` (``None`` before any session with it)."""
        check_account(account)
        return self.crypto.safety_number(account)

    def verify_safety_number(self, account: str, number: str | None) -> bool:
        """Mark the safety number with ``account`` verified: ``number`` is the one the user
        compared out of band (only its digits count); ``None`` drops the mark. Returns whether
        it was recorded (``False``: ``number`` is not the current one; nothing stored).

        Raises:
            ConfigError: no session with ``account`` yet.
            StoreUnavailable: the store cannot write.
        """
        check_account(account)
        self._end_batch()
        return self.crypto.mark_verified(account, number, self._clock())

    # ---------------------------------------------------------------- the session's calls

    def on_open(self, own_devices: tuple[int, ...]) -> None:
        """The session is open: the outbox may go (and the keys get checked)."""
        if self.storage_failed is not None:
            return
        self._outbox.devices[self.me.account] = own_devices
        self._tell_name(own_devices)
        self._share_profile_key_own(own_devices)
        self.sealed_keys.on_open()
        # An own device linked while this one was away gets the groups (once per group: a
        # device given this one's key is skipped), as one the DEVICES notice names.
        others = [DeviceRef(self.me.account, d) for d in own_devices if d != self.me.device_id]
        if others:
            self._sync_groups(others)
        self._outbox.on_connect()
        try:
            self._outbox.pump()
        except StoreUnavailable:
            return  # reported by the store's hook: the client stops
        self._ask_tags()
        self._spawn(self._keysync.sync())
        self._spawn(self._publish())

    def on_close(self) -> None:
        self._outbox.on_disconnect()

    def on_frame(self, frame: object) -> None:
        handler = self._FRAME_HANDLERS.get(type(frame))
        if handler is None or self.storage_failed is not None:
            return
        self._begin_batch()
        try:
            handler(self, frame)
        except StoreUnavailable:
            return  # reported by the store's hook (_on_store_unavailable): the client stops

    def settle(self) -> None:
        """Commit the open batch before the relay is told anything that depends on it."""
        self._end_batch()

    # ---------------------------------------------------------------- batches

    def _begin_batch(self) -> None:
        """Handle the frames of this turn of the event loop — one read from the network, up
        to a delivery window of DELIVERs, or a burst of SENTs — in ONE store transaction
        (:meth:`ClientStore.begin_batch`), committed at the end of the turn by
        :meth:`_end_batch`. Until then nothing that depends on it leaves the client: no ACK,
        no event, no outbox frame (a ratchet step on the wire before its state is durable
        could reuse a key after a crash), no request. One fsync per burst instead of ~4 per
        message (DESIGN §6)."""
        if self._batching:
            return
        self._batching = True
        self.store.begin_batch()
        self._inbox.begin_batch()
        self._outbox.hold()
        asyncio.get_running_loop().call_soon(self._end_batch)

    def _end_batch(self) -> None:
        """Commit the batch — with its ✓ recorded, its receipts queued and the outbox's next
        frames sealed in it (:meth:`Outbox.prepare`) — then report its events, ack what it
        stored, and let the outbox write."""
        if not self._batching:
            return
        try:
            receipts = self._inbox.flush_receipts()
            if receipts:
                self._outbox.add_queued(receipts, fresh=True)  # sealed by prepare(), in it
            self._outbox.prepare()
            self.store.commit_batch()
        except StoreError as exc:
            # Nothing of the batch was kept, so nothing of it may be acked or reported, and the
            # memory of the inbox, outbox and sessions is ahead of the store: stop, as on a
            # full disk (a restart reloads all from the store; the relay still has the items).
            if self._batching:  # not undone yet by the store's hook (_on_store_unavailable)
                self._abort_batch()
            if not isinstance(exc, StoreUnavailable):
                self._on_store_unavailable(StoreUnavailable(f"error: {exc}", str(exc)))
            self._fail_commit_waiters()
            return
        self._batching = False
        if self.storage_failed is not None:
            return  # a write failed on the way and stopped the client: nothing of it goes
        waiters, self._commit_waiters = self._commit_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        events, self._held_events = self._held_events, []
        for event in events:
            self._emit(event)
        self._session.committed()  # the core acks what the batch stored, reports progress
        try:
            self._outbox.release()
            # a disappearing message's clock started in the batch: sent, or read elsewhere
            if self._expiry_started or any(type(e) is ReadElsewhere for e in events):
                self._expiry_started = False
                self._disappearing.arm()
        except StoreUnavailable:
            pass  # reported by the store's hook: the client stops

    def _abort_batch(self) -> None:
        """The batch is not kept: nothing of it is acked, reported or sent."""
        self._batching = False
        self._held_events.clear()
        self._session.aborted()
        self._inbox.abort_batch()
        self._outbox.abort_batch()
        self.store.rollback_batch()

    def _on_prekeys_low(self, frame: PrekeysLow) -> None:
        self._spawn(self._keysync.sync((frame.one_time_left, frame.kem_left)))

    def _on_push_status(self, frame: PushStatus) -> None:
        """Unsolicited (protocol §6.25): the relay can no longer wake this device."""
        self._emit(PushDead(frame.endpoint))

    def _sync_groups(self, devices: list[DeviceRef]) -> None:
        """New own ``devices``: each gets the account's groups (soon: this may be called
        from inside the outbox's refusal path, which must finish first)."""
        asyncio.get_running_loop().call_soon(self._sync_groups_now, devices)

    def _sync_groups_now(self, devices: list[DeviceRef]) -> None:
        if self.storage_failed is not None:
            return
        now = self._clock()
        try:
            ids = [i for d in devices for i in self.groups_runtime.sync_to(d, now)]
            self._outbox.add_queued(ids)
        except StoreError:
            log.exception("! could not queue the groups for a new own device")

    def _fetch_sessions(self, lane: str, devices: list[DeviceRef]) -> None:
        self._spawn(self._fetch_and_check(lane, devices))

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---------------------------------------------------------------- outbox

    def _on_sent(self, frame: Sent) -> None:
        self._outbox.on_sent(frame)

    def _on_refused(self, frame: Refused) -> None:
        self._outbox.on_refused(frame)

    def _on_unidentified_frame(self, frame: object) -> None:
        """SEALED_SENT or TAG_STATUS from the unidentified connection: handled in the turn's
        batch like a frame of the session."""
        if self.storage_failed is not None:
            return
        self._begin_batch()
        try:
            if isinstance(frame, SealedSent):
                self._outbox.sealed.on_sealed_sent(frame)
            elif isinstance(frame, SealedMultiSent):
                self._outbox.multi.sealed.on_answer(frame)
            elif isinstance(frame, TagStatus):
                self._outbox.sealed.on_tag_status(frame)
        except StoreUnavailable:
            return  # reported by the store's hook: the client stops

    def _ask_tags(self) -> None:
        """Ask what became of the sealed messages not yet delivered (at every session's open,
        then every :data:`~tidings.client.sealed_outbox.TAG_QUERY_INTERVAL`)."""
        if self._tag_timer is not None:
            self._tag_timer.cancel()
        self._tag_timer = asyncio.get_running_loop().call_later(TAG_QUERY_INTERVAL, self._ask_tags)
        if self.storage_failed is not None or not self._session.is_open:
            return
        try:
            self._outbox.sealed.ask_tags(self._clock())
        except StoreError:
            log.exception("! could not read the sealed tags to ask about")

    # ---------------------------------------------------------------- inbox

    def _on_deliver(self, frame: Deliver) -> None:
        try:
            queued = self._inbox.on_deliver(frame)
        except StoreUnavailable:
            return  # not acked: the relay keeps it (the store's hook stops the client)
        except StoreError:
            # Nothing was committed and the item stays unacked: the relay sends it again after
            # we reconnect. The inbox has already reloaded its ordering state from the store.
            log.exception("! could not store an incoming item; reconnecting")
            self._session.drop()
            return
        if self.storage_failed is not None:
            return  # a write failed on the way, even if it was only logged: ack nothing more
        if queued:
            self._outbox.add_queued(queued)
        if self._inbox.profile_key_changed:  # an own device's key won: the relay needs it
            self._inbox.profile_key_changed = False
            self.sealed_keys.key_changed()
        if self._inbox.certified:  # it signed a certificate for a new own device
            self._inbox.certified = False
            self._spawn(self._publish())
        self._session.stored(frame.seq)  # acked cumulatively once the batch committed

    def _emit(self, event: ClientEvent) -> None:
        """Report ``event`` — once the open batch has committed, if one is open (G5)."""
        if self._batching:
            self._held_events.append(event)
            return
        for q in self._queues:
            q.put_nowait(event)

    # ---------------------------------------------------------------- storage failure

    def _on_store_unavailable(self, exc: StoreUnavailable) -> None:
        """The store could not write (disk full, I/O error, …): report it once, then stop,
        since every write would fail again and reconnecting would only replay what cannot be
        stored. Called by the store before it raises, whoever called it; nothing that was not
        committed has been acked, and from here nothing more is (G1)."""
        if self.storage_failed is not None:
            return
        self.storage_failed = StorageFailed(exc.state, _storage_message(exc))
        log.info("! %s", self.storage_failed.message)
        if self._batching:  # nothing of the open batch is kept, acked or reported
            self._abort_batch()
            self._fail_commit_waiters()
        self._outbox.close()
        self._inbox.close()
        self._disappearing.close()
        self._emit(self.storage_failed)
        # The connection loop ends instead of reconnecting; waiting callers get the error.
        self._session.halt(StoreUnavailable(exc.state, self.storage_failed.message))

    def _fail_commit_waiters(self) -> None:
        """The open batch was not kept: the sends waiting for it fail (nothing was queued)."""
        failed = self.storage_failed
        waiters, self._commit_waiters = self._commit_waiters, []
        for fut in waiters:
            if not fut.done():
                if failed is not None:
                    fut.set_exception(StoreUnavailable(failed.state, failed.message))
                else:
                    fut.set_exception(StoreUnavailable("error", "the store could not commit"))

    _FRAME_HANDLERS: ClassVar[dict[type, Callable[[Client, object], None]]] = {
        Sent: _on_sent,  # type: ignore[dict-item]
        Refused: _on_refused,  # type: ignore[dict-item]
        Deliver: _on_deliver,  # type: ignore[dict-item]
        Devices: OwnDevices._on_devices,  # type: ignore[dict-item]
        PrekeysLow: _on_prekeys_low,  # type: ignore[dict-item]
        PushStatus: _on_push_status,  # type: ignore[dict-item]
    }


def _storage_message(exc: StoreUnavailable) -> str:
    """What :class:`StorageFailed` says: what failed, that the device stopped, what to do."""
    todo = "free space on its disk" if exc.state == "full" else "check its disk"
    return (
        f"{exc}; the device stopped ({todo}, then start it again; what it could not store "
        "stays with the relay)"
    )
