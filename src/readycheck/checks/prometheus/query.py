"""prometheus.query: every series a PromQL query returns is within its threshold, now or
for the last N."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from readycheck.checks.http.client import RequestFailed, budget, one_line
from readycheck.checks.prometheus.api import (
    Answer,
    PrometheusParams,
    ask,
    timeout_param,
    warning_lines,
)
from readycheck.registry import check
from readycheck.results import Outcome, broken, held, soft
from readycheck.units import Duration

if TYPE_CHECKING:
    from readycheck.context import Context

# The notation of postgres.query's `value`, `=` included.
Comparator = Literal["<", "<=", ">", ">=", "=", "==", "!="]
Threshold = dict[Comparator, Annotated[float, Field(allow_inf_nan=False)]]
_HOLDS = {
    "<": lambda value, bound: value < bound,
    "<=": lambda value, bound: value <= bound,
    ">": lambda value, bound: value > bound,
    ">=": lambda value, bound: value >= bound,
    "=": lambda value, bound: value == bound,
    "==": lambda value, bound: value == bound,
    "!=": lambda value, bound: value != bound,
}
# Prometheus refuses a range query of more points per series than this.
MAX_POINTS = 11_000
_STEPS_BY_DEFAULT = 30
_QUERY_WIDTH = 160
_LABELS_WIDTH = 160


class QueryParams(PrometheusParams):
    query: str = Field(
        description="A PromQL expression returning an instant vector or a scalar, e.g. "
        'sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m])).'
    )
    expect: Threshold = Field(
        description='What every value must satisfy, e.g. {"<": 0.01} or {">=": 1, "<=": 10} '
        "(all must hold); operators <, <=, >, >=, = (==), !=. A value that breaks it FAILs.",
    )
    warn: Threshold | None = Field(
        None,
        description='A stricter threshold, e.g. {"<": 0.005}: a value within `expect` but '
        "not within this WARNs.",
    )
    for_: Duration | None = Field(
        None,
        alias="for",
        description="Held for the last N (e.g. 10m): a range query over that window, and "
        "every point of every series must hold, not only the latest.",
    )
    step: Duration | None = Field(
        None,
        description=f"With `for`: the time between points (default: a {_STEPS_BY_DEFAULT}th "
        f"of the window, at least 1s; at most {MAX_POINTS:,} points).",
    )
    on_empty: Literal["fail", "warn", "pass"] = Field(
        "fail",
        description="What a query returning no series means (a typo in a metric name "
        "returns nothing, and must not pass); with `for`, also what a step without data "
        "in a series means.",
    )
    evidence_series: int = Field(
        10,
        ge=0,
        le=100,
        description="How many series to show as evidence (those breaking the threshold "
        "first), each with its labels and value.",
    )

    @field_validator("query")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the query is empty")
        return value

    @field_validator("expect", "warn")
    @classmethod
    def _a_comparison(cls, value: Threshold | None) -> Threshold | None:
        if value is not None and not value:
            raise ValueError('give at least one comparison, e.g. {"<": 0.01}')
        return value

    @model_validator(mode="after")
    def _window(self) -> QueryParams:
        if self.step is not None and self.for_ is None:
            raise ValueError("step is only used with for")
        if self.for_ is not None:
            if self.for_.seconds <= 0:
                raise ValueError("for must be longer than 0s")
            points = self.for_.seconds / self.resolution + 1
            if points > MAX_POINTS:
                raise ValueError(
                    f"for {self.for_} at step {Duration(self.resolution)} is {points:,.0f} "
                    f"points per series; Prometheus answers at most {MAX_POINTS:,}: raise step"
                )
        return self

    @property
    def resolution(self) -> float:
        """Seconds between the points of the range query."""
        if self.step is not None:
            return max(self.step.seconds, 0.001)
        assert self.for_ is not None
        return max(1.0, self.for_.seconds / _STEPS_BY_DEFAULT)


@dataclass(frozen=True)
class Series:
    """One series and how its values compared with the thresholds."""

    name: str
    values: tuple[tuple[float, float], ...]
    """(time, value) points: one for an instant query, the window's for a range query."""
    broken: int
    soft: int
    missing: int
    """Steps of the window without a point (range queries only)."""

    @property
    def latest(self) -> float:
        return self.values[-1][1]

    @property
    def rank(self) -> tuple[int, int, int]:
        return (-self.broken, -self.soft, -self.missing)


