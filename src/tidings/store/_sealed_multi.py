"""The rules of a sealed multi-recipient send, shared by every backend (see
``Store.submit_sealed_multi``; docs/protocol.md §14.3).

A sealed multi-send is a sealed send (:mod:`tidings.store._sealed`) to several accounts at
once, all or nothing, its body stored once as a multi-send's (:mod:`tidings.store._multi`).
Rules, in this order, inside the write's transaction:

1. Access: each account's access key, compared in constant time with the stored one
   (:func:`denied`). Any account denied refuses the send, naming every denied account and
   nothing else (no device set, no tag is looked at: neither can be probed without the keys).
2. Duplicate: the tag known for any of the accounts is ``Stored(duplicate=True)`` (the
   backend's part: it owns the tag records). A sealed multi-send stores the records of all its
   accounts or none, so one found means the send was stored.
3. Device sets: each account's named devices must be exactly its current ones (every account
   whose set is off is named, with ``missing`` and ``stale``).
4. Queues: the first device at the queue limit, then at the stranger share (every sealed item
   counts as a stranger's).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from tidings.errors import IntegrityError, Rule
from tidings.store import _sealed
from tidings.store.base import (
    DeviceMismatch,
    DeviceRef,
    QueueFull,
    SealedMultiRefused,
    SealedMultiSubmission,
)


def denied(sub: SealedMultiSubmission, keys: Mapping[str, bytes]) -> SealedMultiRefused | None:
    """Rule 1 against the stored access ``keys`` of the accounts that have one: every account
    is compared, in constant time each, whatever the others' outcome."""
    refused = tuple(
        account
        for account, presented, _ in sub.recipients
        if not _sealed.access_ok(keys.get(account), presented)
    )
    return SealedMultiRefused(denied=refused) if refused else None


def decide(
    sub: SealedMultiSubmission,
    current: Mapping[str, Collection[DeviceRef]],
    depth: Callable[[DeviceRef], int],
    strangers: Callable[[DeviceRef], int],
) -> SealedMultiRefused | None:
    """Rules 3 and 4 for ``sub`` against each account's ``current`` devices and their counts
    (``depth``: items queued; ``strangers``: of them, strangers' and sealed ones).

    Raises:
        IntegrityError: a device is named twice (a caller bug, not a stale view).
    """
    mismatches = []
    for account, _, parts in sub.recipients:
        named = {ref for ref, _ in parts}
        if len(named) != len(parts):
            raise IntegrityError(Rule.DUPLICATE_TARGET)
        expected = set(current.get(account, ()))
        if named != expected:
            mismatch = DeviceMismatch(
                missing=tuple(sorted(expected - named)), stale=tuple(sorted(named - expected))
            )
            mismatches.append((account, mismatch))
    if mismatches:
        return SealedMultiRefused(mismatches=tuple(mismatches))
    share = sub.max_stranger_queue
    for _, _, parts in sub.recipients:
        for ref, _ in parts:
            if depth(ref) >= sub.max_queue:
                return SealedMultiRefused(full=QueueFull(device=ref, limit=sub.max_queue))
            if share is not None and strangers(ref) >= share:
                return SealedMultiRefused(full=QueueFull(device=ref, limit=share))
    return None


def device_count(sub: SealedMultiSubmission) -> int:
    """How many items ``sub`` stores (the shared body's references)."""
    return sum(len(parts) for _, _, parts in sub.recipients)
