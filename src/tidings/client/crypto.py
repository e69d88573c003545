"""End-to-end encryption for one device: sessions per peer device, sealing and opening payloads.

:class:`DeviceCrypto` sits between the outbox/inbox and the sans-I/O `tidings.e2e` package:

* ``seal`` turns an outbox entry into one payload per target device (a PQXDH-started Double
  Ratchet session per device; sessions are built from prekey bundles by ``install_bundle``);
  a retry sends the ciphertexts saved the first time, byte for byte;
* ``open`` turns a DELIVER payload into content bytes, or raises `DecryptionError`;
* identity keys are pinned per peer device on first use; a different key later is accepted
  (as Signal does) but reported with :class:`~tidings.client.events.IdentityChanged`, and the
  account's verified safety number is dropped;
* ``retry_request_allowed`` / ``rebuild`` implement the rate-limited retry requests.

Invariants: every change to a session is written into a :class:`CryptoWrites` that the caller
hands to the store method storing what the change produced (the message, the ciphertexts), so
it reaches the disk in that transaction and no other; if that transaction fails (or the batch
it is part of is rolled back) the store calls :meth:`DeviceCrypto.reload` (its rollback hook),
which drops the cached sessions, so memory never runs ahead of the disk: the next use loads
each session as the store holds it (with what the open batch already wrote).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..delivery import ContentKind
from ..delivery.ratelimit import RateLimiter, try_take_all
from ..e2e import (
    BundleError,
    EnvelopeType,
    KemPreKey,
    KeyPair,
    MessageType,
    OneTimePreKey,
    PreKeyBundle,
    PublicKey,
    Session,
    SignedPreKey,
    bundle_for_session,
    open_envelope,
    pad,
    safety_number_for_keys,
    seal_envelope,
    unpad,
)
from ..errors import ConfigError, DecryptionError, FrameError
from ..refs import DeviceRef
from ..wire import PrekeyBundle as BundleFrame
from .events import ClientEvent, IdentityChanged
from .prekeys import DeviceKeys
from .store import ClientStore, OutboxItem
from .store._crypto import KEM, ONE_TIME, SIGNED, CryptoWrites

__all__ = [
    "RETRY_REQUESTS_ALL_BURST",
    "RETRY_REQUESTS_ALL_INTERVAL",
    "RETRY_REQUEST_BURST",
    "RETRY_REQUEST_INTERVAL",
    "SESSION_REBUILD_INTERVAL",
    "DeviceCrypto",
    "Opened",
    "SafetyNumber",
]

#: Retry requests this device sends per sender device at once, then one per
#: :data:`RETRY_REQUEST_INTERVAL` seconds: a broken session costs a handful, a flood of
#: garbage cannot make us flood the sender.
RETRY_REQUEST_BURST = 10
RETRY_REQUEST_INTERVAL = 30.0
#: Retry requests this device sends to all senders together at once, then one per
#: :data:`RETRY_REQUESTS_ALL_INTERVAL` seconds: a few broken sessions at once are all asked,
#: but garbage from many fresh accounts (the lab's ``hostile-load``: 6 flooders × 10 each
#: drained the account's send budget, burst 100 at the relay's defaults, and its own messages
#: were refused RATE_LIMITED) cannot make this device spend its account's budget on answers.
RETRY_REQUESTS_ALL_BURST = 20
RETRY_REQUESTS_ALL_INTERVAL = 3.0

#: A sender rebuilds its session with a device at most once per this many seconds, however many
#: retry requests arrive (each rebuild takes a prekey, and fetches are limited to 6 per 10 min).
SESSION_REBUILD_INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class Opened:
    """A payload opened: the content bytes, and whether they came unencrypted (only a retry
    request may)."""

    content: bytes
    plaintext: bool = False


@dataclass(frozen=True, slots=True)
class SafetyNumber:
    """The safety number with an account: 60 digits, whether the user verified it, and the
    devices (with their pinned keys) it covers on each side."""

    number: str
    verified: bool
    local_devices: tuple[int, ...]
    remote_devices: tuple[int, ...]


class _StorePreKeys:
    """The responder's prekey lookup (`tidings.e2e.LocalKemPreKeys`) over the store."""

    def __init__(self, store: ClientStore) -> None:
        self.store = store

    def signed_prekey(self, prekey_id: int) -> KeyPair | None:
        row = self.store.prekey(SIGNED, prekey_id)
        return None if row is None else KeyPair.from_private(row.private)

    def one_time_prekey(self, prekey_id: int) -> KeyPair | None:
        row = self.store.prekey(ONE_TIME, prekey_id)
        return None if row is None else KeyPair.from_private(row.private)

    def kem_prekey(self, prekey_id: int) -> bytes | None:
        row = self.store.prekey(KEM, prekey_id)
        return None if row is None else row.private


