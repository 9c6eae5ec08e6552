"""The Prometheus HTTP API as the checks ask it: where it is, how to sign in, and one GET
of an API path, answered in Prometheus' envelope (``status``, ``data``, ``error``,
``warnings``).

Every way of not getting a usable answer becomes :class:`RequestFailed` carrying an
ERROR outcome: the check could not read its figures, which says nothing about the
service. Prometheus' own message is shown (a PromQL syntax error says where it is);
the client's failures are the HTTP family's sentences ("connection refused by
host:port"), never a library's message carrying the URL.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator

from readycheck.checks.http.client import RequestFailed, fetch, one_line
from readycheck.checks.http.request import HttpParams, RequestParams
from readycheck.checks.sources import SourceProblem, ValueSource, check_plain, read_value
from readycheck.params import BufferSize, CheckParams
from readycheck.results import Outcome, Status, soft
from readycheck.units import Size

if TYPE_CHECKING:
    from readycheck.checks.http.client import Budget, Reply
    from readycheck.context import Context

# Prometheus' messages can quote a whole query: enough of one to act on.
_MESSAGE_WIDTH = 300
_UNREACHABLE = (
    "Check that Prometheus is running and reachable from where readycheck runs (url, "
    "ca_file), then run again."
)


class BasicAuth(CheckParams):
    """HTTP basic authentication (Prometheus' own `basic_auth_users`, or a proxy's)."""

    username: str = Field(description="The user name.")
    password: ValueSource = Field(
        description="Where the password is read when the check runs: {env: NAME}, "
        "{file: /run/secrets/...}, {dotenv: PATH, key: NAME} or {value: ...}."
    )

    @field_validator("username")
    @classmethod
    def _plain(cls, value: str) -> str:
        if not value or ":" in value or any(char in value for char in "\r\n\0"):
            raise ValueError("a user name is not empty and has no colon or line break")
        return value


class Auth(CheckParams):
    """How readycheck signs in to Prometheus: exactly one of `bearer` or `basic`."""

    bearer: ValueSource | None = Field(
        None,
        description="Where the bearer token is read when the check runs (sent as "
        "Authorization: Bearer ...): {env: NAME}, {file: PATH}, {dotenv: PATH, key: NAME}.",
    )
    basic: BasicAuth | None = Field(None, description="A user name and where its password is read.")

    @model_validator(mode="after")
    def _one(self) -> Auth:
        if (self.bearer is None) == (self.basic is None):
            raise ValueError("give exactly one of bearer: {...} or basic: {username, password}")
        return self


class PrometheusParams(HttpParams):
    """Where Prometheus answers and how to sign in; shared by the Prometheus checks."""

    url: str = Field(
        description="Prometheus' base URL, as its web UI is reached: "
        "https://prometheus.example.com, or with its path prefix (.../prometheus)."
    )
    auth: Auth | None = Field(
        None,
        description="Sign in with a bearer token or a user name and password, read from "
        "secret sources and never shown.",
    )
    max_body: BufferSize = Field(
        Size("10MB"),
        description="Largest API answer read; a bigger one is cut off there (ERROR): narrow "
        "the query.",
    )

    @field_validator("url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.query or parts.fragment:
            raise ValueError("give Prometheus' base URL, without a query or a fragment")
        if parts.path.rstrip("/").endswith("/api/v1"):
            raise ValueError("give Prometheus' base URL, without /api/v1")
        return value

    def endpoint(self, path: str) -> RequestParams:
        """One request to the API path (``/api/v1/query``) under the base URL."""
        parts = urlsplit(self.url)
        url = urlunsplit(parts._replace(path=parts.path.rstrip("/") + path))
        fields = {name: getattr(self, name) for name in HttpParams.model_fields}
        return RequestParams.model_validate(
            {**fields, "url": url, "method": "GET", "max_body": self.max_body}
        )


@dataclass(frozen=True)
class Answer:
    """A successful answer: its ``data``, and the ``warnings`` Prometheus added."""

    data: Any
    warnings: tuple[str, ...]
    reply: Reply


def timeout_param(limit: Budget) -> str:
    """Prometheus' ``timeout`` for a query: a little less than we wait, so that a heavy
    query is stopped on the server and answered with its own error first."""
    return f"{max(100, int(limit.seconds * 900))}ms"


async def ask(
    p: PrometheusParams, ctx: Context, path: str, params: Mapping[str, str] | None = None
) -> Answer:
    """GET an API path; the answer's data, or RequestFailed with an ERROR outcome."""
    headers = await _auth_headers(p.auth, ctx)
    try:
        reply = await fetch(p.endpoint(path), ctx, params=params, headers=headers)
    except RequestFailed as failure:
        raise RequestFailed(_unanswered(failure.outcome)) from None
    is_json, document = reply.json()
    envelope = document if is_json and isinstance(document, dict) else None
    if envelope is None or envelope.get("status") not in ("success", "error"):
        raise RequestFailed(_not_the_api(reply))
    if envelope["status"] == "error":
        raise RequestFailed(_refused(reply, envelope))
    warnings = envelope.get("warnings") or []
    shown = tuple(one_line(str(w), _MESSAGE_WIDTH) for w in warnings if isinstance(w, str))
    return Answer(envelope.get("data"), shown, reply)


