"""websocket.handshake: a WebSocket route upgrades (and talks) within the timeout.

The connection is always closed with a close handshake, whatever happened, so a probe
leaves no half-open socket on the server. A route that answers the upgrade with a plain
HTTP 200 (a catch-all page, a proxy that drops the Upgrade header) FAILs and says so.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

from readycheck.checks.http.certificates import TrustError, tls_context
from readycheck.checks.http.client import USER_AGENT, budget, one_line
from readycheck.checks.http.network import describe_connection_error, last_resort
from readycheck.checks.http.request import HttpParams, display_location
from readycheck.checks.patterns import Regex, first_match_line
from readycheck.params import BufferSize
from readycheck.registry import check
from readycheck.results import Outcome
from readycheck.units import Size, format_duration_ms

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

    from readycheck.context import Context

# The close handshake gets this long, taken out of the check's budget up front.
_CLOSE_TIMEOUT_S = 0.5


class MessagePattern(BaseModel):
    """A message matched by a regular expression rather than a substring."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    matches: Regex = Field(description="A regex a received message must match.")


class WebSocketParams(HttpParams):
    schemes = ("ws", "wss")

    subprotocols: list[str] = Field(
        default_factory=list,
        description="Subprotocols to offer; FAIL when the server picks none of them.",
    )
    send: str | None = Field(None, description="A text message to send once connected.")
    expect_message: str | MessagePattern | None = Field(
        None,
        description="A message that must arrive: a substring, or {matches: regex}.",
    )
    max_message: BufferSize = Field(Size("1MB"), description="Largest message accepted.")

    @field_validator("subprotocols")
    @classmethod
    def _tokens(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name or any(char in name for char in " ,;\t\r\n"):
                raise ValueError(f"{name!r} is not a valid subprotocol name")
        return value

    def matches(self, message: str) -> bool:
        if isinstance(self.expect_message, MessagePattern):
            return first_match_line(self.expect_message.matches, message) is not None
        return self.expect_message is not None and self.expect_message in message

    @property
    def expected(self) -> str:
        """``matching '^hello'`` or ``containing 'hello'``."""
        if isinstance(self.expect_message, MessagePattern):
            return f"matching {self.expect_message.matches!r}"
        return f"containing {self.expect_message!r}"


@check("websocket.handshake", params=WebSocketParams, category="http")
async def handshake(p: WebSocketParams, ctx: Context) -> Outcome:
    """Open a WebSocket; pass when the upgrade (and an expected message) completes."""
    import asyncio

    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidHandshake, InvalidStatus

    shown = p.shown_url
    limit = budget(p.timeout, ctx, reserve=_CLOSE_TIMEOUT_S)
    deadline = time.monotonic() + limit.seconds
    tls: dict[str, object] = {}
    if p.url.lower().startswith("wss://"):
        try:
            tls["ssl"] = await tls_context(ctx, verify=p.verify_tls, ca_file=p.ca_file)
        except TrustError as exc:
            return exc.outcome()
    host, port = _host_port(p.url)

    class _Connect(connect):
        """Never follows a redirect: the headers, secret ones among them, go to the URL the
        profile names and nowhere else (websockets keeps custom headers across origins),
        as every HTTP check does unless told to follow."""

        def process_redirect(self, exc: Exception) -> Exception | str:
            return exc

    started = time.monotonic()
    try:
        async with asyncio.timeout(limit.seconds):
            ws = await _Connect(
                p.url,
                additional_headers=dict(p.headers),
                subprotocols=[_subprotocol(name) for name in p.subprotocols] or None,
                user_agent_header=USER_AGENT,
                open_timeout=None,  # bounded by our own deadline, which spans the whole probe
                close_timeout=_CLOSE_TIMEOUT_S,
                max_size=p.max_message.bytes,
                ping_interval=None,
                # Its debug log shows the request headers: our logger masks secrets.
                logger=ctx.logger,
                **tls,  # type: ignore[arg-type]
            )
    except InvalidStatus as exc:
        refusal = exc.response
        return _refused(
            shown, refusal.status_code, refusal.reason_phrase, refusal.headers.get("Location")
        )
    except TimeoutError:
        return Outcome.failed(f"{shown}: no upgrade within {limit.label}")
    except InvalidHandshake as exc:
        return Outcome.failed(
            f"{shown}: the WebSocket handshake failed ({last_resort(exc, ctx.redactor)})"
        )
    except OSError as exc:
        described = describe_connection_error(exc, host, port)
        return Outcome.failed(f"{shown}: {described or last_resort(exc, ctx.redactor)}")
    upgraded_ms = (time.monotonic() - started) * 1000.0

    try:
        problems, evidence = await _converse(p, ws, deadline, limit.label)
    finally:
        await ws.close()
    response = ws.response
    status = f"{response.status_code} {response.reason_phrase}" if response else "101"
    evidence = [
        *problems,
        f"status {status}",
        f"subprotocol: {ws.subprotocol or 'none'}",
        f"upgraded in {format_duration_ms(upgraded_ms)}",
        *evidence,
        f"closed cleanly (code {ws.close_code})" if ws.close_code == 1000 else "closed",
    ]
    metrics: dict[str, float] = {"upgrade_ms": round(upgraded_ms, 1)}
    if problems:
        return Outcome.failed(f"{shown}: {problems[0]}", evidence=evidence, metrics=metrics)
    return Outcome.passed(
        f"{shown}: upgraded in {format_duration_ms(upgraded_ms)}"
        + (f" ({ws.subprotocol})" if ws.subprotocol else ""),
        evidence=evidence,
        metrics=metrics,
    )


async def _converse(
    p: WebSocketParams, ws: ClientConnection, deadline: float, label: str
) -> tuple[list[str], list[str]]:
    """Check the subprotocol, send, and wait for the expected message: (problems, facts)."""
    import asyncio

    from websockets.exceptions import ConnectionClosed

    problems: list[str] = []
    facts: list[str] = []
    if p.subprotocols and ws.subprotocol is None:
        problems.append(
            f"the server chose none of the offered subprotocols ({', '.join(p.subprotocols)})"
        )
    if p.send is None and p.expect_message is None:
        return problems, facts
    received = 0
    try:
        async with asyncio.timeout(max(0.05, deadline - time.monotonic())):
            if p.send is not None:
                await ws.send(p.send)
                facts.append(f"sent {len(p.send)} characters")
            while p.expect_message is not None:
                message = await ws.recv()
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                received += 1
                if p.matches(text):
                    facts.append(f"message {received} matched: {one_line(text)}")
                    break
    except TimeoutError:
        problems.append(f"no message {p.expected} within {label} ({received} others received)")
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd is not None else None
        reason = f" (code {code})" if code is not None else ""
        problems.append(
            f"the server closed the connection{reason} before a message {p.expected} came"
        )
    return problems, facts


def _refused(shown: str, status: int, reason: str, location: str | None = None) -> Outcome:
    if 300 <= status < 400 and location:
        return Outcome.failed(
            f"{shown}: answered HTTP {status} {reason}, a redirect, which is not followed",
            evidence=[
                f"status {status} {reason}".rstrip(),
                f"Location: {display_location(location)}",
                "expected 101 Switching Protocols",
            ],
            remediation="Point url at where the redirect leads: a WebSocket client that "
            "follows it sends its headers there.",
        )
    if 200 <= status < 300:
        return Outcome.failed(
            f"{shown}: answered plain HTTP {status} instead of upgrading to a WebSocket",
            evidence=[f"status {status} {reason}".rstrip(), "expected 101 Switching Protocols"],
            remediation="Point url at the WebSocket route; if it is one, check that every "
            "proxy on the way forwards the Upgrade and Connection headers.",
        )
    return Outcome.failed(
        f"{shown}: the upgrade was refused with HTTP {status} {reason}".rstrip(),
        evidence=[f"status {status} {reason}".rstrip(), "expected 101 Switching Protocols"],
        remediation="Check the route's authentication, origin checks and subprotocols.",
    )


def _host_port(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    default = 443 if parts.scheme.lower() == "wss" else 80
    return parts.hostname or "", parts.port or default


def _subprotocol(name: str) -> Subprotocol:
    from websockets.typing import Subprotocol

    return Subprotocol(name)


if TYPE_CHECKING:
    from websockets.typing import Subprotocol
