"""http.request_id: the service keeps the request id it is given, so a request can be
followed through the logs of every service it crosses, and says whether it makes one up
for a request that came without."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from readycheck.checks.http import expectations
from readycheck.checks.http.client import RequestFailed, fetch
from readycheck.checks.http.request import RequestParams, check_header_name
from readycheck.registry import check
from readycheck.results import held

if TYPE_CHECKING:
    from readycheck.context import Context
    from readycheck.results import Outcome


class RequestIdParams(RequestParams):
    header: str = Field("X-Request-ID", description="The request id header.")
    expect_generated: bool = Field(
        False, description="Also FAIL when a request without an id gets none back."
    )

    @field_validator("header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        return check_header_name(value)


@check("http.request_id", params=RequestIdParams, category="observability")
async def request_id(p: RequestIdParams, ctx: Context) -> Outcome:
    """Send a fresh request id and expect the same one back."""
    sent = str(uuid.uuid4())
    try:
        reply = await fetch(p, ctx, headers={p.header: sent})
        bare = await fetch(p, ctx, omit_headers=[p.header])
    except RequestFailed as failure:
        return failure.outcome

    problems: list[str] = []
    evidence: list[str] = []
    echoed = reply.headers.get(p.header)
    if echoed is None:
        problems.append(f"the response carries no {p.header} (sent {sent})")
    elif echoed.strip() != sent:
        problems.append(f"{p.header} not preserved: sent {sent}, got {echoed.strip()}")
    else:
        evidence.append(held(f"{p.header} preserved: sent {sent}, got it back"))

    generated = bare.headers.get(p.header)
    if generated:
        evidence.append(
            held(f"a request without {p.header} got one generated: {generated.strip()}")
        )
    elif p.expect_generated:
        problems.append(f"a request without {p.header} got none back")
    else:
        evidence.append(f"a request without {p.header} got none back")
    evidence.append(reply.describe())
    metrics: dict[str, float] = {"preserved": int(not problems), "generated": int(bool(generated))}

    return expectations.verdict(
        reply.label,
        problems,
        passed=f"{p.header} preserved",
        evidence=[*problems, *evidence],
        metrics=metrics,
        remediation=f"Have the service (or its proxy) keep an incoming {p.header}, make one "
        "when absent, and return it on every response.",
    )
