"""The gate: what blocks, what a run that looked at nothing says, the checks that could
block and did not run, per-check gate rules, and what the profile is told at load time."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from readycheck.gate import CheckRule, Gate
from readycheck.results import Severity, Status
from tests.conftest import CliResult

Cli = Callable[..., CliResult]

THREE = """
name: shop
checks:
  - {id: db, type: test.sleep, severity: critical}
  - {id: api, type: test.sleep, severity: high}
  - {id: docs, type: test.sleep, severity: low}
"""


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


# -- the rules, as a table ---------------------------------------------------------------

FAIL_WARN = {Status.FAIL, Status.WARN}


@pytest.mark.parametrize(
    ("gate", "severity", "rule", "blocking"),
    [
        (Gate(), Severity.HIGH, CheckRule(), {Status.FAIL, Status.ERROR}),
        (Gate(), Severity.MEDIUM, CheckRule(), set()),
        (Gate(strict=True), Severity.HIGH, CheckRule(), {Status.FAIL, Status.ERROR, Status.WARN}),
        (Gate(), Severity.CRITICAL, CheckRule(blocks=False), set()),
        (Gate(strict=True), Severity.CRITICAL, CheckRule(blocks=False), set()),
        (Gate(), Severity.LOW, CheckRule(blocks=True), {Status.FAIL, Status.ERROR}),
        (Gate(), Severity.INFO, CheckRule(blocks_on=frozenset(FAIL_WARN)), FAIL_WARN),
        (
            Gate(strict=True),
            Severity.HIGH,
            CheckRule(blocks_on=frozenset({Status.FAIL})),
            {Status.FAIL},
        ),
        (Gate(fail_on=Severity.LOW), Severity.LOW, CheckRule(), {Status.FAIL, Status.ERROR}),
    ],
)
def test_what_blocks_by_severity_strictness_and_the_checks_own_rule(
    gate: Gate, severity: Severity, rule: CheckRule, blocking: set[Status]
) -> None:
    for status in Status:
        assert gate.blocks(status, severity, rule) is (status in blocking), status


def test_a_skipped_check_is_not_run_and_blocks_only_when_all_are_required() -> None:
    judged = Gate().judge(Status.SKIP, Severity.CRITICAL)
    assert (judged.blocking, judged.not_run) == (False, True)
    judged = Gate(require_all=True).judge(Status.SKIP, Severity.CRITICAL)
    assert (judged.blocking, judged.not_run) == (True, True)
    advisory = Gate(require_all=True).judge(Status.SKIP, Severity.LOW)
    assert (advisory.blocking, advisory.not_run) == (False, False)  # could never block
    for_needs = Gate().judge(Status.SKIP, Severity.HIGH, skipped_for_needs=True)
    assert (for_needs.blocking, for_needs.not_run) == (True, False)  # closed, as before


# -- fail-open paths, closed -------------------------------------------------------------


def test_every_check_skipped_is_no_checks_run_with_its_own_exit_code(
    cli: Cli, write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "r.json"
    result = cli(
        "run",
        write_profile(THREE),
        "--skip",
        "db",
        "--skip",
        "api",
        "--skip",
        "docs",
        "--json",
        out,
    )
    assert result.exit_code == 4, result.output
    assert "NO CHECKS RUN" in result.stdout
    document = _json(out)
    assert (document["verdict"], document["exit_code"]) == ("NO_CHECKS_RUN", 4)
    assert document["not_run"] == ["db", "api"]


def test_a_profile_with_no_checks_is_never_ready(
    cli: Cli, write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    report = tmp_path / "r.md"
    result = cli("run", write_profile("name: empty\nchecks: []\n"), "--report", report)
    assert result.exit_code == 4, result.output
    assert "The profile has no checks, so nothing was checked" in report.read_text()


def test_only_matching_nothing_is_a_usage_error(
    cli: Cli, write_profile: Callable[..., Path]
) -> None:
    path = write_profile(THREE)
    for selector, message in (
        ("dbb", "no check has this id; did you mean 'db'?"),
        ("tag:x", "no check has the tag 'x'"),
    ):
        result = cli("run", path, "--only", selector)
        assert result.exit_code == 2, result.output
        assert message in result.stderr


def test_a_skipped_critical_check_is_named_beside_the_verdict_in_every_output(
    cli: Cli, write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    out, report, junit = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "j.xml"
    result = cli(
        "run",
        write_profile(THREE),
        "--skip",
        "db",
        "--json",
        out,
        "--report",
        report,
        "--junit",
        junit,
    )
    assert result.exit_code == 0, result.output
    verdict_line = [line for line in result.stdout.splitlines() if line.startswith("READY")][-1]
    assert "1 blocking check not run: db" in verdict_line
    assert _json(out)["not_run"] == ["db"]
    assert "1 blocking check not run: db." in report.read_text()
    properties = {p.get("name"): p.get("value") for p in ET.parse(junit).iter("property")}
    assert properties["not_run"] == "db"


@pytest.mark.parametrize("how", ["flag", "profile"])
def test_require_all_makes_a_skipped_blocking_check_block(
    how: str, cli: Cli, write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    text = (
        THREE
        if how == "flag"
        else THREE.replace("name: shop", "name: shop\ngate: {require_all: true}")
    )
    args = ["--require-all"] if how == "flag" else []
    out = tmp_path / "r.json"
    result = cli(
        "run", write_profile(text), "--skip", "api", "--skip", "docs", *args, "--json", out
    )
    assert result.exit_code == 1, result.output
    document = _json(out)
    assert document["verdict"] == "NOT_READY"
    assert [c["id"] for c in document["checks"] if c["blocking"]] == ["api"]  # docs is low
    assert document["gate"]["require_all"] is True


# -- a check's own rule ------------------------------------------------------------------


def test_a_warn_can_block_and_a_fail_can_be_advisory(
    cli: Cli, write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_profile(
        """
        name: certs
        checks:
          - {id: cert, type: test.sleep, severity: medium, blocks_on: [fail, error, warn],
             with: {status: WARN, summary: expires in 3 days}}
          - {id: advice, type: test.sleep, severity: critical, blocks: false,
             with: {status: FAIL, summary: an advisory finding}}
        """
    )
    out = tmp_path / "r.json"
    result = cli("run", path, "--json", out)
    assert result.exit_code == 1, result.output
    checks = {c["id"]: c for c in _json(out)["checks"]}
    assert checks["cert"]["blocking"] is True
    assert checks["cert"]["gate_rule"] == "blocks on fail, error, warn"
    assert checks["advice"]["blocking"] is False
    assert checks["advice"]["gate_rule"] == "never blocks"


def test_blocks_false_with_blocks_on_is_refused(
    cli: Cli, write_profile: Callable[..., Path]
) -> None:
    path = write_profile(
        "checks:\n  - {id: a, type: test.sleep, blocks: false, blocks_on: [warn]}\n"
    )
    result = cli("validate", path)
    assert result.exit_code == 2
    assert "checks[a].blocks_on: blocks: false says the check never blocks" in result.stderr


# -- caught at validate, all at once ---------------------------------------------------


def test_five_different_problems_are_reported_in_one_pass(
    cli: Cli, write_profile: Callable[..., Path]
) -> None:
    path = write_profile(
        """
        name: shop
        gate: {fail_on: severe}
        checks:
          - {id: a, type: test.sleep, timeout: soon}
          - {id: b, type: test.slep}
          - {id: c, type: test.sleep, needs: [zz], with: {summary: "${env:READYCHECK_UNSET_CANARY}"}}
        waivers:
          - {check: gone, reason: old, approved_by: rm, until: 2099-01-01}
        """
    )
    result = cli("validate", path, "--var", "nothing=1")
    assert result.exit_code == 2, result.output
    expected = [
        r"profile\.yaml:2:\d+: gate\.fail_on: ",
        r"profile\.yaml:4:\d+: checks\[a\]\.timeout: 'soon' is not a duration",
        r"profile\.yaml:5:\d+: checks\[b\]\.type: unknown check type 'test\.slep'",
        r"profile\.yaml:6:\d+: checks\[c\]\.needs: needs unknown check 'zz'",
        r"profile\.yaml:6:\d+: checks\[c\]\.with\.summary: environment variable READYCHECK_UNSET_CANARY",
        r"profile\.yaml:8:\d+: waivers\.check: waiver for unknown check 'gone'",
        r"--var nothing: names no variable of the profile",
    ]
    for pattern in expected:
        assert re.search(pattern, result.stderr), (pattern, result.stderr)
    assert f"{len(expected)} profile errors" in result.stderr


def test_an_expired_waiver_is_a_problem_at_validate_and_recorded_at_run(
    cli: Cli, write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    path = write_profile(
        f"""
        checks:
          - {{id: a, type: test.sleep, with: {{status: FAIL}}}}
        waivers:
          - {{check: a, reason: r, approved_by: rm, until: {yesterday}}}
        """
    )
    validated = cli("validate", path)
    assert validated.exit_code == 2
    assert "profile.yaml:4:" in validated.stderr
    assert f"the waiver of 'a' expired on {yesterday}" in validated.stderr
    out = tmp_path / "r.json"
    ran = cli("run", path, "--json", out)
    assert ran.exit_code == 1  # not applied: the failure blocks
    assert _json(out)["waivers"][0]["state"] == "expired"


def test_a_var_that_names_no_variable_is_refused_with_the_known_ones(
    cli: Cli, write_profile: Callable[..., Path]
) -> None:
    path = write_profile("vars: {api: x, region: eu}\nchecks: [{id: a, type: test.sleep}]\n")
    result = cli("run", path, "--var", "apii=https://example.com")
    assert result.exit_code == 2
    assert (
        "--var apii: names no variable of the profile; did you mean 'api'? (variables: api, region)"
        in result.stderr
    )


# -- what every output records -----------------------------------------------------------


def test_the_command_line_and_profile_are_recorded_secrets_masked(
    readycheck_process: Callable[..., CliResult],
    write_profile: Callable[..., Path],
    tmp_path: Path,
) -> None:
    path = write_profile("vars: {db_password: x}\nchecks: [{id: a, type: test.sleep}]\n")
    out, report = tmp_path / "r.json", tmp_path / "r.md"
    result = readycheck_process(
        "run",
        path,
        "--var",
        "db_password=canary-4242",
        "--json",
        out,
        "--report",
        report,
        env={
            "GITHUB_ACTIONS": "true",
            "GITHUB_SERVER_URL": "https://github.example",
            "GITHUB_REPOSITORY": "shop/api",
            "GITHUB_RUN_ID": "77",
        },
    )
    assert result.exit_code == 0, result.output
    document = _json(out)
    invocation = document["invocation"]
    assert invocation["command"].startswith("readycheck run ")
    assert "db_password=***" in invocation["command"]
    assert invocation["ci_url"] == "https://github.example/shop/api/actions/runs/77"
    assert document["profile"]["path"] == str(path.resolve())
    assert document["profile"]["digest"].startswith("sha256:")
    for text in (out.read_text(), report.read_text(), result.output):
        assert "canary-4242" not in text
    assert "readycheck run" in report.read_text()
