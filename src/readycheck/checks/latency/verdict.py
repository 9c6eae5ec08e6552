"""From what the probe measured to a verdict: trust first, then errors and budgets.

The order matters. A measurement the probe cannot vouch for (it fell behind its schedule,
or its own overhead is a sizeable part of the tightest budget) is ERROR, never PASS and
never a FAIL that blames the server. A run cut short by the check's timeout is judged on
what it measured only if that already fails; a partial run never passes.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from readycheck.checks.latency import stats
from readycheck.checks.latency.calibrate import WAIT_S
from readycheck.checks.latency.load import LATE_S, LoadShape, Recorder
from readycheck.results import Outcome
from readycheck.units import Duration, format_duration_ms

if TYPE_CHECKING:
    from readycheck.checks.latency import LatencyParams

# Trust: the probe keeps to its schedule and its overhead is small beside the budget.
MIN_ACHIEVED_SHARE = 0.95
MAX_SEND_LAG_P99_MS = 2.0
MAX_OVERHEAD_SHARE = 0.05
# Timeouts still count against the server when the timing is untrusted if the probe's send
# lag (p99) stayed under this share of request_timeout.
TIMEOUT_TRUST_SHARE = 0.1

_UNTRUSTED_REMEDIATION = (
    "Run readycheck where it has a CPU to itself (not beside the service under test or a "
    "busy CI job), lower `rate`, or loosen the budget the overhead is compared with. The "
    "figures above were measured, but they are not the server's alone."
)
_SLOW_REMEDIATION = (
    "The open model counts the time a request waited behind slower ones, as a user "
    "arriving then would; find the cause (slow queries, pauses, saturation: the "
    "histogram shows whether it is a tail or a shift) before raising the budget."
)
_ERRORS_REMEDIATION = (
    "Find why requests fail (the counts by kind above): the service's logs for answers "
    "other than 2xx/3xx, its capacity for timeouts, the network for connection errors."
)


def too_long(calibration_s: float, sending_s: float, answers_s: float, remaining: float) -> Outcome:
    """ERROR before sending anything: the run cannot fit in the check's timeout."""
    needed = calibration_s + sending_s + answers_s
    parts = [f"sending {sending_s:.1f} s", f"last answers {answers_s:.1f} s"]
    if calibration_s:
        parts.insert(0, f"calibration {calibration_s:.1f} s")
    suggestion = Duration(float(math.ceil((needed + 1.5) * 1.2)))
    return Outcome.errored(
        f"the run needs about {needed:.1f} s ({', '.join(parts)}) but the check's timeout "
        f"leaves {remaining:.1f} s; nothing was sent",
        remediation=f"Give this check `timeout: {suggestion}`"
        + (" (or `calibrate: false` to skip the calibration)" if calibration_s else "")
        + ", or send fewer requests.",
    )


