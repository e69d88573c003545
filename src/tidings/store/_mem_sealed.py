"""The tag records of the in-memory store (sealed sends, ``Store.submit_sealed``): per
``(recipient, tag)``, the copies still queued, whether one expired, and the times."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tidings.store import _sealed
from tidings.store.base import TAG_RETENTION, TagState


@dataclass(slots=True)
class _Tag:
    queued: int  #: device copies still queued
    expired: bool
    stored_at: float
    forget_at: float


class SealedTags:
    """Every tag record, by ``(recipient, tag)``."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, bytes], _Tag] = {}
        self._by_tag: dict[bytes, set[str]] = {}  #: the recipients of each tag

    def stored_at(self, recipient: str, tag: bytes) -> float | None:
        """When the send ``(recipient, tag)`` was stored; ``None``: not known."""
        record = self._records.get((recipient, tag))
        return None if record is None else record.stored_at

    def add(self, recipient: str, tag: bytes, copies: int, now: float, expires_at: float) -> None:
        """Record a sealed send of ``copies`` items, stored at ``now``."""
        self._records[recipient, tag] = _Tag(copies, False, now, expires_at + TAG_RETENTION)
        self._by_tag.setdefault(tag, set()).add(recipient)

    def gone(self, recipient: str, tag: bytes, *, expired: bool) -> None:
        """One copy of ``(recipient, tag)`` left its queue (acked, removed, or ``expired``)."""
        record = self._records.get((recipient, tag))
        if record is not None:
            record.queued -= 1
            record.expired = record.expired or expired

    def states(self, tags: Sequence[bytes]) -> list[TagState]:
        """See ``Store.tag_states``."""
        return [
            _sealed.combine(
                _sealed.state(record.queued, record.expired)
                for record in (self._records[r, tag] for r in self._by_tag.get(tag, ()))
            )
            for tag in tags
        ]

    def purge(self, now: float) -> None:
        """Forget the records past their retention."""
        for key in [key for key, record in self._records.items() if record.forget_at <= now]:
            del self._records[key]
            recipients = self._by_tag[key[1]]
            recipients.discard(key[0])
            if not recipients:
                del self._by_tag[key[1]]
