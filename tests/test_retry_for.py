"""`retry_for` and `retries` wait only for what waiting can change: connection errors, 5xx,
408, 425 and 429 (honouring Retry-After) are retried; any other 4xx ends the wait at once
with the answer shown. Against real servers on 127.0.0.1."""

from __future__ import annotations

import time

from readycheck.checks.http.client import retry_after
from readycheck.checks.http.request import check_url
from readycheck.results import Status
from tests.conftest import RunCheck
from tests.servers.http import AppServer, Reply, ScriptedServer

RETRY = "    retry_for: 60s\n    retry_interval: 100ms\n"


def test_a_404_is_not_waited_for(run_check: RunCheck, http_server: AppServer) -> None:
    result = run_check(
        "http.endpoint", {"url": f"{http_server.url}/status/404"}, extra=RETRY, timeout="5s"
    ).result
    assert result.status is Status.FAIL
    assert result.attempts == 1
    assert result.evidence[0] == "status 404 Not Found, expected 200"
    assert "not retried: waiting does not change a 404 Not Found answer" in result.evidence
    assert http_server.hits("/status/404") >= 1


def test_retries_stop_at_a_404_too(run_check: RunCheck, http_server: AppServer) -> None:
    result = run_check(
        "http.endpoint",
        {"url": f"{http_server.url}/status/401"},
        extra="    retries: 5\n    retry_interval: 10ms\n",
    ).result
    assert (result.status, result.attempts) == (Status.FAIL, 1)


def test_a_429_and_a_408_are_waited_for(run_check: RunCheck) -> None:
    answers = iter([429, 408, 200])

    def script(request: bytes, connection: int, index: int) -> Reply:
        code = next(answers)
        reason = {429: b"Too Many Requests", 408: b"Request Timeout", 200: b"OK"}[code]
        return Reply(b"HTTP/1.1 %d %s\r\nContent-Length: 0\r\n\r\n" % (code, reason))

    with ScriptedServer(script) as server:
        result = run_check("http.endpoint", {"url": server.url}, extra=RETRY).result
    assert (result.status, result.attempts) == (Status.PASS, 3), result.evidence


def test_a_503_with_retry_after_is_asked_again_no_sooner(run_check: RunCheck) -> None:
    arrivals: list[float] = []

    def script(request: bytes, connection: int, index: int) -> Reply:
        arrivals.append(time.monotonic())
        if len(arrivals) == 1:
            return Reply(
                b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Length: 0\r\n\r\n"
            )
        return Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    with ScriptedServer(script) as server:
        result = run_check("http.endpoint", {"url": server.url}, extra=RETRY).result
    assert (result.status, result.attempts) == (Status.PASS, 2), result.evidence
    # The service asked for 2 s; the 100 ms retry_interval did not override it. (A lower
    # bound only: a busy machine can make the wait longer, never shorter.)
    assert arrivals[1] - arrivals[0] >= 1.9


def test_a_retry_after_past_the_window_ends_the_wait_and_says_why(run_check: RunCheck) -> None:
    def script(request: bytes, connection: int, index: int) -> Reply:
        return Reply(
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 600\r\nContent-Length: 0\r\n\r\n"
        )

    with ScriptedServer(script) as server:
        result = run_check(
            "http.endpoint", {"url": server.url}, extra="    retry_for: 30s\n"
        ).result
        seen = len(server.requests)
    assert (result.status, result.attempts, seen) == (Status.FAIL, 1, 1)
    assert any("asked to wait 10m" in line and "retry_for" in line for line in result.evidence)


def test_a_refused_port_is_retried_until_the_window_closes(
    run_check: RunCheck, closed_port_url: str
) -> None:
    result = run_check(
        "http.endpoint",
        {"url": closed_port_url},
        extra="    retry_for: 1s\n    retry_interval: 100ms\n",
    ).result
    assert result.status is Status.FAIL
    assert result.attempts >= 2
    assert not any(line.startswith("not retried") for line in result.evidence)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("2") == 2.0
    assert retry_after("999999") == 3600.0  # capped at an hour
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after("soon") is None
    assert retry_after(None) is None


def test_a_base_and_a_path_joined_by_hand_never_give_a_double_slash() -> None:
    assert check_url("https://api.example.com//health", ("https",)) == (
        "https://api.example.com/health"
    )
    assert check_url("https://api.example.com/v1//orders?next=a//b", ("https",)) == (
        "https://api.example.com/v1/orders?next=a//b"
    )
    assert check_url("https://api.example.com/health", ("https",)) == (
        "https://api.example.com/health"
    )
