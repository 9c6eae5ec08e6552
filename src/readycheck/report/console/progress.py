"""Progress while checks run: a live view on a terminal, plain lines in a log.

LiveView is drawn by Rich's Live several times a second: a spinner, the id, the type and
the elapsed time of each running check, and a bar for a check that reports how far it
has got (the latency probe: requests answered of planned, and its current p95).

Heartbeat, without a terminal, wakes every ``tick`` seconds on a thread of its own: it
prints one line for a check once it has been running ``slow_after`` seconds, and every
``heartbeat_every`` seconds of the run a line naming the checks still running. Times are
read from the reporter's clock, so a test can run that clock fast instead of waiting.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from readycheck.units import format_duration_ms

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.spinner import Spinner

    from readycheck.report.console import ConsoleReporter, Running


def elapsed(seconds: float) -> str:
    """Whole seconds in a log (a heartbeat is no stopwatch): ``12 s``, ``1m05s``."""
    return f"{seconds:.0f} s" if seconds < 60 else format_duration_ms(seconds * 1000)


def counted(running: Running) -> str:
    """``1,200/3,000 requests, p95 7.2 ms`` for a check that reports progress, else ""."""
    if running.done is None:
        return ""
    of = f"/{running.total:,}" if running.total else ""
    note = f", {running.note}" if running.note else ""
    return f"{running.done:,}{of}{note}"


class LiveView:
    """The terminal's live view of the run (transient: the summary replaces it)."""

    def __init__(self, reporter: ConsoleReporter) -> None:
        self.reporter = reporter
        self.spinners: dict[str, Spinner] = {}

    def __rich__(self) -> RenderableType:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        reporter = self.reporter
        now = reporter.clock()
        running, finished = reporter.snapshot()
        grid = Table.grid(padding=(0, 1))
        for _ in range(4):
            grid.add_column(no_wrap=True)
        for item in running:
            spinner = self.spinners.setdefault(item.check.id, Spinner("dots", style="cyan"))
            label = Text.assemble(
                item.check.id,
                (f"  {item.check.type.name}", "dim"),
                (f"  attempt {item.attempt}" if item.attempt > 1 else "", "yellow"),
            )
            row: list[RenderableType] = [spinner, label, Text(f"{now - item.since:.1f}s", "dim")]
            if item.done is not None:
                bar = Table.grid(padding=(0, 1))
                bar.add_row(
                    ProgressBar(total=item.total, completed=item.done, width=24),
                    Text(counted(item), style="dim"),
                )
                row.append(bar)
            grid.add_row(*row)
        done = Text(f"{finished}/{reporter.total} checks done", style="dim")
        return Group(grid, done) if running else done


class Heartbeat:
    """Plain progress lines for a log, from a thread of its own."""

    def __init__(self, reporter: ConsoleReporter, tick: float = 1.0) -> None:
        self.reporter = reporter
        self.tick = tick
        self.next_beat = reporter.started + reporter.heartbeat_every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="readycheck:heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            self.beat()

    def beat(self) -> None:
        """Print what is due at the reporter's clock's time: called every tick."""
        reporter = self.reporter
        now = reporter.clock()
        running, finished = reporter.snapshot()
        for item in running:
            if not item.announced and now - item.since >= reporter.slow_after:
                item.announced = True
                progress = counted(item)
                so_far = f" ({progress})" if progress else ""
                reporter.say(
                    f"{item.check.id}: still running after {elapsed(now - item.since)}{so_far}"
                )
        if now < self.next_beat:
            return
        while self.next_beat <= now:
            self.next_beat += reporter.heartbeat_every
        if not running:
            return
        names = ", ".join(f"{item.check.id} ({_so_far(item, now)})" for item in running)
        reporter.say(
            f"{elapsed(now - reporter.started)}: {finished} of {reporter.total} checks done; "
            f"still running: {names}"
        )


def _so_far(item: Running, now: float) -> str:
    progress = counted(item)
    return f"{elapsed(now - item.since)}, {progress}" if progress else elapsed(now - item.since)
