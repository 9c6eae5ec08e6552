"""prometheus.query and prometheus.alerts against a real Prometheus (tests/servers/
prometheus.py: basic auth, a scraped app, alerting rules), and the faults a Prometheus
can answer with: unreachable, a 500, a syntax error, warnings, an empty result."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from readycheck.results import Status
from tests.conftest import REPO, CheckRun, CliResult, RunCheck, placeholder_env
from tests.servers.http import Reply, Serve, ok
from tests.servers.prometheus import (
    BROKEN_RULE_ERROR,
    USER,
    WARNING_QUERY,
    RunningPrometheus,
)

PASSWORD_ENV = "READYCHECK_TEST_PROMETHEUS_PASSWORD"
TOKEN = "canary-prom-token-4b1e9f"
REPLICA = 'app_pool_usage_ratio{instance="'
Run = Callable[..., CheckRun]


@pytest.fixture
def prom(prometheus_server: RunningPrometheus, run_check: RunCheck) -> Run:
    """Run a Prometheus check against the test Prometheus, signed in with basic auth
    whose password is read from the environment."""

    def run(check_type: str, **params: Any) -> CheckRun:
        auth = {"basic": {"username": USER, "password": {"env": PASSWORD_ENV}}}
        return run_check(
            check_type,
            {"url": prometheus_server.url, "auth": auth, **params},
            env={PASSWORD_ENV: prometheus_server.password},
        )

    return run


def series_line(run: CheckRun, pool: str) -> str:
    return next(line for line in run.result.evidence if f'pool="{pool}"' in line)


# -- prometheus.query: instant ------------------------------------------------------------


def test_every_series_within_the_threshold_passes_with_its_labels(prom: Run) -> None:
    run = prom("prometheus.query", query="app_pool_usage_ratio", expect={"<": 0.95})
    result = run.result
    assert result.status is Status.PASS, run.shown
    assert result.summary == "2 series, all within < 0.95 (max 0.91)"
    assert series_line(run, "replica").endswith('job="app", pool="replica"} = 0.91, within < 0.95')
    assert "query: app_pool_usage_ratio" in result.evidence
    assert result.metrics == {"series": 2, "broken": 0, "warned": 0, "min": 0.42, "max": 0.91}


def test_a_series_over_the_threshold_fails_and_is_shown_first(prom: Run) -> None:
    run = prom("prometheus.query", query="app_pool_usage_ratio", expect={">=": 0, "<": 0.8})
    result = run.result
    assert result.status is Status.FAIL
    assert result.summary.startswith("1 of 2 series breaks >= 0 and < 0.8: app_pool_usage_ratio{")
    assert result.summary.endswith('pool="replica"} = 0.91')
    # The breaking series comes before the one within, whatever order Prometheus used.
    assert 'pool="replica"} = 0.91, expected >= 0 and < 0.8' in result.evidence[1]
    assert 'pool="primary"} = 0.42, within >= 0 and < 0.8' in result.evidence[2]
    assert result.marks[:3] == [None, "broken", "held"]  # the query line states no comparison
    assert result.metrics["broken"] == 1


def test_a_value_within_expect_but_not_warn_warns(prom: Run) -> None:
    run = prom(
        "prometheus.query", query="app_pool_usage_ratio", expect={"<": 0.95}, warn={"<": 0.9}
    )
    assert run.result.status is Status.WARN
    assert run.result.summary.startswith("1 of 2 series within < 0.95 but not < 0.9: ")
    assert series_line(run, "replica").endswith("= 0.91, within < 0.95, not < 0.9")


def test_a_scalar_is_one_value(prom: Run) -> None:
    run = prom("prometheus.query", query="scalar(app_queue_depth)", expect={"<": 300})
    assert run.result.status is Status.PASS
    assert run.result.summary == "250, within < 300"


def test_evidence_shows_at_most_evidence_series(prom: Run) -> None:
    run = prom(
        "prometheus.query", query="app_pool_usage_ratio", expect={"<": 0.8}, evidence_series=1
    )
    evidence = run.result.evidence
    assert sum("app_pool_usage_ratio{" in line for line in evidence) == 1
    assert 'pool="replica"' in evidence[1]  # the one breaking the threshold is kept
    assert "... and 1 more series" in evidence


# -- prometheus.query: the faults ----------------------------------------------------------


def test_an_empty_result_fails_by_default(prom: Run) -> None:
    run = prom("prometheus.query", query="app_pool_usage_ration", expect={"<": 0.95})
    assert run.result.status is Status.FAIL
    assert run.result.summary == "the query returned no series"
    assert "a typo returns nothing" in (run.result.remediation or "")
    assert run.result.metrics["series"] == 0


@pytest.mark.parametrize(("on_empty", "status"), [("warn", Status.WARN), ("pass", Status.PASS)])
def test_on_empty_decides_what_no_series_means(prom: Run, on_empty: str, status: Status) -> None:
    run = prom("prometheus.query", query='up{job="gone"}', expect={"==": 1}, on_empty=on_empty)
    assert run.result.status is status
    assert run.result.summary.startswith("the query returned no series")


def test_a_syntax_error_is_an_error_with_prometheus_message(prom: Run) -> None:
    run = prom("prometheus.query", query="sum(rate(app_queue_depth[5m])", expect={"<": 1})
    result = run.result
    assert result.status is Status.ERROR
    assert "/api/v1/query: Prometheus rejected the query: " in result.summary
    assert "1:30: parse error: unclosed left parenthesis" in result.summary
    assert "expression browser" in (result.remediation or "")


def test_a_syntax_error_is_not_retried(
    prometheus_server: RunningPrometheus, run_check: RunCheck
) -> None:
    auth = {"basic": {"username": USER, "password": {"env": PASSWORD_ENV}}}
    run = run_check(
        "prometheus.query",
        {"url": prometheus_server.url, "auth": auth, "query": "up{", "expect": {"==": 1}},
        extra="    retries: 3\n",
        env={PASSWORD_ENV: prometheus_server.password},
    )
    assert run.result.status is Status.ERROR
    assert run.result.attempts == 1


def test_warnings_in_the_answer_turn_a_pass_into_a_warn(prom: Run) -> None:
    run = prom("prometheus.query", query=WARNING_QUERY, expect={"<": 1000})
    result = run.result
    assert result.status is Status.WARN
    assert result.summary.startswith("1 series within < 1000, but Prometheus warns: remote_read")
    assert any(line.startswith("Prometheus warns: remote_read") for line in result.evidence)


def test_warnings_do_not_hide_a_failure(prom: Run) -> None:
    run = prom("prometheus.query", query=WARNING_QUERY, expect={"<": 100})
    assert run.result.status is Status.FAIL
    assert any(line.startswith("Prometheus warns: ") for line in run.result.evidence)


def test_a_range_vector_is_an_error_saying_what_to_write(prom: Run) -> None:
    run = prom("prometheus.query", query="app_queue_depth[1m]", expect={"<": 1000})
    assert run.result.status is Status.ERROR
    assert run.result.summary == "the query returns a range vector, not a value per series"
    assert "max_over_time" in (run.result.remediation or "")


def test_prometheus_unreachable_is_an_error(run_check: RunCheck, closed_port_url: str) -> None:
    base = closed_port_url.removesuffix("/health")
    result = run_check("prometheus.query", {"url": base, "query": "up", "expect": {"==": 1}}).result
    assert result.status is Status.ERROR
    assert result.summary.startswith(f"GET {base}/api/v1/query: connection refused by ")
    assert "reachable" in (result.remediation or "")


def _answer(status: str, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (
        status.encode(),
        content_type,
        len(body),
        body,
    )


def test_prometheus_answering_500_is_an_error(run_check: RunCheck, serve: Serve) -> None:
    server = serve(
        lambda *_: Reply(_answer("500 Internal Server Error", b"upstream exploded", b"text/plain"))
    )
    result = run_check(
        "prometheus.query", {"url": server.url, "query": "up", "expect": {"==": 1}}
    ).result
    assert result.status is Status.ERROR
    assert result.summary.endswith("/api/v1/query: Prometheus failed (500 Internal Server Error)")
    assert "text/plain: upstream exploded" in result.evidence


def test_prometheus_own_error_envelope_is_shown(run_check: RunCheck, serve: Serve) -> None:
    body = json.dumps(
        {
            "status": "error",
            "errorType": "timeout",
            "error": "query timed out in expression evaluation",
        }
    ).encode()
    server = serve(lambda *_: Reply(_answer("503 Service Unavailable", body)))
    result = run_check(
        "prometheus.query", {"url": server.url, "query": "up", "expect": {"==": 1}}
    ).result
    assert result.status is Status.ERROR
    assert result.summary.endswith(
        "could not evaluate the query (timeout): query timed out in expression evaluation"
    )


def test_a_page_that_is_not_the_api_is_an_error(run_check: RunCheck, serve: Serve) -> None:
    server = serve(lambda *_: Reply(ok(b"<html>login</html>", b"Content-Type: text/html")))
    result = run_check(
        "prometheus.query", {"url": server.url, "query": "up", "expect": {"==": 1}}
    ).result
    assert result.status is Status.ERROR
    assert result.summary.endswith("answered 200 OK, not the Prometheus API")


# -- prometheus.query: for ----------------------------------------------------------------


def test_held_for_the_last_n_is_judged_on_every_point(
    prom: Run, prometheus_server: RunningPrometheus
) -> None:
    prometheus_server.wait_for_history(4)
    window = {"query": "app_pool_usage_ratio", "step": "1s", "for": "3s"}
    held = prom("prometheus.query", expect={"<": 0.95}, **window)
    assert held.result.status is Status.PASS, held.shown
    assert held.result.summary == "2 series, all within < 0.95 for the last 3s (max 0.91)"
    assert "range: the last 3s at step 1s (4 steps)" in held.result.evidence
    assert series_line(held, "replica").endswith(
        "now 0.91, range 0.91..0.91; within < 0.95 at every point"
    )
    broken = prom("prometheus.query", expect={"<": 0.8}, **window)
    assert broken.result.status is Status.FAIL
    assert broken.result.summary.startswith("1 of 2 series breaks < 0.8 for the last 3s: ")
    assert "breaks < 0.8 at 4 of 4 steps (first at " in series_line(broken, "replica")


def test_a_series_younger_than_the_window_has_not_held(prom: Run) -> None:
    run = prom(
        "prometheus.query", query="app_pool_usage_ratio", expect={"<": 0.95}, **{"for": "1h"}
    )
    result = run.result
    assert result.status is Status.FAIL
    assert result.summary.startswith("2 of 2 series without data for part of the last 1h: ")
    assert "range: the last 1h at step 2m (31 steps)" in result.evidence
    assert "no data at " in series_line(run, "primary")
    relaxed = prom(
        "prometheus.query",
        query="app_pool_usage_ratio",
        expect={"<": 0.95},
        on_empty="pass",
        **{"for": "1h"},
    )
    assert relaxed.result.status is Status.PASS


# -- authentication -------------------------------------------------------------------------


def test_wrong_credentials_are_an_error_and_never_shown(
    prometheus_server: RunningPrometheus, run_check: RunCheck
) -> None:
    wrong = "canary-wrong-password-8d2c"
    auth = {"basic": {"username": USER, "password": {"env": PASSWORD_ENV}}}
    run = run_check(
        "prometheus.query",
        {"url": prometheus_server.url, "auth": auth, "query": "up", "expect": {"==": 1}},
        env={PASSWORD_ENV: wrong},
    )
    assert run.result.status is Status.ERROR
    assert run.result.summary.endswith("Prometheus refused the request (401 Unauthorized)")
    assert wrong not in run.shown
    assert run.result.attempts == 1


def test_no_credentials_where_they_are_needed_is_an_error(
    prometheus_server: RunningPrometheus, run_check: RunCheck
) -> None:
    run = run_check(
        "prometheus.query", {"url": prometheus_server.url, "query": "up", "expect": {"==": 1}}
    )
    assert run.result.status is Status.ERROR
    assert "401 Unauthorized" in run.result.summary


def _bearer_only(request: bytes, connection: int, index: int) -> Reply:
    if f"authorization: bearer {TOKEN}".encode() not in request.lower():
        return Reply(_answer("401 Unauthorized", b"Unauthorized", b"text/plain"))
    body = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": {"__name__": "up"}, "value": [1, "1"]}],
        },
    }
    return Reply(_answer("200 OK", json.dumps(body).encode()))


def test_a_bearer_token_from_a_file_is_sent_and_never_shown(
    serve: Serve,
    write_profile: Callable[..., Path],
    cli: Callable[..., CliResult],
    tmp_path: Path,
) -> None:
    server = serve(_bearer_only)
    (tmp_path / "token").write_text(TOKEN + "\n")
    path = write_profile(
        f"""
        checks:
          - id: up
            type: prometheus.query
            with:
              url: {server.url}
              auth: {{bearer: {{file: token}}}}
              query: up
              expect: {{"==": 0}}
        """
    )
    out = tmp_path / "out.json"
    report = tmp_path / "report.md"
    result = cli("run", path, "--json", out, "--report", report, "--debug")
    assert result.exit_code == 1, result.output
    check = json.loads(out.read_text())["checks"][0]
    # Prometheus accepted the token: the value came back, and broke the threshold.
    assert check["summary"] == "1 of 1 series breaks == 0: up = 1"
    for text in (result.stdout, result.stderr, out.read_text(), report.read_text()):
        assert TOKEN not in text
    # The query's own time limit goes to Prometheus, so a heavy query stops there too.
    assert b"timeout=" in server.requests[0].split(b"\r\n")[0]


def test_a_token_that_cannot_be_read_is_an_error(run_check: RunCheck, serve: Serve) -> None:
    server = serve(_bearer_only)
    result = run_check(
        "prometheus.query",
        {
            "url": server.url,
            "auth": {"bearer": {"env": "READYCHECK_TEST_UNSET_TOKEN"}},
            "query": "up",
            "expect": {"==": 1},
        },
    ).result
    assert result.status is Status.ERROR
    assert result.summary == (
        "the Prometheus bearer token could not be read: environment variable "
        "READYCHECK_TEST_UNSET_TOKEN is not set"
    )
    assert not server.requests


# -- prometheus.alerts ---------------------------------------------------------------------


def test_required_rules_loaded_and_nothing_critical_firing_passes(prom: Run) -> None:
    run = prom(
        "prometheus.alerts",
        require=["QueueBacklog", "AppDown", {"expr_contains": "app_pool_usage_ratio >"}],
    )
    result = run.result
    assert result.status is Status.PASS, run.shown
    assert result.summary == "3 required rules loaded, no critical alert firing"
    assert "rule AppDown loaded (group app), inactive" in result.evidence
    assert "rule PoolSaturated loaded (group app), pending" in result.evidence
    assert "also firing, of a severity not forbidden: QueueBacklog (warning)" in result.evidence


def test_a_missing_rule_fails_with_the_closest_name(prom: Run) -> None:
    run = prom(
        "prometheus.alerts", require=["AppDwn", {"name": "AppDown", "expr_contains": "nope"}]
    )
    result = run.result
    assert result.status is Status.FAIL
    assert (
        result.summary == "required rule AppDwn is not loaded (did you mean AppDown?) (and 1 more)"
    )
    assert "required rule AppDown (expression containing 'nope') is not loaded" in "\n".join(
        result.evidence
    )
    assert result.metrics["rules_missing"] == 2


def test_a_rule_prometheus_cannot_evaluate_fails_with_its_error(prom: Run) -> None:
    run = prom("prometheus.alerts", require=["BrokenRule"], forbid_firing=[])
    assert run.result.status is Status.FAIL
    assert run.result.summary == (
        f"rule BrokenRule is loaded (group app) but fails: {BROKEN_RULE_ERROR}"
    )


def test_a_firing_alert_of_a_forbidden_severity_fails(prom: Run) -> None:
    run = prom("prometheus.alerts", forbid_firing=["warning", "critical"])
    result = run.result
    assert result.status is Status.FAIL
    assert result.summary == "1 warning/critical alert firing: QueueBacklog"
    index, line = next((i, line) for i, line in enumerate(result.evidence) if "FIRING " in line)
    assert result.marks[index] == "broken"
    assert line.startswith('FIRING QueueBacklog{instance="')
    assert line.endswith(": queue holds 250 jobs")
    assert result.metrics["forbidden_firing"] == 1


def test_a_pending_alert_of_a_forbidden_severity_warns(prom: Run) -> None:
    run = prom("prometheus.alerts", forbid_firing=["page"])
    assert run.result.status is Status.WARN
    assert run.result.summary == "1 page alert pending (about to fire): PoolSaturated"


def test_labels_and_ignore_narrow_what_counts(prom: Run) -> None:
    anything = prom("prometheus.alerts", forbid_firing=["*"])
    assert anything.result.status is Status.FAIL
    assert anything.result.summary == "1 alert firing: QueueBacklog"
    ignored = prom(
        "prometheus.alerts", forbid_firing=["*"], ignore=["QueueBacklog", "PoolSaturated"]
    )
    assert ignored.result.status is Status.PASS
    assert ignored.result.summary == "no alert firing"
    elsewhere = prom("prometheus.alerts", forbid_firing=["*"], labels={"service": "billing"})
    assert elsewhere.result.status is Status.PASS


def test_alerts_with_prometheus_unreachable_is_an_error(
    run_check: RunCheck, closed_port_url: str
) -> None:
    base = closed_port_url.removesuffix("/health")
    result = run_check("prometheus.alerts", {"url": base, "require": ["AppDown"]}).result
    assert result.status is Status.ERROR
    assert result.summary.startswith(f"GET {base}/api/v1/rules: connection refused by ")


# -- parameters -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("check_type", "params", "message"),
    [
        ("prometheus.query", {"query": "up", "expect": {}}, "give at least one comparison"),
        ("prometheus.query", {"query": "up", "expect": {"=<": 1}}, "checks[it].with.expect.=<"),
        ("prometheus.query", {"query": " ", "expect": {"<": 1}}, "the query is empty"),
        (
            "prometheus.query",
            {"query": "up", "expect": {"<": 1}, "step": "1s"},
            "step is only used with for",
        ),
        (
            "prometheus.query",
            {"query": "up", "expect": {"<": 1}, "for": "1h", "step": "100ms"},
            "36,001 points per series; Prometheus answers at most 11,000: raise step",
        ),
        ("prometheus.query", {"query": "up", "expect": {"<": ".inf"}}, "expect"),
        (
            "prometheus.query",
            {
                "query": "up",
                "expect": {"<": 1},
                "auth": {
                    "bearer": {"env": "T"},
                    "basic": {"username": "u", "password": {"env": "P"}},
                },
            },
            "give exactly one of bearer",
        ),
        ("prometheus.alerts", {"forbid_firing": []}, "give require, forbid_firing or both"),
        ("prometheus.alerts", {"require": [{}]}, "give name, expr_contains or both"),
    ],
)
def test_bad_parameters_are_profile_errors(
    write_profile: Callable[..., Path],
    cli: Callable[..., CliResult],
    check_type: str,
    params: dict[str, Any],
    message: str,
) -> None:
    block = json.dumps({"url": "https://prometheus.invalid", **params}).replace('".inf"', ".inf")
    path = write_profile(f"checks:\n  - id: it\n    type: {check_type}\n    with: {block}\n")
    result = cli("validate", path)
    assert result.exit_code == 2, result.output
    assert message in result.stderr


@pytest.mark.parametrize(
    "url", ["https://prometheus.invalid/api/v1", "https://prometheus.invalid/?x=1"]
)
def test_the_url_is_prometheus_base_url(
    write_profile: Callable[..., Path], cli: Callable[..., CliResult], url: str
) -> None:
    path = write_profile(
        f"checks:\n  - id: it\n    type: prometheus.alerts\n    with: {{url: '{url}'}}\n"
    )
    result = cli("validate", path)
    assert result.exit_code == 2
    assert "give Prometheus' base URL" in result.stderr


def test_parameter_models_import_no_driver() -> None:
    code = (
        "import sys\n"
        "from readycheck.registry import Registry\n"
        "for name in ['prometheus.query', 'prometheus.alerts', 'http.rate_limit']:\n"
        "    Registry().get(name)\n"
        "print(','.join(m for m in ['httpx', 'httpcore', 'ssl'] if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert done.stdout.strip() == ""


@pytest.mark.parametrize("check_type", ["prometheus.query", "prometheus.alerts"])
def test_every_type_is_explained(cli: Callable[..., CliResult], check_type: str) -> None:
    result = cli("explain", check_type)
    assert result.exit_code == 0, result.output
    assert check_type in result.stdout
    assert "auth" in result.stdout


def test_basic_auth_credentials_are_in_no_output(
    prometheus_server: RunningPrometheus,
    write_profile: Callable[..., Path],
    cli: Callable[..., CliResult],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, prometheus_server.password)
    path = write_profile(
        f"""
        checks:
          - id: queue
            type: prometheus.query
            with:
              url: {prometheus_server.url}
              auth: {{basic: {{username: {USER}, password: {{env: {PASSWORD_ENV}}}}}}}
              query: app_queue_depth
              expect: {{"<": 100}}
        """
    )
    out, report = tmp_path / "out.json", tmp_path / "report.md"
    result = cli("run", path, "--json", out, "--report", report, "--debug")
    assert result.exit_code == 1, result.output
    assert json.loads(out.read_text())["checks"][0]["summary"].startswith("1 of 1 series breaks")
    pair = base64.b64encode(f"{USER}:{prometheus_server.password}".encode()).decode()
    for text in (result.stdout, result.stderr, out.read_text(), report.read_text()):
        assert prometheus_server.password not in text
        assert pair not in text


def test_the_starters_prometheus_checks_validate_once_uncommented(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    target = tmp_path / "readycheck.yaml"
    assert cli("init", target, "--stack", "fastapi-postgres").exit_code == 0
    # The Alembic scripts the starter names (validate looks for them): the demo's.
    demo = REPO / "src" / "readycheck" / "demo" / "migrations"
    shutil.copytree(demo, tmp_path / "migrations", ignore=shutil.ignore_patterns("__pycache__"))
    text = target.read_text()
    start = text.index("# -- monitoring (Prometheus)")
    end = text.index("# -- performance", start)
    section = re.sub(r"(?m)^  # (?=- id: |  )", "  ", text[start:end])
    uncommented = text[:start] + section + text[end:]
    assert uncommented.count("type: prometheus.") == 2
    assert "type: http.rate_limit" in uncommented
    target.write_text(uncommented)
    result = cli("validate", target, env=placeholder_env(uncommented))
    assert result.exit_code == 0, result.output
    assert "prometheus.alerts, prometheus.query" in result.stdout


def test_the_demo_leaves_its_prometheus_checks_out_where_none_is_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import contextlib

    from readycheck import demo
    from readycheck.demo import prometheus
    from readycheck.profile import load_profile

    monkeypatch.setattr(prometheus, "find_prometheus", lambda: None)
    with contextlib.ExitStack() as stack:
        url, run = demo._start_prometheus(stack, "http://127.0.0.1:1")
    assert url is None
    assert run.notes == (
        "readycheck demo: no prometheus installed, so the Prometheus checks are left out "
        "(apt-get install prometheus, or set READYCHECK_PROMETHEUS, to see them)",
    )
    profile = load_profile(demo.PROFILE)
    kept = run.fit(profile).checks
    assert {c.type.name for c in profile.checks} - {c.type.name for c in kept} == {
        "prometheus.query",
        "prometheus.alerts",
    }
    assert len(kept) == len(profile.checks) - 2
