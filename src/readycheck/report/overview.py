"""What the human-facing reports (Markdown, HTML, console) show, computed once.

Scores: each check counts by its severity's weight (critical 5, high 3, medium 2, low 1,
info 0.5) and earns all of it when it passes, half when it warns or is waived, nothing
when it fails, errors, or is a blocking check that could not run; checks skipped by
selection do not count. A category's score is the share earned, on a 0-5 scale.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from readycheck.results import CheckResult, Mark, RunResult, Severity, Status, Verdict

WEIGHTS = {
    Severity.CRITICAL: 5.0,
    Severity.HIGH: 3.0,
    Severity.MEDIUM: 2.0,
    Severity.LOW: 1.0,
    Severity.INFO: 0.5,
}
CREDIT = {
    Status.PASS: 1.0,
    Status.WARN: 0.5,
    Status.WAIVED: 0.5,
    Status.FAIL: 0.0,
    Status.ERROR: 0.0,
    Status.SKIP: 0.0,
}
CATEGORY_ORDER = ["database", "http", "security", "performance", "config"]
PERCENTILES = ["p50", "p90", "p95", "p99", "max"]

# What a report shows before folding the rest away (<details> in Markdown and HTML): a
# release manager reads the first lines of each check's evidence and the first
# measurements; the full record stays one click away.
EVIDENCE_SHOWN = 4
"""Lines of a check's evidence shown before the fold..."""
EVIDENCE_WHOLE = 6
"""...when it has more than this many (folding one or two lines saves nothing)."""
LINE_SHOWN = 160
"""Characters of one evidence line shown before the fold (cut at a word boundary)."""
MEASUREMENTS_SHOWN = 8
"""Rows of the measurements table shown before the fold."""


@dataclass(frozen=True)
class CategoryScore:
    name: str
    passed: int
    total: int
    score: float | None
    """0-5, or None when nothing in the category was evaluated."""
    worst: Status
    blocking: int


@dataclass(frozen=True)
class LatencyChart:
    check_id: str
    model: str
    percentiles: list[tuple[str, float]]
    threshold_ms: float | None
    """The p95 budget when one is set (drawn as a line), else the tightest threshold."""
    distribution: list[tuple[str, int]] = field(default_factory=list)
    """Requests by latency, from the probe's histogram: (upper bound label, count)."""


_TITLES = {"http": "HTTP", "config": "Configuration", "tls": "TLS", "api": "API"}


def category_title(name: str) -> str:
    return _TITLES.get(name, name.replace("_", " ").replace("-", " ").capitalize())


def ordered_categories(checks: Iterable[CheckResult]) -> list[str]:
    present = list(dict.fromkeys(check.category for check in checks))
    known = [name for name in CATEGORY_ORDER if name in present]
    return known + sorted(name for name in present if name not in CATEGORY_ORDER)


def by_category(checks: list[CheckResult]) -> list[tuple[str, list[CheckResult]]]:
    return [
        (name, [check for check in checks if check.category == name])
        for name in ordered_categories(checks)
    ]


def _counts(check: CheckResult) -> bool:
    """Whether a check counts toward a score: not when left out by --only/--skip."""
    return check.status is not Status.SKIP or check.blocking


def score(checks: Iterable[CheckResult]) -> float | None:
    counted = [check for check in checks if _counts(check)]
    possible = sum(WEIGHTS[check.severity] for check in counted)
    if not possible:
        return None
    earned = sum(WEIGHTS[check.severity] * CREDIT[check.status] for check in counted)
    return round(5 * earned / possible, 1)


def category_scores(result: RunResult) -> list[CategoryScore]:
    scores = []
    for name, checks in by_category(result.checks):
        scores.append(
            CategoryScore(
                name=name,
                passed=sum(check.status is Status.PASS for check in checks),
                total=len(checks),
                score=score(checks),
                worst=max((check.status for check in checks), key=lambda s: s.rank),
                blocking=sum(check.blocking for check in checks),
            )
        )
    return scores


@dataclass(frozen=True)
class EvidenceLine:
    text: str
    mark: Mark | None = None
    """How the comparison the line states came out; None for a line that states a fact."""

    @property
    def sign(self) -> str:
        """✓, ✗ or ⚠ for a comparison, "" for a fact."""
        return self.mark.sign if self.mark else ""

    @property
    def short(self) -> str:
        """The line as shown before the fold: at most LINE_SHOWN characters."""
        return shorten(self.text, LINE_SHOWN)


@dataclass(frozen=True)
class Evidence:
    """A check's evidence lines, and what of them shows before the fold."""

    lines: list[EvidenceLine]

    @property
    def shown(self) -> list[EvidenceLine]:
        return self.lines if len(self.lines) <= EVIDENCE_WHOLE else self.lines[:EVIDENCE_SHOWN]

    @property
    def folded(self) -> bool:
        """Whether the fold hides anything: lines past the first few, or a long line's end."""
        shown = self.shown
        return len(shown) < len(self.lines) or any(line.short != line.text for line in shown)


