"""This device's end-to-end keys: identity, signed, one-time and KEM prekeys, and their upload.

Policy (named defaults, issue 3):

* At creation: :data:`tidings.e2e.MAX_ONE_TIME_PREKEYS_PER_UPLOAD` (100) one-time X25519
  prekeys, :data:`KEM_BATCH` (99) one-time ML-KEM-1024 prekeys, one signed prekey and one
  last-resort KEM prekey — one PREKEYS_UPLOAD (at most 100 keys of each kind).
* Refill: when the relay holds fewer than :data:`tidings.e2e.PREKEY_LOW_WATERMARK` of a kind
  (PREKEYS_LOW, or the counts in PREKEYS_STORED), a new full batch of that kind.
* Rotation: the signed and last-resort prekeys are replaced every
  :data:`tidings.e2e.SIGNED_PREKEY_ROTATION` (a week); the replaced ones are kept
  :data:`REPLACED_PREKEY_KEEP` (messages queued at the relay may still name them) and then deleted.
* Every key is saved before it is uploaded and marked uploaded once the relay said
  PREKEYS_STORED, so a crash or a lost answer only means uploading again.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

from ..e2e import (
    MAX_ONE_TIME_PREKEYS_PER_UPLOAD,
    PREKEY_LOW_WATERMARK,
    SIGNED_PREKEY_ROTATION,
    IdentityKeyPair,
    generate_kem_prekey,
    generate_one_time_prekeys,
    generate_signed_prekey,
)
from ..wire import KemKey, OneTimeKey, PrekeysUpload, SignedKey
from .store import ClientStore
from .store._crypto import KEM, ONE_TIME, SIGNED, E2EIdentity, PreKeyRow

__all__ = ["KEM_BATCH", "REPLACED_PREKEY_KEEP", "DeviceKeys"]

#: How long a replaced signed (or last-resort KEM) prekey still opens new sessions: longer than
#: the relay's default retention (30 days), so a message that waited there until the last
#: moment still decrypts.
REPLACED_PREKEY_KEEP = 35 * 24 * 3600.0

#: One-time KEM prekeys per batch: one upload carries at most 100 KEM prekeys, and the
#: last-resort one travels with a new batch.
KEM_BATCH = MAX_ONE_TIME_PREKEYS_PER_UPLOAD - 1

#: Key ids stay below this (libsignal's ids are unsigned 32-bit; the relay takes any).
_MAX_KEY_ID = 2**31 - 1

Rng = Callable[[int], bytes]


class DeviceKeys:
    """This device's identity and prekeys, backed by the store.

    Args:
        store: the device's store.
        rng: randomness for keys.
    """

    def __init__(self, store: ClientStore, rng: Rng = os.urandom) -> None:
        self.store = store
        self._rng = rng
        e2e = store.e2e_identity()
        if e2e is None:
            raise ValueError("no end-to-end identity: call DeviceKeys.create first")
        self.identity = IdentityKeyPair(e2e.identity_seed)
        self.registration_id = e2e.registration_id

    @staticmethod
    def create(store: ClientStore, now: float, rng: Rng = os.urandom) -> bool:
        """Create the identity key and the first prekeys if the store has none. One
        transaction. Returns whether it created them."""
        if store.e2e_identity() is not None:
            return False
        identity = IdentityKeyPair.generate(rng)
        registration_id = struct.unpack(">H", rng(2))[0] % 16380 + 1  # libsignal: 1..16380
        rows, next_id = _batch(identity, 1, now, rng, signed=True, one_time=True, kem=True)
        return store.init_e2e(E2EIdentity(identity.seed, registration_id, next_id), rows)

    # ------------------------------------------------------------ what to upload

    def upload(self, request_id: int) -> tuple[PrekeysUpload, list[tuple[int, int]]]:
        """The PREKEYS_UPLOAD for every key not yet uploaded (always with the current signed
        prekey), and the ``(kind, key_id)`` to mark uploaded once PREKEYS_STORED answers."""
        signed = self.store.current_prekey(SIGNED)
        assert signed is not None and signed.signature is not None  # created with the identity
        pending = self.store.prekeys(uploaded=False)
        one_time = [OneTimeKey(p.key_id, p.public) for p in pending if p.kind == ONE_TIME]
        kem = [
            KemKey(p.key_id, p.public, p.signature or b"", p.last_resort)
            for p in pending
            if p.kind == KEM and p.replaced_at is None
        ]
        one_time = one_time[:MAX_ONE_TIME_PREKEYS_PER_UPLOAD]
        kem = _fit_kem(kem)
        frame = PrekeysUpload(
            request_id,
            self.identity.public.raw,
            SignedKey(signed.key_id, signed.public, signed.signature),
            tuple(one_time),
            tuple(kem),
        )
        sent = [(SIGNED, signed.key_id)]
        sent += [(ONE_TIME, k.key_id) for k in one_time] + [(KEM, k.key_id) for k in kem]
        return frame, sent

    def needs_upload(self) -> bool:
        """Whether some key is not yet uploaded."""
        return bool(self.store.prekeys(uploaded=False))

    # ------------------------------------------------------------ refill and rotation

    def refill(self, one_time_left: int, kem_left: int, now: float) -> bool:
        """Generate a new batch of each one-time kind the relay holds too few of (counting
        the ones saved but not yet uploaded). Returns whether it generated any."""
        waiting = self.store.prekeys(uploaded=False)
        one_time_left += sum(p.kind == ONE_TIME for p in waiting)
        kem_left += sum(p.kind == KEM and not p.last_resort for p in waiting)
        one_time = one_time_left < PREKEY_LOW_WATERMARK
        kem = kem_left < PREKEY_LOW_WATERMARK
        if not (one_time or kem):
            return False
        self._add(now, one_time=one_time, kem=kem)
        return True

    def rotate_if_due(self, now: float) -> bool:
        """Replace the signed and last-resort KEM prekeys if they are
        :data:`~tidings.e2e.SIGNED_PREKEY_ROTATION` old, and delete replaced ones older than
        :data:`REPLACED_PREKEY_KEEP`. Returns whether it rotated."""
        self.store.prune_replaced(now - REPLACED_PREKEY_KEEP)
        current = self.store.current_prekey(SIGNED)
        if current is not None and now - current.created_at < SIGNED_PREKEY_ROTATION:
            return False
        self._add(now, signed=True, replace=True)
        return True

    def _add(
        self,
        now: float,
        *,
        signed: bool = False,
        one_time: bool = False,
        kem: bool = False,
        replace: bool = False,
    ) -> None:
        e2e = self.store.e2e_identity()
        assert e2e is not None
        rows, next_id = _batch(
            self.identity,
            e2e.next_key_id,
            now,
            self._rng,
            signed=signed,
            one_time=one_time,
            kem=kem,
        )
        self.store.add_prekeys(rows, next_id, replace_at=now if replace else None)


def _batch(
    identity: IdentityKeyPair,
    first_id: int,
    now: float,
    rng: Rng,
    *,
    signed: bool = False,
    one_time: bool = False,
    kem: bool = False,
) -> tuple[list[PreKeyRow], int]:
    """New prekeys with ids from ``first_id`` (one counter for all kinds, never reused: at
    200 ids a refill it lasts ten million refills). A signed batch also holds a new
    last-resort KEM prekey."""
    n = first_id
    rows: list[PreKeyRow] = []
    if n + 2 + MAX_ONE_TIME_PREKEYS_PER_UPLOAD + KEM_BATCH > _MAX_KEY_ID:
        raise ValueError("prekey ids exhausted: register the device again")

    def next_id() -> int:
        nonlocal n
        n += 1
        return n - 1

    if signed:
        spk = generate_signed_prekey(next_id(), identity.sign, rng, now)
        p = spk.prekey
        rows.append(PreKeyRow(SIGNED, p.key_id, spk.private, p.public, p.signature, now))
        lr = generate_kem_prekey(next_id(), identity.sign, rng, last_resort=True)
        k = lr.prekey
        rows.append(
            PreKeyRow(KEM, k.key_id, lr.private, k.public, k.signature, now, last_resort=True)
        )
    if one_time:
        start = next_id()
        for _ in range(MAX_ONE_TIME_PREKEYS_PER_UPLOAD - 1):
            next_id()
        for otk in generate_one_time_prekeys(start, MAX_ONE_TIME_PREKEYS_PER_UPLOAD, rng):
            o = otk.prekey
            rows.append(PreKeyRow(ONE_TIME, o.key_id, otk.private, o.public, None, now))
    if kem:
        for _ in range(KEM_BATCH):
            kp = generate_kem_prekey(next_id(), identity.sign, rng, last_resort=False)
            k = kp.prekey
            rows.append(PreKeyRow(KEM, k.key_id, kp.private, k.public, k.signature, now))
    return rows, n


def _fit_kem(kem: list[KemKey]) -> list[KemKey]:
    """At most :data:`MAX_ONE_TIME_PREKEYS_PER_UPLOAD` KEM keys, the last-resort one first."""
    last = [k for k in kem if k.last_resort][-1:]
    rest = [k for k in kem if not k.last_resort]
    return last + rest[: MAX_ONE_TIME_PREKEYS_PER_UPLOAD - len(last)]
