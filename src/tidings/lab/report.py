"""The fault lab's report: a plain-text summary table and a self-contained HTML page.

Invariants:

* The HTML page needs nothing but itself: CSS inline, plots as inline SVG (:mod:`.report_plots`),
  no scripts, nothing loaded from outside the page; its only outside references are the public
  issue links of the complaints table (:mod:`.report_complaints`), plain anchors.
* Every text that comes from a run (scenario names, fault details, timelines) is escaped.
* The output is a function of the input: the same results give the same bytes (seeded
  sampling, deterministic SVG).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .checker import LATENCY_POINTS, CheckResult, percentile
from .checker_hostile import PHASES, phase_latencies
from .record import Fault
from .record_read import load_run
from .report_complaints import complaints_html
from .report_plots import latency_svg, sample, timeline_svg

__all__ = ["ScenarioReport", "render_html", "scenario_report", "summary_table", "write_html"]

#: Most violations listed (with timelines) per scenario on the page; the count says the rest.
MAX_LISTED = 100

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.2em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}
.pass{color:#2ca02c;font-weight:bold}.fail{color:#d62728;font-weight:bold}
pre{background:#f6f6f6;padding:.5em;overflow-x:auto;font-size:85%}
section{border-top:2px solid #ddd;margin-top:2em}
svg{max-width:100%;height:auto}
"""


@dataclass(frozen=True, slots=True)
class ScenarioReport:
    """One scenario's run: its check result, its fault windows and how long it ran."""

    scenario: str
    seed: int
    result: CheckResult
    faults: tuple[Fault, ...] = ()
    duration: float = 0.0  #: seconds, lab clock
    start: float = 0.0  #: lab clock time the run started (the plots' zero)


def scenario_report(result: CheckResult) -> ScenarioReport:
    """The :class:`ScenarioReport` of a checked run (faults and duration from its record)."""
    record = load_run(result.run_dir)
    start = record.run.t if record.run is not None else record.start
    return ScenarioReport(
        result.scenario, result.seed, result, record.faults, record.end - start, start
    )


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f}ms" if abs(value) < 1 else f"{value:.2f}s"


def _row(name: str, r: CheckResult) -> list[str]:
    c = r.counts
    sent, delivered = r.latencies.get("sent", ()), r.latencies.get("delivered", ())
    return [
        name,
        *map(str, (c.sent, c.acked, c.delivered, c.read, c.expired, c.lost)),
        *map(str, (c.duplicated, c.reordered)),
        *(_seconds(percentile(sent, q)) for q in (50, 99)),
        *(_seconds(percentile(delivered, q)) for q in (50, 99)),
        "PASS" if r.ok else "FAIL",
    ]


_HEADER = ["scenario", "sent", "✓", "✓✓", "read", "✗", "lost", "dup", "reordered"]
_HEADER += ["✓ p50", "✓ p99", "✓✓ p50", "✓✓ p99", "verdict"]


