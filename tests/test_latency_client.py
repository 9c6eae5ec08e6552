"""The latency probe's HTTP/1.1 client, against real servers on 127.0.0.1.

Most servers here are scripted on raw TCP (tests.servers.http.ScriptedServer): framings,
interim answers, broken answers and closed connections that no well-behaved framework
sends on demand. Each test asserts what the probe makes of them: an answer with its
status, or a failure counted under a reason of our own.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time

import pytest

from readycheck.checks.latency.client import (
    Answer,
    BodyTooLarge,
    Client,
    ProbeError,
    Target,
)
from tests.servers.http import (
    UNRESOLVABLE_URL,
    AppServer,
    HugeBodyServer,
    Reply,
    Serve,
    SilentServer,
    TricklingServer,
    ok,
)

Outcome = Answer | BaseException


def fetch(
    url: str,
    count: int = 1,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout_s: float = 5.0,
    max_body: int = 1_000_000,
    ca_file: str | None = None,
    verify: bool = True,
    keep: int = 0,
) -> list[Outcome]:
    """Send `count` requests one after the other through one client; what each became."""

    async def main() -> list[Outcome]:
        target = Target.build(method, url, headers or {}, body, trust(verify, ca_file))
        client = Client(target, limit=1, max_body=max_body, keep=keep)
        outcomes: list[Outcome] = []
        try:
            for _ in range(count):
                try:
                    outcomes.append(await client.request(timeout_s))
                except (ProbeError, TimeoutError) as exc:
                    outcomes.append(exc)
        finally:
            client.close()
        return outcomes

    return asyncio.run(main())


def trust(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    """As the HTTP checks' shared context is made (checks/http/certificates.py)."""
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def statuses(outcomes: list[Outcome]) -> list[int]:
    assert all(isinstance(o, Answer) for o in outcomes), outcomes
    return [o.status for o in outcomes if isinstance(o, Answer)]


def reason(outcome: Outcome) -> str:
    assert isinstance(outcome, ProbeError), outcome
    return outcome.reason


# -- the request -------------------------------------------------------------------------


def test_the_request_carries_host_headers_body_and_credentials_from_the_url(
    serve: Serve,
) -> None:
    server = serve(lambda request, connection, index: Reply(ok()))
    url = f"http://probe:s%40cret@127.0.0.1:{server.port}/orders search?page=2"
    headers = {"X-Tenant": "acme", "Content-Length": "999"}  # the client frames the body
    assert statuses(fetch(url, method="POST", headers=headers, body=b'{"a": 1}')) == [200]

    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /orders%20search?page=2 HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}".encode() in lines
    assert b"X-Tenant: acme" in lines
    assert b"Content-Length: 8" in lines
    assert b"Content-Length: 999" not in lines
    assert b"Authorization: Basic cHJvYmU6c0BjcmV0" in lines  # probe:s@cret
    assert body == b'{"a": 1}'


def test_host_header_names_ipv6_literals_in_brackets_and_omits_default_ports() -> None:
    def host_line(url: str) -> bytes:
        request = Target.build("GET", url, {}, None, None).request
        return next(line for line in request.split(b"\r\n") if line.startswith(b"Host:"))

    assert host_line("http://[::1]:8080/") == b"Host: [::1]:8080"
    assert host_line("http://example.com:80/") == b"Host: example.com"
    assert host_line("https://example.com:443/") == b"Host: example.com"
    assert host_line("https://example.com:8443/") == b"Host: example.com:8443"


def test_a_profiles_own_host_header_is_sent_instead_of_the_urls() -> None:
    request = Target.build("GET", "http://10.0.0.5/", {"Host": "api.example.com"}, None, None)
    assert request.request.count(b"Host:") == 1
    assert b"Host: api.example.com\r\n" in request.request


# -- framing -----------------------------------------------------------------------------


def test_keep_alive_sends_every_request_on_one_connection(
    serve: Serve,
) -> None:
    server = serve(lambda request, connection, index: Reply(ok()))
    assert statuses(fetch(f"http://127.0.0.1:{server.port}/", 5)) == [200] * 5
    assert server.connections == 1


