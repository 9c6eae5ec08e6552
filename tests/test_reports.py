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
from readycheck.report.files import write_atomic
from readycheck.results import RunResult

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
  - {id: db, name: PostgreSQL reachable, type: test.sleep, severity: critical, tags: [database],
     with: {summary: "PostgreSQL 16.2 answered in 3.1 ms", metrics: {latency_ms: 3.1}}}
  - {id: migrations, type: test.sleep, severity: critical, needs: [db],
     with: {status: FAIL, summary: "1 pending migration: add_orders_idx",
            evidence: ["alembic_version = 3f2a, head = 9b1c", "pending: 9b1c add_orders_idx"]},
     remediation: Run alembic upgrade head before deploying.}
  - {id: p95, type: test.sleep, severity: high, category: performance,
     with: {status: FAIL, summary: "p95 412 ms over a 300 ms budget"}}
  - {id: cors, type: test.sleep, severity: medium, category: security,
     with: {status: WARN, summary: "Access-Control-Allow-Origin echoes any origin | *"}}
  - {id: docs, type: test.sleep, severity: low, with: {status: FAIL, summary: "README lacks <setup> section"}}
  - {id: api, type: test.sleep, needs: [migrations]}
waivers:
  - {check: p95, reason: cache warms for 10 minutes after deploy, approved_by: Dana (RM), until: 2026-12-31}
"""


def _fixed(result: RunResult) -> RunResult:
    """Times and durations injected, so the report is byte-for-byte stable."""
    start = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    checks = [
        check.model_copy(update={"duration_ms": 10.0 * (index + 1) if check.attempts else 0.0})
        for index, check in enumerate(result.checks)
    ]
    return result.model_copy(
        update={
            "started_at": start,
            "finished_at": start.replace(second=3),
            "duration_ms": 3000.0,
            "checks": checks,
            "profile": result.profile.model_copy(update={"path": "profiles/payments.yaml"}),
        }
    )


@pytest.fixture
def mixed_result(write_profile: Callable[..., Path]) -> RunResult:
    profile = load_profile(write_profile(MIXED), environ={})
    engine = Engine(profile, clock=lambda: datetime(2026, 11, 25, 9, 30, tzinfo=UTC))
    return _fixed(asyncio.run(engine.run()))


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with READYCHECK_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), f"{name} differs (READYCHECK_UPDATE_GOLDEN=1 refreshes it)"


def test_markdown_report_for_a_not_ready_run_matches_the_golden_file(
    mixed_result: RunResult,
) -> None:
    _golden("report-not-ready.md", markdown.render(mixed_result))


def test_markdown_report_for_a_ready_run(write_profile: Callable[..., Path]) -> None:
    profile = load_profile(
        write_profile(
            "name: tiny\nchecks: [{id: only, type: test.sleep, with: {summary: fine}}]\n"
        ),
        environ={},
    )
    result = _fixed(asyncio.run(Engine(profile).run()))
    _golden("report-ready.md", markdown.render(result))


def test_markdown_report_reads_as_a_checklist(mixed_result: RunResult) -> None:
    text = markdown.render(mixed_result)
    assert "## Verdict: ❌ NOT READY" in text
    assert "- [x] **PostgreSQL reachable** (`db`)" in text
    assert "- [ ] **migrations** (`migrations`): FAIL" in text
    assert "- [~] **p95** (`p95`): WAIVED" in text
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
        "pass": 1,
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
        "summary",
        "evidence",
        "metrics",
        "remediation",
        "duration_ms",
        "attempts",
        "waiver",
        "data",
    }
    assert (check["id"], check["status"], check["blocking"]) == ("migrations", "FAIL", True)
    waived = document["checks"][2]
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
        "6",
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


def test_atomic_write_replaces_whole_files_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    target.write_text("old")
    write_atomic(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)
    with pytest.raises(OutputError, match="cannot write"):
        write_atomic(tmp_path / "missing-dir" / "x.md", "text")
