"""The relay's prekey service: PREKEYS_UPLOAD, PREKEY_FETCH and PREKEYS_LOW (DESIGN §3, issue 3).

PREKEYS_UPLOAD stores a device's keys (its identity key never changes); PREKEY_FETCH takes a
bundle of another device's keys and tells the target's live session PREKEYS_LOW when the fetch
left it with few. Fetches are rate-limited per (fetching device, target device), per source
address and per new account, and a target hands out a budget of one-time prekeys per hour, then
bundles without them (:mod:`.limits`), so nobody can drain a device's one-time prekeys. Both
answer REQUEST_FAILED on refusal.

The handlers are functions of the :class:`~tidings.server.session.Session` that received the
frame; the session's state table decides when they may run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import IntegrityError, Rule, StoreError, StoreUnavailable
from ..store import DeviceRef, PreKey, PreKeyBundle, PreKeyCounts
from ..wire import (
    ErrorCode,
    KemKey,
    OneTimeKey,
    PrekeyBundle,
    PrekeyFetch,
    PrekeysLow,
    PrekeysStored,
    PrekeysUpload,
    SignedKey,
)
from .health import STORE_RETRY_AFTER

if TYPE_CHECKING:
    from .session import Session

#: Prekey fetches per (fetching device, target device) at once, refilled over
#: :data:`PREKEY_FETCH_WINDOW` seconds: Signal's limit (6 per 10 minutes), so a sender cannot
#: drain a device's one-time prekeys and force every new session onto the last-resort key.
PREKEY_FETCH_BURST = 6
PREKEY_FETCH_WINDOW = 600.0

#: Below this many one-time prekeys (EC or KEM) the owner is told PREKEYS_LOW: Signal-Android
#: refills below 10 (PreKeysSyncJob), as ``tidings.e2e.prekeys.PREKEY_LOW_WATERMARK``.
PREKEY_LOW_WATERMARK = 10

#: Most one-time prekeys of each kind the relay keeps per device: ten full uploads. Bounds the
#: storage one device can claim by uploading in a loop.
MAX_STORED_PREKEYS = 1000

#: Seconds a client is asked to wait after the store failed a request.
INTERNAL_RETRY_AFTER = 1.0


def bundle_frame(fetch: PrekeyFetch, bundle: PreKeyBundle) -> PrekeyBundle:
    """The PREKEY_BUNDLE answering ``fetch`` with what the store took."""
    s, o, k = bundle.signed_prekey, bundle.one_time, bundle.kem
    return PrekeyBundle(
        fetch.request_id,
        fetch.account,
        fetch.device_id,
        bundle.identity_key,
        SignedKey(s.key_id, s.public, s.signature),
        None if o is None else OneTimeKey(o.key_id, o.public),
        KemKey(k.key_id, k.public, k.signature, k.last_resort),
    )


async def handle_upload(session: Session, frame: PrekeysUpload) -> None:
    """PREKEYS_UPLOAD: store the session's device's keys, answer PREKEYS_STORED."""
    assert session.device is not None
    store = session.relay.store
    kem = [PreKey(k.key_id, k.public, k.signature, k.last_resort) for k in frame.kem_prekeys]
    one_time = [PreKey(k.key_id, k.public) for k in frame.one_time]
    try:
        held = await store.prekey_counts(session.device) or PreKeyCounts(0, 0)
        new_kem = sum(not k.last_resort for k in kem)
        if max(held.one_time + len(one_time), held.kem + new_kem) > MAX_STORED_PREKEYS:
            reason = f"at most {MAX_STORED_PREKEYS} one-time prekeys of each kind are kept"
            session.request_failed(frame.request_id, ErrorCode.INVALID_FIELD, reason)
            return
        s = frame.signed_prekey
        counts = await store.put_prekeys(
            session.device,
            frame.identity_key,
            PreKey(s.key_id, s.public, s.signature),
            one_time,
            kem,
            session.relay.now(),
        )
    except IntegrityError as exc:
        if exc.rule is not Rule.IDENTITY_KEY_CHANGED:
            raise
        reason = "identity key changed: re-register the device"
        session.request_failed(frame.request_id, ErrorCode.INVALID_FIELD, reason)
        return
    except StoreUnavailable as exc:  # logged by the relay, once per interval
        _unavailable(session, frame.request_id, exc)
        return
    except StoreError:
        session._log.exception("! store failed a prekey upload")
        session.request_failed(frame.request_id, ErrorCode.INTERNAL, "store failure; retry")
        return
    session._log.info(
        "= prekeys of %s: %d one-time, %d kem", session.device, counts.one_time, counts.kem
    )
    session._send(PrekeysStored(frame.request_id, counts.one_time, counts.kem))


async def handle_fetch(session: Session, frame: PrekeyFetch) -> None:
    """PREKEY_FETCH: take a bundle of the target device's keys, answer PREKEY_BUNDLE, and tell
    the target's live session PREKEYS_LOW if the fetch left it with few."""
    assert session.device is not None
    relay, rid = session.relay, frame.request_id
    now, mono = relay.now(), relay.monotonic()
    target = DeviceRef(frame.account, frame.device_id)
    new = await session.account_is_new()
    retry_after = relay.limits.prekey_fetch(session.device, target, session.peer_ip, new, mono)
    if retry_after > 0:
        session.request_failed(rid, ErrorCode.RATE_LIMITED, "prekey fetch rate limit", retry_after)
        return
    try:
        devices = await relay.store.devices(frame.account)
        if all(d.ref != target for d in devices):
            session.request_failed(rid, ErrorCode.NO_SUCH_ACCOUNT, f"no device {target}")
            return
        one_time = relay.limits.one_time_prekeys(target, mono)
        bundle = await relay.store.take_prekey_bundle(target, now, one_time=one_time)
        counts = None if bundle or one_time else await relay.store.prekey_counts(target)
    except StoreUnavailable as exc:  # logged by the relay, once per interval
        _unavailable(session, frame.request_id, exc)
        return
    except StoreError:
        session._log.exception("! store failed a prekey fetch")
        session.request_failed(rid, ErrorCode.INTERNAL, "store failure; retry")
        return
    if bundle is None and counts is not None and counts.kem:
        # The device's one-time budget is spent and it has no last-resort KEM prekey to hand
        # out in their place: the fetch waits for the budget instead.
        reason = f"one-time prekeys of {target} rate limited"
        wait = relay.limits.one_time_wait(target, mono)
        session.request_failed(rid, ErrorCode.RATE_LIMITED, reason, wait)
        return
    if bundle is None:
        session.request_failed(rid, ErrorCode.NO_PREKEYS, f"{target} has no prekeys")
        return
    session._send(bundle_frame(frame, bundle))
    owner = relay.sessions.get(target)
    if owner is not None:
        owner.prekeys_low(bundle.left)


def notify_if_low(session: Session, counts: PreKeyCounts) -> None:
    """Tell the session's device PREKEYS_LOW if the relay holds fewer than the watermark of its
    one-time prekeys (of either kind)."""
    if min(counts.one_time, counts.kem) < PREKEY_LOW_WATERMARK:
        session._send(PrekeysLow(counts.one_time, counts.kem))


def _unavailable(session: Session, request_id: int, exc: StoreUnavailable) -> None:
    session.relay.store_unavailable(exc)
    reason = "store unavailable; retry later"
    session.request_failed(request_id, ErrorCode.STORE_UNAVAILABLE, reason, STORE_RETRY_AFTER)