def test_a_chunked_body_with_extensions_and_trailers_is_read_to_its_end(
    serve: Serve,
) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n1A\r\n" + b"x" * 26 + b"\r\n0\r\nX-Checksum: 1\r\n\r\n"
    )
    server = serve(lambda request, connection, index: Reply(chunked))
    assert statuses(fetch(f"http://127.0.0.1:{server.port}/", 3)) == [200] * 3
    assert server.connections == 1  # the end was found: the connection is reused


def test_a_body_without_length_ends_with_the_connection(
    serve: Serve,
) -> None:
    unframed = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil I close"
    server = serve(lambda request, connection, index: Reply(unframed, close=True))
    assert statuses(fetch(f"http://127.0.0.1:{server.port}/", 3)) == [200] * 3
    assert server.connections == 3


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 21\r\n\r\nno such order, sorry!",
        b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"7\r\nno such\r\nE\r\n order, sorry!\r\n0\r\n\r\n",
        b"HTTP/1.1 404 Not Found\r\n\r\nno such order, sorry!",
    ],
    ids=["content-length", "chunked", "until-close"],
)
def test_a_client_told_to_keep_gives_the_head_and_the_start_of_the_body(
    serve: Serve, answer: bytes
) -> None:
    server = serve(lambda request, connection, index: Reply(answer, close=True))
    url = f"http://127.0.0.1:{server.port}/"
    kept, whole = fetch(url, keep=7)[0], fetch(url, keep=100)[0]
    assert isinstance(kept, Answer) and isinstance(whole, Answer)
    assert kept.status == 404
    assert kept.head is not None and kept.head.startswith(b"HTTP/1.1 404 Not Found")
    assert (kept.body, whole.body) == (b"no such", b"no such order, sorry!")
    plain = fetch(url)[0]
    assert isinstance(plain, Answer) and (plain.head, plain.body) == (None, None)


def test_connection_close_and_http_1_0_answers_open_a_new_connection_each_time(
    serve: Serve,
) -> None:
    answers = [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
    ]
    server = serve(
        lambda request, connection, index: Reply(
            answers[connection + index], close=connection + index < 2
        ),
    )
    assert statuses(fetch(f"http://127.0.0.1:{server.port}/", 4)) == [200] * 4
    # close, then 1.0 without keep-alive: one connection each; 1.0 keep-alive: reused.
    assert server.connections == 3


def test_interim_answers_are_skipped_for_the_final_one(serve: Serve) -> None:
    early_hints = b"HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n"
    server = serve(lambda request, connection, index: Reply(early_hints + ok()))
    assert statuses(fetch(f"http://127.0.0.1:{server.port}/", 2)) == [200, 200]


@pytest.mark.parametrize(
    ("method", "answer"),
    [
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"),
        ("GET", b"HTTP/1.1 204 No Content\r\nContent-Length: 5000\r\n\r\n"),
        ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5000\r\n\r\n"),
    ],
)
def test_answers_that_have_no_body_end_with_their_head(
    serve: Serve, method: str, answer: bytes
) -> None:
    server = serve(lambda request, connection, index: Reply(answer))
    outcomes = fetch(f"http://127.0.0.1:{server.port}/", 2, method=method, timeout_s=2)
    assert statuses(outcomes) == [int(answer[9:12])] * 2
    assert server.connections == 1


def test_a_redirect_is_an_answer_not_followed(serve: Serve) -> None:
    redirect = (
        b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere.invalid/\r\nContent-Length: 0\r\n\r\n"
    )
    server = serve(lambda request, connection, index: Reply(redirect))
    assert statuses(fetch(f"http://127.0.0.1:{server.port}/")) == [302]
    assert len(server.requests) == 1


# -- bodies over the limit ---------------------------------------------------------------


def test_a_declared_body_over_max_body_fails_without_reading_it(
    serve: Serve,
) -> None:
    server = serve(lambda request, connection, index: Reply(ok(b"x" * 2000)))
    [outcome] = fetch(f"http://127.0.0.1:{server.port}/", max_body=1000)
    assert isinstance(outcome, BodyTooLarge)
    assert outcome.reason == "response body over max_body"


