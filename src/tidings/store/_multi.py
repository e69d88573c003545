"""The rules of a multi-recipient send, shared by every backend (see ``Store.submit_multi``).

A multi-send is decided per recipient account by the very rules of a one-to-one send
(:mod:`tidings.store._rules`): each account's devices are checked as if it were the recipient
of a :class:`~tidings.store.base.Submission` naming them (every current device; the sender's own
account: every device but the sender), then every queue. All or nothing: one account that
refuses refuses the whole send, and the refusal names every account whose device set is off,
so the sender fixes them in one round (Signal's multi-recipient 409 lists them all).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from tidings.store._rules import check_targets, first_full, is_stranger
from tidings.store.base import DeviceRef, MultiRefused, MultiSubmission, QueueFull, Submission

#: Per device: ``(depth, strangers)`` — items queued, and of them items from strangers.
Counts = Callable[[DeviceRef], tuple[int, int]]


def per_account(sub: MultiSubmission) -> list[Submission]:
    """The one-to-one view of ``sub``: one :class:`Submission` per recipient account."""
    return [
        Submission(
            sender=sub.sender,
            message_id=sub.message_id,
            recipient=account,
            payloads=parts,
            now=sub.now,
            expires_at=sub.expires_at,
            max_queue=sub.max_queue,
            max_stranger_queue=sub.max_stranger_queue,
        )
        for account, parts in sub.recipients
    ]


def decide(
    sub: MultiSubmission,
    current: Mapping[str, Collection[DeviceRef]],
    counts: Counts,
    is_contact: Callable[[str, str], bool],
) -> tuple[MultiRefused | None, list[bool]]:
    """Apply the rules to ``sub``.

    Args:
        sub: the send.
        current: the current devices of each recipient account that exists (absent: no such
            account).
        counts: a device's ``(depth, strangers)``.
        is_contact: ``is_contact(account, contact)``: whether ``account`` ever sent to
            ``contact``.

    Returns:
        The refusal (``None``: store it), and per recipient account, in order, whether the send
        is a stranger's to it (its items count against the stranger share).
    """
    views = per_account(sub)
    unknown = tuple(view.recipient for view in views if view.recipient not in current)
    mismatches = []
    for view in views:
        devices = current.get(view.recipient)
        if devices is not None:
            mismatch = check_targets(view, devices, True)
            if mismatch is not None:
                mismatches.append((view.recipient, mismatch))
    strangers = [is_stranger(view, is_contact) for view in views]
    if unknown or mismatches:
        return MultiRefused(unknown=unknown, mismatches=tuple(mismatches)), strangers
    full = first_full_of(views, strangers, counts)
    return (None if full is None else MultiRefused(full=full)), strangers


def first_full_of(
    views: list[Submission], strangers: list[bool], counts: Counts
) -> QueueFull | None:
    """The first device, in send order, at its queue limit or stranger share."""
    for view, stranger in zip(views, strangers, strict=True):
        full = first_full(
            view,
            lambda ref: counts(ref)[0],
            (lambda ref: counts(ref)[1]) if stranger else None,
        )
        if full is not None:
            return full
    return None


def new_contacts(sub: MultiSubmission) -> list[tuple[str, str]]:
    """The ``(sender account, recipient account)`` pairs a stored ``sub`` makes contacts."""
    own = sub.sender.account
    return [(own, account) for account, _ in sub.recipients if account != own]
