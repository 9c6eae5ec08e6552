"""http.metrics: the service exposes Prometheus metrics, in a format Prometheus parses,
with the families (and labels) its dashboards and alerts rely on.

The body is parsed with prometheus_client's own parser (the text exposition format, or
OpenMetrics when the server answers with it), not by hand.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from readycheck.checks.http import expectations
from readycheck.checks.http.client import RequestFailed, fetch
from readycheck.checks.http.request import RequestParams
from readycheck.registry import check
from readycheck.results import Outcome, held

if TYPE_CHECKING:
    from readycheck.context import Context

# Ask for the classic text format; a server may still answer OpenMetrics, which we parse.
_ACCEPT = "text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.5,*/*;q=0.1"
_OPENMETRICS = "application/openmetrics-text"


class MetricsParams(RequestParams):
    require: list[str] = Field(
        default_factory=list,
        description="Metric families that must be exposed (a counter by its name with or "
        "without _total).",
    )
    labels: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Family name to the labels its samples must carry, e.g. "
        "{http_requests_total: [method, code]}; such a family is required too.",
    )

    @field_validator("require")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name.strip():
                raise ValueError("a metric family name is empty")
        return value


@dataclass(frozen=True)
class Family:
    name: str
    kind: str
    samples: int
    labels: frozenset[str]


@check("http.metrics", params=MetricsParams, category="observability")
async def metrics(p: MetricsParams, ctx: Context) -> Outcome:
    """Parse the Prometheus metrics endpoint and look for the required families."""
    import asyncio

    accept = {} if any(name.lower() == "accept" for name in p.headers) else {"Accept": _ACCEPT}
    try:
        reply = await fetch(p, ctx, headers=accept)
    except RequestFailed as failure:
        return failure.outcome
    shown = reply.label
    if not 200 <= reply.status < 300:
        return Outcome.failed(
            f"{shown}: status {reply.status_line}, expected 200 with metrics",
            evidence=[reply.describe()],
            metrics={"status_code": reply.status},
            remediation="Expose the metrics endpoint (e.g. prometheus_client's "
            "make_asgi_app) at this URL.",
        )
    openmetrics = reply.content_type == _OPENMETRICS
    try:
        families = await asyncio.to_thread(_parse, reply.text, openmetrics)
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        # The parser reports malformed input with several exception types.
        message = ctx.redactor.redact(" ".join(str(exc).split()))[:120]
        return Outcome.failed(
            f"{shown}: the body is not the Prometheus exposition format",
            evidence=[f"parser: {message}", f"body starts: {reply.snippet()}", reply.describe()],
            remediation="Serve the output of prometheus_client.generate_latest() (or another "
            "exposition library) at this URL.",
        )

    counts: dict[str, float] = {
        "families": len(families),
        "samples": sum(family.samples for family in families),
    }
    fmt = "OpenMetrics" if openmetrics else "text format"
    evidence = [f"{counts['families']:.0f} families, {counts['samples']:.0f} samples ({fmt})"]
    if not families:
        return Outcome.failed(
            f"{shown}: no metrics exposed (empty body)",
            evidence=[*evidence, reply.describe()],
            metrics=counts,
        )

    index = _index(families)
    problems: list[str] = []
    wanted = list(dict.fromkeys([*p.require, *p.labels]))
    for name in wanted:
        family = index.get(name)
        if family is None:
            close = difflib.get_close_matches(name, list(index), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"missing metric family {name}{hint}")
            continue
        lacking = [label for label in p.labels.get(name, []) if label not in family.labels]
        has = ", ".join(sorted(family.labels)) or "no labels"
        if lacking:
            problems.append(f"{name} lacks label(s) {', '.join(lacking)} (has: {has})")
        else:
            evidence.append(held(f"{name}: {family.kind}, {family.samples} samples, labels {has}"))

    evidence.append(reply.describe())
    return expectations.verdict(
        shown,
        problems,
        passed=f"{counts['families']:.0f} metric families, {counts['samples']:.0f} samples",
        evidence=[*problems, *evidence],
        metrics=counts,
        remediation="Register the missing metrics in the service (and its scrape config).",
    )


def _parse(text: str, openmetrics: bool) -> list[Family]:
    from prometheus_client import parser
    from prometheus_client.openmetrics import parser as openmetrics_parser

    parse = (
        openmetrics_parser.text_string_to_metric_families
        if openmetrics
        else parser.text_string_to_metric_families
    )
    return [
        Family(
            name=family.name,
            kind=family.type,
            samples=len(family.samples),
            labels=frozenset(label for sample in family.samples for label in sample.labels),
        )
        for family in parse(text)
    ]


def _index(families: list[Family]) -> dict[str, Family]:
    """Every name a family answers to: its own, and a counter's with _total."""
    index: dict[str, Family] = {}
    for family in families:
        index.setdefault(family.name, family)
        if family.kind == "counter":
            index.setdefault(f"{family.name}_total", family)
    return index
