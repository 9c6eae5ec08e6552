"""http.endpoint: a URL answers with the expected status, JSON, body, headers and latency.

With the core's ``retry_for`` this is also the "wait until the new deploy is ready" gate:
the check is retried until it passes or the window closes.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from readycheck.checks.http import expectations
from readycheck.checks.http.client import Reply, RequestFailed, fetch
from readycheck.checks.http.request import PayloadParams, display_location
from readycheck.checks.patterns import as_list
from readycheck.registry import check
from readycheck.results import Status, held
from readycheck.units import Duration, format_duration_ms

if TYPE_CHECKING:
    from readycheck.context import Context
    from readycheck.results import Outcome

_HEADER_WORDS = {"present": {"present": True}, "absent": {"present": False}}


class Expect(BaseModel):
    """What the response must be. Every unmet expectation is one line of evidence."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    status: int | list[int] = Field(200, description="Status code, or a list of accepted ones.")
    json_paths: dict[str, Any] = Field(
        default_factory=dict,
        alias="json",
        description="Dotted path (checks.database, items.0.id) to an expected value, or to "
        "an operator map: {gte: 1}, {in: [a, b]}, {matches: '^v2'}, {present: true}, eq, ne, "
        "gt, lt, lte, not_in, contains, type.",
    )
    body_contains: str | list[str] | None = Field(
        None, description="Text (or texts) the body must contain."
    )
    headers: dict[str, Any] = Field(
        default_factory=dict,
        description="Response header name to its exact value, to `present` or `absent`, or "
        "to an operator map such as {matches: '^max-age='}.",
    )
    max_latency: Duration | None = Field(None, description="Longest time to the end of the body.")

    @field_validator("status")
    @classmethod
    def _status_codes(cls, value: int | list[int]) -> int | list[int]:
        codes = [value] if isinstance(value, int) else value
        if not codes:
            raise ValueError("give at least one status code")
        for code in codes:
            if not 100 <= code <= 599:
                raise ValueError(f"{code} is not an HTTP status code (100-599)")
        return value

    @field_validator("json_paths")
    @classmethod
    def _json_expectations(cls, value: dict[str, Any]) -> dict[str, Any]:
        expectations.validate_map(value)
        return value

    @field_validator("headers")
    @classmethod
    def _header_expectations(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, expected in value.items():
            if isinstance(expected, str | dict):
                expectations.validate_map({name: expected})
            else:
                raise ValueError(f"{name}: expected a text, present, absent or an operator map")
        return value

    def __str__(self) -> str:
        # How `readycheck explain` shows the default: in the profile's own notation.
        return f"{{status: {self.status}}}"


class EndpointParams(PayloadParams):
    expect: Expect = Field(
        default_factory=Expect,
        description="What the response must be (status 200 unless said otherwise).",
    )


@check("http.endpoint", params=EndpointParams, category="http")
async def endpoint(p: EndpointParams, ctx: Context) -> Outcome:
    """Request a URL; pass on the expected status, JSON fields, body, headers and latency."""
    content, implied = p.payload()
    try:
        reply = await fetch(p, ctx, headers=implied, content=content)
    except RequestFailed as failure:
        return failure.outcome

    problems, facts = judge(p.expect, reply)
    outcome = expectations.verdict(
        reply.label,
        problems,
        passed=f"{reply.status_line} in {format_duration_ms(reply.elapsed_ms)}",
        evidence=[*problems, reply.describe(), *facts],
        metrics={
            "status_code": reply.status,
            "latency_ms": round(reply.elapsed_ms, 1),
            "body_bytes": len(reply.body),
            "redirects": len(reply.redirects),
        },
        remediation="The service answered, but not as expected: see the evidence, then its "
        "logs and dependencies.",
    )
    if outcome.status is Status.FAIL:
        final, wait = reply.waiting()
        outcome = dataclasses.replace(outcome, final=final, retry_after=wait)
    return outcome


def judge(expect: Expect, reply: Reply) -> tuple[list[str], list[str]]:
    """(unmet expectations, facts worth showing when they are met)."""
    problems: list[str] = []
    facts: list[str] = []
    status = reply.unexpected_status(expect.status)
    if status is not None:
        problems.append(status)
        location = reply.headers.get("location")
        if location and 300 <= reply.status < 400:
            facts.append(f"Location: {display_location(location)}")
    if expect.json_paths:
        is_json, document = reply.json()
        if not is_json:
            kind = reply.content_type or "no Content-Type"
            problems.append(f"the body is not JSON ({kind}): {reply.snippet() or '(empty)'}")
        else:
            for path, expected in expect.json_paths.items():
                found = expectations.lookup(document, path)
                unmet = expectations.unmet(path, expected, found)
                problems.extend(unmet)
                if not unmet and found is not expectations.MISSING:
                    facts.append(held(f"{path} = {expectations.show(found)}"))
    body = reply.text if expect.body_contains else ""
    for text in as_list(expect.body_contains):
        if text not in body:
            problems.append(f"the body does not contain {text!r}")
    for name, expected in expect.headers.items():
        rule = _HEADER_WORDS.get(expected, expected) if isinstance(expected, str) else expected
        found = reply.headers.get(name, expectations.MISSING)
        problems.extend(expectations.unmet(f"header {name}", rule, found))
    if expect.max_latency is not None and reply.elapsed_ms > expect.max_latency.milliseconds:
        problems.append(
            f"took {format_duration_ms(reply.elapsed_ms)}, more than max_latency "
            f"{expect.max_latency}"
        )
    return problems, facts
