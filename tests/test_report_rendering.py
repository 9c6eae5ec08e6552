"""The sign-off report as a release manager sees it: the Markdown rendered by a real
CommonMark renderer (markdown-it-py, with GFM tables) and the HTML report, read as text,
never as source. Nothing escaped shows, code spans stay whole, evidence says which
comparisons held, and long evidence and measurements fold without breaking a table."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from readycheck.engine import Engine, RunOptions
from readycheck.profile import load_profile
from readycheck.report import html, markdown
from readycheck.report import json as json_report
from readycheck.report.overview import EVIDENCE_SHOWN, LINE_SHOWN, MEASUREMENTS_SHOWN
from readycheck.results import Invocation, Mark, RunResult, WaiverRecord

START = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
ODD_ID = "a_b|<x>*y"
"""A check id with Markdown and HTML metacharacters (a results file or a plugin can hold
one; a profile's ids are plainer)."""
ODD_NAME = "Orders *API* <v2> | _beta_ & [docs](x) #1"
COMMAND = "readycheck run 'profiles/prod_eu.yaml' --only 'tag:db|api' --var note=`date`"
CI_URL = "https://github.com/acme/shop/actions/runs/42"
LONG_WORDS = " ".join(["ordinary"] * 250)[:2000]
LONG_TOKEN = "x" * 2000

PROFILE = """
name: rendering
environment: production
signoff: {service: shop, release: "2.4.0", approvers: [Release manager]}
checks:
  - {id: odd, name: "Orders *API* <v2> | _beta_ & [docs](x) #1", type: test.sleep,
     severity: critical, category: database,
     with: {status: FAIL, summary: "2 of 3 rules broken: `DEBUG` is on",
            evidence: ["DEBUG=true: expected false", "ENVIRONMENT=production: equals production",
                       "p95 290 ms is 97% of its 300 ms budget", "server 16.2, primary"],
            marks: [broken, held, soft],
            metrics: {latency_ms: 3.1}}}
  - {id: db, type: test.sleep, severity: critical, category: database,
     with: {status: FAIL, summary: connection refused}}
  - {id: slow, type: test.sleep, severity: medium, category: performance,
     with: {status: WARN, summary: p95 near its budget}}
  - {id: clean, type: test.sleep, category: http, with: {summary: "200 OK"}}
  - {id: long, type: test.sleep, severity: low, category: http,
     with: {status: FAIL, summary: a long answer, evidence: [LONG_WORDS, LONG_TOKEN]}}
  - {id: many, type: test.sleep, severity: low, category: config,
     with: {summary: many facts, evidence: [EVIDENCE], metrics: {METRICS}}}
  - {id: left-out, type: test.sleep, severity: high, category: config}
waivers:
  - {check: odd, reason: "cache | warms <slowly>", approved_by: Dana (RM), until: 2026-12-31}
"""


@dataclass
class Page(HTMLParser):
    """What a reader sees of rendered HTML: text, code spans, tables, folds, list items."""

    text: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    tables: list[list[list[str]]] = field(default_factory=list)
    folds: list[str] = field(default_factory=list)
    """The text of each <details>, summary included."""
    shown_items: list[str] = field(default_factory=list)
    """List items outside any <details>: what shows before anything is unfolded."""
    marks: list[tuple[str, str]] = field(default_factory=list)
    """(class, sign) of each HTML evidence mark."""
    _stack: list[str] = field(default_factory=list)
    _buffers: dict[str, list[str]] = field(default_factory=dict)
    _mark_class: str | None = None

    def __post_init__(self) -> None:
        super().__init__(convert_charrefs=True)

    @classmethod
    def of(cls, source: str) -> Page:
        page = cls()
        page.feed(source)
        page.close()
        return page

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "meta", "hr", "img", "input", "link"):
            return
        self._stack.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th", "code", "details", "li"):
            self._buffers.setdefault(tag, []).append("")
        classes = (dict(attrs).get("class") or "").split()
        if tag == "span" and "mark" in classes:
            self._mark_class = next(c for c in classes if c != "mark")

    def handle_endtag(self, tag: str) -> None:
        if tag not in self._stack:
            return
        while self._stack and self._stack.pop() != tag:
            pass
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._buffers[tag].pop().strip())
        elif tag == "code":
            self.codes.append(self._buffers[tag].pop())
        elif tag == "details":
            self.folds.append(self._buffers[tag].pop())
        elif tag == "li":
            item = self._buffers[tag].pop().strip()
            if "details" not in self._stack:
                self.shown_items.append(item)
        elif tag == "span":
            self._mark_class = None

    def handle_data(self, data: str) -> None:
        if "style" in self._stack or "title" in self._stack:
            return
        self.text.append(data)
        for buffers in self._buffers.values():
            if buffers:
                buffers[-1] += data
        if self._mark_class:
            self.marks.append((self._mark_class, data))

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def render_markdown(text: str) -> Page:
    return Page.of(MarkdownIt("commonmark").enable("table").render(text))


