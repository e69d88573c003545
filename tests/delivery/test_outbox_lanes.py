"""The scheduler's lane index against the plain definition (one pass over the whole outbox in
creation order, as it was computed before the index): for any sequence of operations, the same
entries go out, in the same order, and the same next deadline is reported."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tidings.delivery.outbox import OutboxEntry, OutboxScheduler, RetryPolicy
from tidings.wire import ErrorCode

LANES = ("bob", "carol", "dave")
CODES = (ErrorCode.QUEUE_FULL, ErrorCode.RATE_LIMITED, ErrorCode.DEVICE_MISMATCH, 0x7F)


def plain_select(entries: list[OutboxEntry], free: int, now: float) -> list[bytes]:
    """What handle_timer returns, by definition."""
    blocked: set[str] = set()
    out: list[bytes] = []
    for e in entries:
        if len(out) == free:
            break
        if e.in_flight or e.lane in blocked:
            continue
        if e.awaiting_devices or e.next_attempt_at > now:
            blocked.add(e.lane)
            continue
        out.append(e.message_id)
    return out


def plain_deadline(entries: list[OutboxEntry]) -> float | None:
    heads: dict[str, OutboxEntry] = {}
    for e in entries:
        if not e.in_flight:
            heads.setdefault(e.lane, e)
    return min((e.next_attempt_at for e in heads.values() if not e.awaiting_devices), default=None)


op = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(LANES), st.booleans()),
    st.tuples(st.just("tick"), st.floats(0, 1.5)),
    st.tuples(st.just("sent"), st.integers(0, 200)),
    st.tuples(st.just("refused"), st.integers(0, 200), st.sampled_from(CODES)),
    st.tuples(st.just("hold"), st.integers(0, 200), st.booleans()),
    st.tuples(st.just("drop"), st.integers(0, 200)),
    st.tuples(st.just("refreshed"), st.sampled_from(LANES)),
    st.tuples(st.just("disconnect")),
    st.tuples(st.just("connect")),
)


# a refused entry holds back its lane's later entries until its retry time (G4)
_HOLDS_ITS_LANE = [
    *[("add", "bob", False)] * 3,
    ("tick", 0.0),
    ("refused", 0, ErrorCode.QUEUE_FULL),
    ("tick", 0.1),
]


@settings(max_examples=300, deadline=None)
@example(_HOLDS_ITS_LANE, 1)
@given(st.lists(op, max_size=120), st.integers(1, 6))
def test_the_lane_index_agrees_with_the_plain_definition(
    ops: list[tuple[Any, ...]], window: int
) -> None:
    s = OutboxScheduler(RetryPolicy(lambda: 0.5, 0.5, 4.0), window=window)
    s.on_connect()
    connected, now, order = True, 0.0, 0
    for o in ops:
        kind = o[0]
        entries = s.entries()
        # answers and holds go to entries in flight, drops to the others (else nothing happens)
        pool = [e.message_id for e in entries if e.in_flight == (kind != "drop")]
        pick = (
            pool[o[1] % len(pool)] if pool and kind in ("sent", "refused", "hold", "drop") else b""
        )
        if kind == "add":
            order += 1
            # now and then one created before the last (re-sorted on add); orders stay unique
            at = order * 10 - (25 if o[2] and order > 3 else 0)
            s.add(OutboxEntry(order.to_bytes(16, "big"), order=at, lane=o[1]))
        elif kind == "tick":
            now += o[1]
            free = s.window - s.in_flight
            expected = plain_select(entries, free, now) if connected else []
            got = [e.message_id for e in s.handle_timer(now)]
            assert got == expected
            assert s.next_deadline() == (
                plain_deadline(s.entries()) if connected and s.in_flight < s.window else None
            )
        elif kind == "sent" and pick:
            s.on_sent(pick)
        elif kind == "refused" and pick:
            s.on_refused(pick, int(o[2]), "no", 1.0, now)
        elif kind == "hold" and pick:
            s.hold(pick, now + 1.0 if o[2] else None)
        elif kind == "drop" and pick:
            s.drop(pick)
        elif kind == "refreshed":
            s.devices_refreshed(o[1], now)
        elif kind == "disconnect":
            s.on_disconnect()
            connected = False
        elif kind == "connect":
            s.on_connect()
            connected = True
        assert len(s) == len(s.entries())
