"""Statuses, outcomes, results and verdicts: the vocabulary of a run.

A check returns an :class:`Outcome`; the engine wraps it into a :class:`CheckResult`
(identity, timing, attempts, waiver, whether it blocks); a run is a :class:`RunResult`,
the one thing every reporter reads and the document ``--json`` writes. What blocks and
which verdict a run gets are decided in :mod:`readycheck.gate`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, TypedDict, Unpack

from pydantic import BaseModel, ConfigDict

SCHEMA_VERSION: Literal[1] = 1


class Status(enum.StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    ERROR = "ERROR"
    SKIP = "SKIP"
    WAIVED = "WAIVED"

    @property
    def rank(self) -> int:
        """Badness, for "the worst status in a category": PASS is best, FAIL worst."""
        return _STATUS_RANK[self]


_STATUS_RANK = {
    Status.PASS: 0,
    Status.SKIP: 1,
    Status.WAIVED: 2,
    Status.WARN: 3,
    Status.ERROR: 4,
    Status.FAIL: 5,
}


class Severity(enum.StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {
    Severity.INFO: 0,
    Severity.LOW: 1,
    Severity.MEDIUM: 2,
    Severity.HIGH: 3,
    Severity.CRITICAL: 4,
}


class Verdict(enum.StrEnum):
    READY = "READY"
    READY_WITH_WAIVERS = "READY_WITH_WAIVERS"
    NOT_READY = "NOT_READY"
    NO_CHECKS_RUN = "NO_CHECKS_RUN"
    """Not one check was evaluated (an empty profile, every check skipped)."""
    INTERRUPTED = "INTERRUPTED"

    @property
    def exit_code(self) -> int:
        return _EXIT_CODES[self]


EXIT_READY = 0
EXIT_NOT_READY = 1
EXIT_USAGE = 2
EXIT_OUTPUT_FAILED = 3
"""READY, but not one of the outputs asked for could be written: no record to sign."""
EXIT_NO_CHECKS_RUN = 4
EXIT_INTERRUPTED = 130

_EXIT_CODES = {
    Verdict.READY: EXIT_READY,
    Verdict.READY_WITH_WAIVERS: EXIT_READY,
    Verdict.NOT_READY: EXIT_NOT_READY,
    Verdict.NO_CHECKS_RUN: EXIT_NO_CHECKS_RUN,
    Verdict.INTERRUPTED: EXIT_INTERRUPTED,
}


class Mark(enum.StrEnum):
    """How a comparison stated by an evidence line came out."""

    HELD = "held"
    """What was found meets what was expected."""
    BROKEN = "broken"
    """It does not."""
    SOFT = "soft"
    """It crosses a soft threshold (a WARN), or holds only in part."""

    @property
    def sign(self) -> str:
        return _SIGNS[self]


_SIGNS = {Mark.HELD: "✓", Mark.BROKEN: "✗", Mark.SOFT: "⚠"}


class MarkedLine(str):
    """An evidence line that compares what was found with what was expected, and says
    how it came out. A ``str`` like any other line (``==``, ``in``, f-strings); the
    engine records its mark beside it (:attr:`CheckResult.marks`), and the reports show
    it as ✓, ✗ or ⚠. Build one with :func:`held`, :func:`broken`, :func:`soft` or
    :func:`compared`."""

    mark: Mark

    def __new__(cls, text: str, mark: Mark) -> MarkedLine:
        line = super().__new__(cls, text)
        line.mark = mark
        return line


def held(text: str) -> MarkedLine:
    """An evidence line stating a comparison that held ("status 200, expected 200")."""
    return MarkedLine(text, Mark.HELD)


def broken(text: str) -> MarkedLine:
    """An evidence line stating a comparison that did not hold."""
    return MarkedLine(text, Mark.BROKEN)


def soft(text: str) -> MarkedLine:
    """An evidence line stating a soft threshold crossed (what makes a WARN)."""
    return MarkedLine(text, Mark.SOFT)


def compared(holds: bool, text: str) -> MarkedLine:
    """``held(text)`` or ``broken(text)``."""
    return MarkedLine(text, Mark.HELD if holds else Mark.BROKEN)


def marks_of(lines: Iterable[str]) -> list[Mark | None]:
    """The mark of each line (None for a line that states a fact), or [] when none has one."""
    marks = [line.mark if isinstance(line, MarkedLine) else None for line in lines]
    return marks if any(marks) else []


@dataclass(frozen=True)
class Outcome:
    """What a check found: a status, a one-line summary, and the facts behind it.

    ``evidence`` lines are short facts a release manager can read; a line that compares
    what was found with what was expected is built with :func:`held`, :func:`broken` or
    :func:`soft`, and the reports show ✓, ✗ or ⚠ before it. ``metrics`` are numbers for
    JSON and baselines; ``data`` is structured extra for reporters (a latency histogram),
    JSON-serialisable. ``final`` and ``retry_after`` tell the engine's
    retries (``retries``, ``retry_for``) what waiting can change.
    """

    status: Status
    summary: str
    evidence: tuple[str, ...] = ()
    metrics: Mapping[str, float] = field(default_factory=dict)
    remediation: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    final: str | None = None
    """Why no retry can change this result (an HTTP 404): the engine does not retry."""
    retry_after: float | None = None
    """Seconds the system asked to wait before asking again (Retry-After)."""

    @classmethod
    def passed(cls, summary: str, **details: Unpack[Details]) -> Outcome:
        return cls._of(Status.PASS, summary, details)

    @classmethod
    def warned(cls, summary: str, **details: Unpack[Details]) -> Outcome:
        return cls._of(Status.WARN, summary, details)

    @classmethod
    def failed(cls, summary: str, **details: Unpack[Details]) -> Outcome:
        return cls._of(Status.FAIL, summary, details)

    @classmethod
    def errored(cls, summary: str, **details: Unpack[Details]) -> Outcome:
        return cls._of(Status.ERROR, summary, details)

    @classmethod
    def skipped(cls, summary: str, **details: Unpack[Details]) -> Outcome:
        return cls._of(Status.SKIP, summary, details)

    @classmethod
    def _of(cls, status: Status, summary: str, details: Details) -> Outcome:
        return cls(
            status,
            summary,
            tuple(details.get("evidence", ())),
            dict(details.get("metrics") or {}),
            details.get("remediation"),
            dict(details.get("data") or {}),
            details.get("final"),
            details.get("retry_after"),
        )


class Details(TypedDict, total=False):
    """What an Outcome may carry besides its status and summary."""

    evidence: Iterable[str]
    metrics: Mapping[str, float] | None
    remediation: str | None
    data: Mapping[str, Any] | None
    final: str | None
    retry_after: float | None


class _Frozen(BaseModel):
    # Built on first use: `validate` never makes a result, and should not pay for it.
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class WaiverRecord(_Frozen):
    """A waiver of the profile and what became of it in this run."""

    check: str
    reason: str
    approved_by: str
    until: date
    state: Literal["applied", "expired", "unused"]
    waived_status: Status | None = None


class RoundPoint(_Frozen):
    """One round of ``readycheck watch`` for one check: its status and metrics then."""

    round: int
    at: datetime
    status: Status
    metrics: dict[str, float] = {}


class CheckResult(_Frozen):
    id: str
    type: str
    name: str
    category: str
    severity: Severity
    tags: list[str] = []
    status: Status
    blocking: bool
    not_run: bool = False
    """A check that could have blocked and did not run (skipped, not selected)."""
    gate_rule: str | None = None
    """The check's own gate rule when it has one ("never blocks", "blocks on fail, warn")."""
    summary: str
    evidence: list[str] = []
    marks: list[Mark | None] = []
    """One per evidence line when the check marked any: held, broken or soft for a line
    that states a comparison, null for a line that states a fact."""
    metrics: dict[str, float] = {}
    remediation: str | None = None
    duration_ms: float = 0.0
    attempts: int = 0
    waiver: WaiverRecord | None = None
    data: dict[str, Any] = {}
    location: str | None = None
    """Where the profile defines the check (file:line:column)."""
    regression: str | None = None
    """Why the check counts as a regression against the baseline, when it does."""
    traceback: str | None = None
    timeline: list[RoundPoint] = []
    """Its status and metrics in each round of a ``readycheck watch``."""