@check("prometheus.query", params=QueryParams, category="observability")
async def query(p: QueryParams, ctx: Context) -> Outcome:
    """Run a PromQL query and compare every series it returns with a threshold.

    Without `for`, one instant query (`/api/v1/query`) at the time the check runs. With
    `for: 10m`, a range query (`/api/v1/query_range`) over the last ten minutes at `step`,
    and every point of every series must hold, as Prometheus' own `for:` asks of an alert.

    Each series is shown with its labels and value, those breaking the threshold first (at
    most `evidence_series`). A value of NaN (0/0: a ratio over a window without traffic)
    compares false with every threshold, so it breaks one: guard such a query (`... or
    vector(0)`) if no traffic is fine. `warn` is a stricter threshold: within `expect` but
    not within `warn` is a WARN.
    """
    limit = budget(p.timeout, ctx)
    if p.for_ is None:
        path, params = "/api/v1/query", {"query": p.query}
        start = end = 0.0
    else:
        end = time.time()
        start = end - p.for_.seconds
        path = "/api/v1/query_range"
        params = {
            "query": p.query,
            "start": f"{start:.3f}",
            "end": f"{end:.3f}",
            "step": f"{p.resolution:g}",
        }
    try:
        answer = await ask(p, ctx, path, {**params, "timeout": timeout_param(limit)})
    except RequestFailed as failure:
        return failure.outcome
    kind, rows = _result(answer.data)
    if kind in ("matrix", "string") and p.for_ is None:
        return Outcome.errored(
            f"the query returns a {_KINDS[kind]}, not a value per series",
            evidence=[f"query: {_shown_query(p)}"],
            remediation="Give an expression returning an instant vector or a scalar (e.g. "
            "max_over_time(x[10m]) instead of x[10m]).",
            final="the same query returns the same kind",
        )
    expected_steps = int((end - start) / p.resolution + 1e-9) + 1 if p.for_ else 1
    series = [_judge(p, name, points, expected_steps) for name, points in rows]
    return _verdict(p, answer, series, expected_steps)


_KINDS = {"matrix": "range vector", "string": "string", "vector": "vector", "scalar": "scalar"}


def _result(data: Any) -> tuple[str, list[tuple[str, list[tuple[float, float]]]]]:
    """The result's type, and each series: its name with labels, and its points."""
    if not isinstance(data, dict):
        return "", []
    kind = str(data.get("resultType", ""))
    result = data.get("result")
    if kind == "scalar" and isinstance(result, list):
        return kind, [("scalar", [_point(result)])]
    if kind == "string" or not isinstance(result, list):
        return kind, []
    rows = []
    for item in result:
        if not isinstance(item, dict):
            continue
        name = series_name(item.get("metric") or {})
        if "values" in item:
            rows.append((name, [_point(pair) for pair in item["values"]]))
        elif "value" in item:
            rows.append((name, [_point(item["value"])]))
    return kind, rows


def _point(pair: Any) -> tuple[float, float]:
    """A `[time, "value"]` pair; Prometheus writes values as text (NaN, +Inf too)."""
    when, value = pair
    return float(when), float(value)


def series_name(labels: Mapping[str, Any]) -> str:
    """A series as PromQL writes it: `name{label="value", ...}`, shortened."""
    name = str(labels.get("__name__", ""))
    rest = ", ".join(
        f'{key}="{value}"' for key, value in sorted(labels.items()) if key != "__name__"
    )
    text = f"{name}{{{rest}}}" if rest or not name else name
    return one_line(text, _LABELS_WIDTH)


def _holds(value: float, threshold: Mapping[Comparator, float]) -> bool:
    return all(_HOLDS[op](value, bound) for op, bound in threshold.items())


def _judge(
    p: QueryParams, name: str, points: list[tuple[float, float]], expected_steps: int
) -> Series:
    breaking = sum(1 for _, value in points if not _holds(value, p.expect))
    warned = 0
    if p.warn is not None:
        warned = sum(
            1 for _, value in points if _holds(value, p.expect) and not _holds(value, p.warn)
        )
    missing = max(0, expected_steps - len(points)) if p.for_ else 0
    return Series(name, tuple(points), breaking, warned, missing)


def _threshold(threshold: Mapping[Comparator, float]) -> str:
    return " and ".join(f"{op} {_number(bound)}" for op, bound in threshold.items())


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.6g}"


def _shown_query(p: QueryParams) -> str:
    return one_line(p.query, _QUERY_WIDTH)