def _run(write_profile: Callable[..., Path], text: str) -> RunResult:
    profile = load_profile(write_profile(text), environ={})
    options = RunOptions(skip=["left-out"])
    return asyncio.run(Engine(profile, options, clock=lambda: START).run())


@pytest.fixture
def result(write_profile: Callable[..., Path]) -> RunResult:
    """A real run, then the odd id put in place of `odd` (its own id, its waiver's) and an
    invocation from CI, as a results file would hold them."""
    evidence = [f"fact {n}: value {n}" for n in range(1, 11)]
    metrics = ", ".join(f"m{n:02d}: {n}" for n in range(1, 21))
    text = (
        PROFILE.replace("LONG_WORDS", LONG_WORDS)
        .replace("LONG_TOKEN", LONG_TOKEN)
        .replace("[EVIDENCE]", "[" + ", ".join(f'"{line}"' for line in evidence) + "]")
        .replace("{METRICS}", "{" + metrics + "}")
    )
    run = _run(write_profile, text)
    checks = [
        check.model_copy(update={"id": ODD_ID}) if check.id == "odd" else check
        for check in run.checks
    ]
    waivers = [
        WaiverRecord.model_validate({**waiver.model_dump(), "check": ODD_ID})
        for waiver in run.waivers
    ]
    return run.model_copy(
        update={
            "checks": checks,
            "waivers": waivers,
            "invocation": Invocation(
                command=COMMAND, host="runner-7", user="ci", ci="GitHub Actions", ci_url=CI_URL
            ),
        }
    )


def test_metacharacters_render_as_written_with_no_visible_escape(result: RunResult) -> None:
    source = markdown.render(result)
    page = render_markdown(source)
    text = page.all_text
    # Nothing the report was given holds a backslash, so none may show.
    assert "\\" not in text
    # The id is a whole code span wherever it appears: checklist, evidence, waivers, ...
    assert page.codes.count(ODD_ID) >= 4
    assert not [code for code in page.codes if "\\" in code]
    # ... and neither text nor id became markup: no emphasis, link, HTML element or heading.
    assert ODD_NAME in text
    rendered = MarkdownIt("commonmark").enable("table").render(source)
    assert "<x>" not in rendered and "<v2>" not in rendered
    assert "<em>" not in rendered.split("<h2>Checklist</h2>")[0]
    assert '<a href="x">' not in rendered
    # A code span written in a summary or remediation stays a code span.
    assert "DEBUG" in page.codes
    # The command line is one code span, shown exactly as run.
    assert COMMAND in page.codes
    # The waiver's reason keeps its pipe and angle brackets, in its own cell.
    waivers = next(
        table for table in page.tables if table[0][0] == "Check" and "Reason" in table[0]
    )
    assert waivers[1][:2] == [ODD_ID, "cache | warms <slowly>"]


def test_every_table_keeps_its_columns_and_none_is_empty(result: RunResult) -> None:
    page = render_markdown(markdown.render(result))
    assert len(page.tables) >= 4
    for table in page.tables:
        header, *rows = table
        assert all(header), f"a column without a heading: {header}"
        assert all(len(row) == len(header) for row in rows), table
        if header[0] == "Role":  # the sign-off table: blank cells for a pen
            continue
        for index, heading in enumerate(header):
            assert any(row[index] for row in rows), f"column {heading!r} is empty: {table}"


def test_a_2000_character_evidence_line_is_cut_before_the_fold_and_whole_after_it(
    result: RunResult,
) -> None:
    page = render_markdown(markdown.render(result))
    shown = [item for item in page.shown_items if item.startswith(("ordinary", "xxxx"))]
    # Shown twice (under "Other findings" and "Evidence"), cut at a word boundary or,
    # for one unbroken token, where it must be.
    assert len(shown) == 4
    assert all(len(item) <= LINE_SHOWN + 2 and item.endswith("…") for item in shown)
    assert shown[0] == LONG_WORDS[: shown[0].rindex(" ")] + " …"
    folds = [fold for fold in page.folds if LONG_TOKEN in fold]
    assert len(folds) == 2 and all(LONG_WORDS in fold for fold in folds)
    # The tables around it are intact (the previous test checks every one).
    assert all(len(row) == len(table[0]) for table in page.tables for row in table)
    # The HTML report folds it the same way, and wraps what it shows.
    page = Page.of(html.render(result))
    assert sum(LONG_TOKEN in fold for fold in page.folds) == 2
    assert "overflow-wrap: anywhere" in html.render(result)


