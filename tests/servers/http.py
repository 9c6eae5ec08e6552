"""Real HTTP servers on 127.0.0.1 for the tests of the HTTP check types.

No mocked transports: a check under test talks to a real socket, so connect and read
timeouts, TLS verification, redirects and response-size caps behave as they do against
production. Register the fixtures with ``pytest_plugins = ["tests.servers.http"]``.

    fixture                  scope     what it is
    http_server              session   AppServer, plain HTTP, serving the routes below
    https_server             session   AppServer, TLS; ``.ca_file`` is the bundle that trusts it
    https_server_with_cert   session   factory: CertSpec -> AppServer (EXPIRED, WRONG_HOST, ...)
    tls_ca                   session   LocalCA, the test CA that signs every trusted certificate
    silent_server            session   SilentServer: accepts connections, never answers
    trickling_server         session   TricklingServer: headers, then one body byte every 0.5 s
    huge_body_server         session   HugeBodyServer: a 10 MiB body, streamed
    ScriptedServer           class     raw HTTP/1.1 answering each request as a script says
    serve                    function  factory: script -> a started ScriptedServer, stopped after
    closed_port_url          function  a URL on a port that nothing listens on
    UNRESOLVABLE_URL         constant  a host under .invalid (RFC 6761), which never resolves

Routes of the app (build_app):

    /health/live, /health/ready  200 {"status": "ok"}
    /health                      200 HEALTH_BODY; ?down=database,cache marks those false and
                                 answers 503 ("status": "fail"); ?code=200 overrides the code
    /flaky/{key}?fail=N          503 for the first N requests to key, then 200
                                 (AppServer.flaky_url() makes a fresh key per call)
    /unreliable/{key}?percent=5  500 for exactly percent% of the requests to key, evenly spread
    /stall/{key}?after_ms=&for_ms=  200 at once, except that the server freezes for for_ms once,
                                 after_ms after key's first request: a request arriving then is
                                 answered when the freeze ends (AppServer.stall_url())
    /status/{code}               that status code
    /headers/secure              every SECURITY_HEADERS entry
    /headers/missing             no security headers
    /headers/leaky               X-Powered-By and Server: nginx/1.25.3 (version disclosure)
    /cors/reflect                echoes any Origin, with Allow-Credentials: true (the mistake)
    /cors/strict                 allows CORS_ALLOWED_ORIGIN only
    /cors/wildcard               Access-Control-Allow-Origin: *
    /request-id/echo             echoes X-Request-ID, or sends a fresh uuid4 when absent
    /request-id/ignored          a fresh uuid4 every time, whatever was sent
    /request-id/missing          no X-Request-ID at all
    /errors/not-found            404 {"error_id": uuid4, "error_code": "FIRE-404", "message": ...}
    /errors/crash                500 text/html
    /errors/traceback            500 text/plain with a Python traceback (a leak)
    /api/<unknown>               404 in the JSON error contract, like /errors/not-found
    /<other unknown>             404 text/html
    /metrics                     METRICS_TEXT, Prometheus text exposition format 0.0.4
    /metrics-bad                 text/plain that is not the exposition format
    /echo                        JSON of the request as received: method, path, query, headers
    /sleep?ms=20                 answers after ms milliseconds
    /redirect?to=/health         302 to `to`
    /loop                        302 to /loop, forever
    /ws                          WebSocket: picks the first offered subprotocol it knows
                                 (WEBSOCKET_SUBPROTOCOLS), sends WEBSOCKET_GREETING, echoes
    /ws/reject                   refuses the WebSocket handshake (HTTP 403)
    /not-a-websocket             answers 200 to a WebSocket upgrade, as a plain route would

AppServer.hits(path) counts the requests that reached a path, for tests of retries.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest
import trustme
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from readycheck.demo.certificates import subject_alt_names
from tests.servers.process import free_tcp_port

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 10.0

# ---------------------------------------------------------------------------------------
# What the app answers: constants that tests compare against
# ---------------------------------------------------------------------------------------

HEALTH_BODY: dict[str, object] = {
    "status": "ok",
    "checks": {"database": True, "cache": True},
    "version": "v2.3.1",
}

SECURITY_HEADERS: dict[str, str] = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains; preload",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Permissions-Policy": "geolocation=(), camera=(), microphone=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}

LEAKY_HEADERS: dict[str, str] = {"X-Powered-By": "PHP/8.2.7", "Server": "nginx/1.25.3"}

CORS_ALLOWED_ORIGIN = "https://app.example.com"
CORS_ALLOWED_METHODS = "GET, POST, PUT, DELETE, OPTIONS"

ERROR_CODE_NOT_FOUND = "FIRE-404"

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METRICS_TEXT = """\
# HELP http_requests_total Requests handled, by method and status code.
# TYPE http_requests_total counter
http_requests_total{method="GET",code="200"} 1027
http_requests_total{method="GET",code="503"} 4
http_requests_total{method="POST",code="201"} 88
# HELP http_request_duration_seconds Time taken to answer a request.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{route="/orders",le="0.05"} 850
http_request_duration_seconds_bucket{route="/orders",le="0.1"} 990
http_request_duration_seconds_bucket{route="/orders",le="+Inf"} 1031
http_request_duration_seconds_sum{route="/orders"} 41.7
http_request_duration_seconds_count{route="/orders"} 1031
# HELP db_pool_connections Connections in the database pool, by state.
# TYPE db_pool_connections gauge
db_pool_connections{state="idle"} 7
db_pool_connections{state="in_use"} 3
"""
# An unclosed label set and a value that is not a number: every exposition parser rejects it.
METRICS_BAD_TEXT = """\
http_requests_total{method="GET" 1027
db_pool_connections idle=7
"""

TRACEBACK_TEXT = """\
Traceback (most recent call last):
  File "/app/orders/views.py", line 42, in get_order
    order = Order.objects.get(pk=order_id)
psycopg.OperationalError: connection to server at "db.internal", port 5432 failed
"""

WEBSOCKET_SUBPROTOCOLS = ("readycheck.v1", "chat")
WEBSOCKET_GREETING = "hello from readycheck test server"

# The longest /sleep honours: a typo in a test must not hang the session.
MAX_SLEEP_MS = 10_000

# RFC 6761 reserves .invalid: no resolver may ever answer for it.
UNRESOLVABLE_HOST = "readycheck-test.invalid"
UNRESOLVABLE_URL = f"http://{UNRESOLVABLE_HOST}/health"


# ---------------------------------------------------------------------------------------
# The ASGI app
# ---------------------------------------------------------------------------------------


class _CountHits:
    """Counts requests per path before routing, so flaky routes and retry tests share one tally."""

    def __init__(self, app: ASGIApp, hits: Counter[str]) -> None:
        self.app = app
        self.hits = hits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            self.hits[scope["path"]] += 1
        await self.app(scope, receive, send)


def _error_contract(status_code: int, error_code: str, message: str) -> JSONResponse:
    body = {"error_id": str(uuid.uuid4()), "error_code": error_code, "message": message}
    return JSONResponse(body, status_code=status_code)


def _query_int(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    return default if value is None else int(value)


def _cors_preflight_headers(request: Request) -> dict[str, str]:
    return {
        "Access-Control-Allow-Methods": CORS_ALLOWED_METHODS,
        "Access-Control-Allow-Headers": request.headers.get(
            "access-control-request-headers", "Content-Type"
        ),
        "Access-Control-Max-Age": "600",
    }


def build_app(hits: Counter[str]) -> Starlette:
    """The app every AppServer serves; `hits` is shared with the server for AppServer.hits."""

    async def health(request: Request) -> Response:
        down = {name for name in request.query_params.get("down", "").split(",") if name}
        checks = {name: name not in down for name in ("database", "cache")}
        body = {**HEALTH_BODY, "checks": checks, "status": "fail" if down else "ok"}
        code = _query_int(request, "code", 503 if down else 200)
        return JSONResponse(body, status_code=code)

    async def health_simple(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def flaky(request: Request) -> Response:
        if hits[request.url.path] <= _query_int(request, "fail", 1):
            return JSONResponse({"status": "starting"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def unreliable(request: Request) -> Response:
        # Request n fails when n * percent / 100 crosses an integer: exactly `percent` failures
        # in any 100 consecutive requests, evenly spread, and the same ones on every run.
        percent = _query_int(request, "percent", 5)
        count = hits[request.url.path]
        if count * percent // 100 != (count - 1) * percent // 100:
            return _error_contract(500, "FIRE-500", f"request {count} failed on purpose")
        return JSONResponse({"status": "ok", "request": count})

    stalls: dict[str, float] = {}

    async def stall(request: Request) -> Response:
        # One freeze per key, timed from the key's first request, like a GC pause or a lock.
        now = time.monotonic()
        begins = (
            stalls.setdefault(request.path_params["key"], now)
            + _query_int(request, "after_ms", 500) / 1000
        )
        ends = begins + min(_query_int(request, "for_ms", 500), MAX_SLEEP_MS) / 1000
        if begins <= now < ends:
            await asyncio.sleep(ends - now)
        return JSONResponse({"status": "ok"})

    async def status(request: Request) -> Response:
        # No body: 204 and 304 must not have one.
        return Response(status_code=request.path_params["code"])

    async def headers_secure(request: Request) -> Response:
        return PlainTextResponse("secure", headers=SECURITY_HEADERS)

    async def headers_missing(request: Request) -> Response:
        return PlainTextResponse("no security headers")

    async def headers_leaky(request: Request) -> Response:
        return PlainTextResponse("leaks its stack", headers=LEAKY_HEADERS)

    async def cors_reflect(request: Request) -> Response:
        headers = {"Vary": "Origin"}
        if origin := request.headers.get("origin"):
            headers |= {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Credentials": "true",
            }
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=headers | _cors_preflight_headers(request))
        return PlainTextResponse("reflects any origin", headers=headers)

    async def cors_strict(request: Request) -> Response:
        headers = {"Vary": "Origin"}
        # A refused origin gets no CORS header at all: that absence is what browsers enforce.
        if request.headers.get("origin") == CORS_ALLOWED_ORIGIN:
            headers |= {
                "Access-Control-Allow-Origin": CORS_ALLOWED_ORIGIN,
                "Access-Control-Allow-Credentials": "true",
            }
            if request.method == "OPTIONS":
                headers |= _cors_preflight_headers(request)
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=headers)
        return PlainTextResponse("allows one origin", headers=headers)

    async def cors_wildcard(request: Request) -> Response:
        headers = {"Access-Control-Allow-Origin": "*"}
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=headers | _cors_preflight_headers(request))
        return PlainTextResponse("allows every origin", headers=headers)

    async def request_id_echo(request: Request) -> Response:
        request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
        return JSONResponse({"request_id": request_id}, headers={"X-Request-ID": request_id})

    async def request_id_ignored(request: Request) -> Response:
        return PlainTextResponse("ignored", headers={"X-Request-ID": str(uuid.uuid4())})

    async def request_id_missing(request: Request) -> Response:
        return PlainTextResponse("no request id")

    async def error_not_found(request: Request) -> Response:
        return _error_contract(404, ERROR_CODE_NOT_FOUND, "No order with id 42.")

    async def error_crash(request: Request) -> Response:
        html = "<!doctype html><html><body><h1>500 Internal Server Error</h1></body></html>"
        return HTMLResponse(html, status_code=500)

    async def error_traceback(request: Request) -> Response:
        return PlainTextResponse(TRACEBACK_TEXT, status_code=500)

    async def not_found(request: Request, exc: Exception) -> Response:
        # /api/... keeps the JSON error contract and the rest does not, so a check that probes
        # a random path can be pointed at either by its base URL alone.
        if request.url.path.startswith("/api/"):
            return _error_contract(404, ERROR_CODE_NOT_FOUND, "No such resource.")
        return HTMLResponse("<html><body><h1>Not Found</h1></body></html>", status_code=404)

    async def metrics(request: Request) -> Response:
        return Response(METRICS_TEXT, media_type=METRICS_CONTENT_TYPE)

    async def metrics_bad(request: Request) -> Response:
        return PlainTextResponse(METRICS_BAD_TEXT)

    async def echo(request: Request) -> Response:
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return JSONResponse(
            {
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "headers": headers,
            }
        )

    async def sleep(request: Request) -> Response:
        ms = min(_query_int(request, "ms", 20), MAX_SLEEP_MS)
        await asyncio.sleep(ms / 1000)
        return JSONResponse({"slept_ms": ms})

    async def redirect(request: Request) -> Response:
        return RedirectResponse(request.query_params.get("to", "/health"), status_code=302)

    async def redirect_loop(request: Request) -> Response:
        return RedirectResponse("/loop", status_code=302)

    async def websocket_echo(websocket: WebSocket) -> None:
        offered = websocket.scope.get("subprotocols", [])
        chosen = next((name for name in offered if name in WEBSOCKET_SUBPROTOCOLS), None)
        await websocket.accept(subprotocol=chosen)
        await websocket.send_text(WEBSOCKET_GREETING)
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            elif message.get("bytes") is not None:
                await websocket.send_bytes(message["bytes"])

    async def websocket_reject(websocket: WebSocket) -> None:
        await websocket.close(code=1008)  # before accept(): the server answers HTTP 403

    async def not_a_websocket(request: Request) -> Response:
        return PlainTextResponse("plain HTTP only")

    async def not_a_websocket_upgrade(websocket: WebSocket) -> None:
        # The ASGI denial-response extension lets a WebSocket scope answer with any HTTP
        # response; a 200 is what a client gets from a route that ignores the upgrade.
        await websocket.send_denial_response(PlainTextResponse("plain HTTP only"))

    routes = [
        Route("/health", health),
        Route("/health/live", health_simple),
        Route("/health/ready", health_simple),
        Route("/flaky/{key}", flaky),
        Route("/unreliable/{key}", unreliable),
        Route("/stall/{key}", stall),
        Route("/status/{code:int}", status),
        Route("/headers/secure", headers_secure),
        Route("/headers/missing", headers_missing),
        Route("/headers/leaky", headers_leaky),
        Route("/cors/reflect", cors_reflect, methods=["GET", "OPTIONS"]),
        Route("/cors/strict", cors_strict, methods=["GET", "OPTIONS"]),
        Route("/cors/wildcard", cors_wildcard, methods=["GET", "OPTIONS"]),
        Route("/request-id/echo", request_id_echo),
        Route("/request-id/ignored", request_id_ignored),
        Route("/request-id/missing", request_id_missing),
        Route("/errors/not-found", error_not_found),
        Route("/errors/crash", error_crash),
        Route("/errors/traceback", error_traceback),
        Route("/metrics", metrics),
        Route("/metrics-bad", metrics_bad),
        Route("/echo", echo, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/sleep", sleep),
        Route("/redirect", redirect),
        Route("/loop", redirect_loop),
        WebSocketRoute("/ws", websocket_echo),
        WebSocketRoute("/ws/reject", websocket_reject),
        Route("/not-a-websocket", not_a_websocket),
        WebSocketRoute("/not-a-websocket", not_a_websocket_upgrade),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(_CountHits, hits=hits)],
        exception_handlers={404: not_found},
    )


# ---------------------------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertSpec:
    """The certificate a test server presents; validity is relative to when it is issued."""

    hosts: tuple[str, ...] = (LOOPBACK, "localhost")
    valid_from: timedelta = timedelta(days=-1)
    valid_until: timedelta = timedelta(days=90)
    # Signed by its own key, not by LocalCA: the test CA's bundle does not trust it, and
    # passing the server's own certificate.cert_file as ca_file does (pinning).
    self_signed: bool = False


TRUSTED = CertSpec()
EXPIRED = CertSpec(valid_from=timedelta(days=-90), valid_until=timedelta(days=-1))
NOT_YET_VALID = CertSpec(valid_from=timedelta(days=1), valid_until=timedelta(days=90))
WRONG_HOST = CertSpec(hosts=("other.example",))
SELF_SIGNED = CertSpec(self_signed=True)


@dataclass(frozen=True)
class ServerCertificate:
    """PEM files a TLS server loads, and the validity they were issued with."""

    cert_file: Path
    key_file: Path
    not_before: datetime
    not_after: datetime
    spec: CertSpec


class LocalCA:
    """The test certificate authority; `ca_file` is the bundle a check passes as `ca_file`."""

    def __init__(self, directory: Path) -> None:
        self._ca = trustme.CA(organization_name="readycheck tests")
        self._directory = directory
        self.ca_file = directory / "ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_file))

    def issue(self, spec: CertSpec) -> ServerCertificate:
        now = datetime.now(UTC)
        not_before, not_after = now + spec.valid_from, now + spec.valid_until
        if spec.self_signed:
            cert_pem, key_pem = _self_signed(spec.hosts, not_before, not_after)
        else:
            leaf = self._ca.issue_cert(*spec.hosts, not_before=not_before, not_after=not_after)
            cert_pem = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
            key_pem = leaf.private_key_pem.bytes()
        stem = uuid.uuid4().hex
        cert_file = self._directory / f"{stem}.crt"
        key_file = self._directory / f"{stem}.key"
        cert_file.write_bytes(cert_pem)
        key_file.write_bytes(key_pem)
        return ServerCertificate(cert_file, key_file, not_before, not_after, spec)


def _self_signed(
    hosts: tuple[str, ...], not_before: datetime, not_after: datetime
) -> tuple[bytes, bytes]:
    # trustme only issues from a CA; a genuinely self-signed leaf (issuer == subject) makes
    # OpenSSL report "self-signed certificate", which a TLS check may name in its evidence.
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    names = subject_alt_names(hosts)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


# ---------------------------------------------------------------------------------------
# The app served by uvicorn in a thread
# ---------------------------------------------------------------------------------------


class AppServer:
    """The test app served by uvicorn on 127.0.0.1, in a background thread of its own.

    The thread has its own event loop, so a check under test may run in the test's loop
    and block on it without deadlocking the server.
    """

    def __init__(
        self, certificate: ServerCertificate | None = None, *, ca_file: Path | None = None
    ) -> None:
        self.certificate = certificate
        self.ca_file = ca_file
        self.port = 0
        self._hits: Counter[str] = Counter()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.certificate else "http"
        return f"{scheme}://{LOOPBACK}:{self.port}"

    def hits(self, path: str) -> int:
        """Requests (HTTP and WebSocket) that reached `path` since the server started."""
        return self._hits[path]

    def flaky_url(self, fail: int) -> str:
        """A URL answering 503 `fail` times then 200; its key is fresh, so tests never share it."""
        return f"{self.url}/flaky/{uuid.uuid4().hex}?fail={fail}"

    def unreliable_url(self, percent: int = 5) -> str:
        """A URL failing exactly `percent`% of its requests, counted from this call on."""
        return f"{self.url}/unreliable/{uuid.uuid4().hex}?percent={percent}"

    def stall_url(self, after_ms: int, for_ms: int) -> str:
        """A URL whose server freezes once for `for_ms`, `after_ms` after its first request."""
        return f"{self.url}/stall/{uuid.uuid4().hex}?after_ms={after_ms}&for_ms={for_ms}"

    def start(self) -> None:
        # Binding the socket here, not in uvicorn, gives the port before the thread starts
        # and leaves no window in which another process could take a port we picked.
        # proto=IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY on accepted sockets
        # only when it sees that proto, and without it every response waits ~40 ms for a
        # delayed ACK (Nagle), which would swamp the latency tests.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind((LOOPBACK, 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            build_app(self._hits),
            lifespan="off",
            http="h11",
            ws="websockets-sansio",
            # No dictConfig of the process's logging: pytest's capture stays in charge.
            log_config=None,
            log_level="warning",
            access_log=False,
            # /headers/leaky sends its own Server header; elsewhere none, like a hardened proxy.
            server_header=False,
            # A connection a test leaves open must not hold the session's end.
            timeout_graceful_shutdown=1,
            ssl_certfile=self.certificate.cert_file if self.certificate else None,
            ssl_keyfile=self.certificate.key_file if self.certificate else None,
        )
        try:
            config.load()  # here, not in the thread, so a bad certificate raises in the test
        except BaseException:
            sock.close()
            raise
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"uvicorn-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"test server on port {self.port} exited while starting")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"test server not up after {START_TIMEOUT_S} s")
            time.sleep(0.005)

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=5)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------
# Fault servers: raw TCP, because no well-behaved framework misbehaves on demand
# ---------------------------------------------------------------------------------------


class RawServer:
    """An asyncio TCP server on 127.0.0.1 in a background thread; subclasses misbehave in
    `respond`. Stopping closes every connection still open."""

    def __init__(self) -> None:
        self.port = 0
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/"

    async def respond(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._serve(),), name=type(self).__name__, daemon=True
        )
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise TimeoutError(f"{type(self).__name__} not up after {START_TIMEOUT_S} s")

    def stop(self) -> None:
        if self._thread is None or self._loop is None or self._stopping is None:
            return
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=5)
        self._thread = None

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._handle, LOOPBACK, 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopping.wait()
        server.close()
        # Python 3.12+ wait_closed() also waits for open connections: end them first.
        for task in self._connections:
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self.respond(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up, which is what these servers exist to provoke
        finally:
            self._connections.discard(task)
            writer.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class SilentServer(RawServer):
    """Accepts connections and never answers: the client's read timeout must fire."""

    async def respond(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass


class TricklingServer(RawServer):
    """Sends a 200 status and headers at once, then the body one byte per `interval_s`.

    Each byte resets a per-read timeout, so only a total deadline stops the client.
    """

    def __init__(self, interval_s: float = 0.5, body_size: int = 1000) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.body_size = body_size

    async def respond(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % self.body_size
        )
        for _ in range(self.body_size):
            if reader.at_eof():
                return
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(self.interval_s)


class HugeBodyServer(RawServer):
    """Streams a body of `size` bytes (10 MiB by default) without holding it in memory.

    With `chunked`, no Content-Length is sent, so only a cap on bytes read can stop the client.
    """

    CHUNK = 64 * 1024

    def __init__(self, size: int = 10 * 1024 * 1024, *, chunked: bool = False) -> None:
        super().__init__()
        self.size = size
        self.chunked = chunked

    async def respond(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        framing = (
            b"Transfer-Encoding: chunked" if self.chunked else b"Content-Length: %d" % self.size
        )
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
            + framing
            + b"\r\nConnection: close\r\n\r\n"
        )
        chunk = b"x" * self.CHUNK
        remaining = self.size
        while remaining > 0:
            piece = chunk[:remaining]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if self.chunked else piece)
            await writer.drain()
            remaining -= len(piece)
        if self.chunked:
            writer.write(b"0\r\n\r\n")
        await writer.drain()


@dataclass(frozen=True)
class Reply:
    """What a ScriptedServer does with one request: after `delay_s`, write `data` (None:
    write nothing), then close the connection if `close`."""

    data: bytes | None
    close: bool = False
    delay_s: float = 0.0


def ok(body: bytes = b"ok", *extra_headers: bytes) -> bytes:
    """A 200 answer framed by Content-Length."""
    head = b"".join(header + b"\r\n" for header in extra_headers)
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), head, body)