class ToolInfo(_Frozen):
    name: str = "readycheck"
    version: str


class ProfileInfo(_Frozen):
    name: str
    path: str
    digest: str


class GateInfo(_Frozen):
    fail_on: Severity
    strict: bool
    require_all: bool = False
    fail_on_regression: bool = False
    regression: float = 0.2
    """The relative tolerance of a metric's move (0.2 = 20%)."""
    regression_absolute: dict[str, float] = {}
    """Absolute tolerances by unit set in the profile (the rest are the defaults)."""
    regression_metrics: dict[str, dict[str, float]] = {}
    """Per-metric tolerances set in the profile: {"p95_ms": {"relative": 0.1, ...}}."""


class Invocation(_Frozen):
    """How and where the run was started: for a reader who must trust the report."""

    command: str
    """The command line, shell-quoted, secrets masked."""
    host: str | None = None
    user: str | None = None
    ci: str | None = None
    """The CI system, when run in one (GitHub Actions, GitLab CI, ...)."""
    ci_url: str | None = None
    """The CI run's page, when the CI system says it."""


class GitInfo(_Frozen):
    """The git commit of the directory readycheck ran in."""

    commit: str
    dirty: bool = False


class StatusChange(_Frozen):
    check: str
    before: Status
    after: Status


class MetricChange(_Frozen):
    check: str
    metric: str
    before: float
    after: float
    change: float | None
    """(after - before) / |before|; None when before is 0."""
    worse: bool | None
    """True when the move is for the worse, None when the metric has no known direction."""
    relative_tolerance: float | None = None
    absolute_tolerance: float | None = None
    """The tolerances the move was weighed against (a regression is past both)."""
    regressed: bool = False
    """Moved for the worse past both tolerances."""


