"""The checker's rules for a flood (``hostile-load``, :mod:`.scenarios_hostile`), and the
latencies of the legitimate users' messages before and during it.

They apply to a run whose record holds a ``flood`` fault: its detail is the flood process's
counters (:mod:`.hostile`) and the relay's ``limits``; on top of :data:`.checker_rules.RULES`
(``lost``: every legitimate message delivered; ``phantom``: no flood bytes shown as a message).

=============================  ===  ==========================================================
kind                           G    a violation is
=============================  ===  ==========================================================
``legit_refused``              G8   a lab device's message failed for good during a flooded run
                                    (a flood must delay, never deny, the users' messages)
``idle_not_closed``            G8   a peer that finished the handshake and never said who it is
                                    stayed open past ``auth_timeout`` + grace
``flood_over_budget``          G8   one flood account got more sends stored than its account's
                                    budget allows (burst + rate × its flood's duration)
``registrations_over_budget``  G8   more flood accounts registered than one address may per hour
``flood_unfelt``               —    the flood sent and nothing was refused: no limit bound, the
                                    run proved nothing
=============================  ===  ==========================================================
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .checker_rules import Violation
from .checker_stats import MessageTrace
from .checker_view import RunView
from .record import Fault

__all__ = ["HOSTILE_KINDS", "HOSTILE_RULES", "PHASES", "floods", "phase_latencies"]

HOSTILE_KINDS = (
    "legit_refused",
    "idle_not_closed",
    "flood_over_budget",
    "registrations_over_budget",
    "flood_unfelt",
)

#: The phases of a flooded run, by when a message was composed: before the flood, during it,
#: after it.
PHASES = ("quiet", "flood", "after")

_FAULT = "flood"


def floods(faults: Sequence[Fault]) -> list[Fault]:
    """The ``flood`` faults of a run."""
    return [f for f in faults if f.kind == _FAULT]


def _num(detail: Mapping[str, Any], key: str, default: float = 0.0) -> float:
    value = detail.get(key, default)
    return float(value) if isinstance(value, int | float) else default


def legit_refused(view: RunView) -> Iterator[Violation]:
    """``legit_refused``: a user's message refused for good while strangers flooded."""
    if not floods(view.record.faults):
        return
    for (sender, mid), row in sorted(view.sent.items()):
        if row.failed_code is not None:
            yield Violation(
                "legit_refused",
                mid,
                f"{sender} → {row.recipient} #{row.counter} failed for good (code"
                f" {row.failed_code}) during a flood",
                device=sender,
            )


def flood_limits(view: RunView) -> Iterator[Violation]:
    """``idle_not_closed``, ``flood_over_budget``, ``registrations_over_budget``,
    ``flood_unfelt``: the flood's counters against the relay's limits."""
    for f in floods(view.record.faults):
        d, limits = f.detail, f.detail.get("limits", {})
        auth = _num(limits, "auth_timeout") + _num(limits, "grace")
        if _num(d, "idle_open") > 0 or _num(d, "idle_close_max") > auth:
            yield Violation(
                "idle_not_closed",
                "",
                f"{int(_num(d, 'idle_open'))} handshake-only peers still open after {auth:g} s;"
                f" the slowest closed after {_num(d, 'idle_close_max'):g} s",
            )
        budget = _num(limits, "burst") + _num(limits, "rate") * _num(d, "flood_seconds") + 1
        if _num(d, "stored_max") > budget:
            yield Violation(
                "flood_over_budget",
                "",
                f"a flood account got {int(_num(d, 'stored_max'))} sends stored in"
                f" {_num(d, 'flood_seconds'):g} s; its budget is {budget:g}",
            )
        per_hour = _num(limits, "registrations_per_hour")
        if _num(d, "registered") > per_hour:
            yield Violation(
                "registrations_over_budget",
                "",
                f"{int(_num(d, 'registered'))} flood accounts registered from one address;"
                f" the budget is {per_hour:g} per hour",
            )
        refused = d.get("refused", {})
        if _num(d, "sends") > 0 and not (isinstance(refused, Mapping) and any(refused.values())):
            yield Violation(
                "flood_unfelt",
                "",
                f"{int(_num(d, 'sends'))} flood sends and none refused: no limit bound",
            )


HOSTILE_RULES = (legit_refused, flood_limits)


def phase_latencies(
    messages: Sequence[MessageTrace], faults: Sequence[Fault]
) -> dict[str, dict[str, tuple[float, ...]]]:
    """Seconds from composed to ✓ (``sent``, the first) and to each ✓✓ (``delivered``, per
    device) of the messages of each phase of :data:`PHASES`, sorted; empty without a flood."""
    flood = floods(faults)
    if not flood:
        return {}
    start, end = flood[0].start, flood[0].end if flood[0].end is not None else flood[0].start
    out: dict[str, dict[str, list[float]]] = {p: {"sent": [], "delivered": []} for p in PHASES}
    for m in messages:
        phase = "quiet" if m.composed < start else "flood" if m.composed <= end else "after"
        sent = [t for point, t in m.points if point == "sent"]
        if sent:
            out[phase]["sent"].append(min(sent) - m.composed)
        out[phase]["delivered"] += [t - m.composed for p, t in m.points if p == "delivered"]
    return {p: {k: tuple(sorted(v)) for k, v in points.items()} for p, points in out.items()}
