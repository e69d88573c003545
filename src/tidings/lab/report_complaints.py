"""The report's table "failures of other messengers that tidings survives".

One row per scenario: the failure users of other messengers reported (each scenario's
``complaint`` and ``links``, :class:`~tidings.lab.labrun.Scenario`), the invariant the checker
holds tidings to (``invariant``), and the result of this run. The links are the only references
to anything outside the page: plain anchors to public issue threads, nothing is loaded from them.

Invariants:

* Every text is escaped; a link is written only if it is an ``https://`` URL.
* Rows come in the order of the results, then (when the report holds more than one scenario)
  every other registered scenario, marked as not run: what tidings claims, and what this run
  proved of it.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Protocol
from urllib.parse import urlparse

from .checker import CheckResult
from .scenarios import SCENARIOS

__all__ = ["COMPLAINTS_TITLE", "complaints_html", "link_label", "result_text"]

COMPLAINTS_TITLE = "Failures of other messengers that tidings survives"


class _Reported(Protocol):
    @property
    def scenario(self) -> str: ...

    @property
    def result(self) -> CheckResult: ...


def link_label(url: str) -> str:
    """``owner/repo#N`` for a GitHub issue or pull request URL, else the URL's host and path."""
    parsed = urlparse(url)
    parts = [p for p in parsed.path.split("/") if p]
    if parsed.hostname == "github.com" and len(parts) == 4 and parts[2] in ("issues", "pull"):
        return f"{parts[0]}/{parts[1]}#{parts[3]}"
    return f"{parsed.hostname or ''}{parsed.path}"


def result_text(result: CheckResult | None) -> str:
    """The result column: the verdict and what the counts say (or that it was not run)."""
    if result is None:
        return "not run in this report"
    c = result.counts
    counts = f"{c.sent} sent, {c.acked} ✓, {c.delivered} ✓✓, {c.lost} lost"
    if result.ok:
        return f"PASS: {counts}, nothing duplicated or reordered"
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(result.by_kind().items()))
    return f"FAIL: {counts}; violations: {kinds}"


def _links(urls: Sequence[str]) -> str:
    e = html.escape
    return ", ".join(
        f"<a href='{e(u, quote=True)}'>{e(link_label(u))}</a>"
        for u in urls
        if u.startswith("https://")
    )


def complaints_html(reports: Sequence[_Reported]) -> str:
    """The table (a heading and a ``<table>``) for these scenario reports."""
    e = html.escape
    results = {r.scenario: r.result for r in reports}
    names = list(results)
    if len(names) > 1:
        names += [n for n in SCENARIOS if n not in results]
    rows = []
    for name in names:
        scenario = SCENARIOS.get(name)
        complaint = e(scenario.complaint) if scenario and scenario.complaint else "—"
        links = _links(scenario.links) if scenario else ""
        invariant = e(scenario.invariant) if scenario and scenario.invariant else "—"
        result = results.get(name)
        verdict = "" if result is None else " class='pass'" if result.ok else " class='fail'"
        rows.append(
            f"<tr><td><a href='#{e(name, quote=True)}'>{e(name)}</a></td>"
            f"<td style='text-align:left'>{complaint}" + (f"<br>{links}" if links else "") + "</td>"
            f"<td style='text-align:left'>{invariant}</td>"
            f"<td{verdict} style='text-align:left'>{e(result_text(result))}</td></tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("scenario", "the complaint it reproduces", "invariant checked", "today's result")
    )
    return f"<h2>{e(COMPLAINTS_TITLE)}</h2><table><tr>{head}</tr>{''.join(rows)}</table>"