def _verdict(p: QueryParams, answer: Answer, series: list[Series], steps: int) -> Outcome:
    wanted = _threshold(p.expect)
    window = f" for the last {p.for_}" if p.for_ else ""
    evidence = [f"query: {_shown_query(p)}"]
    if p.for_:
        step = Duration(p.resolution)
        evidence.append(f"range: the last {p.for_} at step {step} ({steps} steps)")
    evidence += warning_lines(answer)
    finite = [v for s in series for _, v in s.values if math.isfinite(v)]
    metrics: dict[str, float] = {
        "series": len(series),
        "broken": sum(1 for s in series if s.broken),
        "warned": sum(1 for s in series if s.soft and not s.broken),
    }
    if finite:
        metrics |= {"min": min(finite), "max": max(finite)}
    if not series:
        return _empty(p, answer, evidence, metrics)

    ordered = sorted(series, key=lambda s: s.rank)
    evidence += [_line(p, s, steps) for s in ordered[: p.evidence_series]]
    if len(ordered) > p.evidence_series:
        evidence.append(f"... and {len(ordered) - p.evidence_series} more series")
    evidence.append(answer.reply.describe())
    breaking = [s for s in ordered if s.broken]
    gaps = [s for s in ordered if s.missing and not s.broken]
    warned = [s for s in ordered if s.soft and not s.broken]
    of = f"{len(series)} series"
    if breaking:
        first = breaking[0]
        shown = f"{first.name} = {_number(first.latest)}" if not p.for_ else first.name
        return Outcome.failed(
            f"{len(breaking)} of {of} {'break' if len(breaking) > 1 else 'breaks'} {wanted}"
            f"{window}: {shown}",
            evidence=evidence,
            metrics=metrics,
            remediation="The service is outside the threshold its monitoring sets: see the "
            "series in the evidence, and its dashboards.",
        )
    if gaps and p.on_empty != "pass":
        return _ON_EMPTY[p.on_empty](
            f"{len(gaps)} of {of} without data for part of the last {p.for_}: {gaps[0].name}",
            evidence=evidence,
            metrics=metrics,
            remediation=_GAP_REMEDIATION,
        )
    if warned:
        return Outcome.warned(
            f"{len(warned)} of {of} within {wanted} but not {_threshold(p.warn or {})}{window}: "
            f"{warned[0].name}",
            evidence=evidence,
            metrics=metrics,
        )
    if answer.warnings:
        return Outcome.warned(
            f"{of} within {wanted}{window}, but Prometheus warns: {answer.warnings[0]}",
            evidence=evidence,
            metrics=metrics,
            remediation="The answer may be incomplete: see Prometheus' warning.",
        )
    peak = f" (max {_number(max(finite))})" if finite and len(series) > 1 else ""
    if len(series) == 1 and not p.for_:
        return Outcome.passed(
            f"{_number(series[0].latest)}, within {wanted}", evidence=evidence, metrics=metrics
        )
    return Outcome.passed(
        f"{of}, all within {wanted}{window}{peak}"
        if len(series) > 1
        else f"{of} within {wanted}{window}",
        evidence=evidence,
        metrics=metrics,
    )


_ON_EMPTY = {"fail": Outcome.failed, "warn": Outcome.warned, "pass": Outcome.passed}
_GAP_REMEDIATION = (
    "A series without data for part of the window has not been seen to hold for all of it: "
    "check that the target was scraped throughout, or set on_empty."
)


def _empty(
    p: QueryParams, answer: Answer, evidence: list[str], metrics: dict[str, float]
) -> Outcome:
    window = f" over the last {p.for_}" if p.for_ else ""
    summary = f"the query returned no series{window}"
    evidence.append(answer.reply.describe())
    if p.on_empty == "pass":
        return Outcome.passed(f"{summary} (on_empty: pass)", evidence=evidence, metrics=metrics)
    if answer.warnings:
        summary += f"; Prometheus warns: {answer.warnings[0]}"
    return _ON_EMPTY[p.on_empty](
        summary,
        evidence=evidence,
        metrics=metrics,
        remediation="Check the metric name and labels in Prometheus' expression browser (a "
        "typo returns nothing), and that its targets are scraped; set on_empty if no series "
        "is a good sign.",
    )


def _line(p: QueryParams, series: Series, steps: int) -> str:
    """One series as evidence, marked: `name{labels} = 0.91, expected < 0.8`."""
    return _marked(p, series)(_text(p, series, steps))


def _marked(p: QueryParams, series: Series) -> Callable[[str], str]:
    if series.broken or (series.missing and p.on_empty == "fail"):
        return broken
    if series.soft or (series.missing and p.on_empty == "warn"):
        return soft
    return held


def _text(p: QueryParams, series: Series, steps: int) -> str:
    wanted = _threshold(p.expect)
    if not p.for_:
        value = series.latest
        if series.broken:
            note = f"expected {wanted}"
        elif series.soft:
            note = f"within {wanted}, not {_threshold(p.warn or {})}"
        else:
            note = f"within {wanted}"
        nan = " (NaN compares false: 0/0, no traffic?)" if math.isnan(value) else ""
        return f"{series.name} = {_number(value)}, {note}{nan}"
    values = [v for _, v in series.values]
    span = f"{_number(min(values))}..{_number(max(values))}" if values else "no data"
    parts = [f"{series.name}: now {_number(series.latest)}, range {span}"]
    if series.broken:
        first = next(t for t, v in series.values if not _holds(v, p.expect))
        parts.append(
            f"breaks {wanted} at {series.broken} of {steps} steps (first at {_clock(first)})"
        )
    elif series.soft:
        parts.append(f"not {_threshold(p.warn or {})} at {series.soft} of {steps} steps")
    else:
        parts.append(f"within {wanted} at every point")
    if series.missing:
        parts.append(f"no data at {series.missing} of {steps} steps")
    return "; ".join(parts)


def _clock(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%H:%M:%S UTC")
