"""The gate: which results block the deploy, and the verdict of a run.

Every rule of the verdict is here, apart from the engine that runs the checks:

- **What blocks.** A check blocks when its status is one its gate blocks on. By default
  that is FAIL or ERROR at the profile's ``fail_on`` severity or above, and WARN too with
  ``strict`` (``--strict``). A check may say ``blocks: false`` (advisory: it never blocks),
  ``blocks: true`` (it blocks on FAIL or ERROR whatever its severity), or
  ``blocks_on: [fail, error, warn]`` (it blocks on exactly these, whatever its severity
  and ``strict``). WAIVED never blocks.
- **Closed when a check cannot run.** A check skipped because a check it needs did not
  pass blocks when a failure of it would have. A check that could block and did not run
  (left out by ``--only``/``--skip``, or skipped by itself) is *not run*: named beside
  the verdict in every output, and blocking when the gate has ``require_all``
  (``--require-all``).
- **The verdict.** INTERRUPTED when the run was stopped; NO_CHECKS_RUN when not one check
  was evaluated (an empty profile, everything skipped): a run that looked at nothing is
  never READY; NOT_READY when a check blocks; READY_WITH_WAIVERS when a waiver was
  applied; READY otherwise.
- **Regressions** (``--baseline``). A check regresses when it passed before and does not
  now. A metric regresses only when it moves the wrong way past *both* its relative and
  its absolute tolerance (a connect time of 3 ms becoming 4 ms is +33% but 1 ms: noise).
  Defaults go by the metric's unit, named by its suffix; the profile may override them
  per unit and per metric. With ``fail_on_regression`` a regression blocks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from readycheck.results import CheckResult, GateInfo, Severity, Status, Verdict

_DEFAULT_BLOCKING = frozenset({Status.FAIL, Status.ERROR})


@dataclass(frozen=True)
class CheckRule:
    """A check's own say in the gate (``blocks`` / ``blocks_on`` in the profile)."""

    blocks: bool | None = None
    blocks_on: frozenset[Status] | None = None

    def describe(self) -> str | None:
        """``blocks on fail, warn`` / ``never blocks``, for reports; None when default."""
        if self.blocks is False:
            return "never blocks"
        if self.blocks_on is not None:
            order = (Status.FAIL, Status.ERROR, Status.WARN)
            shown = [s.value.lower() for s in order if s in self.blocks_on]
            return f"blocks on {', '.join(shown)}"
        if self.blocks is True:
            return "always blocks on fail or error"
        return None


DEFAULT_RULE = CheckRule()


@dataclass(frozen=True)
class Judgement:
    """What the gate makes of one check's result."""

    blocking: bool
    not_run: bool
    """A check that could have blocked, and did not run."""


# -- regressions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Tolerance:
    """How far a metric may move the wrong way before it regresses: past both."""

    relative: float
    """A fraction of the baseline value (0.2 = 20%)."""
    absolute: float
    """In the metric's own unit (milliseconds for ``*_ms``, bytes for ``*_bytes``)."""

    def exceeded(self, before: float, after: float) -> bool:
        moved = abs(after - before)
        if moved <= self.absolute:
            return False
        return before == 0 or moved / abs(before) > self.relative


# Units by metric-name suffix, and the absolute move each tolerates by default: what a
# busy machine's noise moves a figure by, not what a user would call a change.
UNITS: dict[str, tuple[re.Pattern[str], float]] = {
    "ms": (re.compile(r"_ms$"), 5.0),
    "seconds": (re.compile(r"(_s|_seconds)$"), 0.005),
    "bytes": (re.compile(r"_bytes$"), 1024.0 * 1024.0),
    "ratio": (re.compile(r"(_ratio|_rate|_share)$"), 0.01),
    "percent": (re.compile(r"(_pct|_percent)$"), 1.0),
    "days": (re.compile(r"(_days|days_left)$"), 1.0),
}
COUNT_UNIT = "count"
DEFAULT_RELATIVE = 0.2
DEFAULT_ABSOLUTE_COUNT = 1.0


def unit_of(metric: str) -> str:
    """The unit a metric's name says it has (``p95_ms`` → ms); a count otherwise."""
    for unit, (pattern, _) in UNITS.items():
        if pattern.search(metric):
            return unit
    return COUNT_UNIT


