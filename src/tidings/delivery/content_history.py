"""HISTORY content: one part of an archive of past messages, from one device of an account to
a newly linked one (issue 13), end-to-end encrypted like any content.

Layout (a content array, see :mod:`.content`)::

    HISTORY  [1, 6, for_device: int, archive_id: bin16, part: int, parts: int,
              [[message_id: bin16, sender_account: str, sender_device: int,
                conversation: str, counter: int, sent_at: float, body: bin,
                recipient: str | nil, read: bool], ...]]

It goes to the sender's own account (every other device gets the ciphertext; only
``for_device`` imports it). Entries are newest first across the whole archive (part 1 holds the
newest), so a device that imports the parts in order puts each older message before the ones
it has. An entry's ``recipient`` is set for a message the account sent (to that account), nil
for one it received; ``read`` says whether it was read. Disappearing messages are never part
of an archive. Invariants as :mod:`.content`: valid or unbuildable; :func:`parse_history` refuses
anything else with :class:`ContentError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import RemoteProtocolError
from ..wire import MESSAGE_ID_LEN, check_account
from .content import (
    MAX_BODY,
    ContentError,
    ContentKind,
    _check_conversation,
    _check_counter,
    _check_time,
    _pack,
)

__all__ = ["MAX_HISTORY_PARTS", "History", "HistoryEntry", "parse_history"]

#: Parts of one archive: 500 parts of up to ~60 KiB are ~30 MB of history, a bound on what a
#: link asks of the relay's queue (each part is one queued item per own device).
MAX_HISTORY_PARTS = 500

_U63 = (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One past message."""

    message_id: bytes
    sender_account: str
    sender_device: int
    conversation: str
    counter: int
    sent_at: float
    body: bytes
    recipient: str | None
    read: bool

    def __post_init__(self) -> None:
        if type(self.message_id) is not bytes or len(self.message_id) != MESSAGE_ID_LEN:
            raise ContentError(f"message ids are {MESSAGE_ID_LEN} bytes")
        try:
            check_account(self.sender_account)
            if self.recipient is not None:
                check_account(self.recipient)
        except RemoteProtocolError:
            raise ContentError("a history entry names valid accounts") from None
        if type(self.sender_device) is not int or not 1 <= self.sender_device <= _U63:
            raise ContentError("sender_device must be an integer in 1..2^63-1")
        _check_conversation(self.conversation)
        _check_counter(self.counter)
        _check_time("sent_at", self.sent_at)
        if type(self.body) is not bytes or len(self.body) > MAX_BODY:
            raise ContentError(f"body must be at most {MAX_BODY} bytes")
        if type(self.read) is not bool:
            raise ContentError("read must be true or false")

    def fields(self) -> list[Any]:
        return [
            self.message_id,
            self.sender_account,
            self.sender_device,
            self.conversation,
            self.counter,
            float(self.sent_at),
            self.body,
            self.recipient,
            self.read,
        ]


@dataclass(frozen=True, slots=True)
class History:
    """Part ``part`` of ``parts`` of archive ``archive_id``, for device ``for_device``."""

    KIND: ClassVar[ContentKind] = ContentKind.HISTORY
    for_device: int
    archive_id: bytes
    part: int
    parts: int
    entries: tuple[HistoryEntry, ...]

    def __post_init__(self) -> None:
        if type(self.for_device) is not int or not 1 <= self.for_device <= _U63:
            raise ContentError("for_device must be an integer in 1..2^63-1")
        if type(self.archive_id) is not bytes or len(self.archive_id) != 16:
            raise ContentError("an archive id is 16 bytes")
        if type(self.parts) is not int or not 1 <= self.parts <= MAX_HISTORY_PARTS:
            raise ContentError(f"parts must be 1..{MAX_HISTORY_PARTS}")
        if type(self.part) is not int or not 1 <= self.part <= self.parts:
            raise ContentError("part must be 1..parts")
        if type(self.entries) is not tuple or not all(
            type(e) is HistoryEntry for e in self.entries
        ):
            raise ContentError("entries must be history entries")

    def serialize(self) -> bytes:
        """The content bytes to hand to the end-to-end layer."""
        entries = [e.fields() for e in self.entries]
        return _pack(self.KIND, [self.for_device, self.archive_id, self.part, self.parts, entries])


def parse_history(fields: list[Any]) -> History:
    """The HISTORY content of ``fields`` (after version and kind).

    Raises:
        ContentError: not valid HISTORY content.
    """
    for_device, archive_id, part, parts, entries = fields
    if type(entries) is not list:
        raise ContentError("history entries must be an array")
    built = []
    for e in entries:
        if type(e) is not list or len(e) != 9:
            raise ContentError("a history entry has 9 fields")
        built.append(HistoryEntry(*e))
    return History(for_device, archive_id, part, parts, tuple(built))
