"""Percentiles and the histogram of a latency run: one definition, used everywhere.

Percentiles are exact and **nearest-rank** over every sample kept (the safety caps bound
how many there are): for ``n`` sorted samples, the q-th percentile is the sample of rank
``ceil(q / 100 * n)`` (1-based), so it is always a latency that was actually measured,
p100 is the maximum, and with 500 samples p95 is the 475th fastest. wrk, HdrHistogram and
k6 report the same definition (up to their bucket resolution); interpolating definitions
(numpy's default) can report a latency nobody saw.

The histogram has fixed, log-spaced buckets (the R10 preferred numbers, ten a decade,
from 0.1 ms to 100 s), the same for every run, so two reports can be compared bucket by
bucket. Bucket ``i`` counts the samples in ``(bounds_ms[i-1], bounds_ms[i]]``; the first
also counts anything faster than 0.1 ms and the last anything slower than 100 s.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50),
    ("p90", 90),
    ("p95", 95),
    ("p99", 99),
    ("max", 100),
)

_R10 = (1.0, 1.25, 1.6, 2.0, 2.5, 3.15, 4.0, 5.0, 6.3, 8.0)
HISTOGRAM_BOUNDS_MS: tuple[float, ...] = (
    *(round(mantissa * 10.0**exponent, 4) for exponent in range(-1, 5) for mantissa in _R10),
    100_000.0,
)


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    """The q-th percentile (0 < q <= 100) of already sorted, non-empty samples."""
    if not ordered:
        raise ValueError("no samples")
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} is not in (0, 100]")
    # Exact arithmetic: 0.95 * 500 in floating point is 474.99999999999994.
    rank = math.ceil(Fraction(str(q)) * len(ordered) / 100)
    return ordered[max(rank, 1) - 1]


@dataclass(frozen=True)
class Summary:
    """Percentiles, extremes and mean of a set of latencies, in milliseconds."""

    count: int
    percentiles: dict[str, float]
    min: float
    mean: float

    @property
    def p50(self) -> float:
        return self.percentiles["p50"]

    @property
    def p95(self) -> float:
        return self.percentiles["p95"]

    @property
    def max(self) -> float:
        return self.percentiles["max"]


def summarize(latencies_ms: Sequence[float]) -> Summary | None:
    """Nearest-rank percentiles of the samples, or None when there are none."""
    if not latencies_ms:
        return None
    ordered = sorted(latencies_ms)
    return Summary(
        count=len(ordered),
        percentiles={name: nearest_rank(ordered, q) for name, q in PERCENTILES},
        min=ordered[0],
        mean=math.fsum(ordered) / len(ordered),
    )


def histogram(latencies_ms: Sequence[float]) -> dict[str, list[float] | list[int]]:
    """Counts per fixed log-spaced bucket: ``{"bounds_ms": [...], "counts": [...]}``."""
    counts = [0] * len(HISTOGRAM_BOUNDS_MS)
    last = len(HISTOGRAM_BOUNDS_MS) - 1
    for value in latencies_ms:
        counts[min(bisect.bisect_left(HISTOGRAM_BOUNDS_MS, value), last)] += 1
    return {"bounds_ms": list(HISTOGRAM_BOUNDS_MS), "counts": counts}