def test_long_evidence_and_measurements_fold_after_the_first_lines(result: RunResult) -> None:
    for page in (render_markdown(markdown.render(result)), Page.of(html.render(result))):
        facts = [item for item in page.shown_items if item.startswith("fact ")]
        assert facts == [f"fact {n}: value {n}" for n in range(1, EVIDENCE_SHOWN + 1)]
        [fold] = [fold for fold in page.folds if "fact 10" in fold]
        assert fold.startswith("Full evidence: 10 lines")
        measured = [table for table in page.tables if table[0] == ["Check", "Metric", "Value"]]
        shown, everything = measured
        assert len(shown) == 1 + MEASUREMENTS_SHOWN
        assert len(everything) == 1 + 21  # the odd check's latency_ms, and m01 to m20
        assert any(fold.startswith("All 21 measurements") for fold in page.folds)


def test_evidence_marks_which_comparisons_held(result: RunResult) -> None:
    page = render_markdown(markdown.render(result))
    assert "✗ DEBUG=true: expected false" in page.shown_items
    assert "✓ ENVIRONMENT=production: equals production" in page.shown_items
    assert "⚠ p95 290 ms is 97% of its 300 ms budget" in page.shown_items
    assert "server 16.2, primary" in page.shown_items  # a fact, not a comparison: no mark
    marks = Page.of(html.render(result)).marks
    assert ("broken", "✗") in marks and ("held", "✓") in marks and ("soft", "⚠") in marks
    # The marks are part of the results file: `readycheck report` shows them again.
    again = RunResult.model_validate_json(json_report.render(result))
    assert markdown.render(again) == markdown.render(result)
    [odd] = [check for check in again.checks if check.id == ODD_ID]
    assert odd.marks == [Mark.BROKEN, Mark.HELD, Mark.SOFT, None]


def test_warn_is_never_ticked(result: RunResult) -> None:
    items = render_markdown(markdown.render(result)).shown_items

    def box(check_id: str) -> str:
        [item] = [item for item in items if f"({check_id}, test.sleep)" in item]
        return item[:3]

    assert box("clean") == "[x]"  # PASS
    assert box("slow") == "[~]"  # WARN
    assert box(ODD_ID) == "[~]"  # WAIVED
    assert box("db") == box("long") == box("left-out") == "[ ]"  # FAIL, FAIL, SKIP


def test_the_verdict_comes_with_blocking_checks_then_checks_not_run_then_waivers(
    result: RunResult,
) -> None:
    headings = ["Verdict", "Blocking issues", "Checks not run", "Accepted risks", "Checklist"]
    for page in (render_markdown(markdown.render(result)), Page.of(html.render(result))):
        text = page.all_text
        order = [text.index(heading) for heading in headings]
        assert order == sorted(order), dict(zip(headings, order, strict=True))
        assert "left-out (high, could block): skipped (--skip)" in text


def test_the_header_says_what_ran_where(result: RunResult) -> None:
    for source, page in (
        (markdown.render(result), None),
        (html.render(result), Page.of(html.render(result))),
    ):
        page = page or render_markdown(source)
        header = {row[0]: row[1] for row in page.tables[0][1:]}
        assert header["Release"] == "2.4.0"
        assert header["Environment"] == "production"
        assert header["Profile"].startswith("rendering: ") and "profile.yaml" in header["Profile"]
        assert "sha256:" in header["Profile"]
        assert header["Command"] == COMMAND
        assert header["Ran on"] == f"runner-7 as ci, in GitHub Actions, run {CI_URL}"
        assert header["Started"] == "2026-11-25 09:30:00 UTC"
        assert "Duration" in header
    rendered = MarkdownIt("commonmark").enable("table").render(markdown.render(result))
    assert f'<a href="{CI_URL}">{CI_URL}</a>' in rendered
    assert f'<a href="{CI_URL}">{CI_URL}</a>' in html.render(result)


def test_the_html_report_escapes_the_odd_id_once(result: RunResult) -> None:
    source = html.render(result)
    assert "a_b|&lt;x&gt;*y" in source
    assert "&amp;lt;" not in source
    page = Page.of(source)
    assert page.codes.count(ODD_ID) >= 4
    assert ODD_NAME in page.all_text
