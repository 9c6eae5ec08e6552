"""http.security_headers: the headers browsers enforce, no stack disclosed, CORS closed.

By default a response must carry ``X-Content-Type-Options: nosniff``, a framing policy
(``X-Frame-Options`` DENY or SAMEORIGIN, or CSP ``frame-ancestors``), a
``Referrer-Policy`` and, on https URLs, ``Strict-Transport-Security``; it must not carry
``X-Powered-By`` (or ASP.NET's version headers) nor a version number in ``Server``.
``require`` and ``forbid`` add names; ``ignore`` drops defaults.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import Field, field_validator, model_validator

from readycheck.checks.http import expectations
from readycheck.checks.http.client import Reply, RequestFailed, fetch
from readycheck.checks.http.request import RequestParams, check_header_name, check_url
from readycheck.redact import looks_secret
from readycheck.registry import check

if TYPE_CHECKING:
    from readycheck.context import Context
    from readycheck.results import Outcome

DEFAULT_REQUIRED = (
    "X-Content-Type-Options",
    "X-Frame-Options",
    "Strict-Transport-Security",
    "Referrer-Policy",
)
DEFAULT_FORBIDDEN = ("X-Powered-By", "X-AspNet-Version", "X-AspNetMvc-Version", "Server")
_VERSION = re.compile(r"\d+\.\d+|/\s*\d")


class SecurityHeadersParams(RequestParams):
    require: list[str] = Field(
        default_factory=list,
        description="More header names that must be present (e.g. Content-Security-Policy, "
        "Permissions-Policy).",
    )
    forbid: list[str] = Field(
        default_factory=list, description="More header names that must be absent."
    )
    ignore: list[str] = Field(
        default_factory=list,
        description="Default rules to drop, by header name: "
        + ", ".join(DEFAULT_REQUIRED + DEFAULT_FORBIDDEN)
        + " (X-Frame-Options drops the framing policy, Server the version rule).",
    )
    cors_probe_origin: str | None = Field(
        None,
        description="An origin that must not be allowed (e.g. https://evil.example): sent "
        "as Origin, FAIL when echoed back or answered with * and credentials.",
    )

    @field_validator("require", "forbid")
    @classmethod
    def _header_names(cls, names: list[str]) -> list[str]:
        for name in names:
            check_header_name(name)
        return names

    @field_validator("ignore")
    @classmethod
    def _known_defaults(cls, names: list[str]) -> list[str]:
        known = {name.lower() for name in DEFAULT_REQUIRED + DEFAULT_FORBIDDEN}
        for name in names:
            if name.lower() not in known:
                raise ValueError(
                    f"{name!r} is not a default rule; ignore takes "
                    + ", ".join(DEFAULT_REQUIRED + DEFAULT_FORBIDDEN)
                )
        return names

    @field_validator("cors_probe_origin")
    @classmethod
    def _origin(cls, value: str | None) -> str | None:
        if value is None:
            return None
        origin = check_url(value, ("http", "https")).rstrip("/")
        if origin.count("/") > 2:
            raise ValueError("an origin is scheme://host[:port], with no path")
        return origin

    @model_validator(mode="after")
    def _not_both(self) -> SecurityHeadersParams:
        both = {n.lower() for n in self.require} & {n.lower() for n in self.forbid}
        if both:
            raise ValueError(f"{', '.join(sorted(both))} is both required and forbidden")
        return self

    def applies(self, rule: str) -> bool:
        return rule.lower() not in {name.lower() for name in self.ignore}


@check("http.security_headers", params=SecurityHeadersParams, category="security")
async def security_headers(p: SecurityHeadersParams, ctx: Context) -> Outcome:
    """Check the security headers browsers rely on, stack disclosure and CORS."""
    try:
        reply = await fetch(p, ctx)
        cors = None
        if p.cors_probe_origin:
            cors = await fetch(p, ctx, headers={"Origin": p.cors_probe_origin})
    except RequestFailed as failure:
        return failure.outcome

    problems, fine = _judge_headers(p, reply)
    warnings: list[str] = []
    if cors is not None and p.cors_probe_origin:
        _judge_cors(p.cors_probe_origin, cors, problems, warnings, fine)
    remediation = []
    if any(not line.startswith("CORS") for line in problems):
        remediation.append(
            "Set the missing headers in the application or the proxy in front of it, and "
            "remove the ones that disclose the stack."
        )
    if any(line.startswith("CORS") for line in [*problems, *warnings]):
        remediation.append(
            "Allow only the origins the front end is served from; never echo Origin back."
        )
    return expectations.verdict(
        reply.label,
        problems,
        warnings=warnings,
        met=fine,
        passed=f"security headers in place ({len(fine)} rules checked)",
        evidence=[*problems, *warnings, *fine, reply.describe()],
        metrics={"problems": len(problems), "warnings": len(warnings)},
        remediation=" ".join(remediation),
    )


def _judge_headers(p: SecurityHeadersParams, reply: Reply) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    fine: list[str] = []
    headers = reply.headers

    if p.applies("X-Content-Type-Options"):
        value = headers.get("x-content-type-options")
        if value is None:
            problems.append("X-Content-Type-Options missing (expected nosniff)")
        elif value.strip().lower() != "nosniff":
            problems.append(f"X-Content-Type-Options is {value!r}, expected nosniff")
        else:
            fine.append("X-Content-Type-Options: nosniff")

    if p.applies("X-Frame-Options"):
        frame = headers.get("x-frame-options")
        ancestors = _directive(headers.get("content-security-policy", ""), "frame-ancestors")
        if ancestors is not None:
            fine.append(f"Content-Security-Policy frame-ancestors {ancestors}".rstrip())
        elif frame is not None and frame.strip().upper() in ("DENY", "SAMEORIGIN"):
            fine.append(f"X-Frame-Options: {frame.strip()}")
        elif frame is not None:
            problems.append(f"X-Frame-Options is {frame!r}, expected DENY or SAMEORIGIN")
        else:
            problems.append(
                "no framing policy: neither X-Frame-Options (DENY or SAMEORIGIN) nor CSP "
                "frame-ancestors"
            )

    if p.applies("Strict-Transport-Security") and reply.url.startswith("https://"):
        hsts = headers.get("strict-transport-security")
        max_age = _max_age(hsts) if hsts is not None else None
        if hsts is None:
            problems.append("Strict-Transport-Security missing on an https URL")
        elif not max_age:
            problems.append(f"Strict-Transport-Security {hsts!r} has no positive max-age")
        else:
            fine.append(f"Strict-Transport-Security: max-age={max_age}")

    if p.applies("Referrer-Policy"):
        policy = headers.get("referrer-policy")
        if policy is None:
            problems.append("Referrer-Policy missing")
        elif "unsafe-url" in policy.lower():
            problems.append("Referrer-Policy unsafe-url sends full URLs to every site")
        else:
            fine.append(f"Referrer-Policy: {policy}")

    for name in p.require:
        value = headers.get(name)
        if value is None:
            problems.append(f"{name} missing (required)")
        else:
            fine.append(f"{name}: {_shown(name, value)}")

    defaults = {name.lower() for name in DEFAULT_FORBIDDEN}
    extra = [name for name in p.forbid if name.lower() not in defaults]
    for name in [*DEFAULT_FORBIDDEN, *extra]:
        value = headers.get(name)
        if value is None or (name in DEFAULT_FORBIDDEN and not p.applies(name)):
            continue
        if name == "Server":
            if _VERSION.search(value):
                problems.append(f"Server: {value} discloses a version")
        elif name in DEFAULT_FORBIDDEN:
            problems.append(f"{name}: {value} discloses the stack")
        else:
            problems.append(f"{name} is present ({_shown(name, value)}) but forbidden")
    return problems, fine


def _judge_cors(
    origin: str, reply: Reply, problems: list[str], warnings: list[str], fine: list[str]
) -> None:
    allowed = reply.headers.get("access-control-allow-origin", "").strip()
    credentials = reply.headers.get("access-control-allow-credentials", "").strip().lower()
    with_credentials = credentials == "true"
    if allowed.rstrip("/") == origin:
        extra = " with credentials" if with_credentials else ""
        problems.append(f"CORS allows the foreign origin {origin}{extra} (echoed back)")
    elif allowed == "*" and with_credentials:
        problems.append("CORS allows any origin (*) with credentials")
    elif allowed == "*":
        warnings.append("CORS allows any origin (Access-Control-Allow-Origin: *)")
    elif allowed:
        fine.append(f"CORS: {origin} refused (allows {allowed} only)")
    else:
        fine.append(f"CORS: {origin} refused (no Access-Control-Allow-Origin)")


def _directive(policy: str, name: str) -> str | None:
    for directive in policy.split(";"):
        key, _, value = directive.strip().partition(" ")
        if key.lower() == name:
            return value.strip()
    return None


def _max_age(hsts: str) -> int:
    for part in hsts.split(";"):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "max-age":
            digits = value.strip().strip('"')
            return int(digits) if digits.isdigit() else 0
    return 0


def _shown(name: str, value: str) -> str:
    # A response header named like a secret (Set-Cookie, X-Auth-Token) is shown by length.
    return f"{len(value)} characters" if looks_secret(name) else value
