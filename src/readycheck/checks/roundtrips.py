"""Round trips timed on readycheck's own event loop (a PING, a `SELECT 1`), judged so that
the noise of the machine running readycheck cannot decide.

A round trip measured here holds the server's time and readycheck's own lateness: its
loop is shared with the other checks of the run, on a machine that may be busy. That
lateness only ever adds time, so of several round trips the **fastest** is the one it
inflated least: it is what a `max_latency` budget judges. A service that is slow is slow
every time, the fastest trip included; one slow trip among fast ones is noise (ours or
the network's), shown in the evidence beside the median and never a FAIL on its own.
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from readycheck.results import MarkedLine, compared
from readycheck.units import Duration, format_duration_ms

ROUND_TRIPS = 5
BUDGET_MEANING = (
    f"Slowest acceptable round trip: the fastest of {ROUND_TRIPS} is judged (a busy machine "
    "running readycheck only ever adds time to a trip)."
)


@dataclass(frozen=True)
class RoundTrips:
    samples_ms: tuple[float, ...]

    @classmethod
    async def measure(cls, trip: Callable[[], Awaitable[float]]) -> RoundTrips:
        """``trip()`` returns one round trip's milliseconds; run it ROUND_TRIPS times."""
        return cls(tuple([await trip() for _ in range(ROUND_TRIPS)]))

    @property
    def fastest(self) -> float:
        return min(self.samples_ms)

    @property
    def median(self) -> float:
        return statistics.median(self.samples_ms)

    def over(self, budget: Duration) -> bool:
        return self.fastest > budget.milliseconds

    def evidence(self, what: str, budget: Duration) -> MarkedLine:
        """``PING round trip 0.4 ms (fastest of 5, median 0.6 ms; limit 50ms)``."""
        return compared(
            not self.over(budget),
            f"{what} round trip {format_duration_ms(self.fastest)} (fastest of "
            f"{len(self.samples_ms)}, median {format_duration_ms(self.median)}; limit {budget})",
        )

    def notes(self, budget: Duration) -> Sequence[str]:
        """Why a median over the budget did not fail the check, when it did not."""
        if self.over(budget) or self.median <= budget.milliseconds:
            return ()
        return (
            f"the median round trip is over {budget}, the fastest within it: slow trips "
            "among fast ones are noise (a busy machine running readycheck, the network), "
            "not a slow server",
        )

    def metrics(self) -> dict[str, float]:
        return {"latency_ms": round(self.fastest, 3), "latency_median_ms": round(self.median, 3)}
