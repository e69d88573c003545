"""The fault lab's checker: verify the delivery contract (G1–G7) on what every endpoint stored.

``check(run_dir)`` reads a run directory (:mod:`.record`) and every device's client store
(read-only), then applies the rules of :mod:`.checker_rules` and the liveness rules of
:mod:`.checker_link` (devices' connection logs), and measures the run
(:mod:`.checker_stats`).

Invariants:

* The truth of what was sent is the senders' stores (their OUT messages); the ``composed``
  lines of the events are a subset (a process killed right after ``send()`` may not have
  written its line). The devices that exist are the record's ``device`` lines.
* Absence is judged only after the record's ``settled`` line (``lost``, gaps,
  ``expired_and_delivered``); presence-based violations are judged on any run.
* The checker never raises for what a run contains and never writes to it: unreadable or
  malformed inputs are ``record_error`` violations.
* The same run directory gives the same result, violations in the same order.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from .checker_disk import DISK_KINDS, DISK_RULES
from .checker_groups import GROUP_KINDS, GROUP_RULES
from .checker_hostile import HOSTILE_KINDS, HOSTILE_RULES
from .checker_link import LINK_KINDS, link_violations
from .checker_nodes import NODE_KINDS, NODE_RULES
from .checker_reads import READ_KINDS, READ_RULES
from .checker_rules import KINDS as BASE_KINDS
from .checker_rules import RULES, Violation, plaintext_leaks
from .checker_stats import (
    LATENCY_POINTS,
    Counts,
    MessageTrace,
    counts,
    latencies,
    percentile,
    traces,
)
from .checker_view import TimelineEntry, build
from .record_read import load_run

#: Every violation kind: the base rules' (:mod:`.checker_rules`), then those of
#: scenario-specific rule modules (which apply only to runs with their faults), then liveness
#: (:mod:`.checker_link`).
KINDS = BASE_KINDS + DISK_KINDS + NODE_KINDS + HOSTILE_KINDS + READ_KINDS + LINK_KINDS + GROUP_KINDS

#: Every rule over the view, in the order their violations are listed.
ALL_RULES = (*RULES, *DISK_RULES, *NODE_RULES, *HOSTILE_RULES, *READ_RULES, *GROUP_RULES)

__all__ = [
    "KINDS",
    "LATENCY_POINTS",
    "CheckResult",
    "Counts",
    "MessageTrace",
    "TimelineEntry",
    "Violation",
    "check",
    "format_violations",
    "percentile",
]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What :func:`check` found: the violations, and the run's numbers for the report."""

    run_dir: Path
    scenario: str
    seed: int
    settled: bool
    violations: tuple[Violation, ...]
    counts: Counts
    latencies: dict[str, tuple[float, ...]] = field(default_factory=dict)
    """Seconds from ``composed`` to each point of :data:`LATENCY_POINTS`, sorted."""
    messages: tuple[MessageTrace, ...] = ()
    """Every sent message's confirmation points on the lab clock, by composed time."""
    truncated: tuple[str, ...] = ()
    """Files whose partial last line was skipped (a SIGKILL mid-write; not an error)."""

    @property
    def ok(self) -> bool:
        """True iff there is no violation."""
        return not self.violations

    def by_kind(self) -> dict[str, int]:
        """The number of violations of each kind that occurred."""
        return dict(Counter(v.kind for v in self.violations))


def check(run_dir: Path, *, plaintext_scan: bool = True) -> CheckResult:
    """Check the run in ``run_dir``.

    Args:
        run_dir: a run directory as described in :mod:`.record`.
        plaintext_scan: search the server's data directory and log for message bodies (G6).

    Returns:
        The violations (each with its message's timeline), counts and latencies.
    """
    record = load_run(Path(run_dir))
    view = build(record)
    found: list[Violation] = [v for rule in ALL_RULES for v in rule(view)]
    found += link_violations(record)
    if plaintext_scan:
        found += plaintext_leaks(view)
    violations = tuple(replace(v, timeline=view.timeline(v.message_id_hex)) for v in found)
    kinds = Counter(v.kind for v in violations)
    run = record.run
    return CheckResult(
        record.run_dir,
        run.scenario if run else "?",
        run.seed if run else 0,
        view.settled,
        violations,
        counts(view, kinds),
        latencies(view),
        traces(view),
        record.truncated,
    )


def format_violations(result: CheckResult, *, limit: int = 50) -> str:
    """A human-readable report of the violations: kind, message id, detail, and the message's
    timeline (``~`` marks a store time shifted to the lab clock). At most ``limit`` are shown."""
    head = f"{result.scenario} (seed {result.seed}): "
    if result.ok:
        return head + "no violations"
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(result.by_kind().items()))
    lines = [head + f"{len(result.violations)} violations ({kinds})"]
    for v in result.violations[:limit]:
        lines.append(f"\n[{v.kind}] {v.message_id_hex or '-'}: {v.detail}")
        lines += [f"    {entry}" for entry in v.timeline]
    if len(result.violations) > limit:
        lines.append(f"\n… and {len(result.violations) - limit} more")
    return "\n".join(lines)