def test_a_chunked_body_is_cut_at_max_body() -> None:
    with HugeBodyServer(size=4 * 1024 * 1024, chunked=True) as server:
        [outcome] = fetch(server.url, max_body=100_000)
    assert isinstance(outcome, BodyTooLarge)


# -- broken answers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (b"garbage\r\n\r\n", "invalid HTTP response"),
        (b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n", "invalid HTTP response"),
        (b"HTTP/2 200\r\nContent-Length: 0\r\n\r\n", "invalid HTTP response"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", "invalid HTTP response"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello", "invalid HTTP response"),
        (b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok", "invalid HTTP response"),
        (
            b"HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 2\r\n\r\nok",
            "invalid HTTP response",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            "invalid HTTP response",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n",
            "invalid HTTP response",
        ),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", "unexpected protocol switch"),
        (
            b"HTTP/1.1 200 OK\r\nX-Padding: " + b"p" * 70_000 + b"\r\n\r\n",
            "response head over 64 KiB",
        ),
    ],
)
def test_a_broken_answer_is_a_failure_with_a_reason(
    serve: Serve, answer: bytes, expected: str
) -> None:
    server = serve(lambda request, connection, index: Reply(answer))
    [broken, again] = fetch(f"http://127.0.0.1:{server.port}/", 2, timeout_s=3)
    assert reason(broken) == expected
    assert reason(again) == expected
    assert server.connections == 2  # a connection that sent nonsense is never reused


def test_a_connection_closed_mid_body_is_a_body_cut_short(
    serve: Serve,
) -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten.."
    server = serve(lambda request, connection, index: Reply(cut, close=True))
    [outcome] = fetch(f"http://127.0.0.1:{server.port}/")
    assert reason(outcome) == "response body cut short"


def test_bytes_after_the_answer_retire_the_connection(serve: Serve) -> None:
    server = serve(lambda request, connection, index: Reply(ok() + b"HTTP/1.1 200 OK\r\n"))
    assert statuses(fetch(f"http://127.0.0.1:{server.port}/", 2)) == [200, 200]
    assert server.connections == 2


# -- closed connections ------------------------------------------------------------------


def close_on_second_request(request: bytes, connection: int, index: int) -> Reply:
    """Answers each connection's first request, then closes it when the next one comes:
    the race a keep-alive timeout on the server side causes."""
    return Reply(ok()) if index == 0 else Reply(None, close=True)


def test_a_reused_connection_the_server_had_closed_is_retried_once_when_idempotent(
    serve: Serve,
) -> None:
    server = serve(close_on_second_request)
    assert statuses(fetch(f"http://127.0.0.1:{server.port}/", 3)) == [200, 200, 200]
    assert server.connections == 3


def test_a_post_is_never_sent_twice(serve: Serve) -> None:
    server = serve(close_on_second_request)
    outcomes = fetch(f"http://127.0.0.1:{server.port}/", 2, method="POST", body=b"{}")
    assert isinstance(outcomes[0], Answer)
    assert reason(outcomes[1]) == "server closed the connection"
    assert len(server.requests) == 2


def test_a_fresh_connection_closed_without_an_answer_fails(
    serve: Serve,
) -> None:
    server = serve(lambda request, connection, index: Reply(None, close=True))
    [outcome] = fetch(f"http://127.0.0.1:{server.port}/")
    assert reason(outcome) == "server closed the connection"
    assert len(server.requests) == 1  # not retried: nothing says it was a keep-alive race


# -- time, connecting, TLS ---------------------------------------------------------------


def test_a_request_unanswered_past_its_timeout_fails_with_timeout_error(
    silent_server: SilentServer,
) -> None:
    started = time.perf_counter()
    [outcome] = fetch(silent_server.url, timeout_s=0.3)
    assert isinstance(outcome, TimeoutError)
    assert time.perf_counter() - started < 3  # never hangs


def test_a_body_trickled_byte_by_byte_still_ends_at_the_timeout(
    trickling_server: TricklingServer,
) -> None:
    # Every byte arrives well within any per-read timeout; only the request's own deadline
    # can end it.
    started = time.perf_counter()
    [outcome] = fetch(trickling_server.url, timeout_s=1.2)
    assert isinstance(outcome, TimeoutError)
    assert time.perf_counter() - started < 4


