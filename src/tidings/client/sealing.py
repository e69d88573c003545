"""Sealing the outbox entries the scheduler releases: one SEND frame each, one ciphertext per
target device (:class:`~tidings.client.crypto.DeviceCrypto`), or the reason it cannot go yet.

:func:`seal_entries` decides and encrypts; it writes nothing. The caller
(:class:`~tidings.client.outbox.Outbox`) saves the new ciphertexts with the session states
that produced them before anything is sent, holds the entries that wait for sessions (with the
rest of their lane, G4) and starts those fetches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..delivery import OutboxEntry
from ..e2e import NoSessionError, SendingChainMissingError
from ..errors import FrameError
from ..refs import DeviceRef
from ..wire import Frame, SealedSend, Send, Target
from .crypto import DeviceCrypto
from .recipients import Recipients
from .store import CryptoWrites, OutboxItem

__all__ = ["Sealed", "seal_entries"]


@dataclass(slots=True)
class Sealed:
    """What :func:`seal_entries` made of the released entries.

    Attributes:
        writes: the session changes of the new ciphertexts (to commit with them).
        frames: the SEND frames, and ``ids`` their entries, in order.
        ciphertexts: the new ``(message id, device, payload)`` to save before sending.
        targets: each sealed entry's target devices.
        notes: notes to self with no other device: nothing to relay (✓ at once).
        held: entries that wait (for sessions, or behind an entry of their lane that does).
        fetch: per lane, the devices whose sessions to fetch.
        invalid: ``(id, code, reason)`` of entries that cannot be sent as they are.
        sealed: ``(id, SEALED_SEND)`` of the entries that go sealed (:mod:`.sealed_outbox`;
            the SEND of their own copies waits for the SEALED_SENT).
    """

    writes: CryptoWrites
    frames: list[Frame] = field(default_factory=list)
    ids: list[bytes] = field(default_factory=list)
    ciphertexts: list[tuple[bytes, DeviceRef, bytes]] = field(default_factory=list)
    targets: dict[bytes, tuple[DeviceRef, ...]] = field(default_factory=dict)
    notes: list[bytes] = field(default_factory=list)
    held: list[bytes] = field(default_factory=list)
    fetch: dict[str, list[DeviceRef]] = field(default_factory=dict)
    invalid: list[tuple[bytes, int, str]] = field(default_factory=list)
    sealed: list[tuple[bytes, SealedSend]] = field(default_factory=list)


#: ``split(item, targets, payloads, now)``: the sealed form of an entry (its SEALED_SEND and the
#: SEND of its own copies), or ``None`` for a normal SEND (:meth:`SealedOutbox.split`).
Splitter = Callable[
    [OutboxItem, list[DeviceRef], dict[DeviceRef, bytes], float],
    tuple[SealedSend, Send | None] | None,
]


def seal_entries(
    entries: list[OutboxEntry],
    items: Mapping[bytes, OutboxItem],
    recipients: Recipients,
    crypto: DeviceCrypto,
    fresh: set[bytes],
    now: float,
    split: Splitter | None = None,
) -> Sealed:
    """Seal ``entries`` (their stored ``items``) for their targets (``recipients``).

    ``fresh``: ids known to have no saved ciphertext (just composed or queued): their saved
    ciphertexts are not read from the store. ``now``: the wall clock, for the writes.
    ``split``: which entries go sealed, and how (``None``: none).
    """
    out = Sealed(CryptoWrites(now))
    for e in entries:
        item = items.get(e.message_id)
        if item is None:
            continue
        if e.lane in out.fetch:
            out.held.append(e.message_id)
            continue
        targets = recipients.targets_of(item)
        if not targets:
            out.notes.append(e.message_id)
            continue
        saved: dict[DeviceRef, bytes] | None = {} if e.message_id in fresh else None
        missing = crypto.missing_sessions(item, targets, saved)
        try:
            if not missing:
                payloads, new = crypto.seal(item, targets, out.writes, saved)
        except (NoSessionError, SendingChainMissingError):
            missing = list(targets)
        if missing:
            out.held.append(e.message_id)
            out.fetch[e.lane] = missing
            continue
        sealed = None if split is None else split(item, targets, payloads, now)
        if sealed is not None:
            out.ciphertexts += new
            out.targets[item.message_id] = tuple(targets)
            out.sealed.append((e.message_id, sealed[0]))
            continue
        try:
            frame = Send(
                item.message_id,
                item.recipient,
                tuple(Target(t.account, t.device_id, payloads[t]) for t in targets),
            )
        except FrameError as exc:  # cannot be sent as it is: fail it, keep the rest going
            out.invalid.append((e.message_id, exc.code, exc.reason))
            continue
        out.ciphertexts += new
        out.targets[item.message_id] = tuple(targets)
        out.frames.append(frame)
        out.ids.append(e.message_id)
    return out
