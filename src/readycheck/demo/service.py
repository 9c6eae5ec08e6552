"""orders-api: the small sample service ``readycheck demo`` checks.

A real service in miniature, on aiohttp: it reads its settings from a ``.env`` file, keeps
one PostgreSQL connection and a Redis client, and serves on 127.0.0.1, plain HTTP on one
port and HTTPS on another, in a process of its own (``launch()``; see there why)::

    /health/live         200 {"status": "ok"}: the process answers
    /health/ready        200 {"status": "ok"}: started, database connected
    /health              deep health: PostgreSQL and Redis really asked; 503 when one is down
    /api/orders          the orders in PostgreSQL (?limit=20)
    /api/orders/{id}     one order; 404 in the error contract (error_id, error_code)
    /api/orders/export   the order count, rate-limited: EXPORT_LIMIT requests per
                         EXPORT_WINDOW_S, then 429 with Retry-After and RateLimit-* headers
    /metrics             Prometheus text: http_requests_total, http_request_duration_seconds
    /ws                  WebSocket, subprotocol orders.v1: a hello message, then echo

Every response carries the security headers, ``X-Request-ID`` (the caller's, or a new
one) and a ``Server`` header without a version; CORS is open to CORS_ORIGINS only.
Errors are JSON with a fresh ``error_id``; a crash is logged with its traceback to the
service log (the demo profile's ``file`` check reads that log).

``python -m readycheck.demo.service check FILE`` checks a settings file the way a
framework's own deploy check does (the demo profile's ``command`` check runs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import ssl
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, LiteralString
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import psycopg
    from aiohttp import web
    from prometheus_client import CollectorRegistry, Counter, Histogram
    from redis.asyncio import Redis

    from readycheck.demo.certificates import TlsFiles
    from readycheck.demo.processes import ServerProcess

NAME = "orders-api"
VERSION = "v1.4.2"
HOST = "127.0.0.1"
SUBPROTOCOL = "orders.v1"
REQUIRED_SETTINGS = ("ENVIRONMENT", "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "CORS_ORIGINS")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
HSTS = "max-age=31536000; includeSubDomains"
# The export is costly: at most this many requests per window, for all callers together.
EXPORT_LIMIT = 10
EXPORT_WINDOW_S = 2
# What a caller's request id may look like before we echo it (no header injection).
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class SettingsError(Exception):
    """The settings file is missing, unreadable or lacks a required setting."""


@dataclass(frozen=True)
class Settings:
    """What orders-api reads from its .env file."""

    values: dict[str, str]

    @classmethod
    def read(cls, path: Path) -> Settings:
        from readycheck.checks.sources import SourceProblem, read_dotenv

        try:
            parsed = read_dotenv(path, path.name, environ={})
        except SourceProblem as problem:
            raise SettingsError(str(problem)) from None
        values = {name: value for name, value in parsed.values.items() if value is not None}
        missing = [name for name in REQUIRED_SETTINGS if not values.get(name)]
        if missing:
            raise SettingsError(f"{path.name}: missing {', '.join(missing)}")
        for name, schemes in (
            ("DATABASE_URL", ("postgresql", "postgres")),
            ("REDIS_URL", ("redis",)),
        ):
            parts = urlsplit(values[name])
            if parts.scheme not in schemes or not parts.hostname:
                raise SettingsError(f"{path.name}: {name} is not a {schemes[0]}:// URL")
        return cls(values)

    @property
    def database_url(self) -> str:
        return self.values["DATABASE_URL"]

    @property
    def redis_url(self) -> str:
        return self.values["REDIS_URL"]

    @property
    def cors_origins(self) -> frozenset[str]:
        return frozenset(o.strip() for o in self.values["CORS_ORIGINS"].split(",") if o.strip())

    def describe(self) -> str:
        """Where the settings point, passwords left out."""
        database = urlsplit(self.database_url)
        cache = urlsplit(self.redis_url)
        return (
            f"{len(self.values)} settings; environment {self.values['ENVIRONMENT']}; "
            f"database {database.hostname}:{database.port}{database.path}; "
            f"cache {cache.hostname}:{cache.port}"
        )


class Database:
    """One connection, one query at a time: plenty for a demo at 50 requests/s."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._connection: psycopg.AsyncConnection[tuple[Any, ...]] | None = None
        self._lock = asyncio.Lock()

    async def fetch(
        self, query: LiteralString, params: tuple[object, ...] = ()
    ) -> list[tuple[Any, ...]]:
        import psycopg

        async with self._lock:
            if self._connection is None or self._connection.closed:
                self._connection = await psycopg.AsyncConnection.connect(
                    self._url,
                    autocommit=True,
                    connect_timeout=3,
                    application_name=NAME,
                    options="-c statement_timeout=2000",
                )
            try:
                cursor = await self._connection.execute(query, params)
                return await cursor.fetchall()
            except psycopg.OperationalError:
                # A lost connection: the next request opens a new one.
                await self._connection.close()
                raise

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()


