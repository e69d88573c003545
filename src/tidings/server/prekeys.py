"""The relay's prekey limits and answer (DESIGN §3, issue 3).

PREKEYS_UPLOAD stores a device's keys (its identity key never changes); PREKEY_FETCH takes a
bundle of another device's keys and tells the target's live session PREKEYS_LOW when the fetch
left it with few. Fetches are rate-limited per (fetching device, target device), per source
address and per new account, and a target hands out a budget of one-time prekeys per hour, then
bundles without them (:mod:`.limits`), so nobody can drain a device's one-time prekeys. Both
answer REQUEST_FAILED on refusal.

The rules are the connection core's (:mod:`.core_prekeys`); this module holds their limits and
the PREKEY_BUNDLE frame, and imports no other part of the relay.
"""

from __future__ import annotations

from ..store import PreKeyBundle
from ..wire import KemKey, OneTimeKey, PrekeyBundle, PrekeyFetch, SignedKey

__all__ = [
    "MAX_STORED_PREKEYS",
    "PREKEY_FETCH_BURST",
    "PREKEY_FETCH_WINDOW",
    "PREKEY_LOW_WATERMARK",
    "bundle_frame",
]

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
