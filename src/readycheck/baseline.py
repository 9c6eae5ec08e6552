"""Comparing a run with an earlier one (``--baseline previous.json``).

A check *regressed* when it passed before and now warns, fails, errors or is waived; it
*recovered* when it did not pass before and passes now. A metric *moved* when it changed
past both its relative and its absolute tolerance (:class:`readycheck.gate.Tolerances`);
the move is for the worse when the metric's direction is known (latencies and error
counts should fall, headroom should rise), and a move for the worse is a regression.
With ``gate: {fail_on_regression: true}`` every regression blocks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import ValidationError

from readycheck.errors import UsageError
from readycheck.gate import Tolerances, verdict_of
from readycheck.results import (
    SCHEMA_VERSION,
    CheckResult,
    Comparison,
    MetricChange,
    RunResult,
    Status,
    StatusChange,
    Verdict,
)

_WORSE = {Status.WARN, Status.FAIL, Status.ERROR, Status.WAIVED}

# Metrics whose rise is bad, and whose fall is bad: by exact name, then by suffix.
_LOWER_IS_BETTER = re.compile(
    r"(_ms|latency.*|errors?|error_rate|pending|backends|idle_in_transaction|required"
    r"|used_memory_ratio|size_bytes|output_bytes|client_overhead_ms|send_lag_p99_ms)$"
)
_HIGHER_IS_BETTER = re.compile(
    r"(headroom|achieved_rps|days_left|entropy_bits|length|max_connections|families|samples)$"
)


def load_results(path: Path, option: str = "results") -> RunResult:
    """Read a RunResult written by ``--json``; refuse other files with a clear message."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{option} {path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{option} {path}: is a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{option} {path}: cannot be read: {exc}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{option} {path}: not JSON (line {exc.lineno}: {exc.msg}); give a file "
            "written by readycheck run --json"
        ) from None
    if not isinstance(document, dict) or "schema_version" not in document:
        raise UsageError(
            f"{option} {path}: not a readycheck results file (no schema_version); give a "
            "file written by readycheck run --json"
        )
    version = document["schema_version"]
    if version != SCHEMA_VERSION:
        older = isinstance(version, int) and version < SCHEMA_VERSION
        raise UsageError(
            f"{option} {path}: results schema_version {version!r} "
            f"{'is older than' if older else 'is not'} the version this readycheck reads "
            f"({SCHEMA_VERSION}); "
            + (
                "re-run the profile to produce a current file"
                if older
                else "it was written by another readycheck release"
            )
        )
    try:
        return RunResult.model_validate(document)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UsageError(
            f"{option} {path}: not a valid readycheck results file ({where}: {first['msg']})"
        ) from None


def metric_direction(name: str) -> bool | None:
    """True when a lower value is better, False when higher is better, None if unknown."""
    if _HIGHER_IS_BETTER.search(name):
        return False
    if _LOWER_IS_BETTER.search(name):
        return True
    return None


def compare(
    current: RunResult, baseline: RunResult, *, path: str, tolerances: Tolerances | None = None
) -> Comparison:
    """What changed since ``baseline``, judged by ``tolerances`` (default: the ones the
    current run's gate recorded)."""
    tolerances = tolerances if tolerances is not None else Tolerances.of(current.gate)
    before = {check.id: check for check in baseline.checks}
    after = {check.id: check for check in current.checks}
    regressed, recovered, metrics = [], [], []
    for check_id, now in after.items():
        then = before.get(check_id)
        if then is None:
            continue
        if then.status is Status.PASS and now.status in _WORSE:
            regressed.append(StatusChange(check=check_id, before=then.status, after=now.status))
        elif then.status in _WORSE and now.status is Status.PASS:
            recovered.append(StatusChange(check=check_id, before=then.status, after=now.status))
        metrics.extend(_moved_metrics(then, now, tolerances))
    return Comparison(
        baseline_path=path,
        baseline_started_at=baseline.started_at,
        baseline_verdict=baseline.verdict,
        tolerance=tolerances.relative,
        regressed=regressed,
        recovered=recovered,
        new=[check_id for check_id in after if check_id not in before],
        gone=[check_id for check_id in before if check_id not in after],
        metrics=metrics,
    )


def _moved_metrics(
    then: CheckResult, now: CheckResult, tolerances: Tolerances
) -> list[MetricChange]:
    moved = []
    for name, value in now.metrics.items():
        if name not in then.metrics:
            continue
        old = then.metrics[name]
        tolerance = tolerances.for_metric(now.id, name)
        if not tolerance.exceeded(old, value):
            continue
        lower_is_better = metric_direction(name)
        worse = None if lower_is_better is None else (value > old) == lower_is_better
        moved.append(
            MetricChange(
                check=now.id,
                metric=name,
                before=old,
                after=value,
                change=(value - old) / abs(old) if old else None,
                worse=worse,
                relative_tolerance=tolerance.relative,
                absolute_tolerance=tolerance.absolute,
                regressed=bool(worse),
            )
        )
    return moved


def apply(result: RunResult, comparison: Comparison) -> RunResult:
    """Attach the comparison; with ``fail_on_regression`` regressions block the verdict."""
    reasons: dict[str, str] = {}
    for status_change in comparison.regressed:
        reasons[status_change.check] = (
            f"regressed: {status_change.before.value} before, {status_change.after.value} now"
        )
    for metric in comparison.metrics:
        if metric.regressed:
            reasons.setdefault(metric.check, f"regressed: {describe_metric_change(metric)}")
    checks = [
        check.model_copy(
            update={
                "regression": reasons.get(check.id),
                "blocking": check.blocking
                or (result.gate.fail_on_regression and check.id in reasons),
            }
        )
        for check in result.checks
    ]
    verdict = verdict_of(checks, interrupted=result.verdict is Verdict.INTERRUPTED)
    return result.model_copy(
        update={
            "checks": checks,
            "comparison": comparison,
            "verdict": verdict,
            "exit_code": verdict.exit_code,
        }
    )


def describe_metric_change(change: MetricChange) -> str:
    """``p95_ms 120 ms to 210 ms, +75% (past 20% and 5 ms)``."""
    unit = " ms" if change.metric.endswith("_ms") else ""
    moved = "new from 0" if change.change is None else f"{change.change * 100:+.0f}%"
    text = (
        f"{change.metric} {_number(change.before)}{unit} to {_number(change.after)}{unit}, {moved}"
    )
    if change.relative_tolerance is not None and change.absolute_tolerance is not None:
        text += (
            f" (past {change.relative_tolerance * 100:g}% and "
            f"{_number(change.absolute_tolerance)}{unit})"
        )
    return text


def _number(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.3g}"