class _Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry: CollectorRegistry = CollectorRegistry()
        self.requests: Counter = Counter(
            "http_requests",
            "HTTP requests answered.",
            ["method", "path", "code"],
            registry=self.registry,
        )
        self.duration: Histogram = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["method", "path"],
            registry=self.registry,
        )


def _error(status: int, message: str) -> web.Response:
    from aiohttp import web

    body = {"error_id": str(uuid.uuid4()), "error_code": f"ORD-{status}", "message": message}
    return web.json_response(body, status=status)


def build_app(
    settings: Settings, database: Database, cache: Redis, log: logging.Logger
) -> web.Application:
    """The aiohttp application: routes, middleware and headers (see the module docstring)."""
    from aiohttp import WSMsgType, web
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    metrics = _Metrics()
    origins = settings.cors_origins

    @web.middleware
    async def observe(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        sent = request.headers.get("X-Request-ID", "")
        request["request_id"] = sent if _REQUEST_ID.match(sent) else str(uuid.uuid4())
        started = time.perf_counter()
        response: web.StreamResponse
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = _error(exc.status, exc.reason)
        except Exception:
            log.exception("unhandled error in %s %s", request.method, request.path)
            response = _error(500, "internal error")
        resource = request.match_info.route.resource
        path = resource.canonical if resource is not None else "unmatched"
        metrics.requests.labels(request.method, path, str(response.status)).inc()
        metrics.duration.labels(request.method, path).observe(time.perf_counter() - started)
        return response

    async def headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(SECURITY_HEADERS)
        response.headers["Server"] = NAME
        response.headers["X-Request-ID"] = request.get("request_id") or str(uuid.uuid4())
        if request.secure:
            response.headers["Strict-Transport-Security"] = HSTS
        origin = request.headers.get("Origin")
        if origin in origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"

    async def live(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def deep(request: web.Request) -> web.Response:
        checks = {"database": False, "cache": False}
        with contextlib.suppress(Exception):
            checks["database"] = (await database.fetch("SELECT 1")) == [(1,)]
        with contextlib.suppress(Exception):
            checks["cache"] = bool(await asyncio.wait_for(cache.ping(), 2))
        healthy = all(checks.values())
        body = {"status": "ok" if healthy else "fail", "checks": checks, "version": VERSION}
        return web.json_response(body, status=200 if healthy else 503)

    async def orders(request: web.Request) -> web.Response:
        try:
            limit = max(1, min(100, int(request.query.get("limit", "20"))))
        except ValueError:
            return _error(400, "limit must be a number")
        rows = await database.fetch(
            "SELECT id, status, total_cents FROM orders ORDER BY created_at, id LIMIT %s",
            (limit,),
        )
        return web.json_response(
            {"orders": [{"id": str(i), "status": s, "total_cents": t} for i, s, t in rows]}
        )

    async def order(request: web.Request) -> web.Response:
        try:
            order_id = uuid.UUID(request.match_info["order_id"])
        except ValueError:
            return _error(400, "an order id is a uuid")
        rows = await database.fetch(
            "SELECT id, status, total_cents FROM orders WHERE id = %s", (order_id,)
        )
        if not rows:
            return _error(404, f"no order {order_id}")
        found, status, total = rows[0]
        return web.json_response({"id": str(found), "status": status, "total_cents": total})

    window = {"start": 0.0, "count": 0}

    async def export(request: web.Request) -> web.Response:
        # A fixed window, as a gateway's simplest limiter keeps it.
        now = time.monotonic()
        if now >= window["start"] + EXPORT_WINDOW_S:
            window.update(start=now, count=0)
        window["count"] += 1
        reset = max(1, round(window["start"] + EXPORT_WINDOW_S - now))
        limits = {
            "RateLimit-Limit": str(EXPORT_LIMIT),
            "RateLimit-Remaining": str(max(0, EXPORT_LIMIT - int(window["count"]))),
            "RateLimit-Reset": str(reset),
        }
        if window["count"] > EXPORT_LIMIT:
            response = _error(429, "too many exports: retry after the window")
            response.headers.update({**limits, "Retry-After": str(reset)})
            return response
        rows = await database.fetch("SELECT count(*) FROM orders")
        return web.json_response({"orders": rows[0][0]}, headers=limits)

    async def exposition(request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(metrics.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=(SUBPROTOCOL,))
        await ws.prepare(request)
        await ws.send_str(json.dumps({"type": "hello", "service": NAME, "version": VERSION}))
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                await ws.send_str(message.data)
        return ws

    app = web.Application(middlewares=[observe])
    app.on_response_prepare.append(headers)
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", live)
    app.router.add_get("/health", deep)
    app.router.add_get("/api/orders", orders)
    app.router.add_get("/api/orders/export", export)  # before {order_id}, which would take it
    app.router.add_get("/api/orders/{order_id}", order)
    app.router.add_get("/metrics", exposition)
    app.router.add_get("/ws", websocket)
    return app


@dataclass(frozen=True)
class RunningService:
    """orders-api started by ``launch()``: its URLs and its process."""

    http_url: str
    https_url: str
    process: ServerProcess

    def wait_until_ready(self, timeout: float = 20.0) -> None:
        """Return once /health/ready answers 200; raise ServerStartError with the log tail
        if the service exits or does not answer in time."""
        ready = f"{self.http_url}/health/ready"
        self.process.wait_until_ready(lambda: _answers(ready), timeout=timeout)

    def stop(self) -> None:
        self.process.stop()


def launch(settings_file: Path, tls: TlsFiles, log_path: Path) -> RunningService:
    """Start orders-api in a process of its own (``wait_until_ready()`` before use).

    A process, not a thread of ours: a service sharing readycheck's interpreter would
    take the GIL from http.latency's sender, which then starts requests late, and a
    figure the probe's lateness inflates is not the service's. The listening
    sockets are bound here and handed over, so the URLs are known before it starts and
    no other process can take the ports in between. Its output (access log, errors with
    their tracebacks) goes to ``log_path``.
    """
    from readycheck.demo.processes import ServerProcess

    listeners = [socket.create_server((HOST, 0)) for _scheme in ("http", "https")]
    http_url, https_url = (
        f"{scheme}://{HOST}:{sock.getsockname()[1]}"
        for scheme, sock in zip(("http", "https"), listeners, strict=True)
    )
    try:
        process = ServerProcess.start(
            [
                *(sys.executable, "-m", "readycheck.demo.service"),
                *("serve", settings_file, tls.cert_file, tls.key_file),
                *(str(sock.fileno()) for sock in listeners),
            ],
            name=NAME,
            log_path=log_path,
            account=None,
            # Unbuffered: a line it prints reaches the log at once, not when it exits.
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            cwd=settings_file.parent,
            pass_fds=[sock.fileno() for sock in listeners],
        )
    finally:
        # Ours are copies: with them closed, a request after the service died is refused
        # rather than left waiting in a backlog nobody reads.
        for sock in listeners:
            sock.close()
    return RunningService(http_url=http_url, https_url=https_url, process=process)


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


async def serve(
    settings: Settings,
    cert_file: Path,
    key_file: Path,
    fds: list[int],
    database: Database | None = None,
) -> None:
    """Serve on the inherited listening sockets (HTTP, then HTTPS) until SIGTERM or SIGINT.

    ``database`` replaces the one connection the service keeps (benchmarks/verdict_stability
    serves the same routes through a connection pool)."""
    from aiohttp import web
    from redis.asyncio import Redis

    log = logging.getLogger(NAME)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    database = database or Database(settings.database_url)
    cache = Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    runner = web.AppRunner(
        build_app(settings, database, cache, log),
        access_log=log,
        access_log_format='%a "%r" %s %b %Tf',
        shutdown_timeout=1.0,
    )
    try:
        # Ready means connected: the database is asked before the ports answer.
        await database.fetch("SELECT 1")
        await runner.setup()
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert_file, key_file)
        http, https = (socket.socket(fileno=fd) for fd in fds)
        await web.SockSite(runner, http).start()
        await web.SockSite(runner, https, ssl_context=tls).start()
        log.info("%s %s serving", NAME, VERSION)
        await stopping.wait()
        log.info("%s stopping", NAME)
    finally:
        await runner.cleanup()
        await database.close()
        await cache.aclose()


def main(argv: list[str]) -> int:
    """``check FILE``: exit 0 when FILE holds settings orders-api can start with.
    ``serve FILE CERT KEY HTTP_FD HTTPS_FD``: run the service (``launch()`` runs this)."""
    if len(argv) == 2 and argv[0] == "check":
        try:
            settings = Settings.read(Path(argv[1]))
        except SettingsError as exc:
            sys.stdout.write(f"{NAME}: configuration error: {exc}\n")
            return 1
        sys.stdout.write(f"{NAME}: configuration OK ({settings.describe()})\n")
        return 0
    if len(argv) == 6 and argv[0] == "serve":
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        settings = Settings.read(Path(argv[1]))
        asyncio.run(serve(settings, Path(argv[2]), Path(argv[3]), [int(fd) for fd in argv[4:]]))
        return 0
    sys.stderr.write(
        "usage: python -m readycheck.demo.service check FILE\n"
        "       python -m readycheck.demo.service serve FILE CERT KEY HTTP_FD HTTPS_FD\n"
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
