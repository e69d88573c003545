"""The rules of a sealed send and of its tag records, shared by every backend (see
``Store.submit_sealed`` and ``Store.tag_states``; docs/protocol.md §14.2).

Rules, in this order, inside the write's transaction:

1. Access: the send's access key must equal the recipient account's stored one, compared in
   constant time (:func:`access_ok`). No such account, no key registered and another key are one
   answer, :class:`~tidings.store.base.AccessDenied`, so that a sender cannot probe accounts —
   and it comes before the duplicate check, so a tag cannot be probed without the key either.
2. Duplicate: a known ``(recipient, tag)`` is ``Stored(duplicate=True)`` (the backend's part:
   it owns the tag records).
3. Device set: the named devices must be exactly every current device of the recipient
   (:func:`decide`); there are no own copies (the sender is unknown).
4. Queue limit, then the stranger share: every sealed item counts as a stranger's (the relay
   cannot know the sender is one the account writes to), so a device holding
   ``max_stranger_queue`` items of strangers refuses the send.

A tag record's state (:func:`state`): ``EXPIRED`` once a copy expired unfetched, else
``QUEUED`` while a copy waits, else ``DELIVERED``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Collection, Iterable

from tidings.errors import IntegrityError, Rule
from tidings.store.base import (
    DeviceMismatch,
    DeviceRef,
    QueueFull,
    SealedSubmission,
    TagState,
)

#: Compared against when the account has no key, so that both cases do the same work.
_NO_KEY = bytes(16)


def access_ok(stored: bytes | None, presented: bytes) -> bool:
    """Whether ``presented`` is the account's access key ``stored`` (``None``: the account has
    none, or does not exist), in time independent of where they differ."""
    same = hmac.compare_digest(_NO_KEY if stored is None else stored, presented)
    return same and stored is not None


def decide(
    sub: SealedSubmission,
    current: Collection[DeviceRef],
    depth: Callable[[DeviceRef], int],
    strangers: Callable[[DeviceRef], int],
) -> DeviceMismatch | QueueFull | None:
    """Rules 3 and 4 for ``sub`` against the recipient's ``current`` devices and their counts
    (``depth``: items queued; ``strangers``: of them, strangers' and sealed ones).

    Raises:
        IntegrityError: a device is named twice (a caller bug, not a stale view).
    """
    named = {ref for ref, _ in sub.payloads}
    if len(named) != len(sub.payloads):
        raise IntegrityError(Rule.DUPLICATE_TARGET)
    if len(named) != len(current) or not all(ref in current for ref in named):
        expected = set(current)
        return DeviceMismatch(
            missing=tuple(sorted(expected - named)), stale=tuple(sorted(named - expected))
        )
    share = sub.max_stranger_queue
    for ref, _ in sub.payloads:
        if depth(ref) >= sub.max_queue:
            return QueueFull(device=ref, limit=sub.max_queue)
        if share is not None and strangers(ref) >= share:
            return QueueFull(device=ref, limit=share)
    return None


def state(queued: int, expired: bool) -> TagState:
    """The state of one tag record."""
    if expired:
        return TagState.EXPIRED
    return TagState.QUEUED if queued > 0 else TagState.DELIVERED


def combine(states: Iterable[TagState]) -> TagState:
    """The state of a tag from its records' (several recipients' sends may share a tag):
    ``EXPIRED``, else ``QUEUED``, else ``DELIVERED``, the first that one of them has;
    ``UNKNOWN`` without records."""
    found = set(states)
    for candidate in (TagState.EXPIRED, TagState.QUEUED, TagState.DELIVERED):
        if candidate in found:
            return candidate
    return TagState.UNKNOWN
