"""One bounded HTTP request for a check, on the run's shared client.

Every HTTP check of a run shares one ``httpx.AsyncClient`` per TLS configuration
(``ctx.shared``): HTTP/1.1 with keep-alive, so twenty checks against one service open a
handful of connections, not twenty. The engine closes it when the run ends.

A request is bounded three ways:
- connect and read timeouts, from ``timeout``;
- a total deadline, because httpx's read timeout applies to each read, and a server that
  trickles its body a byte at a time would otherwise hold the check for ever;
- ``max_body``: the body is streamed and cut off there (a bigger one FAILs), never read
  whole into memory.

Failures come back as :class:`RequestFailed` carrying the Outcome to return, with a
summary of our own ("connection refused by host:port"): httpx's messages hold the full
URL, credentials included.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from readycheck import __version__
from readycheck.checks.http.certificates import TrustError, tls_context
from readycheck.checks.http.network import describe_connection_error, last_resort
from readycheck.checks.http.request import display_url
from readycheck.results import Outcome
from readycheck.units import Duration, counted, format_bytes, format_duration_ms

if TYPE_CHECKING:
    import httpx

    from readycheck.checks.http.request import HttpParams, RequestParams
    from readycheck.context import Context

USER_AGENT = f"readycheck/{__version__}"
MAX_REDIRECTS = 10
# Finish a little before the engine's own timeout, so the check reports what it was
# waiting for instead of the engine's bare "timed out".
_MARGIN_S = 0.25


class RequestFailed(Exception):
    """The request could not be completed; ``outcome`` says why (FAIL or ERROR)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.summary)
        self.outcome = outcome


@dataclass(frozen=True)
class Budget:
    """How long a check may wait, and how to name that limit in a summary."""

    seconds: float
    label: str


def budget(timeout: Duration | None, ctx: Context, *, reserve: float = 0.0) -> Budget:
    """The time to wait: ``timeout``, within what is left of the check's own, less
    ``reserve`` seconds kept back for cleaning up (a WebSocket's close handshake)."""
    left = max(0.05, ctx.remaining() - _MARGIN_S - reserve)
    if timeout is not None and timeout.seconds <= left:
        return Budget(timeout.seconds, str(timeout))
    return Budget(left, f"{Duration(round(left, 1))} (the check's timeout)")


@dataclass(frozen=True)
class Reply:
    """A response, its body read up to ``max_body``."""

    label: str
    """What was asked, as summaries show it: ``GET https://api.example.com/health``."""
    method: str
    url: str
    status: int
    reason: str
    headers: httpx.Headers
    body: bytes
    elapsed_ms: float
    http_version: str
    redirects: tuple[str, ...] = field(default=())

    @property
    def content_type(self) -> str:
        return str(self.headers.get("content-type", "")).split(";")[0].strip().lower()

    @property
    def text(self) -> str:
        charset = "utf-8"
        for part in self.headers.get("content-type", "").split(";")[1:]:
            name, _, value = part.strip().partition("=")
            if name.lower() == "charset" and value:
                charset = value.strip('"')
        try:
            return self.body.decode(charset, errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")

    def json(self) -> tuple[bool, Any]:
        """(True, document) when the body is JSON, else (False, None)."""
        import json

        try:
            return True, json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return False, None

    @property
    def status_line(self) -> str:
        return f"{self.status} {self.reason}".strip()

    def unexpected_status(self, accepted: int | list[int]) -> str | None:
        """``status 503 Service Unavailable, expected 200``, or None when accepted."""
        codes = [accepted] if isinstance(accepted, int) else accepted
        if self.status in codes:
            return None
        return f"status {self.status_line}, expected {' or '.join(map(str, codes))}"

    def waiting(self) -> tuple[str | None, float | None]:
        """What waiting can change about this answer, for the engine's retries: (why no
        retry can change it, or None; the seconds the service asked to wait, or None).

        A timeout (408), "too early" (425), "too many requests" (429) and server errors
        may pass; any other 4xx is the request's own fault and answers the same again.
        """
        final = None
        if 400 <= self.status < 500 and self.status not in _WAIT_CAN_CHANGE:
            final = f"waiting does not change a {self.status_line} answer"
        return final, retry_after(self.headers.get("retry-after"))

    def describe(self) -> str:
        """``answered 200 OK in 12 ms (HTTP/1.1, 345 B)``, with redirects followed."""
        via = f" after {counted(len(self.redirects), 'redirect')}" if self.redirects else ""
        return (
            f"answered {self.status_line} in {format_duration_ms(self.elapsed_ms)}{via} "
            f"({self.http_version}, {format_bytes(len(self.body))})"
        )

    def snippet(self) -> str:
        """The start of the body on one line, for evidence."""
        return one_line(self.text)


_WAIT_CAN_CHANGE = frozenset({408, 425, 429})
MAX_RETRY_AFTER_SECONDS = 3600.0


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (a number of seconds, or an HTTP date), capped
    at an hour; None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER_SECONDS)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def one_line(text: str, limit: int = 80) -> str:
    """``text`` on one line, shortened to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat[:limit] + ("..." if len(flat) > limit else "")


async def http_client(p: HttpParams, ctx: Context) -> httpx.AsyncClient:
    """The run's client for this TLS configuration, made on first use."""
    try:
        tls = await tls_context(ctx, verify=p.verify_tls, ca_file=p.ca_file)
    except TrustError as exc:
        raise RequestFailed(exc.outcome()) from None

    def make() -> httpx.AsyncClient:
        from http.cookiejar import CookieJar, DefaultCookiePolicy

        import httpx

        return httpx.AsyncClient(
            verify=tls,
            http1=True,
            http2=False,
            follow_redirects=False,
            max_redirects=MAX_REDIRECTS,
            # Checks are independent: a cookie one response sets must not ride along on
            # another check's request, so the shared jar accepts none.
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            # An uncompressed body is what max_body counts; a compressed one could expand
            # many times over inside a single chunk.
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        )

    key = ("readycheck.http.client", p.verify_tls, str(ctx.resolve(p.ca_file) if p.ca_file else ""))
    return await ctx.shared(key, make)