def summary_table(results: list[tuple[str, CheckResult]]) -> str:
    """A plain-text table, one row per scenario: counts (✓✓/read/✗ per recipient device),
    p50/p99 latency of ✓ and ✓✓, and the verdict."""
    rows = [_HEADER, *(_row(name, r) for name, r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(pairs))
        for pairs in (zip(r, widths, strict=True) for r in rows)
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _counts_table(r: CheckResult) -> str:
    c = r.counts
    pairs = [
        ("sent (composed)", c.sent),
        ("composed lines", c.composed_lines),
        ("✓ sent", c.acked),
        ("target devices (message × device)", c.targets),
        ("✓✓ delivered (per device)", c.delivered),
        ("read (per device)", c.read),
        ("✗ expired (per device)", c.expired),
        ("failed", c.failed),
        ("lost", c.lost),
        ("duplicated", c.duplicated),
        ("reordered", c.reordered),
    ]
    return _table(["count", "value"], [(k, str(v)) for k, v in pairs])


def _latency_table(r: CheckResult) -> str:
    rows = []
    for point in LATENCY_POINTS:
        v = r.latencies.get(point, ())
        qs = [_seconds(percentile(v, q)) for q in (50, 90, 99)]
        rows.append([point, str(len(v)), *qs, _seconds(v[-1] if v else None)])
    return _table(["point", "n", "p50", "p90", "p99", "max"], rows)


def _phases_table(s: ScenarioReport) -> str:
    """The legitimate users' latencies before, during and after a flood ("" without one)."""
    phases = phase_latencies(s.result.messages, s.faults)
    if not phases:
        return ""
    rows = []
    for phase in PHASES:
        sent, delivered = phases[phase]["sent"], phases[phase]["delivered"]
        qs = [_seconds(percentile(v, q)) for v in (sent, delivered) for q in (50, 90, 99)]
        rows.append([phase, str(len(sent)), *qs])
    header = ["composed", "messages", "✓ p50", "✓ p90", "✓ p99", "✓✓ p50", "✓✓ p90", "✓✓ p99"]
    return "<h3>Legitimate users: quiet vs under the flood</h3>" + _table(header, rows)


def _faults_table(s: ScenarioReport) -> str:
    rows = [
        [
            f.kind,
            f.target,
            f"{f.start - s.start:.2f}",
            "instant" if f.instant or f.end is None else f"{f.end - s.start:.2f}",
            ", ".join(f"{k}={v}" for k, v in sorted(f.detail.items())),
        ]
        for f in s.faults
    ]
    return _table(["fault", "target", "start (s)", "end (s)", "detail"], rows)


def _violations(r: CheckResult) -> str:
    if r.ok:
        return "<p class='pass'>No violations.</p>"
    e = html.escape
    kinds = ", ".join(f"{k}: {n}" for k, n in sorted(r.by_kind().items()))
    parts = [f"<p class='fail'>{len(r.violations)} violations ({e(kinds)})</p>"]
    for v in r.violations[:MAX_LISTED]:
        parts.append(f"<h4>{e(v.kind)} {e(v.message_id_hex or '-')}</h4><p>{e(v.detail)}</p>")
        if v.timeline:
            parts.append("<pre>" + e("\n".join(str(t) for t in v.timeline)) + "</pre>")
    if len(r.violations) > MAX_LISTED:
        parts.append(f"<p>… and {len(r.violations) - MAX_LISTED} more.</p>")
    return "".join(parts)


def _section(s: ScenarioReport) -> str:
    e, r = html.escape, s.result
    verdict = "<span class='pass'>PASS</span>" if r.ok else "<span class='fail'>FAIL</span>"
    picked = sample(r.messages, s.seed, [v.message_id_hex for v in r.violations])
    title = f"{s.scenario}: {len(picked)} of {len(r.messages)} messages"
    settled = "settled" if r.settled else "NOT settled (absence not judged)"
    return "\n".join(
        [
            f"<section id='{e(s.scenario, quote=True)}'><h2>{e(s.scenario)} {verdict}</h2>",
            f"<p>seed {s.seed}, {s.duration:.1f} s, {e(settled)}, run {e(str(r.run_dir))}</p>",
            "<h3>Counts</h3>",
            _counts_table(r),
            "<h3>Latency from composed</h3>",
            _latency_table(r),
            _phases_table(s),
            "<h3>Faults</h3>",
            _faults_table(s),
            "<h3>Timeline</h3>",
            timeline_svg(picked, s.faults, s.start, title),
            "<h3>Latency distribution</h3>",
            latency_svg(r.latencies, f"{s.scenario}: latency CDF"),
            "<h3>Violations</h3>",
            _violations(r),
            "</section>",
        ]
    )


def render_html(results: Sequence[ScenarioReport]) -> str:
    """The report page for these scenarios (see the module invariants)."""
    summary = [_row(s.scenario, s.result) for s in results]
    verdict = all(s.result.ok for s in results)
    return "\n".join(
        [
            "<!DOCTYPE html>",
            "<html lang='en'><head><meta charset='utf-8'>",
            "<title>tidings fault lab report</title>",
            f"<style>{_CSS}</style></head><body>",
            "<h1>tidings fault lab</h1>",
            f"<p class='{'pass' if verdict else 'fail'}'>{'PASS' if verdict else 'FAIL'}:"
            f" {sum(s.result.ok for s in results)} of {len(results)} scenarios passed.</p>",
            _table(_HEADER, summary),
            complaints_html(results),
            *(_section(s) for s in results),
            "</body></html>",
        ]
    )


def write_html(path: Path, results: list[ScenarioReport]) -> None:
    """Write the report page to ``path`` (UTF-8), creating its directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(results), encoding="utf-8")