def test_a_request_waiting_for_a_busy_connection_times_out_and_frees_nothing_twice(
    serve: Serve,
) -> None:
    server = serve(lambda request, connection, index: Reply(ok(), delay_s=0.5))
    url = f"http://127.0.0.1:{server.port}/"

    async def main() -> list[Outcome]:
        client = Client(Target.build("GET", url, {}, None, None), limit=1, max_body=1000)
        try:
            slow = asyncio.create_task(client.request(5.0))
            await asyncio.sleep(0.05)  # the one connection is now busy with it
            waiting = asyncio.gather(client.request(0.1), return_exceptions=True)
            outcomes: list[Outcome] = [*(await waiting), await slow]
            outcomes.append(await client.request(5.0))  # the pool is whole again
            return outcomes
        finally:
            client.close()

    waited, slow, after = asyncio.run(main())
    assert isinstance(waited, TimeoutError)
    assert statuses([slow, after]) == [200, 200]
    assert len(server.requests) == 2  # the one that timed out waiting was never sent


def test_requests_beyond_the_limit_wait_for_a_connection_and_all_are_answered(
    serve: Serve,
) -> None:
    server = serve(lambda request, connection, index: Reply(ok(), delay_s=0.01))
    url = f"http://127.0.0.1:{server.port}/"

    async def main() -> list[Outcome]:
        client = Client(Target.build("GET", url, {}, None, None), limit=3, max_body=1000)
        try:
            return list(await asyncio.gather(*(client.request(5.0) for _ in range(30))))
        finally:
            client.close()

    assert statuses(asyncio.run(main())) == [200] * 30
    assert server.connections == 3


def test_cancelled_requests_leave_no_connection_behind(serve: Serve) -> None:
    server = serve(lambda request, connection, index: Reply(ok(), delay_s=5))
    url = f"http://127.0.0.1:{server.port}/"

    async def main() -> Outcome:
        client = Client(Target.build("GET", url, {}, None, None), limit=2, max_body=1000)
        try:
            tasks = [asyncio.create_task(client.request(10.0)) for _ in range(4)]
            await asyncio.sleep(0.1)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            server.script = lambda request, connection, index: Reply(ok())
            return await client.request(5.0)
        finally:
            client.close()

    assert statuses([asyncio.run(main())]) == [200]


def test_connection_failures_are_named(closed_port_url: str) -> None:
    assert reason(fetch(closed_port_url)[0]) == "connection refused"
    assert reason(fetch(UNRESOLVABLE_URL)[0]) == "host name not resolved"


def test_tls_is_verified_and_rejected_in_our_own_words(https_server: AppServer) -> None:
    url = https_server.url + "/health/live"
    assert https_server.ca_file is not None
    assert statuses(fetch(url, 2, ca_file=str(https_server.ca_file))) == [200, 200]
    assert reason(fetch(url)[0]) == "TLS certificate rejected"
    assert statuses(fetch(url, verify=False)) == [200]


def test_an_invalid_url_is_refused_before_connecting() -> None:
    with pytest.raises(ProbeError, match="invalid URL"):
        Target.build("GET", "ftp://example.com/", {}, None, None)
    with pytest.raises(ProbeError, match="invalid URL"):
        Target.build("GET", "http://example.com:99999/", {}, None, None)


def test_a_host_whose_first_address_refuses_is_reached_on_the_next(
    serve: Serve,
) -> None:
    # As "localhost" resolving to ::1 first, for a server listening on 127.0.0.1 only.
    server = serve(lambda request, connection, index: Reply(ok(), close=True))

    async def main() -> list[Outcome]:
        url = f"http://localhost:{server.port}/"
        client = Client(Target.build("GET", url, {}, None, None), limit=1, max_body=1000)
        client._addresses = [(socket.AF_INET, "127.0.0.2"), (socket.AF_INET, "127.0.0.1")]
        try:
            return [await client.request(5.0) for _ in range(3)]
        finally:
            client.close()

    assert statuses(asyncio.run(main())) == [200, 200, 200]
    assert server.connections == 3
