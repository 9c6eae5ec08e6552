"""Round trips timed on readycheck's own loop: the fastest is judged, so a busy machine
running readycheck (which only adds time) cannot fail a fast server."""

from __future__ import annotations

import asyncio

from readycheck.checks.roundtrips import ROUND_TRIPS, RoundTrips
from readycheck.results import Mark
from readycheck.units import Duration

BUDGET = Duration("50ms")


def test_slow_trips_among_fast_ones_are_noise_shown_and_not_failed() -> None:
    trips = RoundTrips((1.2, 80.0, 90.0, 95.0, 120.0))
    assert not trips.over(BUDGET)
    line = trips.evidence("PING", BUDGET)
    assert line == "PING round trip 1.2 ms (fastest of 5, median 90 ms; limit 50ms)"
    assert line.mark is Mark.HELD
    [note] = trips.notes(BUDGET)
    assert "the median round trip is over 50ms, the fastest within it" in note
    assert trips.metrics() == {"latency_ms": 1.2, "latency_median_ms": 90.0}


def test_a_server_slow_every_time_fails() -> None:
    trips = RoundTrips((61.0, 70.0, 75.0, 90.0, 300.0))
    assert trips.over(BUDGET)
    assert trips.evidence("SELECT 1", BUDGET).mark is Mark.BROKEN
    assert trips.notes(BUDGET) == ()


def test_measure_takes_the_configured_number_of_trips() -> None:
    calls: list[int] = []

    async def trip() -> float:
        calls.append(1)
        return float(len(calls))

    trips = asyncio.run(RoundTrips.measure(trip))
    assert len(calls) == ROUND_TRIPS
    assert trips.fastest == 1.0