def evidence(check: CheckResult) -> Evidence:
    marks: list[Mark | None] = (
        list(check.marks)
        if len(check.marks) == len(check.evidence)
        else [None] * len(check.evidence)
    )
    return Evidence(
        [EvidenceLine(text, mark) for text, mark in zip(check.evidence, marks, strict=True)]
    )


def shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters at a word boundary when there is one not too
    far back (a 2,000-character token is cut where it must be), with "…" when cut."""
    if len(text) <= width:
        return text
    head = text[:width]
    space = head.rfind(" ")
    if space >= width * 2 // 3:
        head = head[:space]
    return head.rstrip() + " …"


def not_run_checks(result: RunResult) -> list[CheckResult]:
    """Checks that did not run and are not already among the blocking ones."""
    return [check for check in result.checks if check.status is Status.SKIP and not check.blocking]


def measurements(result: RunResult) -> list[tuple[CheckResult, str, float]]:
    """Every metric of every check, in check order."""
    return [
        (check, name, value) for check in result.checks for name, value in check.metrics.items()
    ]


def latency_charts(result: RunResult) -> list[LatencyChart]:
    charts = []
    for check in result.checks:
        latency: Any = check.data.get("latency")
        if not isinstance(latency, dict):
            continue
        values = latency.get("percentiles_ms") or {}
        points = [
            (name, float(values[name]))
            for name in PERCENTILES
            if isinstance(values.get(name), int | float)
        ]
        if not points:
            continue
        thresholds = {
            key: float(value)
            for key, value in (latency.get("thresholds_ms") or {}).items()
            if isinstance(value, int | float)
        }
        threshold = thresholds.get("p95", min(thresholds.values()) if thresholds else None)
        charts.append(
            LatencyChart(
                check.id,
                str(latency.get("model", "open")),
                points,
                threshold,
                distribution(latency.get("histogram")),
            )
        )
    return charts


MAX_BARS = 16


def distribution(histogram: Any) -> list[tuple[str, int]]:
    """The histogram's occupied range as at most MAX_BARS bars, labelled by upper bound.

    The probe's buckets are fixed and log-spaced (ten a decade); neighbouring buckets are
    merged until the range fits, so the shape (a tail, a second mode) stays visible.
    """
    if not isinstance(histogram, dict):
        return []
    bounds, counts = histogram.get("bounds_ms"), histogram.get("counts")
    if not isinstance(bounds, list) or not isinstance(counts, list) or len(bounds) != len(counts):
        return []
    occupied = [index for index, count in enumerate(counts) if count]
    if not occupied:
        return []
    pairs = [(float(bounds[i]), int(counts[i])) for i in range(occupied[0], occupied[-1] + 1)]
    while len(pairs) > MAX_BARS:
        pairs = [
            (pairs[min(i + 1, len(pairs) - 1)][0], sum(c for _, c in pairs[i : i + 2]))
            for i in range(0, len(pairs), 2)
        ]
    return [(f"≤{bound:g}", count) for bound, count in pairs]


def chart_top(chart: LatencyChart) -> int:
    """A round upper bound for the chart's y axis, above every bar and the budget line."""
    highest = max([value for _, value in chart.percentiles] + [chart.threshold_ms or 0.0])
    step = 10 ** max(0, len(str(int(highest))) - 1)
    return int((highest // step + 1) * step)


def when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def format_metric(name: str, value: float) -> str:
    if name.endswith("_ms"):
        return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"
    if name.endswith("_bytes"):
        from readycheck.units import format_bytes

        return format_bytes(value)
    if name.endswith(("_ratio", "_rate")):
        return f"{value * 100:.2f}%"
    return f"{value:.0f}" if value == int(value) else f"{value:.3g}"


_BADGES = {
    Verdict.READY: "✅ READY",
    Verdict.READY_WITH_WAIVERS: "✅ READY WITH WAIVERS",
    Verdict.NOT_READY: "❌ NOT READY",
    Verdict.NO_CHECKS_RUN: "❌ NO CHECKS RUN",
    Verdict.INTERRUPTED: "⚠️ INTERRUPTED",
}
_WAIVER_STATES = {
    "applied": "applied",
    "expired": "**expired, not applied**",
    "unused": "not needed (check did not fail)",
}
DEFAULT_APPROVERS = ["Release manager"]


def context(result: RunResult) -> dict[str, Any]:
    """What a report template can use (the HTML report uses the same)."""
    signoff = dict(result.signoff or {})
    blocking = [check for check in result.checks if check.blocking]
    findings = [
        check
        for check in result.checks
        if not check.blocking and check.status in (Status.FAIL, Status.ERROR, Status.WARN)
    ]
    return {
        "result": result,
        "signoff": _Namespace(signoff),
        "service": signoff.get("service") or result.profile.name,
        "approvers": signoff.get("approvers") or DEFAULT_APPROVERS,
        "blocking": blocking,
        "findings": findings,
        "categories": by_category(result.checks),
        "scores": category_scores(result),
        "overall_score": score(result.checks),
        "worst": max((c.status for c in result.checks), key=lambda s: s.rank, default=Status.PASS),
        "level": result.verdict.value.replace("_", " "),
        "measurements": measurements(result),
        "measurements_shown": MEASUREMENTS_SHOWN,
        "not_run_checks": not_run_checks(result),
        "attested": attested_items(result),
        "rounds": watch_rounds(result),
        "charts": latency_charts(result),
        "comparison": result.comparison,
        "verdict_badge": _BADGES[result.verdict],
        "verdict_sentence": verdict_sentence(result),
        "waiver_states": _WAIVER_STATES,
    }


@dataclass(frozen=True)
class AttestedItem:
    """A manual item, as the report's "Confirmed by people" section shows it."""

    check: CheckResult
    question: str
    state: str
    """attested, missing, stale or refused."""
    by: str | None
    at: str | None
    note: str | None


_ATTESTATION_STATES = {
    "attested": "attested",
    "missing": "not attested",
    "stale": "stale: confirm again",
    "refused": "attested by someone not allowed",
}


def attested_items(result: RunResult) -> list[AttestedItem]:
    """The manual items of the run, machine-checked lines' counterpart."""
    items = []
    for check in result.checks:
        if check.type != "manual":
            continue
        data = check.data
        at = data.get("at")
        items.append(
            AttestedItem(
                check=check,
                question=str(data.get("question") or check.name),
                state=_ATTESTATION_STATES.get(str(data.get("state")), "not run"),
                by=data.get("by"),
                at=str(at)[:16].replace("T", " ") + " UTC" if at else None,
                note=data.get("note"),
            )
        )
    return items


@dataclass(frozen=True)
class WatchRounds:
    """The timeline of a ``readycheck watch``: each check's status round by round."""

    count: int
    first: datetime
    last: datetime
    rows: list[tuple[CheckResult, list[Status]]]


def watch_rounds(result: RunResult) -> WatchRounds | None:
    timed = [check for check in result.checks if check.timeline]
    if not timed:
        return None
    points = [point for check in timed for point in check.timeline]
    return WatchRounds(
        count=max(point.round for point in points),
        first=min(point.at for point in points),
        last=max(point.at for point in points),
        rows=[(check, [point.status for point in check.timeline]) for check in timed],
    )


def verdict_sentence(result: RunResult) -> str:
    total = len(result.checks)
    blocking = [check.id for check in result.checks if check.blocking]
    waived = result.summary.get("waived", 0)
    expired = sum(waiver.state == "expired" for waiver in result.waivers)
    if result.verdict is Verdict.INTERRUPTED:
        ran = sum(check.attempts > 0 for check in result.checks)
        return (
            f"The run was interrupted after {ran} of {total} {_plural(total, 'check')} "
            "started; this report is partial and cannot be signed off."
        )
    if result.verdict is Verdict.NO_CHECKS_RUN:
        sentence = (
            f"Not one of the {total} {_plural(total, 'check')} ran, so nothing was checked: "
            "this run cannot be signed off."
            if total
            else "The profile has no checks, so nothing was checked: this run cannot be signed off."
        )
    elif result.verdict is Verdict.NOT_READY:
        sentence = (
            f"Not ready to release: {len(blocking)} blocking "
            f"{_plural(len(blocking), 'issue')} ({_ids(blocking)})."
        )
    elif result.verdict is Verdict.READY_WITH_WAIVERS:
        sentence = (
            f"Ready to release, with {waived} accepted {_plural(waived, 'risk')} "
            "(see Accepted risks)."
        )
    else:
        sentence = (
            f"Ready to release: no check blocks the gate ({total} {_plural(total, 'check')})."
        )
    note = not_run_note(result)
    if note and result.verdict is not Verdict.NO_CHECKS_RUN:
        sentence += f" {note[0].upper()}{note[1:]}."
    if expired:
        sentence += f" {expired} {_plural(expired, 'waiver')} expired and no longer applied."
    return sentence


def not_run_note(result: RunResult) -> str | None:
    """``2 blocking checks not run: db, migrations``: what a verdict did not look at."""
    if not result.not_run:
        return None
    count = len(result.not_run)
    return f"{count} blocking {_plural(count, 'check')} not run: {_ids(result.not_run)}"


def _ids(ids: list[str], most: int = 8) -> str:
    shown = ", ".join(ids[:most])
    return shown + (f" and {len(ids) - most} more" if len(ids) > most else "")


def _plural(count: int, word: str) -> str:
    return word if count == 1 else f"{word}s"


class _Namespace(dict[str, Any]):
    """A dict whose missing keys read as None in templates (``signoff.rollback``)."""

    def __getattr__(self, name: str) -> Any:
        return self.get(name)
