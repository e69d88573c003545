"""The report's table "failures of other messengers that tidings survives"
(:mod:`tidings.lab.report_complaints`): every scenario carries its complaint, its public reports
and its invariant; the table shows them with the run's result."""

from __future__ import annotations

import re
from pathlib import Path

from tests.lab.test_report import _runs
from tidings.lab.report import render_html, scenario_report
from tidings.lab.report_complaints import COMPLAINTS_TITLE, complaints_html, link_label
from tidings.lab.scenarios import SCENARIOS

_ISSUE = re.compile(r"^https://github\.com/[\w.-]+/[\w.-]+/(issues|pull)/\d+$")


def test_every_scenario_names_a_public_complaint_and_its_invariant() -> None:
    for name, s in SCENARIOS.items():
        assert s.complaint and s.invariant, name
        assert s.links and all(_ISSUE.match(u) for u in s.links), (name, s.links)
        assert re.search(r"\bG\d", s.invariant), (name, s.invariant)  # names the guarantee


def test_link_labels() -> None:
    assert link_label("https://github.com/a/b/issues/12") == "a/b#12"
    assert link_label("https://github.com/a/b/pull/3") == "a/b#3"
    assert link_label("https://example.org/x") == "example.org/x"


def test_the_table_shows_each_complaint_with_the_runs_result(tmp_path: Path) -> None:
    clean, broken = _runs(tmp_path)  # "handoff" passes; "kill<&>" (no such scenario) fails
    reports = [scenario_report(clean), scenario_report(broken)]
    table = complaints_html(reports)
    handoff = SCENARIOS["handoff"]
    row = table.split("<tr>")[2]
    assert "handoff" in row and handoff.complaint in row
    assert all(f"href='{u}'" in row for u in handoff.links)
    assert "signalapp/Signal-Android#8520" in row
    assert "PASS: 50 sent" in row
    broken_row = table.split("<tr>")[3]
    assert "kill&lt;&amp;&gt;" in broken_row and "—" in broken_row and "FAIL" in broken_row
    assert "lost 1" in broken_row
    rest = table.split("<tr>")[4:]  # every other scenario: what is claimed, not run here
    assert len(rest) == len(SCENARIOS) - 1
    assert all("not run in this report" in r for r in rest)
    page = render_html(reports)
    assert COMPLAINTS_TITLE in page


def test_a_single_scenario_report_lists_only_its_scenario(tmp_path: Path) -> None:
    clean, _ = _runs(tmp_path)
    table = complaints_html([scenario_report(clean)])
    assert table.count("<tr>") == 2  # the header and handoff
