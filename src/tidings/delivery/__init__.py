"""The delivery layer: sans-I/O rules of the client's outbox, ordering, statuses and content.

Nothing here does I/O, reads the clock or the OS's randomness (DESIGN §2): ``now`` and ``rng``
are arguments. Modules:

* :mod:`.content` — the client-to-client content codec inside the server's opaque payloads.
* :mod:`.status` — per-device statuses, the transition rule, the per-message roll-up.
* :mod:`.ordering` — per-sender-device counter order with gap detection (G4).
* :mod:`.outbox` — which outbox entries to send when, and what each answer means (G2, G7).
* :mod:`.clocks` — the monotonic clock for delays, the wall clock for people, and conversions.
"""

from .clocks import ClockReading
from .content import (
    CONTENT_VERSION,
    MAX_BODY,
    MAX_CONTENT,
    MAX_CONVERSATION,
    MAX_RECEIPT_IDS,
    Content,
    ContentError,
    ContentKind,
    Message,
    Receipt,
    ReceiptKind,
    Resend,
    RetryRequest,
    direct_conversation,
    direct_members,
    parse_content,
)
from .ordering import (
    MAX_EXPIRED_NOTICES,
    MAX_HELD_PER_SENDER,
    MAX_MISSING_RANGES,
    ORDER_HOLD_SECONDS,
    Duplicate,
    GapDetected,
    GapSkipped,
    OrderEvent,
    Reorderer,
    SenderDevice,
    SkipReason,
    StreamKey,
    StreamState,
    Surfaced,
)
from .outbox import (
    OUTBOX_WINDOW,
    REFUSALS,
    RETRY_BASE,
    RETRY_CAP,
    Done,
    Failed,
    OutboxAction,
    OutboxEntry,
    OutboxScheduler,
    RefreshDevices,
    Refusal,
    RetryAt,
    RetryPolicy,
    classify_refusal,
)
from .status import GLYPHS, Status, advance, glyph, rollup

__all__ = [
    "CONTENT_VERSION",
    "GLYPHS",
    "MAX_BODY",
    "MAX_CONTENT",
    "MAX_CONVERSATION",
    "MAX_EXPIRED_NOTICES",
    "MAX_HELD_PER_SENDER",
    "MAX_MISSING_RANGES",
    "MAX_RECEIPT_IDS",
    "ORDER_HOLD_SECONDS",
    "OUTBOX_WINDOW",
    "REFUSALS",
    "RETRY_BASE",
    "RETRY_CAP",
    "ClockReading",
    "Content",
    "ContentError",
    "ContentKind",
    "Done",
    "Duplicate",
    "Failed",
    "GapDetected",
    "GapSkipped",
    "Message",
    "OrderEvent",
    "OutboxAction",
    "OutboxEntry",
    "OutboxScheduler",
    "Receipt",
    "ReceiptKind",
    "RefreshDevices",
    "Refusal",
    "Reorderer",
    "Resend",
    "RetryAt",
    "RetryPolicy",
    "RetryRequest",
    "SenderDevice",
    "SkipReason",
    "Status",
    "StreamKey",
    "StreamState",
    "Surfaced",
    "advance",
    "classify_refusal",
    "direct_conversation",
    "direct_members",
    "glyph",
    "parse_content",
    "rollup",
]
