"""Statuses, outcomes, results, the gate and the verdict.

A check returns an :class:`Outcome`; the engine wraps it into a :class:`CheckResult`
(identity, timing, attempts, waiver, whether it blocks); a run is a :class:`RunResult`,
the one thing every reporter reads and the document ``--json`` writes.
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
    INTERRUPTED = "INTERRUPTED"

    @property
    def exit_code(self) -> int:
        return _EXIT_CODES[self]


EXIT_READY = 0
EXIT_NOT_READY = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_EXIT_CODES = {
    Verdict.READY: EXIT_READY,
    Verdict.READY_WITH_WAIVERS: EXIT_READY,
    Verdict.NOT_READY: EXIT_NOT_READY,
    Verdict.INTERRUPTED: EXIT_INTERRUPTED,
}


@dataclass(frozen=True)
class Outcome:
    """What a check found: a status, a one-line summary, and the facts behind it.

    ``evidence`` lines are short facts a release manager can read; ``metrics`` are
    numbers for JSON and baselines; ``data`` is structured extra for reporters (a latency
    histogram), JSON-serialisable.
    """

    status: Status
    summary: str
    evidence: tuple[str, ...] = ()
    metrics: Mapping[str, float] = field(default_factory=dict)
    remediation: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

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
        )


class Details(TypedDict, total=False):
    """What an Outcome may carry besides its status and summary."""

    evidence: Iterable[str]
    metrics: Mapping[str, float] | None
    remediation: str | None
    data: Mapping[str, Any] | None


@dataclass(frozen=True)
class Gate:
    """Which results block the deploy: FAIL or ERROR at ``fail_on`` or above (and WARN
    too when ``strict``)."""

    fail_on: Severity = Severity.HIGH
    strict: bool = False
    fail_on_regression: bool = False
    regression: float = 0.2
    """How far (a fraction) a metric may move from the baseline before it is reported."""

    def blocks(self, status: Status, severity: Severity) -> bool:
        blocking = {Status.FAIL, Status.ERROR} | ({Status.WARN} if self.strict else set())
        return status in blocking and severity.rank >= self.fail_on.rank


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


class CheckResult(_Frozen):
    id: str
    type: str
    name: str
    category: str
    severity: Severity
    tags: list[str] = []
    status: Status
    blocking: bool
    summary: str
    evidence: list[str] = []
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
    fail_on_regression: bool = False
    regression: float = 0.2


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
        return bool(self.regressed) or any(change.worse for change in self.metrics)


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

    @property
    def blocking(self) -> list[CheckResult]:
        return [check for check in self.checks if check.blocking]


def summarize(statuses: Iterable[Status]) -> dict[str, int]:
    counts = {status.value.lower(): 0 for status in Status}
    for status in statuses:
        counts[status.value.lower()] += 1
    return counts


def verdict_of(checks: Iterable[CheckResult], *, interrupted: bool) -> Verdict:
    if interrupted:
        return Verdict.INTERRUPTED
    checks = list(checks)
    if any(check.blocking for check in checks):
        return Verdict.NOT_READY
    if any(check.status is Status.WAIVED for check in checks):
        return Verdict.READY_WITH_WAIVERS
    return Verdict.READY