def warning_lines(answer: Answer) -> Iterator[str]:
    for warning in answer.warnings:
        yield soft(f"Prometheus warns: {warning}")


async def _auth_headers(auth: Auth | None, ctx: Context) -> dict[str, str]:
    if auth is None:
        return {}
    source = auth.bearer or (auth.basic.password if auth.basic else None)
    assert source is not None
    try:
        secret = await read_value(source, ctx)
        check_plain(secret, source.label)
    except SourceProblem as problem:
        what = "bearer token" if auth.bearer else "password"
        raise RequestFailed(
            Outcome.errored(
                f"the Prometheus {what} could not be read: {problem.message}",
                remediation=f"Provide the {what} where auth says to read it ({source.label}).",
            )
        ) from None
    if auth.basic is None:
        return {"Authorization": f"Bearer {secret}"}
    pair = f"{auth.basic.username}:{secret}"
    ctx.redactor.add(pair)  # and so its base64 form, which is what travels
    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


def _unanswered(outcome: Outcome) -> Outcome:
    return dataclasses.replace(
        outcome, status=Status.ERROR, remediation=outcome.remediation or _UNREACHABLE
    )


def _not_the_api(reply: Reply) -> Outcome:
    if reply.status in (401, 403):
        return Outcome.errored(
            f"{reply.label}: Prometheus refused the request ({reply.status_line})",
            evidence=[reply.describe()],
            remediation="Check auth: the credentials, and that their account may read the API.",
            final=f"waiting does not change a {reply.status_line} answer",
        )
    kind = reply.content_type or "no Content-Type"
    what = (
        f"Prometheus failed ({reply.status_line})"
        if reply.status >= 500
        else f"answered {reply.status_line}, not the Prometheus API"
    )
    location = reply.headers.get("location")
    return Outcome.errored(
        f"{reply.label}: {what}",
        evidence=[
            f"{kind}: {reply.snippet() or '(empty body)'}",
            *([f"redirected to {one_line(location)}"] if location else []),
            reply.describe(),
        ],
        remediation="See Prometheus' logs."
        if reply.status >= 500
        else "Point url at Prometheus' base URL (where its web UI answers), and auth at "
        "credentials it accepts.",
    )


def _refused(reply: Reply, envelope: dict[str, Any]) -> Outcome:
    """Prometheus answered with its error envelope: show its message."""
    kind = str(envelope.get("errorType") or "error")
    message = one_line(str(envelope.get("error") or "(no message)"), _MESSAGE_WIDTH)
    evidence = [f"Prometheus: {message}", reply.describe()]
    if kind == "bad_data":
        return Outcome.errored(
            f"{reply.label}: Prometheus rejected the query: {message}",
            evidence=evidence,
            remediation="Fix the query: try it in Prometheus' expression browser.",
            final="the same query is rejected again",
        )
    if kind in ("timeout", "canceled", "execution"):
        return Outcome.errored(
            f"{reply.label}: Prometheus could not evaluate the query ({kind}): {message}",
            evidence=evidence,
            remediation="Make the query lighter (fewer series, a shorter range), or give "
            "the check a longer timeout.",
        )
    return Outcome.errored(
        f"{reply.label}: Prometheus failed ({kind}, {reply.status_line}): {message}",
        evidence=evidence,
        remediation="See Prometheus' logs.",
    )
