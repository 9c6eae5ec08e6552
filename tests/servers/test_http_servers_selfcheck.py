"""The HTTP test servers behave as the check tests rely on: routes, TLS, faults."""

from __future__ import annotations

import ssl
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as websocket_connect
from websockets.typing import Subprotocol

from tests.servers.http import (
    CORS_ALLOWED_ORIGIN,
    EXPIRED,
    HEALTH_BODY,
    LEAKY_HEADERS,
    METRICS_CONTENT_TYPE,
    METRICS_TEXT,
    NOT_YET_VALID,
    SECURITY_HEADERS,
    SELF_SIGNED,
    UNRESOLVABLE_URL,
    WEBSOCKET_GREETING,
    WRONG_HOST,
    AppServer,
    CertSpec,
    HugeBodyServer,
    SilentServer,
    TricklingServer,
)

# Every request here is on loopback: anything slower than this is a hang, not latency.
QUICK = httpx.Timeout(2.0)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=QUICK) as client:
        yield client


def trusting(ca_file: object) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


def websocket_url(server: AppServer, path: str) -> str:
    return server.url.replace("http", "ws", 1) + path


# --- plain and TLS servers -------------------------------------------------------------


def test_health_answers_the_documented_body(http_server: AppServer, client: httpx.Client) -> None:
    response = client.get(f"{http_server.url}/health")
    assert response.status_code == 200
    assert response.json() == HEALTH_BODY


def test_health_reports_a_dependency_down_with_503(
    http_server: AppServer, client: httpx.Client
) -> None:
    response = client.get(f"{http_server.url}/health", params={"down": "database"})
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": False, "cache": True}


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_https_server_is_trusted_through_the_test_ca_bundle(
    https_server: AppServer, host: str
) -> None:
    url = f"https://{host}:{https_server.port}/health/live"
    with httpx.Client(verify=trusting(https_server.ca_file), timeout=QUICK) as client:
        assert client.get(url).json() == {"status": "ok"}


def test_https_server_is_rejected_without_the_test_ca(https_server: AppServer) -> None:
    with (
        httpx.Client(timeout=QUICK) as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.get(f"{https_server.url}/health")


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        pytest.param(EXPIRED, "certificate has expired", id="expired"),
        pytest.param(NOT_YET_VALID, "certificate is not yet valid", id="not-yet-valid"),
        pytest.param(WRONG_HOST, "mismatch", id="wrong-host"),
        pytest.param(SELF_SIGNED, "self.signed certificate", id="self-signed"),
    ],
)
def test_bad_certificates_fail_verification_for_their_own_reason(
    https_server_with_cert: Callable[[CertSpec], AppServer], spec: CertSpec, reason: str
) -> None:
    server = https_server_with_cert(spec)
    with (
        httpx.Client(verify=trusting(server.ca_file), timeout=QUICK) as client,
        pytest.raises(httpx.ConnectError, match=reason),
    ):
        client.get(f"{server.url}/health")


# --- counters and routes that checks read ----------------------------------------------


def test_flaky_url_fails_the_first_n_requests_then_recovers(
    http_server: AppServer, client: httpx.Client
) -> None:
    url = http_server.flaky_url(fail=2)
    statuses = [client.get(url).status_code for _ in range(4)]
    assert statuses == [503, 503, 200, 200]
    assert http_server.hits(httpx.URL(url).path) == 4


def test_unreliable_url_fails_exactly_one_request_in_twenty(
    http_server: AppServer, client: httpx.Client
) -> None:
    url = http_server.unreliable_url(percent=5)
    failed = [n for n in range(1, 41) if client.get(url).status_code == 500]
    assert failed == [20, 40]


def test_sleep_delays_the_answer(http_server: AppServer, client: httpx.Client) -> None:
    started = time.perf_counter()
    response = client.get(f"{http_server.url}/sleep", params={"ms": 50})
    assert response.json() == {"slept_ms": 50}
    assert time.perf_counter() - started >= 0.05


def test_echo_returns_the_headers_sent(http_server: AppServer, client: httpx.Client) -> None:
    response = client.get(f"{http_server.url}/echo", headers={"X-Probe": "readycheck"})
    assert response.json()["headers"]["x-probe"] == "readycheck"


def test_security_header_routes(http_server: AppServer, client: httpx.Client) -> None:
    secure = client.get(f"{http_server.url}/headers/secure").headers
    missing = client.get(f"{http_server.url}/headers/missing").headers
    leaky = client.get(f"{http_server.url}/headers/leaky").headers
    assert all(secure[name] == value for name, value in SECURITY_HEADERS.items())
    assert not set(SECURITY_HEADERS) & set(missing.keys())
    assert "server" not in missing  # uvicorn's own Server header is off
    assert all(leaky[name] == value for name, value in LEAKY_HEADERS.items())


def test_cors_reflect_echoes_any_origin_and_strict_only_its_own(
    http_server: AppServer, client: httpx.Client
) -> None:
    evil = {"Origin": "https://evil.example"}
    reflect = client.get(f"{http_server.url}/cors/reflect", headers=evil).headers
    strict = client.get(f"{http_server.url}/cors/strict", headers=evil).headers
    allowed = client.options(
        f"{http_server.url}/cors/strict",
        headers={"Origin": CORS_ALLOWED_ORIGIN, "Access-Control-Request-Method": "GET"},
    )
    assert reflect["access-control-allow-origin"] == "https://evil.example"
    assert reflect["access-control-allow-credentials"] == "true"
    assert "access-control-allow-origin" not in strict
    assert allowed.headers["access-control-allow-origin"] == CORS_ALLOWED_ORIGIN