def judge(
    p: LatencyParams,
    shape: LoadShape,
    run: Recorder | None,
    calibration: Recorder | None,
    *,
    loop_name: str,
) -> Outcome:
    overhead = _overhead(calibration)
    if run is None:
        return Outcome.errored(
            "measurement not trustworthy on this machine: calibration against the loopback "
            "endpoint did not finish in time; nothing was sent to the service",
            remediation=_UNTRUSTED_REMEDIATION,
        )
    summary = stats.summarize(run.latencies_ms)
    lags = stats.summarize(run.lags_ms)
    lag_p99 = lags.percentiles["p99"] if lags else 0.0
    achieved = run.achieved_rps()
    thresholds = p.thresholds
    metrics = _metrics(run, summary, lag_p99, achieved, overhead, p)
    evidence = [f"target: {p.method} {p.url}", _model_line(p, shape, run, achieved)]
    if summary is not None:
        evidence.append(_percentile_line(summary))
    evidence.append(_errors_line(run, p))
    if shape.model == "open":
        evidence.append(
            f"sent late: {run.late} of {run.sent} requests started more than "
            f"{LATE_S * 1000:g} ms after their scheduled time (send lag p99 {lag_p99:.2f} ms)"
        )
    evidence.append(_overhead_line(p, calibration, overhead, loop_name))
    data = {"latency": _chart_data(p, run, summary)}
    details: dict[str, Any] = {"evidence": evidence, "metrics": metrics, "data": data}

    if run.requests == 0:
        return Outcome.errored("no request was measured before the check's time ran out", **details)

    # 1. Can the timing be trusted?
    untrusted: list[str] = []
    rate = shape.rate if shape.model == "open" else None
    if rate is not None and achieved is not None and achieved < MIN_ACHIEVED_SHARE * rate:
        untrusted.append(
            f"it started {achieved:.1f} requests/s of the {rate:g}/s asked "
            f"(under {MIN_ACHIEVED_SHARE:.0%})"
        )
    if lag_p99 > MAX_SEND_LAG_P99_MS:
        untrusted.append(
            f"its requests started up to {lag_p99:.1f} ms late (send lag p99; "
            f"{MAX_SEND_LAG_P99_MS:g} ms at most is trusted)"
        )
    if p.calibrate and overhead is None:
        untrusted.append("calibration against the loopback endpoint measured nothing")
    if overhead is not None and thresholds:
        name, tightest = min(thresholds.items(), key=lambda item: item[1].seconds)
        if overhead > MAX_OVERHEAD_SHARE * tightest.milliseconds:
            untrusted.append(
                f"its own overhead ({overhead:.2f} ms at p95) is over "
                f"{MAX_OVERHEAD_SHARE:.0%} of the tightest budget ({name} {tightest})"
            )
    # 2. Errors are counted, not timed: a refused connection or a 500 is the server's
    # whatever the probe's precision. So is a timeout, unless the probe was late by a sizeable
    # part of the timeout itself (then it may have caused it).
    error_rate = run.errors / run.requests
    error_failure = (
        f"error rate {error_rate:.1%} over {p.max_error_rate:.1%} ({run.errors} of {run.requests})"
        if error_rate > p.max_error_rate
        else None
    )
    scope = _scope(shape, run)
    short = run.planned is not None and run.requests < run.planned
    if short and not run.stopped_early and shape.duration_s is not None:
        evidence.append(
            f"sent {run.requests} of {run.planned} requests: the closed run reached its "
            f"{shape.duration_s:g} s limit"
        )
    if run.stopped_early:
        evidence.append(
            f"stopped at the check's timeout after {run.requests} of "
            f"{run.planned if run.planned is not None else '?'} requests; "
            f"{run.cut_short} unanswered then were counted as timeouts"
        )
    if untrusted:
        standing = run.errors
        if lag_p99 >= TIMEOUT_TRUST_SHARE * p.request_timeout.milliseconds:
            standing -= run.timeouts + run.cut_short
        if standing / run.requests <= p.max_error_rate:
            return Outcome.errored(
                f"measurement not trustworthy on this machine: {'; '.join(untrusted)}",
                remediation=_UNTRUSTED_REMEDIATION,
                **details,
            )
        evidence.append(f"latency figures not trustworthy: {'; '.join(untrusted)}")
        return Outcome.failed(
            f"{error_failure} ({scope})", remediation=_ERRORS_REMEDIATION, **details
        )

    # 3. Budgets.
    failures = [error_failure] if error_failure else []
    warnings: list[str] = []
    checks: list[str] = []
    if summary is not None:
        for name, budget in thresholds.items():
            value = summary.percentiles[name]
            shown = f"{name} {_ms(value)}"
            if value > budget.milliseconds:
                failures.append(f"{shown} over its {budget} budget")
                checks.append(f"{shown} > {budget}")
            elif value >= p.warn_at * budget.milliseconds and p.warn_at < 1:
                warnings.append(
                    f"{shown} is {value / budget.milliseconds:.0%} of its {budget} budget "
                    f"(warn at {p.warn_at:.0%})"
                )
                checks.append(f"{shown} <= {budget} (near)")
            else:
                checks.append(f"{shown} <= {budget}")
    elif thresholds:
        failures.append("no request was answered, so no latency could be measured")
    if checks:
        evidence.append(f"budgets: {', '.join(checks)}")
    if run.stopped_early and not failures:
        return Outcome.errored(
            f"ran out of time after {run.requests} of {run.planned} requests; a partial "
            "run cannot pass",
            remediation="Raise the check's timeout, or send fewer requests.",
            **details,
        )
    if failures:
        return Outcome.failed(
            f"{'; '.join(failures)} ({scope})",
            remediation=_ERRORS_REMEDIATION if failures == [error_failure] else _SLOW_REMEDIATION,
            **details,
        )
    if warnings:
        return Outcome.warned(f"{'; '.join(warnings)} ({scope})", **details)
    headline = _headline(summary, thresholds)
    return Outcome.passed(f"{headline}, {run.errors} errors ({scope})", **details)


def _overhead(calibration: Recorder | None) -> float | None:
    if calibration is None or not calibration.overheads_ms:
        return None
    return stats.nearest_rank(sorted(calibration.overheads_ms), 95)


