"""The release manager's side: baseline comparison, re-rendering from saved results,
GitHub Actions summary and annotations, and the HTML report seen in a real browser."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from readycheck.baseline import compare, describe_metric_change, load_results
from readycheck.errors import UsageError
from readycheck.gate import Tolerances
from readycheck.results import RunResult, Status
from tests.conftest import CliResult
from tests.servers.browser import chromium, chromium_binary, open_page

Cli = Callable[..., CliResult]

PROFILE = """
name: shop
gate: {{fail_on: high, fail_on_regression: {fail_on_regression}, regression: 20%}}
checks:
  - {{id: db, type: test.sleep, severity: critical, category: database,
     with: {{status: {db}, summary: "db answered", metrics: {{latency_ms: {db_ms}}}}}}}
  - {{id: p95, type: test.sleep, category: performance,
     with: {{summary: "p95 ok", metrics: {{p95_ms: {p95}, achieved_rps: 50}}}}}}
  - {{id: docs, type: test.sleep, severity: low, with: {{status: {docs}}}}}
  {extra}
"""


def profile_text(
    *,
    db: str = "PASS",
    db_ms: float = 3.0,
    p95: float = 120.0,
    docs: str = "FAIL",
    extra: str = "",
    fail_on_regression: str = "false",
) -> str:
    return PROFILE.format(
        db=db, db_ms=db_ms, p95=p95, docs=docs, extra=extra, fail_on_regression=fail_on_regression
    )


def run_json(cli: Cli, path: Path, out: Path, *args: str | Path) -> tuple[CliResult, dict]:
    result = cli("run", path, "--json", out, *args)
    return result, json.loads(out.read_text())


def test_baseline_shows_regressed_recovered_new_gone_and_moved_metrics(
    cli: Cli, write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    before = tmp_path / "before.json"
    run_json(
        cli, write_profile(profile_text(extra="- {id: old, type: test.sleep}"), "a.yaml"), before
    )
    now = write_profile(
        profile_text(
            db="FAIL", p95=210.0, docs="PASS", db_ms=3.3, extra="- {id: fresh, type: test.sleep}"
        ),
        "b.yaml",
    )
    report = tmp_path / "r.md"
    result, document = run_json(
        cli, now, tmp_path / "now.json", "--baseline", before, "--report", report
    )
    comparison = document["comparison"]
    assert [(c["check"], c["before"], c["after"]) for c in comparison["regressed"]] == [
        ("db", "PASS", "FAIL")
    ]
    assert [(c["check"], c["before"], c["after"]) for c in comparison["recovered"]] == [
        ("docs", "FAIL", "PASS")
    ]
    assert comparison["new"] == ["fresh"] and comparison["gone"] == ["old"]
    # p95 moved +75% (past 20%); db latency moved +10% (within tolerance): not listed.
    assert [(m["check"], m["metric"], m["worse"]) for m in comparison["metrics"]] == [
        ("p95", "p95_ms", True)
    ]
    assert "p95_ms 120 ms to 210 ms, +75%" in result.stdout
    text = report.read_text()
    assert "## Since the baseline" in text
    assert "- Regressed: `db` PASS → FAIL" in text
    assert "| `p95` | `p95_ms` | 120 ms | 210 ms | +75% | 20% and 5.0 ms | regressed |" in text


def test_a_regression_blocks_only_when_the_gate_says_so(
    cli: Cli, write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    before = tmp_path / "before.json"
    run_json(cli, write_profile(profile_text(), "a.yaml"), before)
    slower = profile_text(p95=400.0)
    advisory, document = run_json(
        cli, write_profile(slower, "b.yaml"), tmp_path / "b.json", "--baseline", before
    )
    assert advisory.exit_code == 0
    assert (
        document["checks"][1]["regression"]
        == "regressed: p95_ms 120 ms to 400 ms, +233% (past 20% and 5 ms)"
    )
    blocking, document = run_json(
        cli,
        write_profile(profile_text(p95=400.0, fail_on_regression="true"), "c.yaml"),
        tmp_path / "c.json",
        "--baseline",
        before,
    )
    assert blocking.exit_code == 1
    assert document["verdict"] == "NOT_READY"
    assert document["checks"][1]["blocking"] is True


def test_metric_changes_within_tolerance_or_of_unknown_direction() -> None:
    base = _result({"p95_ms": 100.0, "widgets": 10.0, "headroom": 50.0})
    now = _result({"p95_ms": 119.0, "widgets": 30.0, "headroom": 20.0})
    changes = compare(now, base, path="b.json", tolerances=Tolerances(relative=0.2)).metrics
    described = {(c.metric, c.worse): describe_metric_change(c) for c in changes}
    assert described == {
        ("widgets", None): "widgets 10 to 30, +200% (past 20% and 1)",
        ("headroom", True): "headroom 50 to 20, -60% (past 20% and 1)",
    }


@pytest.mark.parametrize(
    ("before", "after", "regressed"),
    [
        (3.0, 4.0, False),  # +33%, but 1 ms: the noise of a busy machine
        (3.0, 8.0, False),  # +167%, but 5 ms: not past the absolute tolerance
        (3.0, 8.5, True),  # +183% and 5.5 ms: past both
        (100.0, 119.0, False),  # 19 ms, but +19%: within the relative tolerance
        (100.0, 121.0, True),  # +21% and 21 ms: past both
        (100.0, 60.0, False),  # faster is never a regression
    ],
)
def test_a_metric_regresses_only_past_both_tolerances(
    before: float, after: float, regressed: bool
) -> None:
    changes = compare(
        _result({"connect_ms": after}), _result({"connect_ms": before}), path="b.json"
    ).metrics
    assert any(change.regressed for change in changes) is regressed


def test_tolerances_by_unit_and_by_metric_come_from_the_profile(
    cli: Cli, write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    before = tmp_path / "before.json"
    run_json(cli, write_profile(profile_text(), "a.yaml"), before)
    # p95 120 ms -> 140 ms: +17%, 20 ms. Within the default 20%; past a 10%/15ms override.
    gate = (
        "gate:\n  regression:\n    relative: 20%\n    absolute: {ms: 2ms}\n"
        "    metrics: {'p95:p95_ms': {relative: 10%, absolute: 15ms}}\n"
    )
    text = "\n".join(
        gate if line.startswith("gate:") else line for line in profile_text(p95=140.0).splitlines()
    )
    _, document = run_json(
        cli,
        write_profile(text, "b.yaml"),
        tmp_path / "b.json",
        "--baseline",
        before,
    )
    [moved] = [m for m in document["comparison"]["metrics"] if m["metric"] == "p95_ms"]
    assert moved["regressed"] is True
    assert (moved["relative_tolerance"], moved["absolute_tolerance"]) == (0.1, 15.0)
    assert document["gate"]["regression_metrics"] == {
        "p95:p95_ms": {"relative": 0.1, "absolute": 15.0}
    }
    default, document = run_json(
        cli,
        write_profile(profile_text(p95=140.0), "c.yaml"),
        tmp_path / "c.json",
        "--baseline",
        before,
    )
    assert not [m for m in document["comparison"]["metrics"] if m["regressed"]]
    assert default.exit_code == 0


def _result(metrics: dict[str, float]) -> RunResult:
    from datetime import UTC, datetime

    from readycheck.results import CheckResult, GateInfo, ProfileInfo, Severity, ToolInfo, Verdict

    moment = datetime(2026, 11, 25, tzinfo=UTC)
    return RunResult(
        tool=ToolInfo(version="0"),
        profile=ProfileInfo(name="p", path="p", digest="d"),
        started_at=moment,
        finished_at=moment,
        duration_ms=0,
        verdict=Verdict.READY,
        exit_code=0,
        summary={},
        gate=GateInfo(fail_on=Severity.HIGH, strict=False),
        checks=[
            CheckResult(
                id="c",
                type="t",
                name="c",
                category="x",
                severity=Severity.HIGH,
                status=Status.PASS,
                blocking=False,
                summary="",
                metrics=metrics,
            )
        ],
    )


def test_report_rerenders_every_output_from_saved_results(
    cli: Cli, write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    saved = tmp_path / "saved.json"
    first, _ = run_json(cli, write_profile(profile_text(db="FAIL")), saved)
    assert first.exit_code == 1
    out = {name: tmp_path / name for name in ("r.md", "r.html", "j.xml", "again.json")}
    result = cli(
        "report",
        saved,
        "--report",
        out["r.md"],
        "--html",
        out["r.html"],
        "--junit",
        out["j.xml"],
        "--json",
        out["again.json"],
    )
    assert result.exit_code == 0, result.output
    # The outputs are named; the checks and the verdict are not printed again.
    assert sorted(result.stdout.splitlines()) == sorted(f"wrote {path}" for path in out.values())
    assert "## Verdict: ❌ NOT READY" in out["r.md"].read_text()
    assert json.loads(out["again.json"].read_text()) == json.loads(saved.read_text())
    assert "<testsuite" in out["j.xml"].read_text()
    assert "NOT READY" in out["r.html"].read_text()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"schema_version": 0, "checks": []}', "schema_version 0 is older than the version"),
        ('{"schema_version": 7}', "schema_version 7 is not the version this readycheck reads"),
        ("[1, 2]", "not a readycheck results file"),
        ("{not json", "not JSON (line 1"),
        ('{"schema_version": 1, "verdict": "MAYBE"}', "not a valid readycheck results file"),
    ],
)
def test_results_files_that_cannot_be_read_are_refused_clearly(
    content: str, message: str, tmp_path: Path, cli: Cli
) -> None:
    path = tmp_path / "old.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        load_results(path)
    result = cli("report", path, "--report", tmp_path / "r.md")
    assert result.exit_code == 2
    assert message in result.stderr
    assert not (tmp_path / "r.md").exists()


def test_github_actions_gets_the_summary_and_annotations(
    cli: Cli, write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    summary = tmp_path / "step_summary.md"
    summary.write_text("# earlier step\n")
    path = write_profile(profile_text(db="FAIL"))
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_WORKSPACE": str(tmp_path),
    }
    result = cli("run", path, env=env)
    assert result.exit_code == 1
    text = summary.read_text()
    assert text.startswith("# earlier step\n")  # appended, not replaced
    assert "## Verdict: ❌ NOT READY" in text
    lines = [line for line in result.stdout.splitlines() if line.startswith("::")]
    assert lines == [
        "::error title=readycheck FAIL%3A db (critical),file=profile.yaml,line=4,col=10::db answered",
        "::warning title=readycheck FAIL%3A docs (low),file=profile.yaml,line=8,col=10::slept",
    ]
    quiet = cli("run", path, "--no-ci-annotations", env=env)
    assert not [line for line in quiet.stdout.splitlines() if line.startswith("::")]


def test_annotations_escape_newlines_and_percent_signs(
    cli: Cli, write_profile: Callable[..., Path]
) -> None:
    path = write_profile(
        'checks: [{id: a, type: test.sleep, remediation: "line one\\nline two",'
        ' with: {status: FAIL, summary: "100% broken"}}]\n'
    )
    result = cli("run", path, env={"GITHUB_ACTIONS": "true"})
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("::error")]
    assert line.endswith("::100%25 broken%0Aline one%0Aline two")


# -- the HTML report in a real browser -------------------------------------------------------


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[str]:
    """Headless Chromium with its DevTools endpoint; yields the HTTP base URL."""
    binary = chromium_binary()
    if binary is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); .ci/run installs it")
    with chromium(binary, tmp_path / "chrome") as base_url:
        yield base_url


def test_html_report_shows_the_verdict_and_every_check_in_a_browser(
    browser: str, cli: Cli, write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_profile(
        profile_text(db="FAIL")
        + """
  - {id: probe, type: test.sleep, category: performance,
     with: {summary: "p95 280 ms", data: {latency: {model: open,
            percentiles_ms: {p50: 90, p90: 200, p95: 280, p99: 390, max: 650},
            thresholds_ms: {p95: 300},
            histogram: {bounds_ms: [50, 100, 200, 400, 800], counts: [10, 50, 30, 8, 2]}}}}}
