"""Cutting a history archive into HISTORY parts (:mod:`tidings.delivery.content_history`).

Each part holds as many entries, in order (newest first), as fit in one content within
:data:`PART_BUDGET` bytes; an archive has at most MAX_HISTORY_PARTS parts (entries beyond them
are left out: the oldest).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgpack

from ..delivery import MAX_BODY
from ..delivery.content_history import MAX_HISTORY_PARTS, History, HistoryEntry

__all__ = ["MAX_HISTORY_MESSAGES", "PART_BUDGET", "history_parts"]

#: Messages one archive holds at most (``send_history``'s default): months of a busy person's
#: chats, a few MB; each part is one queued item per own device at the relay.
MAX_HISTORY_MESSAGES = 10_000

#: Bytes of entries per part: a message's body limit, so a part fits a payload with the
#: envelope and padding around it, as a message does.
PART_BUDGET = MAX_BODY - 1024


def history_parts(
    for_device: int, archive_id: bytes, entries: Sequence[HistoryEntry]
) -> list[History]:
    """The parts of an archive of ``entries`` (at least one part, possibly empty)."""
    chunks: list[list[HistoryEntry]] = [[]]
    size = 0
    for e in entries:
        n = len(msgpack.packb(e.fields(), use_bin_type=True))
        if chunks[-1] and size + n > PART_BUDGET:
            if len(chunks) == MAX_HISTORY_PARTS:
                break
            chunks.append([])
            size = 0
        chunks[-1].append(e)
        size += n
    total = len(chunks)
    return [
        History(for_device, archive_id, i, total, tuple(chunk)) for i, chunk in enumerate(chunks, 1)
    ]