class DeviceCrypto:
    """This device's sessions (see the module docstring).

    Args:
        store: the device's store (holding an end-to-end identity: `DeviceKeys.create`).
        me: this device.
        emit: where identity changes are reported.
        clock: wall clock (timestamps stored with keys and pins).
        rng: randomness for ratchet keys.
        monotonic: the clock of the rate limits (retry requests, resends, session rebuilds):
            a step of the wall clock must not stall them.
    """

    def __init__(
        self,
        store: ClientStore,
        me: DeviceRef,
        emit: Callable[[ClientEvent], None],
        clock: Callable[[], float],
        rng: Callable[[int], bytes] = os.urandom,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.me = me
        self._emit = emit
        self._clock = clock
        self._mono = monotonic
        self._rng = rng
        self.keys = DeviceKeys(store, rng)
        self._dh = self.keys.identity.dh_key_pair
        self._sessions: dict[DeviceRef, Session] = {}
        self._prekeys = _StorePreKeys(store)
        self._retry_limiter: RateLimiter[DeviceRef] = RateLimiter(
            1 / RETRY_REQUEST_INTERVAL, RETRY_REQUEST_BURST
        )
        self._retry_all: RateLimiter[str] = RateLimiter(
            1 / RETRY_REQUESTS_ALL_INTERVAL, RETRY_REQUESTS_ALL_BURST
        )
        self._resend_limiter: RateLimiter[DeviceRef] = RateLimiter(
            1 / RETRY_REQUEST_INTERVAL, RETRY_REQUEST_BURST
        )
        self._rebuilt: dict[DeviceRef, float] = {}
        store.on_rollback(self.reload)

    # ------------------------------------------------------------ sessions

    def session(self, device: DeviceRef) -> Session:
        """The session record with ``device`` (loaded once, then cached)."""
        s = self._sessions.get(device)
        if s is None:
            record = self.store.session_record(device)
            if record is None:
                s = Session(self._dh, self.keys.registration_id)
            else:
                s = Session.parse(record, self._dh)
            self._sessions[device] = s
        return s

    def has_session(self, device: DeviceRef) -> bool:
        """Whether an open session with ``device`` can encrypt now."""
        s = self.session(device)
        return s.open is not None and (s.open.ratchet.sending_chain_key is not None)

    def reload(self) -> None:
        """Forget cached sessions (a transaction that carried their writes failed)."""
        self._sessions.clear()

    def install_bundle(self, frame: BundleFrame) -> CryptoWrites:
        """Start a new session with the bundle's device (archiving any current one) and
        return the writes to commit; pins the identity key, reporting a change.

        Raises:
            tidings.e2e.BundleError: a signature does not verify, or a key the wire accepts is
                unusable (a 33-byte identity key, a KEM key failing FIPS 203's check): one
                error for every bad bundle, so the caller's lane is always released.
        """
        s, o, k = frame.signed_prekey, frame.one_time, frame.kem_prekey
        try:
            bundle = PreKeyBundle(
                frame.identity_key,
                SignedPreKey(s.key_id, s.public, s.signature, 0),
                None if o is None else OneTimePreKey(o.key_id, o.public),
                KemPreKey(k.key_id, k.public, k.signature, k.last_resort),
            )
        except FrameError as exc:
            raise BundleError(exc.reason) from exc
        pq = bundle_for_session(bundle)
        device = DeviceRef(frame.account, frame.device_id)
        writes = CryptoWrites(self._clock())
        session = self.session(device)
        session.initiate_pq(pq, self._rng)
        writes.sessions[device] = session.serialize()
        self._pin(device, frame.identity_key, writes)
        return writes

    # ------------------------------------------------------------ sending

    def missing_sessions(
        self,
        item: OutboxItem,
        targets: Iterable[DeviceRef],
        saved: Mapping[DeviceRef, bytes] | None = None,
    ) -> list[DeviceRef]:
        """The targets ``item`` cannot be sealed for yet (no session, nothing saved).
        ``saved``: its saved ciphertexts, if the caller knows them (else read from the store)."""
        if item.kind == ContentKind.RETRY_REQUEST:
            return []
        if saved is None:
            saved = self.store.sealed(item.message_id)
        return [t for t in targets if t not in saved and not self.has_session(t)]

    def seal(
        self,
        item: OutboxItem,
        targets: Iterable[DeviceRef],
        writes: CryptoWrites,
        saved: Mapping[DeviceRef, bytes] | None = None,
    ) -> tuple[dict[DeviceRef, bytes], list[tuple[bytes, DeviceRef, bytes]]]:
        """One payload per target; the new ciphertexts to save (with ``writes``) before
        sending. Call :meth:`missing_sessions` first: every target needs a session. ``saved``:
        as for :meth:`missing_sessions`.

        Raises:
            tidings.e2e.NoSessionError: a target has no session.
        """
        if item.kind == ContentKind.RETRY_REQUEST:
            plain = seal_envelope(EnvelopeType.PLAINTEXT, item.content)
            return {t: plain for t in targets}, []
        if saved is None:
            saved = self.store.sealed(item.message_id)
        padded = pad(item.content)
        payloads: dict[DeviceRef, bytes] = {}
        new: list[tuple[bytes, DeviceRef, bytes]] = []
        for t in targets:
            payload = saved.get(t)
            if payload is None:
                session = self.session(t)
                kind, data = session.encrypt(padded)
                sealed = seal_envelope(EnvelopeType(int(kind)), data)
                writes.sessions[t] = session.serialize()
                new.append((item.message_id, t, sealed))
                payloads[t] = sealed
            else:
                payloads[t] = payload
        return payloads, new

    def rebuild(self, device: DeviceRef, writes: CryptoWrites) -> bool:
        """Close the session with ``device`` (it could not decrypt us): the next message
        starts a new one from a fresh bundle. At most once per
        :data:`SESSION_REBUILD_INTERVAL`. Returns whether it closed it."""
        now = self._mono()
        if now - self._rebuilt.get(device, -1e18) < SESSION_REBUILD_INTERVAL:
            return False
        self._rebuilt[device] = now
        session = self.session(device)
        session.close()
        writes.sessions[device] = session.serialize()
        writes.forget_sealed.add(device)
        return True

    # ------------------------------------------------------------ receiving

    def open(self, sender: DeviceRef, payload: bytes, writes: CryptoWrites) -> Opened:
        """Open a payload from ``sender``; the session changes go into ``writes``.

        Raises:
            DecryptionError: it does not decrypt (the session and ``writes`` are unchanged).
        """
        kind, body = open_envelope(payload)
        if kind is EnvelopeType.PLAINTEXT:
            return Opened(body, plaintext=True)
        session = self.session(sender)
        result = session.decrypt(MessageType(int(kind)), body, self._rng, self._prekeys)
        if result.new_base_key is not None and result.used_prekey_id is None:
            raw = result.new_base_key.raw
            if self.store.base_key_seen(raw) or raw in writes.base_keys:
                # A replay of a message that started a session on reusable keys only.
                self._forget(sender)
                raise DecryptionError()
            writes.base_keys.append(raw)
        try:
            content = unpad(result.plaintext)
        except DecryptionError:
            self._forget(sender)
            raise
        writes.sessions[sender] = session.serialize()
        if result.used_prekey_id is not None:
            writes.used_prekeys.append((ONE_TIME, result.used_prekey_id))
        if result.used_kem_prekey_id is not None:
            writes.used_prekeys.append((KEM, result.used_kem_prekey_id))
        if result.new_base_key is not None:  # a continued session keeps its pinned identity
            self._pin(sender, result.their_identity.raw, writes)
        return Opened(content)

    def _forget(self, device: DeviceRef) -> None:
        """Drop the cached session with ``device``: the store still holds it as it was before
        this decryption (no transaction carried its writes); the next use loads it."""
        self._sessions.pop(device, None)

    def retry_request_allowed(self, sender: DeviceRef) -> bool:
        """Whether a retry request to ``sender`` is within its rate limit and this device's
        limit for all senders (takes a token from both, or from neither)."""
        takes: list[tuple[RateLimiter[Any], Hashable]] = [
            (self._retry_limiter, sender),
            (self._retry_all, "all"),
        ]
        return try_take_all(self._mono(), takes) == 0

    def resend_allowed(self, requester: DeviceRef) -> bool:
        """Whether to act on a retry request from ``requester`` (the same limit, mirrored:
        a forged flood of requests cannot make us resend without bound; takes a token)."""
        return self._resend_limiter.try_take(requester, self._mono()) == 0

    # ------------------------------------------------------------ identities

    def _pin(self, device: DeviceRef, key: bytes, writes: CryptoWrites) -> None:
        """Pin ``device``'s identity key. A different key than the pinned one is reported and
        drops the account's verified mark; so is a new device of an account whose safety
        number was verified (the number the user compared no longer holds). A new device of
        an unverified account — e.g. every device of a contact at first contact — is not."""
        pins = self.store.pinned_identities(device.account)
        pending = writes.pins.get(device)
        pinned = pins.get(device.device_id)
        current = pending[0] if pending is not None else (pinned[0] if pinned else None)
        if current == key:
            return
        changed = current is not None
        writes.pins[device] = (key, changed)
        if not changed and self.store.verified_number(device.account) is None:
            return
        writes.unverify.add(device.account)
        if device.account != self.me.account:
            self._emit(IdentityChanged(device, new_device=not changed))

    def safety_number(self, account: str) -> SafetyNumber | None:
        """The safety number with ``account`` over every pinned key on both sides (this
        device and the own devices it has sessions with; the contact's devices), or ``None``
        before any session with ``account``."""
        remote = self.store.pinned_identities(account)
        if not remote:
            return None
        own = self.store.pinned_identities(self.me.account)
        own[self.me.device_id] = (self.keys.identity.public.raw, None)
        number = safety_number_for_keys(
            [PublicKey(k).serialize() for k, _ in own.values()],
            self.me.account,
            [PublicKey(k).serialize() for k, _ in remote.values()],
            account,
        )
        verified = self.store.verified_number(account) == number
        return SafetyNumber(number, verified, tuple(sorted(own)), tuple(sorted(remote)))

    def mark_verified(self, account: str, typed: str | None, at: float) -> bool:
        """Record that the user compared the safety number with ``account``: ``typed`` is the
        number they compared (only its digits count); ``None`` drops the mark. Returns whether
        it was recorded (``False``: ``typed`` is not the current number; nothing stored).

        Raises:
            ConfigError: no session with ``account`` yet.
        """
        current = self.safety_number(account)
        if current is None:
            raise ConfigError(f"no session with {account} yet: exchange a message first")
        if typed is not None and "".join(c for c in typed if c.isdigit()) != current.number:
            return False
        self.store.set_verified(account, None if typed is None else current.number, at)
        return True
