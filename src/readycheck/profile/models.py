"""The profile's models: what a profile file may say, and the plan it loads into.

The pydantic models validate the document (unknown keys refused); the frozen dataclasses
are what the engine runs: types resolved, parameters validated, defaults applied.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from readycheck.errors import Location
from readycheck.gate import DEFAULT_RULE, CheckRule, Gate, Tolerances
from readycheck.params import CheckParams
from readycheck.redact import Redactor
from readycheck.registry import CheckType
from readycheck.results import Severity
from readycheck.units import Duration, Size

_TEN_SECONDS = Duration("10s")
_ONE_SECOND = Duration("1s")
CHECK_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


class Defaults(_Model):
    """Values every check takes unless it sets its own."""

    timeout: Duration = Field(Duration("10s"), description="Time limit of one attempt.")
    retries: int = Field(0, ge=0, le=100, description="Attempts after the first, when not PASS.")
    retry_for: Duration | None = Field(
        None, description="Keep retrying until PASS or this window closes (with backoff)."
    )
    retry_interval: Duration = Field(
        Duration("1s"), description="First pause between attempts; doubles up to 15s."
    )
    severity: Severity = Field(Severity.HIGH, description="How much a failure matters.")


class MetricTolerance(_Model):
    """The tolerances of one metric (either may be left to the default)."""

    relative: Fraction | None = Field(
        None, description="A fraction (0.1) or a percentage ('10%') of the baseline value."
    )
    absolute: Amount | None = Field(
        None,
        description="In the metric's unit: a number, or a duration ('20ms') for a *_ms "
        "metric, a size ('5MB') for a *_bytes one.",
    )


class RegressionModel(_Model):
    """When a metric counts as regressed against --baseline: when it moves the wrong way
    past both its relative and its absolute tolerance."""

    relative: Fraction = Field(
        0.2, description="A fraction (0.2) or a percentage ('20%') of the baseline value."
    )
    absolute: dict[Unit, Amount] = Field(
        default_factory=dict,
        description="Absolute tolerances by unit, replacing the defaults: ms 5, seconds "
        "0.005, bytes 1MiB, ratio 0.01, percent 1, days 1, count 1.",
    )
    metrics: dict[str, MetricTolerance] = Field(
        default_factory=dict,
        description="Tolerances of one metric, by name ('p95_ms') or by check and name "
        "('api-latency:p95_ms').",
    )


def _regression(value: object) -> object:
    """``regression: 20%`` (the relative tolerance alone) is the short form."""
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        return {"relative": value}
    return value


class GateModel(_Model):
    """Which results block the deploy."""

    fail_on: Severity = Field(
        Severity.HIGH, description="FAIL or ERROR at this severity or above blocks."
    )
    strict: bool = Field(False, description="WARN blocks too (as --strict does).")
    require_all: bool = Field(
        False,
        description="A check that could block and did not run (--skip, --only) blocks "
        "(as --require-all does).",
    )
    fail_on_regression: bool = Field(
        False, description="A regression against --baseline blocks (a check or a metric)."
    )
    regression: Annotated[RegressionModel, BeforeValidator(_regression)] = Field(
        default_factory=RegressionModel,
        description="When a metric regressed: past a relative and an absolute tolerance "
        "('20%' alone sets the relative one).",
    )

    def gate(self) -> Gate:
        return Gate(
            fail_on=self.fail_on,
            strict=self.strict,
            require_all=self.require_all,
            fail_on_regression=self.fail_on_regression,
            regression=Tolerances(
                relative=self.regression.relative,
                absolute={str(unit): value for unit, value in self.regression.absolute.items()},
                metrics={
                    name: (own.relative, own.absolute)
                    for name, own in self.regression.metrics.items()
                },
            ),
        )


def _fraction(value: object) -> object:
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"{value!r} is not a percentage such as '20%'") from None
    return value


def _amount(value: object) -> object:
    """A number, or a duration in milliseconds, or a size in bytes."""
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        try:
            return Duration.parse(text).seconds * 1000.0
        except ValueError:
            pass
        try:
            return float(Size.parse(text).bytes)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a number, a duration ('20ms') or a size ('5MB')"
            ) from None
    return value


Fraction = Annotated[float, BeforeValidator(_fraction), Field(ge=0, le=100)]
Amount = Annotated[float, BeforeValidator(_amount), Field(ge=0, allow_inf_nan=False)]
Unit = Literal["ms", "seconds", "bytes", "ratio", "percent", "days", "count"]


class Signoff(_Model):
    """Who signs off on the report, and how to roll back."""

    service: str | None = Field(None, description="The service being released.")
    release: str | None = Field(None, description="The release or version being deployed.")
    approvers: list[str] = Field(default_factory=list, description="Roles that sign the report.")
    rollback: str | None = Field(None, description="The rollback procedure, in prose.")
    notes: str | None = Field(None, description="Anything else the reader should know.")


class CheckSpecModel(_Model):
    """One check of the profile."""

    id: str = Field(pattern=CHECK_ID_PATTERN, description="Unique id of the check.")
    type: str = Field(description="Check type, e.g. 'command' (see `readycheck checks`).")
    name: str | None = Field(None, description="Human-readable name (default: the id).")
    description: str | None = Field(None, description="What this check is for.")
    severity: Severity | None = Field(None, description="critical, high, medium, low or info.")
    category: str | None = Field(None, description="Report category (default: the type's).")
    tags: list[str] = Field(default_factory=list, description="Labels for --only tag:NAME.")
    needs: list[str] = Field(
        default_factory=list, description="Ids that must PASS before this check runs."
    )
    timeout: Duration | None = Field(None, description="Time limit of one attempt.")
    retries: int | None = Field(None, ge=0, le=100, description="Attempts after the first.")
    retry_for: Duration | None = Field(None, description="Poll until PASS within this window.")
    retry_interval: Duration | None = Field(None, description="First pause between attempts.")
    remediation: str | None = Field(None, description="What to do when it fails.")
    blocks: bool | None = Field(
        None,
        description="false: advisory, never blocks; true: blocks on FAIL or ERROR whatever "
        "its severity (default: the gate decides by severity).",
    )
    blocks_on: list[Literal["fail", "error", "warn"]] | None = Field(
        None,
        description="Block on exactly these statuses, whatever the severity and --strict "
        "(e.g. [fail, error, warn] for a certificate about to expire).",
    )
    with_: dict[str, Any] = Field(
        default_factory=dict, alias="with", description="The check type's parameters."
    )


class WaiverModel(_Model):
    """An accepted risk: a failing check that does not block until a date."""

    check: str = Field(description="Id of the waived check.")
    reason: str = Field(min_length=1, description="Why the risk is accepted.")
    approved_by: str = Field(min_length=1, description="Who accepted it.")
    until: date = Field(description="Last day the waiver applies (YYYY-MM-DD, UTC).")


class ProfileModel(_Model):
    """A readiness profile."""

    version: Literal[1] = Field(1, description="Profile format version.")
    name: str | None = Field(None, description="Profile name (default: the file name).")
    description: str | None = Field(None, description="What this profile gates.")
    environment: str | None = Field(None, description="Environment name, e.g. production.")
    extends: str | list[str] | None = Field(
        None, description="Profile file(s) this one builds on, relative to this file."
    )
    vars: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Values for ${vars.name}."
    )
    defaults: Defaults = Field(default_factory=Defaults, description="Defaults for every check.")
    gate: GateModel = Field(default_factory=GateModel, description="Which results block.")
    signoff: Signoff | None = Field(None, description="Sign-off section of the report.")
    checks: list[CheckSpecModel] = Field(default_factory=list, description="The checks to run.")
    waivers: list[WaiverModel] = Field(default_factory=list, description="Accepted risks.")


@dataclass(frozen=True)
class PlannedCheck:
    """A check ready to run: its type resolved, parameters validated, defaults applied."""

    id: str
    type: CheckType
    params: CheckParams
    name: str
    severity: Severity
    category: str
    tags: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    timeout: Duration = _TEN_SECONDS
    retries: int = 0
    retry_for: Duration | None = None
    retry_interval: Duration = _ONE_SECOND
    remediation: str | None = None
    description: str | None = None
    location: Location | None = None
    rule: CheckRule = DEFAULT_RULE
    """The check's own gate rule (``blocks`` / ``blocks_on``)."""


@dataclass(frozen=True)
class Waiver:
    check: str
    reason: str
    approved_by: str
    until: date
    location: Location | None = None

    def expired(self, today: date) -> bool:
        return today > self.until


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path
    digest: str
    files: tuple[Path, ...]
    environment: str | None
    description: str | None
    gate: Gate
    signoff: Signoff | None
    checks: tuple[PlannedCheck, ...]
    waivers: tuple[Waiver, ...]
    secrets: frozenset[str]

    @property
    def base_dir(self) -> Path:
        """Relative paths in check parameters resolve against the profile's directory."""
        return self.path.parent

    def redactor(self) -> Redactor:
        return Redactor(self.secrets)

    def inputs(self) -> Iterator[tuple[str, Path]]:
        """The files a run of this profile reads, each named as a message would: the
        profile, the files it extends, and the files its checks read."""
        for index, path in enumerate(self.files):
            yield ("the profile" if index == 0 else "a file the profile extends"), path
        for check in self.checks:
            for path in check.params.input_files(self.base_dir):
                yield f"a file check {check.id!r} reads", path

    def check(self, check_id: str) -> PlannedCheck:
        for planned in self.checks:
            if planned.id == check_id:
                return planned
        raise KeyError(check_id)
