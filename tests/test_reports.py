"""The four outputs: JSON, JUnit, Markdown (golden files) and the console; atomic writes."""

from __future__ import annotations

import asyncio
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from readycheck.engine import Engine
from readycheck.errors import OutputError
from readycheck.profile import load_profile
from readycheck.report import json as json_report
from readycheck.report import junit, markdown
from readycheck.results import GitInfo, Invocation, RunResult, Status, Verdict, summarize
from tests.conftest import REPO

GOLDEN = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("READYCHECK_UPDATE_GOLDEN") == "1"

MIXED = """
name: payments-api
environment: production
signoff:
  service: payments-api
  release: "2.4.0"
  approvers: [Release manager, On-call lead]
  rollback: |
    Re-deploy the previous image tag; `alembic downgrade -1` if the migration ran.
checks:
  - {id: db, name: PostgreSQL reachable, type: test.sleep, severity: critical, category: database,
     with: {summary: "PostgreSQL 16.2 answered in 3.1 ms", metrics: {latency_ms: 3.1},
            evidence: ["server 16.2, primary", "SSL in use: TLSv1.3"]}}
  - {id: migrations, type: test.sleep, severity: critical, category: database, needs: [db],
     with: {status: FAIL, summary: "1 pending migration: add_orders_idx", metrics: {pending: 1},
            evidence: ["alembic_version = 3f2a, head = 9b1c", "pending: 9b1c add_orders_idx"],
            marks: [broken]},
     remediation: Run alembic upgrade head before deploying.}
  - {id: health, type: test.sleep, category: http,
     with: {summary: "/health/ready answered 200 in 12 ms"}}
  - {id: p95, type: test.sleep, severity: high, category: performance,
     with: {status: FAIL, summary: "p95 412 ms over a 300 ms budget",
            metrics: {p50_ms: 120.5, p95_ms: 412.0, error_rate: 0.002},
            data: {latency: {model: open, percentiles_ms: {p50: 120.5, p90: 350.2, p95: 412.0, p99: 530.9, max: 801.0},
                             thresholds_ms: {p95: 300.0},
                             histogram: {bounds_ms: [100, 125, 160, 200, 250, 315, 400, 500, 630, 800, 1000],
                                         counts: [0, 40, 120, 90, 60, 40, 80, 50, 15, 5, 0]}}}}}
  - {id: cors, type: test.sleep, severity: medium, category: security,
     with: {status: WARN, summary: "Access-Control-Allow-Origin echoes any origin | *"}}
  - {id: docs, type: test.sleep, severity: low, category: config,
     with: {status: FAIL, summary: "README lacks <setup> section"}}
  - {id: api, type: test.sleep, category: http, needs: [migrations]}
waivers:
  - {check: p95, reason: cache warms for 10 minutes after deploy, approved_by: Dana (RM), until: 2026-12-31}
  - {check: docs, reason: docs rewrite scheduled, approved_by: Dana (RM), until: 2026-10-31}
"""

START = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)


def _fixed(result: RunResult) -> RunResult:
    """Times, durations and paths injected, so the report is byte-for-byte stable."""
    checks = [
        check.model_copy(
            update={
                "duration_ms": 10.0 * (index + 1) if check.attempts else 0.0,
                "location": f"profiles/payments.yaml:{10 + 2 * index}:9",
            }
        )
        for index, check in enumerate(result.checks)
    ]
    return result.model_copy(
        update={
            "started_at": START,
            "finished_at": START.replace(second=3),
            "duration_ms": 3000.0,
            "checks": checks,
            "profile": result.profile.model_copy(update={"path": "profiles/payments.yaml"}),
            "git": GitInfo(commit="9b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c", dirty=True),
            "invocation": Invocation(
                command="readycheck run profiles/payments.yaml --report readiness.md",
                host="ci-runner-3",
                user="deploy",
                ci="GitHub Actions",
                ci_url="https://github.com/acme/payments-api/actions/runs/4242",
            ),
        }
    )


def _run(write_profile: Callable[..., Path], text: str) -> RunResult:
    profile = load_profile(write_profile(text), environ={})
    return _fixed(asyncio.run(Engine(profile, clock=lambda: START).run()))


