"""The console of ``readycheck watch``: one line per round, on a terminal and in a CI log
alike (it is the heartbeat of a watch that lasts minutes), then the run's summary. On a
terminal, a live table under those lines shows each check round by round: its status
now, its statuses so far, and how long a blocking failure has held."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import IO, TYPE_CHECKING

from readycheck.redact import Redactor
from readycheck.report.console.summary import STYLES, printable
from readycheck.results import RunResult, Status

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

ROUNDS_SHOWN = 20
"""The live table's last statuses per check (the JSON and the reports keep them all)."""
LETTERS = {
    Status.PASS: "P",
    Status.WARN: "W",
    Status.FAIL: "F",
    Status.ERROR: "E",
    Status.SKIP: "S",
    Status.WAIVED: "V",
}


class RoundLines:
    """Prints ``round 3/11 12:01:30  5 pass, 1 fail  failing: api (1 of 2 in a row)``, and
    keeps the live table on a terminal (``live_table``)."""

    def __init__(
        self,
        stream: IO[str],
        fail_after: int,
        redactor: Redactor,
        console: Console | None = None,
    ) -> None:
        self.stream = stream
        self.fail_after = fail_after
        self.redactor = redactor
        self.console = console
        self.planned = 0
        self.history: dict[str, list[Status]] = {}
        self.streaks: dict[str, int] = {}
        self.live: Live | None = None

    @contextlib.contextmanager
    def live_table(self) -> Iterator[None]:
        """On a terminal, the live table while the watch runs; gone when it ends, as a
        run's live view is, for the summary to replace it."""
        isatty = getattr(self.stream, "isatty", None)
        if self.console is None or not (isatty and isatty()):
            yield
            return
        from rich.live import Live

        self.live = Live(
            RoundTable(self), console=self.console, refresh_per_second=4, transient=True
        )
        self.live.start()
        try:
            yield
        finally:
            self.live.stop()
            self.live = None

    def round_started(self, number: int, planned: int) -> None:
        self.planned = planned

    def round_finished(self, number: int, result: RunResult, streaks: dict[str, int]) -> None:
        # New objects, not changed in place: the live table draws from another thread.
        history = {check_id: list(statuses) for check_id, statuses in self.history.items()}
        for check in result.checks:
            history.setdefault(check.id, []).append(check.status)
        self.history, self.streaks = history, dict(streaks)
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
        line = self.redactor.redact(line)
        if self.live is not None:
            from rich.text import Text

            self.live.console.print(Text(printable(line)), soft_wrap=True)
            self.live.refresh()
            return
        self.stream.write(line + "\n")
        self.stream.flush()


class RoundTable:
    """The live table: a row per check, drawn from what RoundLines has recorded."""

    def __init__(self, lines: RoundLines) -> None:
        self.lines = lines

    def __rich__(self) -> RenderableType:
        from rich.table import Table
        from rich.text import Text

        lines = self.lines
        history, streaks = lines.history, lines.streaks
        table = Table(box=None, padding=(0, 1), show_edge=False)
        table.add_column("check", no_wrap=True)
        table.add_column("now", no_wrap=True)
        table.add_column(f"rounds (last {ROUNDS_SHOWN})", no_wrap=True)
        table.add_column("blocking", no_wrap=True)
        for check_id, statuses in history.items():
            rounds = Text()
            for status in statuses[-ROUNDS_SHOWN:]:
                rounds.append(LETTERS[status], style=STYLES.get(status, ""))
            held = streaks.get(check_id, 0)
            table.add_row(
                printable(lines.redactor.redact(check_id)),
                Text(statuses[-1].value, style=STYLES.get(statuses[-1], "")),
                rounds,
                f"{held} of {lines.fail_after} in a row" if held else "",
            )
        return table


def _clock(moment: datetime) -> str:
    return moment.strftime("%H:%M:%S")
