"""The console of ``readycheck watch``: one line per round, on a terminal and in a CI log
alike (it is the heartbeat of a watch that lasts minutes), then the run's summary."""

from __future__ import annotations

from datetime import datetime
from typing import IO

from readycheck.redact import Redactor
from readycheck.results import RunResult, Status


class RoundLines:
    """Prints ``round 3/11 12:01:30  5 pass, 1 fail  failing: api (1 of 2 in a row)``."""

    def __init__(self, stream: IO[str], fail_after: int, redactor: Redactor) -> None:
        self.stream = stream
        self.fail_after = fail_after
        self.redactor = redactor

    def round_started(self, number: int, planned: int) -> None:
        self.planned = planned

    def round_finished(self, number: int, result: RunResult, streaks: dict[str, int]) -> None:
        counts = (
            ", ".join(f"{count} {name}" for name, count in result.summary.items() if count)
            or "no checks"
        )
        failing = [
            f"{check.id} {check.status.value} ({streaks.get(check.id, 0)} of "
            f"{self.fail_after} in a row)"
            for check in result.checks
            if check.blocking
        ]
        warned = [check.id for check in result.checks if check.status is Status.WARN]
        line = f"round {number}/{self.planned} {_clock(result.started_at)}  {counts}"
        if failing:
            line += f"  blocking: {', '.join(failing)}"
        if warned:
            line += f"  warn: {', '.join(warned)}"
        self.stream.write(self.redactor.redact(line) + "\n")
        self.stream.flush()


def _clock(moment: datetime) -> str:
    return moment.strftime("%H:%M:%S")
