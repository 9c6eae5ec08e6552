"""http.rate_limit against real rate-limited servers on 127.0.0.1
(tests/servers/ratelimit.py): throttled in time or not, with headers or without, recovered
or not, and the caps that keep it a probe rather than a load test."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from readycheck.results import CheckResult, Status
from tests.conftest import CliResult, RunCheck
from tests.servers.http import Reply, ScriptedServer, Serve
from tests.servers.ratelimit import RateLimited

TOKEN = "Bearer canary-ratelimit-token-61d0"
Run = Callable[..., CheckResult]


@pytest.fixture
def run(run_check: RunCheck) -> Run:
    """Run http.rate_limit against `server`, fast (200/s), one request at a time (so that
    the request numbers are the order in which they arrive), recovering within 3s."""

    def run_one(server: ScriptedServer, timeout: str = "30s", **params: Any) -> CheckResult:
        block = {"url": server.url, "rate": 200, "concurrency": 1, "recover_within": "3s"}
        block |= params
        return run_check("http.rate_limit", block, timeout=timeout).result

    return run_one


def test_an_endpoint_that_never_throttles_fails(run: Run, rate_limited: RateLimited) -> None:
    server = rate_limited(None)
    result = run(server, expect_429_within=20)
    assert result.status is Status.FAIL
    assert result.summary == f"GET {server.url}: no 429 in 20 requests (expected within 20)"
    assert "sent 20 requests at up to 200/s, 1 in flight: 20 answered 200 OK" in result.evidence
    assert len(server.requests) == 20  # the burst stops at expect_429_within
    assert result.metrics["requests"] == 20
    assert "raise expect_429_within" in (result.remediation or "")


def test_throttling_within_the_limit_passes_with_the_count_and_recovers(
    run: Run, rate_limited: RateLimited
) -> None:
    server = rate_limited(5, window_s=1.0)
    result = run(server, expect_429_within=20, recover_within="5s")
    assert result.status is Status.PASS, "\n".join([result.summary, *result.evidence])
    assert result.summary.startswith(
        f"GET {server.url}: throttled at request 6 (expected within 20), recovered after "
    )
    assert result.metrics["first_throttled_at"] == 6
    evidence = "\n".join(result.evidence)
    assert "the first answer carries RateLimit-Limit: 5, RateLimit-Remaining: 4" in evidence
    assert (
        "the first throttled answer (429 Too Many Requests, answer 6) carries Retry-After: 1, "
        "RateLimit-Limit: 5, RateLimit-Remaining: 0, RateLimit-Reset: 1"
    ) in evidence
    assert "recovered: 200 OK " in evidence
    assert [mark for mark in result.marks if mark] == ["held", "held"]  # headers, recovery
    assert result.metrics["recovery_s"] >= 1.0  # it waited as Retry-After asked
    # Six in the burst, then as few as recovery took (one, unless the machine stalled).
    assert len(server.requests) == result.metrics["requests"] >= 7


def test_an_endpoint_throttling_from_the_first_request_passes_with_count_1(
    run: Run, rate_limited: RateLimited
) -> None:
    server = rate_limited(2, window_s=2.0)
    with httpx.Client() as client:  # other clients have used up the window
        for _ in range(2):
            assert client.get(server.url).status_code == 200
    result = run(server, expect_429_within=20, recover_within="5s")
    assert result.status is Status.PASS, result.summary
    assert "throttled at request 1 (expected within 20)" in result.summary
    assert "sent 1 request at up to 200/s, 1 in flight: 1 answered 429 Too Many Requests" in (
        result.evidence
    )


def test_throttling_later_than_expected_fails(run: Run, rate_limited: RateLimited) -> None:
    server = rate_limited(30)
    result = run(server, expect_429_within=10)
    assert result.status is Status.FAIL
    assert result.summary.endswith("no 429 in 10 requests (expected within 10)")
    assert len(server.requests) == 10


def test_a_429_without_rate_limit_headers_fails_unless_not_expected(
    run: Run, rate_limited: RateLimited
) -> None:
    server = rate_limited(3, headers=False)
    result = run(server, expect_429_within=10, recover_within="0s")
    assert result.status is Status.FAIL
    assert result.summary.endswith(
        "429 Too Many Requests without Retry-After or RateLimit-* headers: clients cannot "
        "tell when to retry"
    )
    relaxed = run(
        rate_limited(3, headers=False),
        expect_429_within=10,
        recover_within="0s",
        expect_headers=False,
    )
    assert relaxed.status is Status.PASS
    assert "recovery not checked (recover_within: 0s)" in relaxed.evidence


def test_an_endpoint_still_throttled_after_recover_within_fails(
    run: Run, rate_limited: RateLimited
) -> None:
    server = rate_limited(3, stuck=True)
    result = run(server, expect_429_within=10, recover_within="3s")
    assert result.status is Status.FAIL
    assert result.summary.endswith(
        "still throttled 3s after the first throttled answer (429 Too Many Requests)"
    )


def test_a_lockout_longer_than_recover_within_warns_without_waiting(
    run: Run, rate_limited: RateLimited
) -> None:
    server = rate_limited(3, lockout_s=30)
    result = run(server, expect_429_within=10, recover_within="5s")
    assert result.status is Status.WARN
    assert result.summary.endswith(
        "throttled at request 4 (expected within 10); the service asks to wait 30s, longer "
        "than recover_within 5s: recovery not confirmed"
    )
    assert len(server.requests) == 4  # no request was sent to find out
    assert result.duration_ms < 30_000


def test_server_errors_under_the_burst_fail_and_end_it(run: Run, rate_limited: RateLimited) -> None:
    server = rate_limited(None, fail_after=5)
    result = run(server, expect_429_within=100)
    assert result.status is Status.FAIL
    assert result.summary.endswith(
        "10 requests failed during the burst (first: request 6, 503 Service Unavailable) "
        "(and 1 more)"
    )
    assert "no 429 in 15 requests (expected within 100)" in result.evidence
    assert (
        "10 requests failed during the burst (first: request 6, 503 Service Unavailable)"
        in result.evidence
    )
    assert len(server.requests) == 15  # ten errors in a row end the burst


def test_a_target_refusing_the_first_request_gets_no_burst(run: Run, serve: Serve) -> None:
    server = serve(
        lambda *_: Reply(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found")
    )
    result = run(server, expect_429_within=100)
    assert result.status is Status.FAIL
    assert result.summary == (
        f"GET {server.url}: the first request was answered 404 Not Found; the burst was not sent"
    )
    assert len(server.requests) == 1


def test_an_unreachable_target_gets_no_burst(run_check: RunCheck, closed_port_url: str) -> None:
    result = run_check(
        "http.rate_limit",
        {"url": closed_port_url, "expect_429_within": 100, "recover_within": "0s"},
    ).result
    assert result.status is Status.FAIL
    assert "connection refused by" in result.summary
    assert result.summary.endswith("; the burst was not sent")


def test_a_plan_that_does_not_fit_the_timeout_sends_nothing(
    run: Run, rate_limited: RateLimited
) -> None:
    server = rate_limited(5)
    result = run(server, timeout="5s", expect_429_within=20, recover_within="60s")
    assert result.status is Status.ERROR
    assert "the burst and the recovery need about 61s" in result.summary
    assert "nothing was sent" in result.summary
    assert "timeout to at least 1m6s" in (result.remediation or "")
    assert not server.requests


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"expect_429_within": 500}, "expect_429_within 500 is over 200"),
        ({"expect_429_within": 50, "rate": 1000}, "rate 1000/s is over 200/s"),
        ({"expect_429_within": 0}, "greater than or equal to 1"),
        ({"expect_429_within": 50, "concurrency": 51}, "less than or equal to 50"),
    ],
)
def test_the_caps_are_profile_errors(
    write_profile: Callable[..., Path],
    cli: Callable[..., CliResult],
    params: dict[str, Any],
    message: str,
) -> None:
    block = json.dumps({"url": "https://api.invalid/login", **params})
    path = write_profile(f"checks:\n  - id: it\n    type: http.rate_limit\n    with: {block}\n")
    result = cli("validate", path)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    if "over" in message:
        assert "i_know_this_is_load: true" in result.stderr
        lifted = write_profile(
            "checks:\n  - id: it\n    type: http.rate_limit\n    with: "
            + json.dumps(
                {"url": "https://api.invalid/login", "i_know_this_is_load": True, **params}
            )
            + "\n",
            name="lifted.yaml",
        )
        assert cli("validate", lifted).exit_code == 0


def test_a_secret_header_is_sent_and_never_shown(run: Run, rate_limited: RateLimited) -> None:
    server = rate_limited(2)
    result = run(
        server,
        expect_429_within=10,
        recover_within="0s",
        headers={"Authorization": TOKEN},
    )
    assert result.status is Status.PASS
    assert all(TOKEN.encode() in request for request in server.requests)
    assert "canary-ratelimit-token" not in "\n".join([result.summary, *result.evidence])
