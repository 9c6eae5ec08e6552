"""``readycheck watch``: the rollback window after a deploy.

The selected checks run in rounds (``--every``) for a while (``--for``). A blocking
failure is a reason to roll back only once it holds: when the same check has blocked in
``--fail-after`` rounds in a row (default 2), the watch stops and recommends the
rollback; a check that fails once and recovers (a flap) is reported, never acted on.

The result is a RunResult like a run's: the last round's checks, each with its timeline
(its status in every round, and the series of its metrics), a check blocking only when
its failure held. Its verdict is NOT_READY when a rollback is recommended, INTERRUPTED
when the watch was stopped (Ctrl-C), and otherwise the gate's verdict of the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from readycheck.engine import Engine, Observer, RunOptions
from readycheck.gate import verdict_of
from readycheck.profile import Profile
from readycheck.redact import Redactor
from readycheck.results import CheckResult, RoundPoint, RunResult, Status, Verdict, summarize
from readycheck.units import Duration, counted

DEFAULT_FAIL_AFTER = 2


@dataclass(frozen=True)
class WatchOptions:
    duration: Duration
    """How long the window lasts (``--for``)."""
    every: Duration
    """How often a round starts (``--every``)."""
    fail_after: int = DEFAULT_FAIL_AFTER
    """Rounds in a row a blocking failure must hold before a rollback is recommended."""


class RoundObserver(Protocol):
    """What a watch tells its console, besides each round's checks."""

    def round_started(self, number: int, planned: int) -> None: ...

    def round_finished(self, number: int, result: RunResult, streaks: dict[str, int]) -> None: ...


@dataclass
class _Timeline:
    rounds: list[RunResult] = dataclasses.field(default_factory=list)
    streaks: dict[str, int] = dataclasses.field(default_factory=dict)


class Watch:
    def __init__(
        self,
        profile: Profile,
        run_options: RunOptions,
        options: WatchOptions,
        *,
        observer: Observer | None = None,
        rounds: RoundObserver | None = None,
        redactor: Redactor | None = None,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if options.fail_after < 1:
            raise ValueError("fail_after must be at least 1")
        self.profile = profile
        self.run_options = run_options
        self.options = options
        self.observer = observer
        self.rounds = rounds
        self.redactor = redactor or profile.redactor()
        self.timer = timer
        self.abandoned = False
        self._engine: Engine | None = None
        self._stop: asyncio.Event | None = None
        self._interrupted = False

    @property
    def planned(self) -> int:
        """Rounds in the window: one at its start, then one every ``every``."""
        return max(1, int(self.options.duration.seconds // self.options.every.seconds) + 1)

    def interrupt(self) -> None:
        """Stop now (Ctrl-C): the round running ends as an interrupted run does."""
        self._interrupted = True
        if self._stop is not None:
            self._stop.set()
        if self._engine is not None:
            self._engine.interrupt()

    @property
    def interrupted(self) -> bool:
        return self._interrupted

    async def run(self) -> RunResult:
        self._stop = asyncio.Event()
        if self._interrupted:
            self._stop.set()
        timeline = _Timeline()
        start = self.timer()
        number = 0
        while True:
            number += 1
            if self.rounds is not None:
                self.rounds.round_started(number, self.planned)
            self._engine = Engine(
                self.profile, self.run_options, observer=self.observer, redactor=self.redactor
            )
            result = await self._engine.run()
            self.abandoned = self.abandoned or bool(self._engine.abandoned)
            self._engine = None
            timeline.rounds.append(result)
            for check in result.checks:
                held = timeline.streaks.get(check.id, 0) + 1 if check.blocking else 0
                timeline.streaks[check.id] = held
            if self.rounds is not None:
                self.rounds.round_finished(number, result, dict(timeline.streaks))
            if self._interrupted or self._sustained(timeline):
                break
            next_start = start + number * self.options.every.seconds
            end = start + self.options.duration.seconds
            if next_start > end or self.timer() >= end:  # slow rounds do not stretch it
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), max(0.0, next_start - self.timer()))
            if self._stop.is_set():
                break
        return self._result(timeline)

    def _sustained(self, timeline: _Timeline) -> list[str]:
        return [
            check_id
            for check_id, held in timeline.streaks.items()
            if held >= self.options.fail_after
        ]

    def _result(self, timeline: _Timeline) -> RunResult:
        first, last = timeline.rounds[0], timeline.rounds[-1]
        sustained = set(self._sustained(timeline))
        checks = [self._judged(check, timeline, sustained) for check in last.checks]
        if self._interrupted:
            verdict = Verdict.INTERRUPTED
        elif sustained:
            verdict = Verdict.NOT_READY
        else:
            verdict = verdict_of(checks, interrupted=False)
        return last.model_copy(
            update={
                "started_at": first.started_at,
                "duration_ms": round(
                    (last.finished_at - first.started_at).total_seconds() * 1000.0, 3
                ),
                "checks": checks,
                "verdict": verdict,
                "exit_code": verdict.exit_code,
                "summary": summarize(check.status for check in checks),
                "rollback": self._advice(checks, timeline, sustained),
            }
        )

    def _judged(self, check: CheckResult, timeline: _Timeline, sustained: set[str]) -> CheckResult:
        points = [
            RoundPoint(
                round=number,
                at=result.started_at,
                status=found.status,
                metrics=found.metrics,
            )
            for number, result in enumerate(timeline.rounds, start=1)
            for found in result.checks
            if found.id == check.id
        ]
        statuses = " ".join(point.status.value for point in points)
        failed = sum(point.status in (Status.FAIL, Status.ERROR) for point in points)
        evidence = [*check.evidence, f"rounds: {statuses}"]
        blocking = check.id in sustained
        if check.blocking and not blocking:
            evidence.append(
                f"blocked in {counted(timeline.streaks.get(check.id, 0), 'round')} in a row at the "
                f"end, {self.options.fail_after} needed to recommend a rollback"
            )
        elif failed and not check.blocking and check.status is Status.PASS:
            evidence.append(f"failed in {failed} of {len(points)} rounds, then recovered")
        return check.model_copy(
            update={"timeline": points, "evidence": evidence, "blocking": blocking}
        )

    def _advice(
        self, checks: list[CheckResult], timeline: _Timeline, sustained: set[str]
    ) -> str | None:
        if not sustained or self._interrupted:
            return None
        held = [check for check in checks if check.id in sustained]
        reasons = "; ".join(
            f"{check.id} {check.status.value} for "
            f"{counted(timeline.streaks[check.id], 'round')} in a row: {check.summary}"
            for check in held
        )
        return self.redactor.redact(f"rollback recommended: {reasons}")