def _ms(value: float) -> str:
    return format_duration_ms(value)


def _scope(shape: LoadShape, run: Recorder) -> str:
    if shape.model == "open":
        return f"{run.requests} requests at {shape.rate:g}/s, open model"
    return f"{run.requests} requests, closed model at concurrency {shape.concurrency}"


def _headline(summary: stats.Summary | None, thresholds: dict[str, Duration]) -> str:
    if summary is None:
        return "no latency measured"
    name = "p95" if "p95" in thresholds or not thresholds else next(iter(thresholds))
    text = f"{name} {_ms(summary.percentiles[name])}"
    if name in thresholds:
        text += f" (budget {thresholds[name]})"
    return text


def _model_line(p: LatencyParams, shape: LoadShape, run: Recorder, achieved: float | None) -> str:
    rate = f"{achieved:.1f}/s" if achieved is not None else "n/a"
    warmup = f" after {shape.warmup} warmup requests" if shape.warmup else ""
    if shape.model == "open":
        return (
            f"open model: {run.requests} requests scheduled at {shape.rate:g}/s (achieved "
            f"{rate}){warmup}; each latency counts from the request's scheduled time"
        )
    return (
        f"closed model, concurrency {shape.concurrency}: each worker waits for its answer "
        f"before sending again, so a stall shows in only {shape.concurrency} samples; "
        f"{run.requests} requests ({rate}){warmup}"
    )


def _percentile_line(summary: stats.Summary) -> str:
    shown = " · ".join(f"{name} {_ms(value)}" for name, value in summary.percentiles.items())
    return (
        f"{shown} · min {_ms(summary.min)} · mean {_ms(summary.mean)} "
        f"(nearest rank over {summary.count} samples)"
    )


def _errors_line(run: Recorder, p: LatencyParams) -> str:
    if not run.errors:
        return f"errors: none in {run.requests} requests"
    kinds = [f"{count} answered HTTP {code}" for code, count in sorted(run.statuses.items())]
    if run.timeouts:
        kinds.append(f"{run.timeouts} timeouts (over {p.request_timeout})")
    if run.cut_short:
        kinds.append(f"{run.cut_short} unanswered when the check's time ran out")
    for reason, count in run.connection_errors.most_common():
        kinds.append(f"{count} connection errors ({reason})")
    if run.too_large:
        kinds.append(f"{run.too_large} bodies over max_body {p.max_body}")
    return (
        f"errors: {run.errors} of {run.requests} ({run.errors / run.requests:.1%}): "
        + ", ".join(kinds)
    )


def _overhead_line(
    p: LatencyParams, calibration: Recorder | None, overhead: float | None, loop_name: str
) -> str:
    if not p.calibrate:
        return f"client overhead not calibrated (calibrate: false); event loop {loop_name}"
    if overhead is None or calibration is None:
        return f"client overhead unknown: calibration measured nothing; event loop {loop_name}"
    return (
        f"client overhead {overhead:.2f} ms at p95, above a loopback endpoint waiting "
        f"{WAIT_S * 1000:g} ms ({len(calibration.overheads_ms)} requests; event loop "
        f"{loop_name})"
    )


def _metrics(
    run: Recorder,
    summary: stats.Summary | None,
    lag_p99: float,
    achieved: float | None,
    overhead: float | None,
    p: LatencyParams,
) -> dict[str, float]:
    metrics: dict[str, float] = {
        "requests": run.requests,
        "errors": run.errors,
        "error_rate": round(run.errors / run.requests, 6) if run.requests else 0.0,
    }
    if p.model == "open":
        metrics["target_rps"] = p.target_rate
    if achieved is not None:
        metrics["achieved_rps"] = round(achieved, 3)
    if summary is not None:
        for name, value in summary.percentiles.items():
            metrics[f"{name}_ms"] = round(value, 3)
        metrics["min_ms"] = round(summary.min, 3)
        metrics["mean_ms"] = round(summary.mean, 3)
    metrics["send_lag_p99_ms"] = round(lag_p99, 3)
    if overhead is not None:
        metrics["client_overhead_ms"] = round(overhead, 3)
    return metrics


def _chart_data(p: LatencyParams, run: Recorder, summary: stats.Summary | None) -> dict[str, Any]:
    return {
        "model": p.model,
        "percentiles_ms": (
            {name: round(value, 3) for name, value in summary.percentiles.items()}
            if summary is not None
            else {}
        ),
        "thresholds_ms": {name: value.milliseconds for name, value in p.thresholds.items()},
        "histogram": stats.histogram(run.latencies_ms),
    }
