"""How much of a measured latency may be the probe's own, and what a budget can conclude.

Every latency is timed from when its request was due (the open model) or sent (the
closed model), so it holds, beside the server's time, the **probe's part**: how late the
probe started the request (its send lag, when the machine running it is busy) and the
probe's own overhead (event loop, parsing, the kernel's loopback: what calibration
measured). The figure measured is therefore an upper bound on the server's, and the
figure less the probe's whole part a lower bound. For each budget:

    measured <= budget                  within: the server's own can only be lower (PASS)
    measured - probe's part > budget    over, even if the probe's part were all of it (FAIL)
    otherwise                           the probe's part decides: too close to call (ERROR)

The probe's part is the send lag at its 99th percentile plus the calibrated overhead at
its 95th; for the ``max`` budget, the slowest request may have been the latest one, so
the largest lag and overhead are taken. Without calibration (``calibrate: false``) only
the lag is taken off; when calibration measured nothing, the overhead is unknown and no
budget can be called over.

A warning (``warn_at``) asks the same of the lower bound: a result is "near its budget"
only when the figure less the probe's part reaches ``warn_at`` of it, so a busy probe
alone never turns a PASS into a WARN.

Everything here is a pure function of figures: the verdict's tests give it recorded lags
and latencies, and no machine load can disturb them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from readycheck.units import Duration, format_duration_ms

State = Literal["within", "near", "over", "undecided"]
# The open model must start at least this share of the asked rate for a PASS: a probe
# that fell behind sent the service less load than the profile asked for.
MIN_ACHIEVED_SHARE = 0.95


@dataclass(frozen=True)
class ProbePart:
    """The probe's own share of every latency it measured, in milliseconds."""

    lag_p99: float = 0.0
    lag_max: float = 0.0
    overhead_p95: float | None = None
    """The calibrated client overhead; None when calibration was off."""
    overhead_max: float | None = None
    overhead_unknown: bool = False
    """Calibration ran and measured nothing: the overhead could be anything."""

    def lag(self, name: str) -> float:
        return self.lag_max if name == "max" else self.lag_p99

    def overhead(self, name: str) -> float:
        if self.overhead_unknown:
            return math.inf
        value = self.overhead_max if name == "max" else self.overhead_p95
        return value or 0.0

    def of(self, name: str) -> float:
        """What may be the probe's in the figure for the budget ``name`` (p50 ... max)."""
        return self.lag(name) + self.overhead(name)

    def describe(self, name: str) -> str:
        """``up to 40 ms may be the probe's lateness``, for the figure ``name``."""
        if self.overhead_unknown:
            return (
                "an unknown part may be the probe's own overhead (its calibration measured nothing)"
            )
        lag, overhead = self.lag(name), self.overhead(name)
        if overhead <= 0:
            what = "lateness"
        elif lag < 0.005:
            what = "own overhead"
        else:
            what = "lateness and overhead"
        return f"up to {format_duration_ms(lag + overhead)} may be the probe's {what}"


@dataclass(frozen=True)
class BudgetCall:
    """One budget judged against one measured figure, the probe's part considered."""

    name: str
    measured: float
    budget: Duration
    part: ProbePart
    warn_at: float

    @property
    def lower(self) -> float:
        """The least the server's own figure can be: the measured one less the probe's part."""
        return self.measured - self.part.of(self.name)

    @property
    def state(self) -> State:
        limit = self.budget.milliseconds
        if self.measured <= limit:
            return "near" if self.warn_at < 1 and self.lower >= self.warn_at * limit else "within"
        return "over" if self.lower > limit else "undecided"

    @property
    def shown(self) -> str:
        return f"{self.name} {format_duration_ms(self.measured)}"

    def undecided(self) -> str:
        """``p95 312 ms, of which up to 40 ms may be the probe's lateness; budget 300ms``."""
        return f"{self.shown}, of which {self.part.describe(self.name)}; budget {self.budget}"

    def check_line(self) -> str:
        """This budget as the evidence lists it."""
        limit = self.budget.milliseconds
        without = format_duration_ms(max(0.0, self.lower))
        state = self.state
        if state == "over":
            return f"{self.shown} > {self.budget} ({without} without the probe's part)"
        if state == "undecided":
            if math.isinf(self.lower):
                return f"{self.shown} > {self.budget} (the probe's part unknown: undecided)"
            return (
                f"{self.shown} > {self.budget}, but {without} without the probe's part: undecided"
            )
        if state == "near":
            return f"{self.shown} <= {self.budget} (near)"
        if self.warn_at < 1 and self.measured >= self.warn_at * limit:
            return (
                f"{self.shown} <= {self.budget} (near only with the probe's part: {without} "
                "without it)"
            )
        return f"{self.shown} <= {self.budget}"


def strict_doubts(
    *,
    achieved: float | None,
    rate: float | None,
    lag_p99: float,
    max_send_lag: Duration,
    overhead: float | None,
    calibrated: bool,
    thresholds: dict[str, Duration],
    max_overhead_share: float,
) -> list[str]:
    """``strict_trust``: each fixed limit the probe broke, whatever the figures."""
    doubts: list[str] = []
    if rate is not None and achieved is not None and achieved < MIN_ACHIEVED_SHARE * rate:
        doubts.append(
            f"it started {achieved:.1f} requests/s of the {rate:g}/s asked "
            f"(under {MIN_ACHIEVED_SHARE:.0%})"
        )
    if lag_p99 > max_send_lag.milliseconds:
        doubts.append(
            f"its requests started up to {lag_p99:.1f} ms late (send lag p99; "
            f"max_send_lag {max_send_lag})"
        )
    if calibrated and overhead is None:
        doubts.append("calibration against the loopback endpoint measured nothing")
    if overhead is not None and thresholds:
        name, tightest = min(thresholds.items(), key=lambda item: item[1].seconds)
        if overhead > max_overhead_share * tightest.milliseconds:
            doubts.append(
                f"its own overhead ({overhead:.2f} ms at p95) is over "
                f"{max_overhead_share:.0%} of the tightest budget ({name} {tightest}; "
                "max_overhead_share)"
            )
    return doubts
