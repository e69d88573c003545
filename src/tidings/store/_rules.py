"""The submit rules every backend applies, in this order, inside the submit transaction.

1. Duplicate: a known ``(sender, message_id)`` is answered ``Stored(duplicate=True)`` before
   anything else is looked at (the backend does this: it owns the idempotency records).
2. Targets: each device may be named once (:func:`check_targets`).
3. Device set: the named devices must be every current device of the recipient account, and of
   the sender's other devices either all or none (DESIGN §3, Signal's 409/410 rule). A send to
   the sender's own account must name all its other devices (there, they are the recipient).
   "None" lets receipts and retry requests skip the own devices, which have no use for them
   and which an offline one would otherwise fill its queue with.
4. Queue limit: a target whose inbox holds ``max_queue`` items refuses the whole send
   (:func:`first_full`, DESIGN §5 back-pressure).
5. Stranger share: a send from an account the recipient account never sent to (a stranger)
   is refused when a recipient device holds ``max_stranger_queue`` items from strangers
   (:func:`first_full` too), so a crowd of new accounts cannot take a device's whole queue from
   the people it writes to. The sender's own copies are never a stranger's.

Keeping them here makes the two backends agree by construction; the conformance suite checks it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from tidings.errors import IntegrityError, Rule
from tidings.store.base import DeviceMismatch, DeviceRef, QueueFull, Submission


def check_targets(
    sub: Submission, current: Collection[DeviceRef], recipient_known: bool
) -> DeviceMismatch | None:
    """Check the device set of a send.

    Args:
        sub: the send.
        current: the current devices of ``sub.recipient`` and of the sender's account (a set
            or a mapping: membership is tested).
        recipient_known: whether the recipient account exists.

    Returns:
        ``None`` when the named devices are every current device of the recipient and all or
        none of the sender's other devices; else what differs. ``missing`` names own devices
        only when the send named some own device (current or not) but not all of them.

    Raises:
        IntegrityError: a device is named twice (a caller bug, not a stale view).
    """
    named = {ref for ref, _ in sub.payloads}
    if len(named) != len(sub.payloads):
        raise IntegrityError(Rule.DUPLICATE_TARGET)
    if not recipient_known:
        # The server answers "no such account" itself; this only keeps the store total.
        stale = sorted(ref for ref in named if ref.account == sub.recipient)
        return DeviceMismatch(missing=(), stale=tuple(stale))
    sender = sub.sender
    own = sender.account
    # The common cases, without sets: every named device current, none of them the sender, and
    # as many as all current devices but the sender (with own copies) or as the recipient's.
    if sender not in named and all(ref in current for ref in named):
        if len(named) == len(current) - (sender in current):
            return None
        if own != sub.recipient and not any(ref.account == own for ref in named):
            recipients = sum(1 for ref in current if ref.account == sub.recipient)
            if len(named) == recipients:
                return None
    expected = set(current)
    expected.discard(sender)
    if own != sub.recipient and not any(ref.account == own for ref in named):
        expected = {ref for ref in expected if ref.account != own}  # no own copies: fine
    return DeviceMismatch(
        missing=tuple(sorted(expected - named)), stale=tuple(sorted(named - expected))
    )


def is_stranger(sub: Submission, is_contact: Callable[[str, str], bool]) -> bool:
    """Whether ``sub`` comes from a stranger to its recipient and a share applies to it.

    ``is_contact(account, contact)``: whether ``account`` ever sent to ``contact``.
    """
    own = sub.sender.account
    return (
        sub.max_stranger_queue is not None
        and own != sub.recipient
        and not is_contact(sub.recipient, own)
    )


def first_full(
    sub: Submission,
    depth: Callable[[DeviceRef], int],
    strangers: Callable[[DeviceRef], int] | None = None,
) -> QueueFull | None:
    """The first target, in payload order, whose inbox is at ``sub.max_queue`` items, or — with
    ``strangers`` (the send is a stranger's, see :func:`is_stranger`) — a recipient device
    holding ``sub.max_stranger_queue`` items from strangers; ``None`` if there is none."""
    for ref, _ in sub.payloads:
        if depth(ref) >= sub.max_queue:
            return QueueFull(device=ref, limit=sub.max_queue)
        share = sub.max_stranger_queue
        if (
            strangers is not None
            and share is not None
            and ref.account == sub.recipient
            and strangers(ref) >= share
        ):
            return QueueFull(device=ref, limit=share)
    return None
