"""http.error_contract: a request that must fail fails the agreed way: an error status,
a JSON body with the agreed fields (an error id to quote to support, a machine-readable
code), and no stack trace."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from readycheck.checks import patterns
from readycheck.checks.http import expectations
from readycheck.checks.http.client import Reply, RequestFailed, fetch
from readycheck.checks.http.request import PayloadParams
from readycheck.registry import check
from readycheck.results import held

if TYPE_CHECKING:
    from readycheck.context import Context
    from readycheck.results import Outcome

BUILTIN_PATTERNS = {
    "uuid": r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
}
# Python's traceback header, and a Java or .NET stack frame.
# Matched with the profile's engine (linear time): the body is the target's.
_STACK_TRACE = (
    r"Traceback \(most recent call last\)|^\s+at [\w.$<>]+\(.*\)\s*$|^\s+at [\w.]+\.\w+\(.*\) in "
)


class ErrorContractParams(PayloadParams):
    expect_status: int | list[int] | None = Field(
        None, description="The error status (or list) expected (default: any 4xx or 5xx)."
    )
    required_fields: list[str] = Field(
        default_factory=list,
        description="Dotted paths the JSON error body must have, e.g. [error_id, error_code].",
    )
    field_patterns: dict[str, str] = Field(
        default_factory=dict,
        description="Dotted path to a regex its value must match, or to a built-in pattern: "
        + ", ".join(BUILTIN_PATTERNS)
        + " (e.g. {error_code: '^FIRE-', error_id: uuid}).",
    )

    @field_validator("expect_status")
    @classmethod
    def _error_codes(cls, value: int | list[int] | None) -> int | list[int] | None:
        for code in [value] if isinstance(value, int) else value or []:
            if not 100 <= code <= 599:
                raise ValueError(f"{code} is not an HTTP status code (100-599)")
        return value

    @field_validator("required_fields")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        for path in value:
            expectations.split_path(path)
        return value

    @field_validator("field_patterns")
    @classmethod
    def _patterns(cls, value: dict[str, str]) -> dict[str, str]:
        for path, pattern in value.items():
            expectations.split_path(path)
            if pattern in BUILTIN_PATTERNS:
                continue
            try:
                patterns.validate_pattern(pattern)
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from None
        return value


@check("http.error_contract", params=ErrorContractParams, category="http")
async def error_contract(p: ErrorContractParams, ctx: Context) -> Outcome:
    """Expect a failing request to answer with a JSON error carrying the agreed fields."""
    content, implied = p.payload()
    try:
        reply = await fetch(p, ctx, headers=implied, content=content)
    except RequestFailed as failure:
        return failure.outcome

    problems, facts = _judge(p, reply)
    return expectations.verdict(
        reply.label,
        problems,
        passed=f"{reply.status_line} with the agreed error body",
        evidence=[*problems, *facts, reply.describe()],
        metrics={"status_code": reply.status, "problems": len(problems)},
        remediation="Route every error through the service's error handler, so that it "
        "answers JSON with the agreed fields and never a stack trace.",
    )


def _judge(p: ErrorContractParams, reply: Reply) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    facts: list[str] = []
    if p.expect_status is not None:
        status = reply.unexpected_status(p.expect_status)
        if status is not None:
            problems.append(status)
    elif reply.status < 400:
        problems.append(f"status {reply.status_line}, expected an error (4xx or 5xx)")

    text = reply.text
    line = patterns.first_match_line(_STACK_TRACE, text)
    if line is not None:
        problems.append(f"the body shows a stack trace (line {line})")

    is_json, document = reply.json()
    if not is_json:
        kind = reply.content_type or "no Content-Type"
        # A trace is not quoted: what it shows (paths, hosts, queries) is the leak.
        quoted = "" if line is not None else f": {reply.snippet() or '(empty)'}"
        problems.append(f"the error body is not JSON ({kind}){quoted}")
        return problems, facts
    if not isinstance(document, dict):
        problems.append(f"the error body is JSON but not an object: {reply.snippet()}")
        return problems, facts

    paths = list(dict.fromkeys([*p.required_fields, *p.field_patterns]))
    for path in paths:
        found = expectations.lookup(document, path)
        if found is expectations.MISSING:
            problems.append(f"{path}: missing")
            continue
        name = p.field_patterns.get(path)
        if name is None:
            facts.append(held(f"{path} = {expectations.show(found)}"))
            continue
        pattern = BUILTIN_PATTERNS.get(name, name)
        label = name if name in BUILTIN_PATTERNS else f"'{name}'"  # as written, not repr()
        if not isinstance(found, str):
            problems.append(
                f"{path}: expected a string matching {label}, got {expectations.show(found)}"
            )
        elif not patterns.matches(pattern, found):
            problems.append(f"{path}: {expectations.show(found)} does not match {label}")
        else:
            facts.append(held(f"{path} = {expectations.show(found)} (matches {label})"))
    return problems, facts