@pytest.fixture
def mixed_result(write_profile: Callable[..., Path]) -> RunResult:
    return _run(write_profile, MIXED)


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with READYCHECK_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), f"{name} differs (READYCHECK_UPDATE_GOLDEN=1 refreshes it)"


def test_report_for_a_not_ready_run_matches_the_golden_file(mixed_result: RunResult) -> None:
    text = markdown.render(mixed_result)
    _golden("report-not-ready.md", text)
    # The docs show this very report as the example a release manager gets.
    _golden_doc = REPO / "docs" / "example-report.md"
    if UPDATE_GOLDEN:
        _golden_doc.write_text(text)
    assert _golden_doc.read_text() == text, "docs/example-report.md is out of date"


def test_report_for_a_ready_run_matches_the_golden_file(write_profile: Callable[..., Path]) -> None:
    result = _run(
        write_profile,
        """
        name: tiny
        checks:
          - {id: db, type: test.sleep, category: database, with: {summary: answered in 2 ms}}
          - {id: health, type: test.sleep, category: http, with: {summary: 200 OK}}
        """,
    )
    assert result.verdict is Verdict.READY
    _golden("report-ready.md", markdown.render(result))


def test_report_for_a_waived_run_matches_the_golden_file(
    write_profile: Callable[..., Path],
) -> None:
    result = _run(
        write_profile,
        """
        name: waived
        signoff: {service: payments-api, release: "2.4.1", approvers: [Release manager]}
        checks:
          - {id: db, type: test.sleep, category: database, with: {summary: answered in 2 ms}}
          - {id: p95, type: test.sleep, category: performance,
             with: {status: FAIL, summary: "p95 340 ms over a 300 ms budget"}}
        waivers:
          - {check: p95, reason: cache warms after deploy, approved_by: Dana (RM), until: 2026-12-31}
        """,
    )
    assert result.verdict is Verdict.READY_WITH_WAIVERS
    _golden("report-waived.md", markdown.render(result))


def test_report_for_an_interrupted_run_matches_the_golden_file(mixed_result: RunResult) -> None:
    checks = []
    for check in mixed_result.checks:
        if check.id in ("p95", "docs", "api"):
            check = check.model_copy(
                update={
                    "status": Status.SKIP,
                    "summary": "not run: interrupted",
                    "attempts": 0,
                    "duration_ms": 0.0,
                    "evidence": [],
                    "metrics": {},
                    "data": {},
                    "blocking": False,
                    "waiver": None,
                }
            )
        elif check.id == "cors":
            check = check.model_copy(
                update={
                    "status": Status.ERROR,
                    "summary": "interrupted after 1.2s of running",
                    "evidence": [],
                    "blocking": False,
                }
            )
        checks.append(check)
    result = mixed_result.model_copy(
        update={
            "checks": checks,
            "verdict": Verdict.INTERRUPTED,
            "exit_code": 130,
            "summary": summarize(check.status for check in checks),
        }
    )
    text = markdown.render(result)
    assert "## Verdict: ⚠️ INTERRUPTED" in text
    assert "this report is partial and is not for sign-off" in text
    _golden("report-interrupted.md", text)


def test_markdown_report_reads_as_a_checklist(mixed_result: RunResult) -> None:
    text = markdown.render(mixed_result)
    assert "## Verdict: ❌ NOT READY" in text
    assert "- [x] **PostgreSQL reachable** (`db`, test.sleep): PASS" in text
    assert "- [ ] **migrations** (`migrations`, test.sleep): FAIL" in text
    assert "- [~] **p95** (`p95`, test.sleep): WAIVED" in text
    assert "| Database | 1/2 | 2.5/5 | FAIL | 1 |" in text
    assert "bar [120.5, 350.2, 412.0, 530.9, 801.0]" in text  # the latency chart
    # ... and the distribution, drawn from the probe's histogram
    assert 'x-axis ["≤125", "≤160", "≤200", "≤250", "≤315", "≤400", "≤500", "≤630", "≤800"]' in text
    assert "bar [40, 120, 90, 60, 40, 80, 50, 15, 5]" in text
    assert (
        "| `docs` | docs rewrite scheduled | Dana (RM) | 2026-10-31 | **expired, not applied** |"
        in text
    )
    assert "**Remediation:** Run alembic upgrade head before deploying." in text
    assert "README lacks \\<setup\\> section" in text  # no raw HTML reaches the renderer
    assert "| Release manager | | | | |" in text


