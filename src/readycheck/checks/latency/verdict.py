"""From what the probe measured to a verdict: errors first, then budgets.

The probe's own part (how late it started requests, its calibrated overhead) never
decides against the server, nor for it: trust.py draws the rule. A figure within its
budget passes; one over it even with the probe's whole part taken off fails; between the
two, the result is ERROR, "too close to call", with both figures. Errors are counted,
not timed: a refused connection or a 500 is the server's whatever the probe's precision,
and a run of them (``max_consecutive_errors``) ends the run early and fails it.

A run cut short by the check's timeout is judged on what it measured only if that
already fails; a partial run never passes. Nor does a run in which the probe started
under 95% of the asked rate: the service had less load than the profile asked for.
``strict_trust`` adds the fixed limits of a probe that vouches for every figure it shows
(ERROR whenever its send lag or overhead is over them, whatever the figures).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from readycheck.checks.latency import stats
from readycheck.checks.latency.calibrate import WAIT_S
from readycheck.checks.latency.load import LATE_S, TIMEOUTS, LoadShape, Recorder
from readycheck.checks.latency.trust import (
    MIN_ACHIEVED_SHARE,
    BudgetCall,
    ProbePart,
    strict_doubts,
)
from readycheck.results import Mark, MarkedLine, Outcome
from readycheck.units import Duration, format_duration_ms

if TYPE_CHECKING:
    from readycheck.checks.latency import LatencyParams
    from readycheck.checks.latency.preflight import Preflight

UNDECIDED = "too close to call"
UNTRUSTED = "measurement not trustworthy on this machine"
# Timeouts count against the server unless the probe's send lag (p99) reached this share
# of request_timeout: then the probe may have caused them.
TIMEOUT_TRUST_SHARE = 0.1

_BUSY_REMEDIATION = (
    "Run readycheck where it has a CPU to itself (not beside the service under test or a "
    "busy CI job), or lower `rate`. The figures above were measured, but they are not the "
    "server's alone."
)
_UNDECIDED_REMEDIATION = (
    "The probe's own part (how late it started requests on a busy machine, and its "
    "calibrated overhead) is what decides this result: the server's figure lies between "
    "the one measured and that less the probe's part. Run readycheck where it has a CPU "
    "to itself (not beside the service under test or a busy CI job), or lower `rate`."
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
    preflight: Preflight | None = None,
) -> Outcome:
    overheads = sorted(calibration.overheads_ms) if calibration is not None else []
    overhead = stats.nearest_rank(overheads, 95) if overheads else None
    if run is None:
        return Outcome.errored(
            "calibration against the loopback endpoint did not finish in time; nothing was "
            "sent to the service",
            remediation=_BUSY_REMEDIATION,
        )
    summary = stats.summarize(run.latencies_ms)
    lags = stats.summarize(run.lags_ms)
    lag_p99 = lags.percentiles["p99"] if lags else 0.0
    part = ProbePart(
        lag_p99=lag_p99,
        lag_max=lags.max if lags else 0.0,
        overhead_p95=overhead,
        overhead_max=overheads[-1] if overheads else None,
        overhead_unknown=p.calibrate and not overheads,
    )
    achieved = run.achieved_rps()
    thresholds = p.thresholds
    metrics = _metrics(run, summary, lag_p99, achieved, overhead, p)
    evidence = [f"target: {p.method} {p.url}"]
    if preflight is not None:
        evidence.append(preflight.evidence())
    evidence.append(_model_line(p, shape, run, achieved))
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

    # 1. Errors are counted, not timed.
    failures, undecided = _errors(p, shape, run, preflight, lag_p99, evidence)
    if run.requests == 0 and not run.stopped_for_errors:
        return Outcome.errored("no request was measured before the check's time ran out", **details)
    scope = _scope(shape, run)
    short = run.planned is not None and run.requests < run.planned
    stopped = run.stopped_early or run.stopped_for_errors
    if short and not stopped and shape.duration_s is not None:
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
    error_failures = list(failures)

    # 2. With strict_trust, fixed limits on the probe itself, whatever the figures.
    rate = shape.rate if shape.model == "open" else None
    if p.strict_trust:
        doubts = strict_doubts(
            achieved=achieved,
            rate=rate,
            lag_p99=lag_p99,
            max_send_lag=p.max_send_lag,
            overhead=overhead,
            calibrated=p.calibrate,
            thresholds=thresholds,
            max_overhead_share=p.max_overhead_share,
        )
        if doubts:
            if error_failures:
                evidence.append(f"latency figures not trustworthy: {'; '.join(doubts)}")
                return Outcome.failed(
                    f"{'; '.join(error_failures)} ({scope})",
                    remediation=_ERRORS_REMEDIATION,
                    **details,
                )
            return Outcome.errored(
                f"{UNTRUSTED}: {'; '.join(doubts)}", remediation=_BUSY_REMEDIATION, **details
            )

    # 3. Budgets, each judged with the probe's part taken off before it blames the server.
    calls = [
        BudgetCall(name, summary.percentiles[name], budget, part, p.warn_at)
        for name, budget in thresholds.items()
        if summary is not None
    ]
    failures += [
        f"{call.shown} over its {call.budget} budget" for call in calls if call.state == "over"
    ]
    undecided += [call.undecided() for call in calls if call.state == "undecided"]
    warnings = [
        f"{call.shown} is {call.measured / call.budget.milliseconds:.0%} of its {call.budget} "
        f"budget (warn at {p.warn_at:.0%})"
        for call in calls
        if call.state == "near"
    ]
    if thresholds and summary is None and run.requests:
        failures.append("no request was answered, so no latency could be measured")
    if calls:
        states = {call.state for call in calls}
        mark = (
            Mark.BROKEN
            if "over" in states
            else Mark.SOFT
            if states & {"near", "undecided"}
            else Mark.HELD
        )
        evidence.append(
            MarkedLine(f"budgets: {', '.join(call.check_line() for call in calls)}", mark)
        )
        evidence.append(_part_line(p, part))

    if failures:
        if undecided:
            evidence.append(f"also too close to call: {'; '.join(undecided)}")
        return Outcome.failed(
            f"{'; '.join(failures)} ({scope})",
            remediation=_ERRORS_REMEDIATION if failures == error_failures else _SLOW_REMEDIATION,
            **details,
        )
    if undecided:
        return Outcome.errored(
            f"{UNDECIDED}: {'; '.join(undecided)} ({scope})",
            remediation=_UNDECIDED_REMEDIATION,
            **details,
        )
    if run.stopped_early:
        return Outcome.errored(
            f"ran out of time after {run.requests} of {run.planned} requests; a partial "
            "run cannot pass",
            remediation="Raise the check's timeout, or send fewer requests.",
            **details,
        )
    if rate is not None and achieved is not None and achieved < MIN_ACHIEVED_SHARE * rate:
        return Outcome.errored(
            f"{UNDECIDED}: the probe started {achieved:.1f} requests/s of the {rate:g}/s "
            f"asked (under {MIN_ACHIEVED_SHARE:.0%}), so the service had less load than "
            f"asked and a pass cannot be given ({scope})",
            remediation=_BUSY_REMEDIATION,
            **details,
        )
    if warnings:
        return Outcome.warned(f"{'; '.join(warnings)} ({scope})", **details)
    headline = _headline(summary, thresholds)
    return Outcome.passed(f"{headline}, {run.errors} errors ({scope})", **details)


def _errors(
    p: LatencyParams,
    shape: LoadShape,
    run: Recorder,
    preflight: Preflight | None,
    lag_p99: float,
    evidence: list[str],
) -> tuple[list[str], list[str]]:
    """What the errors decide: (failures, too close to call).

    A refused connection or a 500 is the server's whatever the probe's precision. So is a
    timeout, unless the probe was late by a sizeable part of the timeout itself (then it
    may have caused it). A run stopped by a run of errors fails on that alone.
    """
    doubtful_timeouts = lag_p99 >= TIMEOUT_TRUST_SHARE * p.request_timeout.milliseconds
    if run.stopped_for_errors:
        stop, stop_line = _stopped_for_errors(p, shape, run, preflight)
        evidence.append(stop_line)
        if doubtful_timeouts and set(run.streak) == {TIMEOUTS}:
            return [], [f"{stop}, while the probe started requests {lag_p99:.0f} ms late"]
        return [stop], []
    if not run.requests or run.errors / run.requests <= p.max_error_rate:
        return [], []
    text = (
        f"error rate {run.errors / run.requests:.1%} over {p.max_error_rate:.1%} "
        f"({run.errors} of {run.requests})"
    )
    doubtful = run.timeouts + run.cut_short if doubtful_timeouts else 0
    if (run.errors - doubtful) / run.requests > p.max_error_rate:
        return [text], []
    return [], [
        f"{text}, of which {doubtful} timeouts may be the probe's lateness "
        f"(send lag p99 {lag_p99:.0f} ms)"
    ]


def _stopped_for_errors(
    p: LatencyParams, shape: LoadShape, run: Recorder, preflight: Preflight | None
) -> tuple[str, str]:
    """For the summary, ``20 failed requests in a row (20 answered HTTP 500); stopped after
    sending 131 of 511 requests``; and the evidence line, which says what was counted."""
    kinds = ", ".join(f"{count} {kind}" for kind, count in run.streak.most_common())
    first = preflight is not None
    planned = shape.planned_with_warmup
    sent = f"{run.dispatched + first}" + (f" of {planned + first}" if planned is not None else "")
    included = "warmup and the first request included" if first else "warmup included"
    streak = f"{run.streak.total()} failed requests in a row ({kinds})"
    return (
        f"{streak}; stopped after sending {sent} requests",
        f"stopped early: {streak} (max_consecutive_errors: {p.max_consecutive_errors}); "
        f"{sent} requests sent, {included}",
    )


def _part_line(p: LatencyParams, part: ProbePart) -> str:
    """What is taken off a figure before it is called over its budget."""
    lag = f"send lag p99 {part.lag_p99:.2f} ms (largest {part.lag_max:.2f} ms)"
    if part.overhead_unknown:
        overhead = "client overhead unknown"
    elif part.overhead_p95 is None:
        overhead = "client overhead not calibrated"
    else:
        overhead = (
            f"client overhead {part.overhead_p95:.2f} ms (largest {part.overhead_max or 0:.2f} ms)"
        )
    strict = "; strict_trust" if p.strict_trust else ""
    return f"the probe's part, taken off before a budget is called over: {lag}, {overhead}{strict}"


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
    if not run.requests:
        return "errors: no request was measured"
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