async def fetch(
    p: RequestParams,
    ctx: Context,
    *,
    method: str | None = None,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    omit_headers: Collection[str] = (),
    content: bytes | None = None,
) -> Reply:
    """Send one request and read the response up to ``max_body``; RequestFailed otherwise.

    ``params`` are added to the URL's query (and left out of summaries: an API's query
    can be long); ``headers`` are added to (and override) the profile's; ``omit_headers``
    are left out.
    """
    import asyncio

    import httpx

    client = await http_client(p, ctx)
    limit = budget(p.timeout, ctx)
    method = method or p.method
    shown = f"{method} {p.shown_url}"
    omitted = {name.lower() for name in omit_headers}
    sent = {name: value for name, value in p.headers.items() if name.lower() not in omitted}
    sent.update(headers or {})
    try:
        request = client.build_request(
            method,
            p.url,
            params=params,
            headers=sent,
            content=content,
            timeout=httpx.Timeout(limit.seconds),
        )
    except httpx.InvalidURL:
        raise RequestFailed(Outcome.errored(f"{shown}: httpx cannot use this URL")) from None
    host = request.url.host
    port = request.url.port or (443 if request.url.scheme == "https" else 80)
    started = time.monotonic()
    phase = "waiting for the response"
    received = 0
    try:
        async with asyncio.timeout(limit.seconds):
            response = await client.send(request, stream=True, follow_redirects=p.follow_redirects)
            try:
                phase = "reading the body"
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > p.max_body.bytes:
                    raise RequestFailed(_too_big(shown, p, f"declares {int(declared):,} bytes"))
                chunks = bytearray()
                async for chunk in response.aiter_bytes():
                    received += len(chunk)
                    if received > p.max_body.bytes:
                        raise RequestFailed(
                            _too_big(shown, p, f"cut off after {format_bytes(received)}")
                        )
                    chunks += chunk
            finally:
                await response.aclose()
    except TimeoutError:
        got = f"; {received:,} bytes of the body had arrived" if received else ""
        raise RequestFailed(
            Outcome.failed(
                f"{shown}: timed out after {limit.label} {phase}",
                evidence=[f"no complete response within {limit.label}{got}"],
                remediation="Check that the service answers promptly, or raise timeout.",
            )
        ) from None
    except httpx.TooManyRedirects:
        raise RequestFailed(
            Outcome.failed(
                f"{shown}: redirect loop (more than {MAX_REDIRECTS} redirects)",
                remediation="Fix the redirect chain, or set follow_redirects: false to "
                "judge the first answer.",
            )
        ) from None
    except httpx.TimeoutException as exc:
        what = "connecting" if isinstance(exc, httpx.ConnectTimeout) else phase
        raise RequestFailed(
            Outcome.failed(f"{shown}: timed out after {limit.label} {what}")
        ) from None
    except httpx.HTTPError as exc:
        raise RequestFailed(_transport_failure(exc, shown, host, port, ctx)) from None
    elapsed_ms = (time.monotonic() - started) * 1000.0
    return Reply(
        label=shown,
        method=method,
        url=display_url(str(response.url)),
        status=response.status_code,
        reason=response.reason_phrase,
        headers=response.headers,
        body=bytes(chunks),
        elapsed_ms=elapsed_ms,
        http_version=response.http_version,
        redirects=tuple(display_url(str(r.url)) for r in response.history),
    )


def _too_big(shown: str, p: RequestParams, detail: str) -> Outcome:
    return Outcome.failed(
        f"{shown}: response body is larger than max_body ({p.max_body})",
        evidence=[f"the body {detail}; max_body is {p.max_body}"],
        remediation="Point the check at a smaller resource, or raise max_body.",
    )


def _transport_failure(
    exc: httpx.HTTPError, shown: str, host: str, port: int, ctx: Context
) -> Outcome:
    import httpx

    described = describe_connection_error(exc, host, port)
    if described is not None:
        remediation = (
            "Renew or fix the certificate, or trust its CA with ca_file."
            if described.startswith("TLS")
            else "Check that the service is running and reachable from here."
        )
        return Outcome.failed(f"{shown}: {described}", remediation=remediation)
    if isinstance(exc, httpx.RemoteProtocolError):
        return Outcome.failed(
            f"{shown}: the server broke the HTTP exchange "
            f"({last_resort(exc, ctx.redactor).partition(': ')[2] or 'protocol error'})"
        )
    if isinstance(exc, httpx.ConnectError):
        return Outcome.failed(f"{shown}: could not connect ({last_resort(exc, ctx.redactor)})")
    if isinstance(exc, httpx.TransportError):
        return Outcome.failed(f"{shown}: {last_resort(exc, ctx.redactor)}")
    return Outcome.errored(f"{shown}: {last_resort(exc, ctx.redactor)}")