def test_a_custom_template_gets_the_same_context(mixed_result: RunResult, tmp_path: Path) -> None:
    template = tmp_path / "mine.md.j2"
    template.write_text(
        "{{ service }}: {{ result.verdict.value }} ({{ blocking | length }} blocking)\n"
    )
    assert (
        markdown.render(mixed_result, template=template) == "payments-api: NOT_READY (2 blocking)\n"
    )
    broken = tmp_path / "broken.md.j2"
    broken.write_text("{% for x in %}\n")
    with pytest.raises(OutputError, match=r"broken\.md\.j2:1"):
        markdown.check_template(broken)


def test_json_has_the_documented_shape(mixed_result: RunResult) -> None:
    document = json.loads(json_report.render(mixed_result))
    assert document["schema_version"] == 1
    assert set(document) >= {
        "schema_version",
        "tool",
        "profile",
        "environment",
        "started_at",
        "finished_at",
        "duration_ms",
        "verdict",
        "exit_code",
        "summary",
        "checks",
    }
    assert document["tool"]["name"] == "readycheck"
    assert set(document["profile"]) == {"name", "path", "digest"}
    assert document["verdict"] == "NOT_READY" and document["exit_code"] == 1
    assert document["summary"] == {
        "pass": 2,
        "warn": 1,
        "fail": 2,
        "error": 0,
        "skip": 1,
        "waived": 1,
    }
    check = document["checks"][1]
    assert set(check) == {
        "id",
        "type",
        "name",
        "category",
        "severity",
        "tags",
        "status",
        "blocking",
        "not_run",
        "gate_rule",
        "summary",
        "evidence",
        "marks",
        "metrics",
        "remediation",
        "duration_ms",
        "attempts",
        "waiver",
        "data",
        "location",
        "regression",
        "timeline",
    }
    assert (check["id"], check["status"], check["blocking"]) == ("migrations", "FAIL", True)
    waived = document["checks"][3]
    assert waived["status"] == "WAIVED"
    assert waived["waiver"]["approved_by"] == "Dana (RM)"
    assert RunResult.model_validate(document) == mixed_result  # the JSON round-trips


def test_junit_has_one_testcase_per_check_with_the_right_elements(mixed_result: RunResult) -> None:
    root = ET.fromstring(junit.render(mixed_result))
    suite = root.find("testsuite")
    assert suite is not None
    assert (
        suite.get("tests"),
        suite.get("failures"),
        suite.get("errors"),
        suite.get("skipped"),
    ) == (
        "7",
        "2",
        "0",
        "2",
    )
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert cases["db: PostgreSQL reachable"].find("failure") is None
    failure = cases["migrations"].find("failure")
    assert failure is not None
    assert failure.get("message") == "[critical, blocking] 1 pending migration: add_orders_idx"
    assert "pending: 9b1c add_orders_idx" in (failure.text or "")
    skipped = cases["p95"].find("skipped")
    assert skipped is not None and "waived by Dana (RM) until 2026-12-31" in (
        skipped.get("message") or ""
    )
    assert cases["api"].find("skipped") is not None
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["verdict"] == "NOT_READY"


def test_a_wide_histogram_is_merged_into_few_bars_keeping_every_request() -> None:
    from readycheck.checks.latency.stats import HISTOGRAM_BOUNDS_MS
    from readycheck.report.overview import MAX_BARS, distribution

    counts = [0] * len(HISTOGRAM_BOUNDS_MS)
    for index in range(10, 40):  # 30 occupied buckets, 1 ms to 1 s
        counts[index] = index
    bars = distribution({"bounds_ms": list(HISTOGRAM_BOUNDS_MS), "counts": counts})
    assert len(bars) <= MAX_BARS
    assert sum(count for _, count in bars) == sum(counts)
    assert bars[-1][0] == f"≤{HISTOGRAM_BOUNDS_MS[39]:g}"
    assert distribution({"bounds_ms": [1, 2], "counts": [0, 0]}) == []
    assert distribution("not a histogram") == []