def test_request_id_echo_and_ignored(http_server: AppServer, client: httpx.Client) -> None:
    sent = {"X-Request-ID": "req-123"}
    echoed = client.get(f"{http_server.url}/request-id/echo", headers=sent).headers
    generated = client.get(f"{http_server.url}/request-id/echo").headers
    ignored = client.get(f"{http_server.url}/request-id/ignored", headers=sent).headers
    assert echoed["x-request-id"] == "req-123"
    assert uuid.UUID(generated["x-request-id"]).version == 4
    assert ignored["x-request-id"] != "req-123"


@pytest.mark.parametrize("path", ["/errors/not-found", "/api/no-such-thing"])
def test_json_error_contract(http_server: AppServer, client: httpx.Client, path: str) -> None:
    response = client.get(f"{http_server.url}{path}")
    body = response.json()
    assert response.status_code == 404
    assert body["error_code"] == "FIRE-404"
    assert uuid.UUID(body["error_id"]).version == 4
    assert body["message"]


@pytest.mark.parametrize(("path", "status"), [("/errors/crash", 500), ("/no-such-thing", 404)])
def test_html_errors(http_server: AppServer, client: httpx.Client, path: str, status: int) -> None:
    response = client.get(f"{http_server.url}{path}")
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")


def test_metrics_serve_the_exposition_format(http_server: AppServer, client: httpx.Client) -> None:
    response = client.get(f"{http_server.url}/metrics")
    assert response.headers["content-type"] == METRICS_CONTENT_TYPE
    assert response.text == METRICS_TEXT
    assert "# TYPE" not in client.get(f"{http_server.url}/metrics-bad").text


def test_redirect_loop_never_ends(http_server: AppServer) -> None:
    with (
        httpx.Client(timeout=QUICK, follow_redirects=True, max_redirects=5) as client,
        pytest.raises(httpx.TooManyRedirects),
    ):
        client.get(f"{http_server.url}/loop")


# --- WebSocket (the `websockets` package's sync client) -----------------------------------


def test_websocket_greets_echoes_and_agrees_a_subprotocol(http_server: AppServer) -> None:
    url = websocket_url(http_server, "/ws")
    offered = [Subprotocol("unknown"), Subprotocol("chat")]
    with websocket_connect(url, subprotocols=offered, open_timeout=2) as ws:
        assert ws.subprotocol == "chat"
        assert ws.recv(timeout=2) == WEBSOCKET_GREETING
        ws.send("ping")
        assert ws.recv(timeout=2) == "ping"


def test_websocket_over_tls(https_server: AppServer) -> None:
    url = websocket_url(https_server, "/ws")
    with websocket_connect(url, ssl=trusting(https_server.ca_file), open_timeout=2) as ws:
        assert ws.subprotocol is None
        assert ws.recv(timeout=2) == WEBSOCKET_GREETING


@pytest.mark.parametrize(("path", "status"), [("/not-a-websocket", 200), ("/ws/reject", 403)])
def test_failed_websocket_handshakes(http_server: AppServer, path: str, status: int) -> None:
    with pytest.raises(InvalidStatus) as refused:
        websocket_connect(websocket_url(http_server, path), open_timeout=2)
    assert refused.value.response.status_code == status


# --- fault servers -----------------------------------------------------------------------


def test_silent_server_makes_the_read_time_out(silent_server: SilentServer) -> None:
    timeout = httpx.Timeout(2.0, read=0.2)
    with httpx.Client(timeout=timeout) as client, pytest.raises(httpx.ReadTimeout):
        client.get(silent_server.url)


def test_trickling_server_sends_headers_then_stalls(trickling_server: TricklingServer) -> None:
    timeout = httpx.Timeout(2.0, read=0.2)
    with (
        httpx.Client(timeout=timeout) as client,
        client.stream("GET", trickling_server.url) as response,
    ):
        assert response.status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            response.read()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_huge_body_server_streams_ten_mebibytes(
    huge_body_server: HugeBodyServer, client: httpx.Client, chunked: bool
) -> None:
    def body_size(server: HugeBodyServer) -> int:
        with client.stream("GET", server.url) as response:
            assert ("content-length" in response.headers) is not chunked
            return sum(len(chunk) for chunk in response.iter_raw())

    if chunked:
        with HugeBodyServer(chunked=True) as server:
            assert body_size(server) == 10 * 1024 * 1024
    else:
        assert body_size(huge_body_server) == 10 * 1024 * 1024


def test_closed_port_refuses_the_connection(closed_port_url: str, client: httpx.Client) -> None:
    with pytest.raises(httpx.ConnectError):
        client.get(closed_port_url)


def test_unresolvable_host_fails_to_connect(client: httpx.Client) -> None:
    with pytest.raises(httpx.ConnectError):
        client.get(UNRESOLVABLE_URL)