"""
    )
    html = tmp_path / "report.html"
    assert cli("run", path, "--html", html).exit_code == 1
    text = html.read_text()
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")  # self-contained
    assert "<script" not in text and "<link" not in text

    with open_page(browser, html.as_uri()) as page:
        script = """
        (() => {
          const visible = (el) => !!el && el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})
              && el.getBoundingClientRect().width > 0 && el.getBoundingClientRect().height > 0;
          const verdict = document.getElementById('verdict');
          const ids = ['db', 'p95', 'docs', 'probe'];
          return JSON.stringify({
            verdict: visible(verdict) ? verdict.innerText : null,
            checks: ids.filter((id) => visible(document.querySelector(`[data-check-id="${id}"]`))),
            charts: document.querySelectorAll('svg rect.bar').length,
          });
        })()
        """
        seen = json.loads(page.evaluate(script))
        png = page.screenshot()
    assert "NOT READY" in seen["verdict"]
    assert seen["checks"] == ["db", "p95", "docs", "probe"]
    # p50, p90, p95, p99 and max; then the five buckets of the distribution
    assert seen["charts"] == 10
    assert png.startswith(b"\x89PNG")
    (tmp_path / "report.png").write_bytes(png)
    assert len(png) > 20_000  # a rendered page, not a blank one
    if os.environ.get("READYCHECK_KEEP_SCREENSHOT"):
        shutil.copy(tmp_path / "report.png", os.environ["READYCHECK_KEEP_SCREENSHOT"])