@dataclass(frozen=True)
class Tolerances:
    """The regression tolerances of a gate: a relative one, absolute ones by unit, and
    overrides by metric (``p95_ms``) or by check and metric (``api-latency:p95_ms``)."""

    relative: float = DEFAULT_RELATIVE
    absolute: Mapping[str, float] = field(default_factory=dict)
    metrics: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    """Per metric: (relative, absolute), None where the default applies."""

    @classmethod
    def of(cls, info: GateInfo) -> Tolerances:
        """The tolerances a saved run was judged by (``readycheck report --baseline``)."""
        return cls(
            relative=info.regression,
            absolute=dict(info.regression_absolute),
            metrics={
                name: (own.get("relative"), own.get("absolute"))
                for name, own in info.regression_metrics.items()
            },
        )

    def info(self) -> dict[str, object]:
        """The GateInfo fields that record these tolerances in a result."""
        return {
            "regression": self.relative,
            "regression_absolute": dict(self.absolute),
            "regression_metrics": {
                name: {
                    key: value
                    for key, value in (("relative", relative), ("absolute", absolute))
                    if value is not None
                }
                for name, (relative, absolute) in self.metrics.items()
            },
        }

    def absolute_for_unit(self, unit: str) -> float:
        if unit in self.absolute:
            return self.absolute[unit]
        return UNITS[unit][1] if unit in UNITS else DEFAULT_ABSOLUTE_COUNT

    def for_metric(self, check_id: str, metric: str) -> Tolerance:
        relative, absolute = self.relative, self.absolute_for_unit(unit_of(metric))
        for key in (metric, f"{check_id}:{metric}"):  # the more precise key wins
            own_relative, own_absolute = self.metrics.get(key, (None, None))
            relative = own_relative if own_relative is not None else relative
            absolute = own_absolute if own_absolute is not None else absolute
        return Tolerance(relative, absolute)


# -- the gate ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    """Which results block the deploy (the profile's ``gate:``, and the CLI's flags)."""

    fail_on: Severity = Severity.HIGH
    strict: bool = False
    require_all: bool = False
    fail_on_regression: bool = False
    regression: Tolerances = field(default_factory=Tolerances)

    def blocking_statuses(
        self, severity: Severity, rule: CheckRule = DEFAULT_RULE
    ) -> frozenset[Status]:
        """The statuses on which a check of this severity and rule blocks."""
        if rule.blocks is False:
            return frozenset()
        if rule.blocks_on is not None:
            return rule.blocks_on
        if rule.blocks is True or severity.rank >= self.fail_on.rank:
            return _DEFAULT_BLOCKING | ({Status.WARN} if self.strict else frozenset())
        return frozenset()

    def blocks(self, status: Status, severity: Severity, rule: CheckRule = DEFAULT_RULE) -> bool:
        return status in self.blocking_statuses(severity, rule)

    def judge(
        self,
        status: Status,
        severity: Severity,
        rule: CheckRule = DEFAULT_RULE,
        *,
        skipped_for_needs: bool = False,
    ) -> Judgement:
        """Whether a check's result blocks, and whether it is a blocking check not run.

        ``skipped_for_needs``: SKIP because a check it needs did not pass (not the user's
        choice): it blocks when a failure of it would have.
        """
        could_block = bool(self.blocking_statuses(severity, rule))
        if status is not Status.SKIP:
            return Judgement(self.blocks(status, severity, rule), not_run=False)
        if skipped_for_needs:
            return Judgement(could_block, not_run=False)
        return Judgement(could_block and self.require_all, not_run=could_block)


def verdict_of(checks: Iterable[CheckResult], *, interrupted: bool) -> Verdict:
    """The verdict of a run from its results (every check's ``blocking`` already judged)."""
    if interrupted:
        return Verdict.INTERRUPTED
    checks = list(checks)
    if all(check.status is Status.SKIP for check in checks):
        return Verdict.NO_CHECKS_RUN
    if any(check.blocking for check in checks):
        return Verdict.NOT_READY
    if any(check.status is Status.WAIVED for check in checks):
        return Verdict.READY_WITH_WAIVERS
    return Verdict.READY
