"""One request before any other, so that a broken target is not sent a load.

The probe first sends the run's request once, on a connection of its own, and waits for
its answer (at most ``request_timeout``). A connection error, a timeout, a body over
``max_body`` or an answer other than 2xx/3xx ends the check there: FAIL, with the status
and the start of the body, and nothing more is sent (no calibration, no load). Five
hundred requests at a 404 say nothing that the first one did not.

The body is shown as a person can read it: decompressed when the server compressed it
(the probe asks for gzip, as browsers do), on one line, cut at a few hundred characters,
and passed through the redactor (an error page may echo the request's headers).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from readycheck.checks.latency.client import BodyTooLarge, Client, ProbeError, Target
from readycheck.results import Outcome
from readycheck.units import format_duration_ms

if TYPE_CHECKING:
    from readycheck.checks.latency import LatencyParams
    from readycheck.checks.latency.load import RequestSpec

# Raw bytes kept of the body: a compressed one needs more than the text it shows.
KEPT_BYTES = 16 * 1024
EXCERPT_CHARS = 300
SUMMARY_EXCERPT_CHARS = 80
# Text redacted before it is cut to EXCERPT_CHARS: a secret that straddles the cut is
# masked whole, not shown in part.
_REDACTED_CHARS = 4 * EXCERPT_CHARS
_REASON_CHARS = 40

_UNREACHABLE_REMEDIATION = (
    "Check that the service is running and reachable from where readycheck runs (URL, "
    "port, TLS trust). The probe sends its load only to a target that answered its first "
    "request."
)
_REFUSED_REMEDIATION = (
    "Check the URL, method, headers and body, and that the service answers them with 2xx "
    "or 3xx (a redirect is an answer; it is not followed). The probe sends its load only "
    "to a target that answered its first request."
)


@dataclass(frozen=True)
class Preflight:
    """What the first request became: an answer (``status``) or a ``failure``."""

    elapsed_ms: float
    status: int | None = None
    reason: str = ""
    """The answer's reason phrase, as the server sent it (shortened)."""
    failure: str | None = None
    """Why there was no answer, in a phrase of our own ("connection refused")."""
    excerpt: str = ""
    """The start of the body, on one line, longer than what is shown (not yet redacted)."""

    @property
    def ok(self) -> bool:
        return self.failure is None and self.status is not None and 200 <= self.status < 400

    @property
    def answer(self) -> str:
        """``answered HTTP 404 Not Found`` or ``failed: connection refused``."""
        if self.status is None:
            return f"failed: {self.failure}"
        return f"answered HTTP {self.status}" + (f" {self.reason}" if self.reason else "")

    def evidence(self) -> str:
        when = "in" if self.status is not None else "after"
        return (
            f"first request (preflight): {self.answer} {when} {format_duration_ms(self.elapsed_ms)}"
        )


async def send(spec: RequestSpec, timeout_s: float, timeout_label: str) -> Preflight:
    """Send the run's request once and wait at most ``timeout_s`` for its answer."""
    target = Target.build(spec.method, spec.url, spec.headers, spec.body, spec.tls)
    client = Client(target, limit=1, max_body=spec.max_body_bytes, keep=KEPT_BYTES)
    started = time.perf_counter()

    def elapsed() -> float:
        return (time.perf_counter() - started) * 1000.0

    try:
        answer = await client.request(timeout_s)
    except TimeoutError:
        return Preflight(elapsed(), failure=f"no answer within {timeout_label}")
    except BodyTooLarge:
        return Preflight(elapsed(), failure="response body over max_body")
    except ProbeError as exc:
        return Preflight(elapsed(), failure=exc.reason)
    finally:
        client.close()
    head, body = answer.head or b"", answer.body or b""
    return Preflight(
        (answer.ended - started) * 1000.0,
        status=answer.status,
        reason=_reason(head),
        excerpt=_excerpt(head, body),
    )


def failed(p: LatencyParams, first: Preflight, redact: Callable[[str], str]) -> Outcome:
    """FAIL: the first request had no answer, or one that is not 2xx/3xx."""
    excerpt = redact(first.excerpt)
    evidence = [f"target: {p.method} {p.url}", first.evidence()]
    summary = f"the first request {first.answer}"
    if excerpt:
        evidence.append(f"body: {_cut(excerpt, EXCERPT_CHARS)}")
        summary += f" ({_cut(excerpt, SUMMARY_EXCERPT_CHARS)})"
    elif first.status is not None:
        evidence.append("body: empty")
    return Outcome.failed(
        f"{summary}; no load was sent",
        evidence=evidence,
        metrics={"requests": 0, "preflight_ms": round(first.elapsed_ms, 3)},
        remediation=_UNREACHABLE_REMEDIATION if first.status is None else _REFUSED_REMEDIATION,
    )


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _reason(head: bytes) -> str:
    status_line = head.split(b"\r\n", 1)[0]
    parts = status_line.split(b" ", 2)
    if len(parts) < 3:
        return ""
    return _cut(parts[2].decode("latin-1").strip(), _REASON_CHARS)


def _header(head: bytes, wanted: bytes) -> str:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == wanted:
            return value.decode("latin-1").strip()
    return ""


def _excerpt(head: bytes, body: bytes) -> str:
    """The start of the body as text on one line: decompressed, decoded, or described."""
    if not body:
        return ""
    encoding = _header(head, b"content-encoding").lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        decoded = _inflate(body, gzip=encoding != "deflate")
        if decoded is None:
            return f"({encoding}-compressed, could not be decompressed)"
        body = decoded
    if b"\0" in body[:1024]:
        return f"({len(body)}+ bytes, not text)" if len(body) >= KEPT_BYTES else "(not text)"
    charset = "utf-8"
    for part in _header(head, b"content-type").split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value:
            charset = value.strip('"')
    try:
        text = body.decode(charset, errors="replace")
    except LookupError:
        text = body.decode("utf-8", errors="replace")
    return " ".join(text.split())[:_REDACTED_CHARS]


def _inflate(data: bytes, *, gzip: bool) -> bytes | None:
    """As much of a compressed body as the bytes kept give, at most a few thousand bytes
    (a small body may inflate to a huge one)."""
    limit = _REDACTED_CHARS * 4
    for wbits in (16 + zlib.MAX_WBITS,) if gzip else (zlib.MAX_WBITS, -zlib.MAX_WBITS):
        try:
            return zlib.decompressobj(wbits).decompress(data, limit)
        except zlib.error:
            continue
    return None