class Comparison(_Frozen):
    """What changed since an earlier run (``--baseline``)."""

    baseline_path: str
    baseline_started_at: datetime
    baseline_verdict: Verdict
    tolerance: float
    regressed: list[StatusChange] = []
    recovered: list[StatusChange] = []
    new: list[str] = []
    gone: list[str] = []
    metrics: list[MetricChange] = []

    @property
    def has_regressions(self) -> bool:
        return bool(self.regressed) or any(change.regressed for change in self.metrics)


class RunResult(_Frozen):
    schema_version: Literal[1] = SCHEMA_VERSION
    tool: ToolInfo
    profile: ProfileInfo
    environment: str | None = None
    started_at: datetime
    finished_at: datetime
    duration_ms: float
    verdict: Verdict
    exit_code: int
    summary: dict[str, int]
    gate: GateInfo
    checks: list[CheckResult]
    waivers: list[WaiverRecord] = []
    signoff: dict[str, Any] | None = None
    git: GitInfo | None = None
    comparison: Comparison | None = None
    invocation: Invocation | None = None
    not_run: list[str] = []
    """Ids of the checks that could have blocked and did not run, in profile order."""
    rollback: str | None = None
    """``readycheck watch``: why a rollback is recommended, when it is."""

    @property
    def blocking(self) -> list[CheckResult]:
        return [check for check in self.checks if check.blocking]


def summarize(statuses: Iterable[Status]) -> dict[str, int]:
    counts = {status.value.lower(): 0 for status in Status}
    for status in statuses:
        counts[status.value.lower()] += 1
    return counts
