"""The device's sealed-sender credentials (docs/protocol.md §14.1): the account's profile key
and who has it, the contacts' access keys, the relay's copy of ours, the sender certificate,
and blocking. What the sending side (the outbox's sealed sends) asks: :class:`SealedKeys`,
reachable as ``client.sealed_keys``.

* **The profile key.** 32 random bytes for the account. The account's first device makes it
  at registration (:func:`new_profile_key`); a home from before sealed sender, or a linked
  device that was not given one, makes it at its first need. Two own devices holding different
  keys resolve deterministically: the higher ``generation`` wins (blocking makes a new one),
  then the lower ``(created_at, device)`` (:attr:`ProfileKey.rank`), the same on every device.
* **Sharing.** Our current key goes, pairwise through the outbox as a PROFILE_KEY content
  (kind 13), to a contact the first time we send it anything after the key was made or
  rotated (:meth:`SealedKeys.share_with`), and to every own device that does not hold it
  (:meth:`SealedKeys.share_with_own`, at each session and when a device is linked).
* **The relay's copy.** When connected, the device registers the access key of the current
  key (SET_ACCESS_KEY) unless the relay already has it (remembered per key, in the store).
* **The sender certificate.** Asked for (SENDER_CERT_REQUEST) when the device has none or it
  has less than :data:`SEALED_CERT_MARGIN` left, and renewed that long before it expires. It is
  kept in memory only: it is one round trip at each start, a stored one could outlive the
  identity key it names (a reset), and nothing else needs it across restarts.
* **Blocking** drops the contact's messages on receipt, rotates the profile key and gives the
  new one to every other contact we had shared with and to the own devices, never to the
  blocked one: its sealed sends get ACCESS_DENIED from then on.

Invariants: the decisions take ``now`` (wall-clock seconds); the store holds everything but
the certificate; a PROFILE_KEY is queued in the same transaction that records it as given.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass

from ..delivery import ContentKind
from ..delivery.content_profile import PROFILE_KEY_LEN, ProfileKey
from ..delivery.msgids import new_message_id
from ..e2e.access_key import access_key
from ..e2e.certificates import CertificateError, SenderCertificate
from ..e2e.keys import PublicKey
from ..errors import ConnectionBroken, RefusedError, StoreError
from ..refs import DeviceRef
from ..wire import Frame, SenderCert, SenderCertRequest, SetAccessKey
from .store import ClientStore, CryptoWrites, OutboxRequest
from .store._profiles import CONTACT

__all__ = ["SEALED_CERT_MARGIN", "SealedKeys", "commit_profile_key", "new_profile_key"]

log = logging.getLogger("tidings.client")

#: Seconds of validity a sender certificate must have left to be used (of the relay's 24 h,
#: ``SENDER_CERT_LIFETIME``): a sealed message may wait in the outbox and in the relay's queue
#: before its recipient checks the certificate at its own clock, which may run ahead; an hour
#: covers both, and the device renews that long before the end, so it never runs out.
SEALED_CERT_MARGIN = 3600.0

Request = Callable[[Callable[[int], Frame]], Awaitable[object]]


def new_profile_key(device_id: int, now: float, generation: int = 0) -> ProfileKey:
    """A fresh random profile key made by ``device_id`` at ``now``."""
    return ProfileKey(os.urandom(PROFILE_KEY_LEN), generation, now, device_id)


@dataclass(slots=True)
class _Certificate:
    certificate: SenderCertificate
    expires_at: float  # seconds, the relay's clock


class SealedKeys:
    """This device's sealed-sender credentials (see the module docstring).

    Args:
        store: the device's store.
        me: this device.
        identity_key: this device's identity public key (its certificates must name it).
        trust_root: the relay's pinned static key (32 bytes), or ``None`` before one is pinned.
        request: sends a request on the open session and returns its answer
            (:meth:`~tidings.client.session.Session.request`).
        is_open: whether a session is open now.
        queued: hands outbox ids just queued in the store to the outbox.
        spawn: runs a coroutine in the background (the client's task set).
        clock: the wall clock (certificate expiries are the relay's wall-clock times).
        share: give the profile key to contacts and own devices (``False``: to nobody).
    """

    def __init__(
        self,
        store: ClientStore,
        me: DeviceRef,
        identity_key: PublicKey,
        trust_root: Callable[[], bytes | None],
        request: Request,
        is_open: Callable[[], bool],
        queued: Callable[[list[bytes]], None],
        spawn: Callable[[Coroutine[object, object, None]], None],
        clock: Callable[[], float],
        *,
        share: bool = True,
    ) -> None:
        self.store = store
        self.me = me
        self._identity_key = identity_key
        self._trust_root = trust_root
        self._request = request
        self._is_open = is_open
        self._queued = queued
        self._spawn = spawn
        self._clock = clock
        self.share = share
        #: The blocked contacts (the inbox drops their messages); the store's, in memory.
        self.blocked: set[str] = set(store.blocked())
        self._cert: _Certificate | None = None
        self._refreshing = False
        self._spawn_again = False  # a refresh was wanted while one ran
        self._renewal: asyncio.TimerHandle | None = None
        self._registered_waiters: list[asyncio.Future[None]] = []

    # ------------------------------------------------------------ what the sender asks

    def access_key_for(self, account: str) -> bytes | None:
        """The access key to seal to ``account`` with: derived from its profile key (ours for
        our own account), or ``None`` if we hold none or ``account`` is blocked."""
        if account in self.blocked:
            return None
        if account == self.me.account:
            own = self.store.profile_key()
            return None if own is None else access_key(own.key)
        key = self.store.contact_profile_key(account)
        return None if key is None else access_key(key)

    def certificate(self, now: float) -> SenderCertificate | None:
        """A sender certificate of this device with at least :data:`SEALED_CERT_MARGIN` left
        at ``now`` (wall-clock seconds); else ``None``, and a renewal is requested (it is
        asked for as soon as a session is open)."""
        held = self._cert
        if held is not None and held.expires_at - now >= SEALED_CERT_MARGIN:
            return held.certificate
        self._want_refresh()
        return None

    def forget_access_key(self, account: str) -> None:
        """The relay refused ``account``'s access key (ACCESS_DENIED): it rotated its profile
        key (it may have blocked us). Forget its key until it gives us a new one."""
        try:
            if self.store.forget_contact_profile_key(account):
                log.info("= forgot the profile key of %s (its access key was refused)", account)
        except StoreError as exc:
            log.info("! could not forget the profile key of %s: %s", account, exc)

    # ------------------------------------------------------------ the profile key

    def own_key(self, now: float, create: bool = True) -> ProfileKey | None:
        """This account's profile key; made now if none is held and ``create``."""
        key = self.store.profile_key()
        if key is None and create:
            key = new_profile_key(self.me.device_id, now)
            self.store.set_profile_key(key)
            log.info("= made the account's profile key")
        return key

    def share_with(self, account: str, now: float) -> list[bytes]:
        """When sending ``account`` anything: if it does not hold our current profile key,
        queue the key to it (a PROFILE_KEY through the outbox; the client queues it after the
        message, so that a stranger's first message takes the one slot a recipient's queue
        keeps for it). Returns the outbox ids queued (hand them to the outbox)."""
        if not self.share or account == self.me.account or account in self.blocked:
            return []
        key = self.own_key(now)
        assert key is not None
        if self.store.profile_key_given(account).get(CONTACT) == key.key:
            return []
        request = _request(account, key, now)
        self.store.queue_profile_key([(request, [CONTACT])], key.key)
        return [request.message_id]

    def share_with_own(self, own_devices: tuple[int, ...], now: float) -> list[bytes]:
        """Give our key to the own devices that do not hold it (one PROFILE_KEY to our own
        account reaches them all). A linked device that holds no key yet makes none here: it
        is given the account's. Returns the outbox ids queued."""
        others = [d for d in own_devices if d != self.me.device_id]
        if not self.share or not others:
            return []
        key = self.own_key(now, create=self.me.device_id == 1)
        if key is None:
            return []
        given = self.store.profile_key_given(self.me.account)
        if all(given.get(d) == key.key for d in others):
            return []
        request = _request(self.me.account, key, now)
        self.store.queue_profile_key([(request, others)], key.key)
        return [request.message_id]

    # ------------------------------------------------------------ blocking

    def block(self, account: str, now: float, own_devices: tuple[int, ...]) -> list[bytes]:
        """Block ``account``: its messages are dropped from now on, and a new profile key goes
        to every other contact we had shared with and to the own devices. Returns the outbox
        ids queued (empty: it was blocked already)."""
        if account == self.me.account:
            raise ValueError("an account cannot block itself")
        old = self.own_key(now)
        assert old is not None
        new = new_profile_key(self.me.device_id, now, old.generation + 1)
        contacts = [
            a for a in self.store.contacts_given() if a != account and a not in self.blocked
        ]
        requests = [(_request(a, new, now), [CONTACT]) for a in contacts if self.share]
        others = [d for d in own_devices if d != self.me.device_id]
        if others and self.share:
            requests.append((_request(self.me.account, new, now), others))
        if not self.store.block(account, now, new, [(r, d) for r, d in requests]):
            return []
        self.blocked.add(account)
        log.info("= blocked %s; the profile key is rotated", account)
        self._want_refresh()  # the relay gets the new access key
        return [r.message_id for r, _ in requests]

    def unblock(self, account: str) -> bool:
        """Unblock ``account``; it is given our key the next time we send it anything."""
        done = self.store.unblock(account)
        self.blocked.discard(account)
        return done

    # ------------------------------------------------------------ the relay

    def relay_has_key(self) -> bool:
        """Whether the relay holds the access key of this account's current profile key."""
        key = self.store.profile_key()
        return key is not None and self.store.access_key_registered() == access_key(key.key)

    async def wait_relay_has_key(self) -> None:
        """Until :meth:`relay_has_key` (the caller bounds the wait: ``asyncio.timeout``)."""
        if self.relay_has_key():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._registered_waiters.append(fut)
        self._want_refresh()
        await fut

    def on_open(self) -> None:
        """The session is open: register the access key, get a certificate, as needed."""
        self._want_refresh()

    def on_close(self) -> None:
        """The client closes: no renewal timer outlives it."""
        if self._renewal is not None:
            self._renewal.cancel()
            self._renewal = None

    def key_changed(self) -> None:
        """Another own device's key was adopted: the relay must get its access key."""
        self._want_refresh()

    def _want_refresh(self) -> None:
        if not self._is_open():
            return  # on_open() asks when the next session opens
        if self._refreshing:
            self._spawn_again = True
            return
        self._refreshing = True
        self._spawn(self._refresh())

    async def _refresh(self) -> None:
        try:
            await self._refresh_once()
        except (RefusedError, ConnectionBroken, StoreError) as exc:
            log.info("! sealed-sender credentials not renewed: %s", exc)
        finally:
            self._refreshing = False
        if self._spawn_again:
            self._spawn_again = False
            self._want_refresh()

    def _wake_waiters(self) -> None:
        waiters, self._registered_waiters = self._registered_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def _refresh_once(self) -> None:
        time = self._clock
        key = self.store.profile_key()
        if key is None and self.me.device_id == 1:
            key = self.own_key(time())
        if key is not None:
            wanted = access_key(key.key)
            if self.store.access_key_registered() != wanted:
                answer = await self._request(lambda rid: SetAccessKey(rid, wanted))
                self.store.set_access_key_registered(key.key, wanted)
                log.info("= the relay holds this account's access key")
                self._take(answer, time())
                if self.relay_has_key():
                    self._wake_waiters()
                else:  # the key changed meanwhile: its access key goes next
                    self._spawn_again = True
                return
        held = self._cert
        if held is None or held.expires_at - time() < SEALED_CERT_MARGIN:
            self._take(await self._request(lambda rid: SenderCertRequest(rid)), time())

    def _take(self, answer: object, now: float) -> None:
        """Keep the certificate of a SENDER_CERT, if it is one for this device under the
        pinned relay key, and arm its renewal."""
        if not isinstance(answer, SenderCert):
            return
        try:
            cert = SenderCertificate.parse(answer.certificate)
            root = self._trust_root()
            if root is None:
                raise CertificateError("no relay key pinned")
            cert.validate(PublicKey(root), int(now * 1000))
        except CertificateError as exc:
            log.warning("! the relay's sender certificate is not usable: %s", exc)
            return
        mine = (cert.account, cert.device) == (self.me.account, self.me.device_id)
        if not mine or cert.identity_key.raw != self._identity_key.raw:
            log.warning("! the relay's sender certificate names another device or key")
            return
        expires_at = min(answer.expires_at, cert.expires_ms / 1000)
        self._cert = _Certificate(cert, expires_at)
        self._arm(expires_at - SEALED_CERT_MARGIN - now)

    def _arm(self, delay: float) -> None:
        self.on_close()
        loop = asyncio.get_running_loop()
        self._renewal = loop.call_later(max(delay, 1.0), self._want_refresh)


def commit_profile_key(
    store: ClientStore,
    me: DeviceRef,
    seq: int,
    sender: DeviceRef,
    content: ProfileKey,
    now: float,
    writes: CryptoWrites,
) -> bool:
    """A received PROFILE_KEY (item ``seq``), committed with the cursor: a contact's is kept
    for its account; an own device's is adopted if it outranks ours. Returns whether this
    device's own key changed (the relay then needs its access key)."""
    if sender.account == me.account:
        return store.adopt_profile_key(seq, content, sender.device_id, writes)
    store.commit_contact_profile_key(seq, sender.account, content.key, now, writes)
    return False


def _request(recipient: str, key: ProfileKey, now: float) -> OutboxRequest:
    return OutboxRequest(
        new_message_id(now, os.urandom), recipient, key.serialize(), ContentKind.PROFILE_KEY, now
    )
