"""The lab report (tidings.lab.report): the text summary and the self-contained HTML page."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tidings.delivery import Status
from tidings.lab.checker import CheckResult, check
from tidings.lab.record import Fault
from tidings.lab.report import ScenarioReport, scenario_report, summary_table, write_html
from tidings.lab.report_plots import MAX_SAMPLE, sample
from tidings.lab.scenarios import SCENARIOS

from .test_checker import FakeRun


class _Strict(HTMLParser):
    """Checks that every opened element is closed, in order (void elements aside)."""

    VOID = frozenset({"meta", "br", "img", "hr", "input", "link"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()


def _runs(tmp_path: Path) -> tuple[CheckResult, CheckResult]:
    """A clean run with faults and a broken one (one message lost, named <&> to need escaping)."""
    clean = FakeRun(tmp_path / "a", scenario="handoff")
    broken = FakeRun(tmp_path / "b", scenario="kill<&>", seed=3)
    for r in (clean, broken):
        for label in ("alice.1", "bob.1"):
            r.device(label)
        for i in range(50):
            mid = r.send("alice.1", "bob", 101.0 + i)
            r.ack("alice.1", mid, 101.1 + i + i / 100)
            r.deliver_all("alice.1", mid, 101.3 + i)
            if i % 3 == 0:
                r.status("alice.1", mid, "bob.1", Status.READ, 102.0 + i)
    clean.record.write(Fault(110.0, "dead_zone", "bob.1", 110.0, 125.0, {"drop": 1.0}))
    clean.record.write(Fault(140.0, "client_kill", "alice.1", 140.0, None, {}))
    broken.send("alice.1", "bob", 160.0)
    return check(clean.finish()), check(broken.finish())


def test_summary_table(tmp_path: Path) -> None:
    clean, broken = _runs(tmp_path)
    text = summary_table([("handoff", clean), ("kill", broken)])
    header, rule, row1, row2 = text.splitlines()
    assert header.split()[:4] == ["scenario", "sent", "✓", "✓✓"]
    assert set(rule) <= {"-", " "}
    assert row1.split()[:7] == ["handoff", "50", "50", "50", "17", "0", "0"]
    assert row1.endswith("PASS") and row2.endswith("FAIL")
    assert row2.split()[6] == "1"  # lost
    assert row1.split()[-5:-1] == ["345ms", "585ms", "310ms", "310ms"]  # ✓ at 0.1 s + i/100 s


def test_html_report_is_self_contained_and_well_formed(tmp_path: Path) -> None:
    clean, broken = _runs(tmp_path)
    reports = [scenario_report(clean), scenario_report(broken)]
    assert [f.kind for f in reports[0].faults] == ["dead_zone", "client_kill"]
    assert reports[0].duration == pytest.approx(100.0)  # run line t=100 … settled t=200
    out = tmp_path / "out" / "report.html"
    write_html(out, reports)
    page = out.read_text(encoding="utf-8")
    parser = _Strict()
    parser.feed(page)
    parser.close()
    assert not parser.stack
    assert {"svg", "table", "section"} <= parser.tags
    assert page.count("<svg") == 4  # a timeline and a latency plot per scenario
    assert "handoff" in page and "dead_zone" in page and "client_kill" in page
    assert "kill&lt;&amp;&gt;" in page and "kill<&>" not in page
    assert "lost" in page and "PASS" in page and "FAIL" in page
    urls = re.findall(r"https?://[^\s\"'<>)]+", page)
    # SVG namespaces, and the complaints table's public issue links (anchors: nothing loaded)
    issues = {u for s in SCENARIOS.values() for u in s.links}
    assert urls and all(u.startswith("http://www.w3.org/") or u in issues for u in urls), set(urls)
    assert not re.search(r"(src|xlink:href)=['\"]https?:", page)
    assert "<script" not in page and "<link" not in page


def test_html_report_is_deterministic(tmp_path: Path) -> None:
    clean, _ = _runs(tmp_path)
    a, b = tmp_path / "a.html", tmp_path / "b.html"
    write_html(a, [scenario_report(clean)])
    write_html(b, [scenario_report(clean)])
    assert a.read_bytes() == b.read_bytes()


def test_sample_is_seeded_bounded_and_keeps_violations(tmp_path: Path) -> None:
    _, broken = _runs(tmp_path)
    lost = broken.violations[0].message_id_hex
    picked = sample(broken.messages, 3, [lost])
    assert len(picked) == MAX_SAMPLE and lost in {m.mid for m in picked}
    assert picked == sample(broken.messages, 3, [lost])
    assert [m.composed for m in picked] == sorted(m.composed for m in picked)
    assert sample(broken.messages, 4) != sample(broken.messages, 3)


def test_report_with_nothing_in_it(tmp_path: Path) -> None:
    result = check(tmp_path)  # no record at all: a record error, no messages
    out = tmp_path / "r.html"
    write_html(out, [ScenarioReport("empty", 0, result)])
    page = out.read_text(encoding="utf-8")
    assert "no messages" in page and "no latencies" in page and "record_error" in page
