"""The HTTP check types (http.endpoint, http.security_headers, http.request_id,
http.error_contract, http.metrics) against the real servers of tests/servers/http.py."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from readycheck.profile import load_profile
from readycheck.results import CheckResult, Status
from tests.conftest import REPO, CliResult, RunCheck
from tests.servers.http import (
    CORS_ALLOWED_ORIGIN,
    ERROR_CODE_NOT_FOUND,
    SELF_SIGNED,
    UNRESOLVABLE_HOST,
    UNRESOLVABLE_URL,
    AppServer,
    CertSpec,
    HugeBodyServer,
    Reply,
    ScriptedServer,
    SilentServer,
    TricklingServer,
)

RunOne = Callable[..., CheckResult]
# Generous bounds that prove a probe did not hang; never a measure of speed.
NOT_HUNG_S = 10.0


@pytest.fixture
def run_one(run_check: RunCheck) -> RunOne:
    """Run one check of `check_type` with `params` (a dict, written as JSON flow YAML)."""
    return lambda *args, **kwargs: run_check(*args, **kwargs).result


def lines(result: CheckResult) -> str:
    return "\n".join([result.summary, *result.evidence])


# -- http.endpoint: expectations ---------------------------------------------------------


def test_a_deep_health_endpoint_passes_on_status_and_json_fields(
    run_one: RunOne, http_server: AppServer
) -> None:
    result = run_one(
        "http.endpoint",
        {
            "url": f"{http_server.url}/health",
            "expect": {
                "status": 200,
                "json": {
                    "checks.database": True,
                    "checks.cache": True,
                    "version": {"matches": "^v2"},
                    "status": {"in": ["ok", "degraded"]},
                },
            },
        },
    )
    assert result.status is Status.PASS, lines(result)
    assert result.summary.startswith(f"GET {http_server.url}/health: 200 OK in ")
    assert "checks.database = true" in result.evidence
    assert 'version = "v2.3.1"' in result.evidence
    assert result.metrics["status_code"] == 200


def test_each_unmet_expectation_is_one_line_of_evidence(
    run_one: RunOne, http_server: AppServer
) -> None:
    result = run_one(
        "http.endpoint",
        {
            "url": f"{http_server.url}/health?down=database",
            "expect": {
                "json": {"checks.database": True, "checks.cache": True, "status": "ok"},
            },
        },
    )
    assert result.status is Status.FAIL
    assert result.summary == (
        f"GET {http_server.url}/health?down=database: status 503 Service Unavailable, "
        "expected 200 (and 2 more)"
    )
    assert result.evidence[:3] == [
        "status 503 Service Unavailable, expected 200",
        "checks.database: expected true, got false",
        'status: expected "ok", got "fail"',
    ]
    assert not any(line.startswith("checks.cache:") for line in result.evidence)


def test_operator_maps_and_missing_paths(run_one: RunOne, http_server: AppServer) -> None:
    result = run_one(
        "http.endpoint",
        {
            "url": f"{http_server.url}/health",
            "expect": {
                "json": {
                    "version": {"matches": "^v3"},
                    "checks": {"present": True},
                    "checks.queue": {"present": True},
                    "checks.database": {"ne": True},
                    "status": {"type": "number"},
                    "debug": {"present": False},
                },
            },
        },
    )
    assert result.status is Status.FAIL
    assert result.evidence[:4] == [
        'version: expected a string matching "^v3", got "v2.3.1"',
        "checks.queue: missing",
        "checks.database: expected anything but true, got true",
        'status: expected a value of type number, got "ok"',
    ]


def test_body_and_header_expectations(run_one: RunOne, http_server: AppServer) -> None:
    passing = run_one(
        "http.endpoint",
        {
            "url": f"{http_server.url}/health/live",
            "expect": {
                "body_contains": ['"status"', "ok"],
                "headers": {
                    "content-type": {"matches": "^application/json"},
                    "x-powered-by": "absent",
                    "content-length": "present",
                },
            },
        },
    )
    assert passing.status is Status.PASS, lines(passing)
    failing = run_one(
        "http.endpoint",
        {
            "url": f"{http_server.url}/health/live",
            "expect": {
                "body_contains": "healthy",
                "headers": {"content-type": "text/html", "x-version": "present"},
            },
        },
    )
    assert failing.status is Status.FAIL
    assert failing.evidence[:3] == [
        "the body does not contain 'healthy'",
        'header content-type: expected "text/html", got "application/json"',
        "header x-version: missing",
    ]


def test_max_latency(run_one: RunOne, http_server: AppServer) -> None:
    result = run_one(
        "http.endpoint",
        {"url": f"{http_server.url}/sleep?ms=300", "expect": {"max_latency": "50ms"}},
    )
    assert result.status is Status.FAIL
    assert "more than max_latency 50ms" in result.summary
    assert result.metrics["latency_ms"] >= 300


def test_method_headers_and_json_body_are_sent(run_one: RunOne, http_server: AppServer) -> None:
    result = run_one(
        "http.endpoint",
        {
            "url": f"{http_server.url}/echo?q=1",
            "method": "post",
            "headers": {"X-Team": "payments", "X-Version": 2},
            "json": {"order": 42},
            "expect": {
                "json": {
                    "method": "POST",
                    "query": "q=1",
                    "headers.x-team": "payments",
                    "headers.x-version": "2",
                    "headers.content-type": "application/json",
                    "headers.content-length": "12",
                    "headers.user-agent": {"matches": "^readycheck/"},
                }
            },
        },
    )
    assert result.status is Status.PASS, lines(result)


def test_a_503_that_turns_200_on_the_third_try_passes_with_retry_for(
    run_one: RunOne, http_server: AppServer
) -> None:
    url = http_server.flaky_url(fail=2)
    result = run_one(
        "http.endpoint",
        {"url": url},
        extra="    retry_for: 30s\n    retry_interval: 100ms\n",
    )
    assert result.status is Status.PASS, lines(result)
    assert result.attempts == 3
    path = url.split(http_server.url, 1)[1].split("?")[0]
    assert http_server.hits(path) == 3


def test_a_redirect_is_judged_unless_followed(run_one: RunOne, http_server: AppServer) -> None:
    judged = run_one("http.endpoint", {"url": f"{http_server.url}/redirect?to=/health/live"})
    assert judged.status is Status.FAIL
    assert judged.evidence[0] == "status 302 Found, expected 200"
    assert "Location: /health/live" in judged.evidence
    followed = run_one(
        "http.endpoint",
        {"url": f"{http_server.url}/redirect?to=/health/live", "follow_redirects": True},
    )
    assert followed.status is Status.PASS, lines(followed)
    assert "after 1 redirect" in followed.evidence[0]


def test_a_redirect_loop_fails(run_one: RunOne, http_server: AppServer) -> None:
    result = run_one("http.endpoint", {"url": f"{http_server.url}/loop", "follow_redirects": True})
    assert result.status is Status.FAIL
    assert result.summary == f"GET {http_server.url}/loop: redirect loop (more than 10 redirects)"


def test_json_expected_but_html_returned(run_one: RunOne, http_server: AppServer) -> None:
    result = run_one(
        "http.endpoint",
        {
            "url": f"{http_server.url}/no-such-page",
            "expect": {"status": [200, 404], "json": {"status": "ok"}},
        },
    )
    assert result.status is Status.FAIL
    assert result.evidence[0] == (
        "the body is not JSON (text/html): <html><body><h1>Not Found</h1></body></html>"
    )


# -- faults: every one ends in a FAIL that says what happened, never a hang ---------------


def test_connection_refused(run_one: RunOne, closed_port_url: str) -> None:
    result = run_one("http.endpoint", {"url": closed_port_url})
    assert result.status is Status.FAIL
    port = closed_port_url.split(":")[2].split("/")[0]
    assert result.summary == f"GET {closed_port_url}: connection refused by 127.0.0.1:{port}"


def test_a_name_that_does_not_resolve(run_one: RunOne) -> None:
    result = run_one("http.endpoint", {"url": UNRESOLVABLE_URL})
    assert result.status is Status.FAIL
    assert result.summary == f"GET {UNRESOLVABLE_URL}: name does not resolve: {UNRESOLVABLE_HOST}"


def test_a_server_that_never_answers_ends_at_the_timeout(
    run_one: RunOne, silent_server: SilentServer
) -> None:
    started = time.monotonic()
    result = run_one("http.endpoint", {"url": silent_server.url, "timeout": "1s"})
    assert result.status is Status.FAIL
    assert result.summary == f"GET {silent_server.url}: timed out after 1s waiting for the response"
    assert time.monotonic() - started < NOT_HUNG_S


def test_a_trickling_body_is_bounded_by_the_total_time(
    run_one: RunOne, trickling_server: TricklingServer
) -> None:
    # One byte every 0.5 s resets httpx's read timeout each time: only a total deadline ends it.
    started = time.monotonic()
    result = run_one("http.endpoint", {"url": trickling_server.url, "timeout": "2s"})
    assert result.status is Status.FAIL
    assert result.summary == f"GET {trickling_server.url}: timed out after 2s reading the body"
    assert "bytes of the body had arrived" in result.evidence[0]
    assert time.monotonic() - started < NOT_HUNG_S


def test_the_checks_own_timeout_bounds_a_probe_without_one(
    run_one: RunOne, silent_server: SilentServer
) -> None:
    result = run_one("http.endpoint", {"url": silent_server.url}, timeout="1s")
    # The probe gives up just before the engine would, and says what it waited for.
    assert result.status is Status.FAIL
    assert "(the check's timeout) waiting for the response" in result.summary


def test_a_declared_10mb_body_fails_at_max_body_without_being_read(
    run_one: RunOne, huge_body_server: HugeBodyServer
) -> None:
    result = run_one("http.endpoint", {"url": huge_body_server.url})
    assert result.status is Status.FAIL
    assert result.summary.endswith("response body is larger than max_body (1MB)")
    assert result.evidence[0] == "the body declares 10,485,760 bytes; max_body is 1MB"


def test_a_chunked_10mb_body_is_cut_off_with_memory_bounded(run_one: RunOne) -> None:
    with HugeBodyServer(chunked=True) as server:
        tracemalloc.start()
        try:
            result = run_one("http.endpoint", {"url": server.url, "max_body": "256KB"})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result.status is Status.FAIL
    assert "cut off after" in result.evidence[0]
    # The whole body is 10 MiB; what the check held is a few chunks past the cap.
    assert peak < 5_000_000


def test_an_invalid_url_is_a_profile_error_with_its_line(
    write_profile: Callable[..., Path], cli: Callable[..., CliResult]
) -> None:
    path = write_profile(
        """
        checks:
          - id: health
            type: http.endpoint
            with:
              url: "ftp://example.com/health"
          - id: spaces
            type: http.endpoint
            with: {url: "https://exa mple.com/"}
          - id: port
            type: http.metrics
            with: {url: "http://example.com:99999/metrics"}
        """
    )
    result = cli("validate", path)
    assert result.exit_code == 2
    assert (
        "profile.yaml:5:12: checks[health].with.url: expected a URL starting with http:// or "
        "https://, got scheme 'ftp'" in result.stderr
    )
    assert (
        "profile.yaml:8:17: checks[spaces].with.url: not a valid URL: it contains whitespace"
        in result.stderr
    )
    assert "checks[port].with.url: not a valid URL: the port must be a number" in result.stderr


def test_an_unknown_expect_key_is_a_profile_error_with_its_line(
    write_profile: Callable[..., Path], cli: Callable[..., CliResult]
) -> None:
    path = write_profile(
        """
        checks:
          - id: ready
            type: http.endpoint
            with:
              url: http://127.0.0.1:8000/health/ready
              expect:
                status: 200
                stauts: 204
        """
    )
    result = cli("validate", path)
    assert result.exit_code == 2
    assert (
        "profile.yaml:8:17: checks[ready].with.expect.stauts: unknown key 'stauts'; "
        "did you mean 'status'?" in result.stderr
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"expect": {"json": {"count": {"gte": "one"}}}}, "count: gte takes a number"),
        ({"expect": {"json": {"v": {"matches": "("}}}}, "v: invalid regular expression"),
        ({"expect": {"json": {"a": {"gte": 1, "x": 2}}}}, "a: mixes operators with other keys"),
        ({"expect": {"json": {"a..b": 1}}}, "is not a path"),
        ({"expect": {"status": 99}}, "99 is not an HTTP status code"),
        ({"json": {"a": 1}, "body": "x"}, "give either json or body, not both"),
        ({"secret_headers": ["X-Token"]}, "secret_headers names 'X-Token', which is not in"),
        ({"headers": {"Bad Name": "x"}}, "'Bad Name' is not a valid header name"),
        ({"headers": {"X-Name": "café"}}, "the value of header 'X-Name' is not ASCII"),
        ({"method": "FETCH"}, "checks[it].with.method"),
    ],
)
def test_bad_parameters_are_refused_at_load(
    write_profile: Callable[..., Path], params: dict[str, Any], message: str
) -> None:
    from readycheck.errors import ProfileError

    params = {"url": "http://127.0.0.1:8000/", **params}
    path = write_profile(
        f"checks:\n  - id: it\n    type: http.endpoint\n    with: {json.dumps(params)}\n"
    )
    with pytest.raises(ProfileError) as raised:
        load_profile(path, environ={})
    assert message in str(raised.value)


# -- TLS on the HTTP checks ---------------------------------------------------------------


def test_https_is_verified_against_ca_file(run_one: RunOne, https_server: AppServer) -> None:
    trusted = run_one(
        "http.endpoint",
        {"url": f"{https_server.url}/health/live", "ca_file": str(https_server.ca_file)},
    )
    assert trusted.status is Status.PASS, lines(trusted)
    unknown = run_one("http.endpoint", {"url": f"{https_server.url}/health/live"})
    assert unknown.status is Status.FAIL
    assert unknown.summary.endswith(
        "TLS: certificate not trusted: its issuer is unknown (pass the CA bundle as ca_file)"
    )
    unverified = run_one(
        "http.endpoint", {"url": f"{https_server.url}/health/live", "verify_tls": False}
    )
    assert unverified.status is Status.PASS


@pytest.mark.parametrize(
    ("spec", "summary"),
    [
        ("EXPIRED", "TLS: certificate has expired"),
        ("NOT_YET_VALID", "TLS: certificate is not yet valid"),
        ("WRONG_HOST", "TLS: certificate is not valid for 127.0.0.1"),
        ("SELF_SIGNED", "TLS: self-signed certificate, not trusted (pin it with ca_file)"),
    ],
)
def test_bad_certificates_fail_the_http_check_for_their_own_reason(
    run_one: RunOne,
    https_server_with_cert: Callable[[CertSpec], AppServer],
    spec: str,
    summary: str,
) -> None:
    from tests.servers import http as servers

    server = https_server_with_cert(getattr(servers, spec))
    result = run_one(
        "http.endpoint", {"url": f"{server.url}/health/live", "ca_file": str(server.ca_file)}
    )
    assert result.status is Status.FAIL
    assert result.summary == f"GET {server.url}/health/live: {summary}"
    assert result.remediation and "certificate" in result.remediation


def test_a_self_signed_certificate_passes_when_ca_file_pins_it(
    run_one: RunOne, https_server_with_cert: Callable[[CertSpec], AppServer]
) -> None:
    server = https_server_with_cert(SELF_SIGNED)
    assert server.certificate is not None
    result = run_one(
        "http.endpoint",
        {"url": f"{server.url}/health/live", "ca_file": str(server.certificate.cert_file)},
    )
    assert result.status is Status.PASS, lines(result)


def test_a_missing_or_broken_ca_file_is_an_error_not_a_failure(
    run_one: RunOne, https_server: AppServer, tmp_path: Path
) -> None:
    missing = run_one("http.endpoint", {"url": https_server.url, "ca_file": "certs/ca.pem"})
    assert missing.status is Status.ERROR
    assert missing.summary == f"ca_file certs/ca.pem does not exist ({tmp_path}/certs/ca.pem)"
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    broken = run_one("http.endpoint", {"url": https_server.url, "ca_file": "junk.pem"})
    assert broken.status is Status.ERROR
    assert "ca_file junk.pem cannot be used: not a PEM certificate bundle" in broken.summary


def test_checks_of_a_run_share_one_client_per_tls_configuration(
    http_server: AppServer, tmp_path: Path
) -> None:
    from readycheck.checks.http.client import http_client
    from readycheck.checks.http.endpoint import EndpointParams
    from readycheck.context import Context, SharedResources
    from readycheck.redact import Redactor

    async def clients() -> list[object]:
        resources = SharedResources()
        ctx = Context(
            "it",
            None,
            tmp_path,
            Redactor(),
            __import__("logging").getLogger("t"),
            deadline=time.monotonic() + 10,
            resources=resources,
        )
        try:
            made = []
            for verify in (True, True, False):
                params = EndpointParams(url=http_server.url, verify_tls=verify)
                made.append(await http_client(params, ctx))
            return made
        finally:
            await resources.aclose()

    first, again, unverified = asyncio.run(clients())
    assert first is again
    assert unverified is not first


# -- http.security_headers ----------------------------------------------------------------

DEFAULT_RULES_BUT_CORS = ["X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"]


def test_security_headers_pass_on_a_hardened_response(
    run_one: RunOne, https_server: AppServer
) -> None:
    result = run_one(
        "http.security_headers",
        {"url": f"{https_server.url}/headers/secure", "ca_file": str(https_server.ca_file)},
    )
    assert result.status is Status.PASS, lines(result)
    assert "X-Content-Type-Options: nosniff" in result.evidence
    assert "Strict-Transport-Security: max-age=63072000" in result.evidence
    assert "Content-Security-Policy frame-ancestors 'none'" in result.evidence


def test_missing_security_headers_are_each_listed(run_one: RunOne, https_server: AppServer) -> None:
    result = run_one(
        "http.security_headers",
        {"url": f"{https_server.url}/headers/missing", "ca_file": str(https_server.ca_file)},
    )
    assert result.status is Status.FAIL
    assert result.evidence[:4] == [
        "X-Content-Type-Options missing (expected nosniff)",
        "no framing policy: neither X-Frame-Options (DENY or SAMEORIGIN) nor CSP frame-ancestors",
        "Strict-Transport-Security missing on an https URL",
        "Referrer-Policy missing",
    ]
    assert result.metrics["problems"] == 4


def test_hsts_is_not_asked_of_plain_http(run_one: RunOne, http_server: AppServer) -> None:
    result = run_one("http.security_headers", {"url": f"{http_server.url}/headers/missing"})
    assert "Strict-Transport-Security missing on an https URL" not in result.evidence
    assert result.metrics["problems"] == 3


def test_stack_disclosure_is_flagged(run_one: RunOne, http_server: AppServer) -> None:
    result = run_one(
        "http.security_headers",
        {"url": f"{http_server.url}/headers/leaky", "ignore": DEFAULT_RULES_BUT_CORS},
    )
    assert result.status is Status.FAIL
    assert result.evidence[:2] == [
        "X-Powered-By: PHP/8.2.7 discloses the stack",
        "Server: nginx/1.25.3 discloses a version",
    ]


def test_require_forbid_and_ignore_adjust_the_rules(
    run_one: RunOne, http_server: AppServer
) -> None:
    result = run_one(
        "http.security_headers",
        {
            "url": f"{http_server.url}/headers/secure",
            "require": ["Content-Security-Policy", "X-Permitted-Cross-Domain-Policies"],
            "forbid": ["Permissions-Policy"],
        },
    )
    assert result.status is Status.FAIL
    assert result.evidence[:2] == [
        "X-Permitted-Cross-Domain-Policies missing (required)",
        "Permissions-Policy is present (geolocation=(), camera=(), microphone=()) but forbidden",
    ]
    relaxed = run_one(
        "http.security_headers",
        {"url": f"{http_server.url}/headers/missing", "ignore": DEFAULT_RULES_BUT_CORS},
    )
    assert relaxed.status is Status.PASS, lines(relaxed)


def test_a_cors_policy_that_echoes_a_foreign_origin_fails(
    run_one: RunOne, http_server: AppServer
) -> None:
    result = run_one(
        "http.security_headers",
        {
            "url": f"{http_server.url}/cors/reflect",
            "ignore": DEFAULT_RULES_BUT_CORS,
            "cors_probe_origin": "https://evil.example",
        },
    )
    assert result.status is Status.FAIL
    assert result.summary.endswith(
        "CORS allows the foreign origin https://evil.example with credentials (echoed back)"
    )


def test_a_strict_cors_policy_passes_and_a_wildcard_warns(
    run_one: RunOne, http_server: AppServer
) -> None:
    strict = run_one(
        "http.security_headers",
        {
            "url": f"{http_server.url}/cors/strict",
            "ignore": DEFAULT_RULES_BUT_CORS,
            "cors_probe_origin": "https://evil.example",
        },
    )
    assert strict.status is Status.PASS, lines(strict)
    assert "CORS: https://evil.example refused (no Access-Control-Allow-Origin)" in strict.evidence
    wildcard = run_one(
        "http.security_headers",
        {
            "url": f"{http_server.url}/cors/wildcard",
            "ignore": DEFAULT_RULES_BUT_CORS,
            "cors_probe_origin": CORS_ALLOWED_ORIGIN,
        },
    )
    assert wildcard.status is Status.WARN
    assert wildcard.summary.endswith("CORS allows any origin (Access-Control-Allow-Origin: *)")


# -- http.request_id ----------------------------------------------------------------------


def test_a_request_id_is_preserved_and_generated(run_one: RunOne, http_server: AppServer) -> None:
    result = run_one(
        "http.request_id", {"url": f"{http_server.url}/request-id/echo", "expect_generated": True}
    )
    assert result.status is Status.PASS, lines(result)
    assert result.evidence[0].startswith("X-Request-ID preserved: sent ")
    assert result.evidence[1].startswith("a request without X-Request-ID got one generated: ")


def test_a_request_id_that_is_replaced_or_missing_fails(
    run_one: RunOne, http_server: AppServer
) -> None:
    replaced = run_one("http.request_id", {"url": f"{http_server.url}/request-id/ignored"})
    assert replaced.status is Status.FAIL
    assert "X-Request-ID not preserved: sent " in replaced.summary
    missing = run_one("http.request_id", {"url": f"{http_server.url}/request-id/missing"})
    assert missing.status is Status.FAIL
    assert "the response carries no X-Request-ID" in missing.summary
    assert "a request without X-Request-ID got none back" in missing.evidence


# -- http.error_contract ------------------------------------------------------------------

CONTRACT = {
    "required_fields": ["error_id", "error_code", "message"],
    "field_patterns": {"error_code": "^FIRE-", "error_id": "uuid"},
}


@pytest.mark.parametrize("path", ["/errors/not-found", "/api/orders/42"])
def test_an_error_in_the_agreed_contract_passes(
    run_one: RunOne, http_server: AppServer, path: str
) -> None:
    result = run_one(
        "http.error_contract", {"url": f"{http_server.url}{path}", "expect_status": 404, **CONTRACT}
    )
    assert result.status is Status.PASS, lines(result)
    assert f"error_code = \"{ERROR_CODE_NOT_FOUND}\" (matches '^FIRE-')" in result.evidence
    assert any(line.endswith("(matches uuid)") for line in result.evidence)


def test_an_html_error_page_breaks_the_contract(run_one: RunOne, http_server: AppServer) -> None:
    result = run_one("http.error_contract", {"url": f"{http_server.url}/errors/crash", **CONTRACT})
    assert result.status is Status.FAIL
    assert result.evidence[0].startswith("the error body is not JSON (text/html): <!doctype html>")


def test_a_traceback_in_an_error_fails_without_being_quoted(
    run_one: RunOne, http_server: AppServer
) -> None:
    result = run_one(
        "http.error_contract", {"url": f"{http_server.url}/errors/traceback", **CONTRACT}
    )
    assert result.status is Status.FAIL
    assert result.evidence[:2] == [
        "the body shows a stack trace (line 1)",
        "the error body is not JSON (text/plain)",
    ]
    assert "db.internal" not in lines(result)


def test_missing_fields_wrong_patterns_and_a_success_break_the_contract(
    run_one: RunOne, http_server: AppServer
) -> None:
    result = run_one(
        "http.error_contract",
        {
            "url": f"{http_server.url}/errors/not-found",
            "expect_status": [400, 422],
            "required_fields": ["error_id", "trace_id"],
            "field_patterns": {"error_code": "^ACME-"},
        },
    )
    assert result.status is Status.FAIL
    assert result.evidence[:3] == [
        "status 404 Not Found, expected 400 or 422",
        "trace_id: missing",
        f"error_code: \"{ERROR_CODE_NOT_FOUND}\" does not match '^ACME-'",
    ]
    success = run_one("http.error_contract", {"url": f"{http_server.url}/health/live"})
    assert success.status is Status.FAIL
    assert success.evidence[0] == "status 200 OK, expected an error (4xx or 5xx)"


# -- http.metrics -------------------------------------------------------------------------


def test_metrics_with_the_required_families_and_labels_pass(
    run_one: RunOne, http_server: AppServer
) -> None:
    result = run_one(
        "http.metrics",
        {
            "url": f"{http_server.url}/metrics",
            "require": ["http_requests_total", "http_request_duration_seconds"],
            "labels": {"http_requests_total": ["method", "code"], "db_pool_connections": ["state"]},
        },
    )
    assert result.status is Status.PASS, lines(result)
    assert result.metrics == {"families": 3, "samples": 10}
    assert "http_requests_total: counter, 3 samples, labels code, method" in result.evidence


def test_a_missing_family_or_label_fails(run_one: RunOne, http_server: AppServer) -> None:
    result = run_one(
        "http.metrics",
        {
            "url": f"{http_server.url}/metrics",
            "require": ["queue_depth", "http_request_total"],
            "labels": {"http_requests_total": ["route"]},
        },
    )
    assert result.status is Status.FAIL
    assert result.evidence[:3] == [
        "missing metric family queue_depth",
        "missing metric family http_request_total (did you mean http_requests_total?)",
        "http_requests_total lacks label(s) route (has: code, method)",
    ]


def test_a_body_that_is_not_the_exposition_format_fails(
    run_one: RunOne, http_server: AppServer
) -> None:
    result = run_one("http.metrics", {"url": f"{http_server.url}/metrics-bad"})
    assert result.status is Status.FAIL
    assert result.summary.endswith("the body is not the Prometheus exposition format")
    assert result.evidence[0].startswith("parser: ")


def test_a_missing_metrics_endpoint_fails(run_one: RunOne, http_server: AppServer) -> None:
    result = run_one("http.metrics", {"url": f"{http_server.url}/prometheus"})
    assert result.status is Status.FAIL
    assert result.summary.endswith("status 404 Not Found, expected 200 with metrics")


# -- the whole family ---------------------------------------------------------------------

HTTP_TYPES = [
    "http.endpoint",
    "http.security_headers",
    "http.request_id",
    "http.error_contract",
    "http.metrics",
    "tls.certificate",
    "websocket.handshake",
]


def test_parameter_models_import_no_driver() -> None:
    modules = ", ".join(
        f"readycheck.checks.http.{name}"
        for name in (
            "endpoint",
            "headers",
            "request_id",
            "error_contract",
            "metrics",
            "tls",
            "websocket",
        )
    )
    code = (
        f"import sys, {modules}\n"
        "from readycheck.registry import Registry\n"
        f"for name in {HTTP_TYPES!r}: Registry().get(name)\n"
        "heavy = ['httpx', 'httpcore', 'prometheus_client', 'websockets', 'cryptography', 'ssl']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert done.stdout.strip() == ""


@pytest.mark.parametrize("check_type", HTTP_TYPES)
def test_every_type_is_explained(cli: Callable[..., CliResult], check_type: str) -> None:
    result = cli("explain", check_type)
    assert result.exit_code == 0, result.output
    assert check_type in result.stdout
    assert "timeout" in result.stdout


def test_a_secret_authorization_header_is_in_no_output(
    write_profile: Callable[..., Path],
    cli: Callable[..., CliResult],
    http_server: AppServer,
    closed_port_url: str,
    tmp_path: Path,
) -> None:
    canaries = ["Bearer canary-token-7f3a", "canary-custom-91c2", "canary-password-55e1"]
    ws_url = http_server.url.replace("http", "ws", 1)
    refused = closed_port_url.replace("http://", "http://deploy:canary-password-55e1@")
    path = write_profile(
        f"""
        checks:
          - id: echo
            type: http.endpoint
            with:
              url: {http_server.url}/echo
              headers: {{Authorization: "{canaries[0]}", X-Custom: {canaries[1]}}}
              secret_headers: [Authorization, X-Custom]
              expect:
                json: {{headers.authorization: wrong, headers.x-custom: wrong}}
                body_contains: nothing-like-this
          - id: basic
            type: http.endpoint
            with:
              url: http://deploy:canary-password-55e1@127.0.0.1:{http_server.port}/echo
              expect: {{json: {{headers.authorization: wrong}}}}
          - id: refused
            type: http.endpoint
            with: {{url: "{refused}"}}
          - id: ws
            type: websocket.handshake
            with:
              url: {ws_url}/not-a-websocket
              headers: {{Authorization: "{canaries[0]}"}}
          - id: headers
            type: http.security_headers
            with:
              url: {http_server.url}/headers/missing
              headers: {{Authorization: "{canaries[0]}"}}
        """
    )
    outputs = {name: tmp_path / name for name in ("out.json", "junit.xml", "report.md")}
    result = cli(
        "run",
        path,
        "--json",
        outputs["out.json"],
        "--junit",
        outputs["junit.xml"],
        "--report",
        outputs["report.md"],
        "--debug",
    )
    assert result.exit_code == 1, result.output
    # --debug logs the WebSocket handshake's request headers, masked.
    assert "> Authorization: ***" in result.stderr
    document = json.loads(outputs["out.json"].read_text())
    echo = next(check for check in document["checks"] if check["id"] == "echo")
    # The header did reach the server (its echo is what the evidence shows, masked).
    assert 'headers.authorization: expected "wrong", got "***"' in echo["evidence"]
    texts = [result.stdout, result.stderr, *(p.read_text() for p in outputs.values())]
    for text in texts:
        for canary in canaries:
            assert canary not in text
        assert "canary-token-7f3a" not in text
        assert "ZGVwbG95OmNhbmFyeS1wYXNzd29yZC01NWUx" not in text  # base64 of deploy:password


# -- tls.certificate ----------------------------------------------------------------------


def test_a_trusted_certificate_passes_with_its_facts_as_evidence(
    run_one: RunOne, https_server: AppServer
) -> None:
    result = run_one(
        "tls.certificate", {"url": https_server.url, "ca_file": str(https_server.ca_file)}
    )
    assert result.status is Status.PASS, lines(result)
    assert result.summary.startswith(f"127.0.0.1:{https_server.port}: certificate valid until ")
    assert result.summary.endswith(" days left)")
    evidence = "\n".join(result.evidence)
    assert "subject: " in evidence
    assert "O=readycheck tests" in next(
        line for line in result.evidence if line.startswith("issuer:")
    )
    assert "SANs: localhost, 127.0.0.1" in evidence
    assert "days left)" in evidence
    assert 88 < result.metrics["days_left"] <= 90


def test_host_port_and_server_name(run_one: RunOne, https_server: AppServer) -> None:
    result = run_one(
        "tls.certificate",
        {
            "host": "127.0.0.1",
            "port": https_server.port,
            "server_name": "localhost",
            "ca_file": str(https_server.ca_file),
        },
    )
    assert result.status is Status.PASS, lines(result)


def test_a_certificate_expiring_soon_warns_then_fails(
    run_one: RunOne, https_server: AppServer
) -> None:
    params = {"url": https_server.url, "ca_file": str(https_server.ca_file)}
    warned = run_one("tls.certificate", {**params, "warn_days": 120})
    assert warned.status is Status.WARN
    assert "within warn_days (120)" in warned.summary
    failed = run_one("tls.certificate", {**params, "min_days_valid": 100})
    assert failed.status is Status.FAIL
    assert "fewer than min_days_valid (100)" in failed.summary


@pytest.mark.parametrize(
    ("spec", "summary", "fact"),
    [
        ("EXPIRED", "TLS: certificate has expired", "(expired 1 day ago)"),
        ("NOT_YET_VALID", "TLS: certificate is not yet valid", "not_before: "),
        ("WRONG_HOST", "TLS: certificate is not valid for 127.0.0.1", "SANs: other.example"),
        ("SELF_SIGNED", "TLS: self-signed certificate, not trusted", "(self-signed)"),
    ],
)
def test_a_bad_certificate_fails_with_what_is_wrong_and_its_details(
    run_one: RunOne,
    https_server_with_cert: Callable[[CertSpec], AppServer],
    spec: str,
    summary: str,
    fact: str,
) -> None:
    from tests.servers import http as servers

    server = https_server_with_cert(getattr(servers, spec))
    result = run_one("tls.certificate", {"url": server.url, "ca_file": str(server.ca_file)})
    assert result.status is Status.FAIL
    assert result.summary.startswith(f"127.0.0.1:{server.port}: {summary}")
    # The details come from a second, unverified handshake.
    assert any(fact in line for line in result.evidence), result.evidence
    assert result.remediation


def test_an_unknown_issuer_fails_and_a_pinned_self_signed_certificate_passes(
    run_one: RunOne,
    https_server: AppServer,
    https_server_with_cert: Callable[[CertSpec], AppServer],
) -> None:
    untrusted = run_one("tls.certificate", {"url": https_server.url})
    assert untrusted.status is Status.FAIL
    assert "its issuer is unknown" in untrusted.summary
    server = https_server_with_cert(SELF_SIGNED)
    assert server.certificate is not None
    pinned = run_one(
        "tls.certificate", {"url": server.url, "ca_file": str(server.certificate.cert_file)}
    )
    assert pinned.status is Status.PASS, lines(pinned)


def test_without_verification_dates_still_count(
    run_one: RunOne, https_server_with_cert: Callable[[CertSpec], AppServer]
) -> None:
    from tests.servers.http import EXPIRED, WRONG_HOST

    wrong_host = https_server_with_cert(WRONG_HOST)
    relaxed = run_one("tls.certificate", {"url": wrong_host.url, "verify_tls": False})
    assert relaxed.status is Status.PASS
    assert "chain and host name not verified (verify_tls: false)" in relaxed.evidence
    expired = https_server_with_cert(EXPIRED)
    still = run_one("tls.certificate", {"url": expired.url, "verify_tls": False})
    assert still.status is Status.FAIL
    assert still.summary.endswith("TLS: certificate has expired")


def test_tls_connection_faults(
    run_one: RunOne, closed_port_url: str, silent_server: SilentServer
) -> None:
    port = int(closed_port_url.split(":")[2].split("/")[0])
    refused = run_one("tls.certificate", {"host": "127.0.0.1", "port": port})
    assert refused.status is Status.FAIL
    assert refused.summary == f"127.0.0.1:{port}: connection refused by 127.0.0.1:{port}"
    unresolvable = run_one("tls.certificate", {"host": UNRESOLVABLE_HOST})
    assert (
        unresolvable.summary
        == f"{UNRESOLVABLE_HOST}:443: name does not resolve: {UNRESOLVABLE_HOST}"
    )
    started = time.monotonic()
    silent = run_one(
        "tls.certificate", {"host": "127.0.0.1", "port": silent_server.port, "timeout": "1s"}
    )
    assert silent.status is Status.FAIL
    assert "timed out after 1s" in silent.summary
    assert time.monotonic() - started < NOT_HUNG_S


def test_tls_target_is_url_or_host(write_profile: Callable[..., Path]) -> None:
    from readycheck.errors import ProfileError

    for params, message in [
        ({"url": "https://a.example", "host": "a.example"}, "give either url or host"),
        ({}, "give either url or host"),
        ({"url": "https://a.example", "port": 8443}, "port goes with host"),
        ({"url": "http://a.example"}, "expected a URL starting with https:// or wss://"),
    ]:
        path = write_profile(
            f"checks:\n  - id: it\n    type: tls.certificate\n    with: {json.dumps(params)}\n"
        )
        with pytest.raises(ProfileError, match=message):
            load_profile(path, environ={})


def test_a_plain_http_url_skips_the_certificate_check_only_when_the_profile_says_so(
    run_one: RunOne, http_server: AppServer
) -> None:
    # A starter's url is https:// in production and http:// on a laptop: with
    # plain_http: skip the check says why it did not run instead of failing to load.
    result = run_one("tls.certificate", {"url": http_server.url, "plain_http": "skip"})
    assert result.status is Status.SKIP
    assert result.not_run  # listed among the checks not run, never passed
    port = http_server.url.rsplit(":", 1)[1]
    assert result.summary == (
        f"not run: 127.0.0.1:{port} is served over plain HTTP, so there is no certificate "
        "to check (plain_http: skip)"
    )


# -- websocket.handshake ------------------------------------------------------------------


def ws_url(server: AppServer, path: str) -> str:
    return server.url.replace("http", "ws", 1) + path


def test_a_websocket_upgrades_agrees_a_subprotocol_and_greets(
    run_one: RunOne, http_server: AppServer
) -> None:
    result = run_one(
        "websocket.handshake",
        {
            "url": ws_url(http_server, "/ws"),
            "subprotocols": ["readycheck.v1"],
            "expect_message": "hello from",
        },
    )
    assert result.status is Status.PASS, lines(result)
    assert result.evidence[:2] == ["status 101 Switching Protocols", "subprotocol: readycheck.v1"]
    assert result.evidence[2].startswith("upgraded in ")
    assert result.evidence[3].startswith("message 1 matched: hello from readycheck")
    assert result.evidence[-1] == "closed cleanly (code 1000)"
    assert "upgrade_ms" in result.metrics


def test_a_websocket_echoes_what_is_sent(run_one: RunOne, http_server: AppServer) -> None:
    result = run_one(
        "websocket.handshake",
        {
            "url": ws_url(http_server, "/ws"),
            "send": "ping-4711",
            "expect_message": {"matches": r"^ping-\d+$"},
        },
    )
    assert result.status is Status.PASS, lines(result)
    assert "message 2 matched: ping-4711" in result.evidence


def test_an_expected_message_that_never_comes_fails_at_the_timeout(
    run_one: RunOne, http_server: AppServer
) -> None:
    result = run_one(
        "websocket.handshake",
        {"url": ws_url(http_server, "/ws"), "expect_message": "never sent", "timeout": "1s"},
    )
    assert result.status is Status.FAIL
    assert result.summary.endswith(
        "no message containing 'never sent' within 1s (1 others received)"
    )
    assert result.evidence[-1] == "closed cleanly (code 1000)"


def test_a_plain_http_200_instead_of_an_upgrade_fails_clearly(
    run_one: RunOne, http_server: AppServer
) -> None:
    result = run_one("websocket.handshake", {"url": ws_url(http_server, "/not-a-websocket")})
    assert result.status is Status.FAIL
    assert result.summary.endswith("answered plain HTTP 200 instead of upgrading to a WebSocket")
    assert result.remediation and "Upgrade" in result.remediation


def test_a_refused_upgrade_and_an_unknown_subprotocol_fail(
    run_one: RunOne, http_server: AppServer
) -> None:
    refused = run_one("websocket.handshake", {"url": ws_url(http_server, "/ws/reject")})
    assert refused.status is Status.FAIL
    assert refused.summary.endswith("the upgrade was refused with HTTP 403 Forbidden")
    unknown = run_one(
        "websocket.handshake", {"url": ws_url(http_server, "/ws"), "subprotocols": ["graphql-ws"]}
    )
    assert unknown.status is Status.FAIL
    assert unknown.summary.endswith(
        "the server chose none of the offered subprotocols (graphql-ws)"
    )


def test_a_websocket_redirect_is_reported_not_followed(run_one: RunOne) -> None:
    # websockets would follow it and send custom headers (secret ones too) to the new origin.
    elsewhere = ScriptedServer(lambda request, connection, index: Reply(None, close=True))
    with elsewhere:
        location = f"ws://127.0.0.1:{elsewhere.port}/ws?token=s3cr3t-value"
        redirect = (
            b"HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n" % location.encode()
        )
        with ScriptedServer(lambda request, connection, index: Reply(redirect)) as first:
            result = run_one(
                "websocket.handshake",
                {
                    "url": f"ws://127.0.0.1:{first.port}/ws",
                    "headers": {"X-Api-Key": "k3y-never-elsewhere"},
                },
            )
    assert result.status is Status.FAIL
    assert result.summary.endswith("answered HTTP 302 Found, a redirect, which is not followed")
    assert f"Location: ws://127.0.0.1:{elsewhere.port}/ws?token=***" in result.evidence
    assert elsewhere.requests == []
    assert b"X-Api-Key: k3y-never-elsewhere" in first.requests[0]


def test_websocket_over_tls(
    run_one: RunOne,
    https_server: AppServer,
    https_server_with_cert: Callable[[CertSpec], AppServer],
) -> None:
    trusted = run_one(
        "websocket.handshake",
        {"url": ws_url(https_server, "/ws"), "ca_file": str(https_server.ca_file)},
    )
    assert trusted.status is Status.PASS, lines(trusted)
    from tests.servers.http import EXPIRED

    expired = https_server_with_cert(EXPIRED)
    result = run_one(
        "websocket.handshake", {"url": ws_url(expired, "/ws"), "ca_file": str(expired.ca_file)}
    )
    assert result.status is Status.FAIL
    assert result.summary.endswith("TLS: certificate has expired")


def test_websocket_connection_faults(
    run_one: RunOne, closed_port_url: str, silent_server: SilentServer
) -> None:
    url = closed_port_url.replace("http://", "ws://")
    refused = run_one("websocket.handshake", {"url": url})
    assert refused.status is Status.FAIL
    assert "connection refused by 127.0.0.1:" in refused.summary
    silent = run_one(
        "websocket.handshake",
        {"url": silent_server.url.replace("http://", "ws://"), "timeout": "1s"},
    )
    assert silent.status is Status.FAIL
    assert silent.summary.endswith("no upgrade within 1s")


def test_a_websocket_url_must_be_ws_or_wss(write_profile: Callable[..., Path]) -> None:
    from readycheck.errors import ProfileError

    path = write_profile(
        "checks:\n  - id: it\n    type: websocket.handshake\n    with: {url: 'http://a.example/ws'}\n"
    )
    with pytest.raises(ProfileError, match="expected a URL starting with ws:// or wss://"):
        load_profile(path, environ={})


# -- the example profile ------------------------------------------------------------------


def test_the_fastapi_example_profile_runs_against_a_fastapi_style_service(
    cli: Callable[..., CliResult], https_server: AppServer, tmp_path: Path
) -> None:
    profile = REPO / "profiles" / "fastapi-service.yaml"
    assert cli("validate", profile).exit_code == 0
    out = tmp_path / "results.json"
    result = cli(
        "run",
        profile,
        "--var",
        f"base={https_server.url}",
        "--json",
        out,
        env={"CA_FILE": str(https_server.ca_file)},
    )
    statuses = {check["id"]: check["status"] for check in json.loads(out.read_text())["checks"]}
    # The test app serves the health routes, the error contract, metrics and a fresh
    # certificate; its /health/live sets no security headers and ignores request ids.
    assert statuses == {
        "live": "PASS",
        "ready": "PASS",
        "deep-health": "PASS",
        "security-headers": "FAIL",
        "request-id": "FAIL",
        "error-contract": "PASS",
        "metrics": "PASS",
        "certificate": "PASS",
        "rollback-rehearsed": "FAIL",  # a manual item nobody attested
    }, result.output
    assert result.exit_code == 1