class ScriptedServer(RawServer):
    """HTTP/1.1 on raw TCP, answering each request with what `script` returns for it.

    `script(request, connection, index)` gets the request (head and body as sent), the
    number of the connection it came on (from 0) and its index on that connection (from
    0). Every request is kept in `requests`, in order; `connections` counts connections.
    """

    def __init__(self, script: Callable[[bytes, int, int], Reply]) -> None:
        super().__init__()
        self.script = script
        self.requests: list[bytes] = []
        self.connections = 0

    async def respond(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = self.connections
        self.connections += 1
        for index in itertools.count():
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return  # the client closed the connection
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            request = head + await reader.readexactly(length)
            self.requests.append(request)
            reply = self.script(request, connection, index)
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
            if reply.data is not None:
                writer.write(reply.data)
                await writer.drain()
            if reply.close:
                return


# ---------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    return LocalCA(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def http_server() -> Iterator[AppServer]:
    with AppServer() as server:
        yield server


@pytest.fixture(scope="session")
def https_server(https_server_with_cert: Callable[[CertSpec], AppServer]) -> AppServer:
    return https_server_with_cert(TRUSTED)


@pytest.fixture(scope="session")
def https_server_with_cert(tls_ca: LocalCA) -> Iterator[Callable[[CertSpec], AppServer]]:
    """Factory: the HTTPS server presenting a certificate made to `spec`, started on first use.

    Its `ca_file` is always the test CA's bundle, so a rejection is about the certificate
    (expired, wrong host, ...) and never about an unknown issuer, except for SELF_SIGNED.
    """
    servers: dict[CertSpec, AppServer] = {}

    def serve(spec: CertSpec) -> AppServer:
        if spec not in servers:
            server = AppServer(tls_ca.issue(spec), ca_file=tls_ca.ca_file)
            server.start()
            servers[spec] = server
        return servers[spec]

    yield serve
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="session")
def silent_server() -> Iterator[SilentServer]:
    with SilentServer() as server:
        yield server


@pytest.fixture(scope="session")
def trickling_server() -> Iterator[TricklingServer]:
    with TricklingServer() as server:
        yield server


@pytest.fixture(scope="session")
def huge_body_server() -> Iterator[HugeBodyServer]:
    with HugeBodyServer() as server:
        yield server


Script = Callable[[bytes, int, int], Reply]
Serve = Callable[[Script], ScriptedServer]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start a ScriptedServer running `script`; every one is stopped after the test."""
    started: list[ScriptedServer] = []

    def start(script: Script) -> ScriptedServer:
        server = ScriptedServer(script)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def closed_port_url() -> str:
    """Connecting is refused at once; free_tcp_port released the port, nothing took it since."""
    return f"http://{LOOPBACK}:{free_tcp_port(LOOPBACK)}/health"
