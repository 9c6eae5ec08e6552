"""The console: progress while checks run, then every check once and the verdict last.

On a terminal the progress is a live view of the running checks (progress.py), gone when
the run ends. Elsewhere (a CI log) it is a line when the run starts, a line when a check
has been running for ``slow_after`` seconds, and a heartbeat every ``heartbeat_every``
seconds naming the checks still running: plain lines, never a carriage return or a
spinner frame. What is shown after the run is summary.py's.

Rich is imported only where it draws, so a run in CI starts its checks without waiting
for it. Every string shown comes from a redacted RunResult or passes the redactor.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING

from readycheck.redact import Redactor
from readycheck.report.console.summary import printable, summary_lines, verdict_line, wrap
from readycheck.results import CheckResult, RunResult

if TYPE_CHECKING:
    from types import TracebackType

    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    from readycheck.profile import PlannedCheck
    from readycheck.report.console.progress import Heartbeat

SLOW_AFTER_S = 10.0
HEARTBEAT_EVERY_S = 30.0


class Running:
    """A check being run, as the progress views show it."""

    def __init__(self, check: PlannedCheck, attempt: int, since: float) -> None:
        self.check = check
        self.attempt = attempt
        self.since = since
        self.done: int | None = None
        self.total: int | None = None
        self.note = ""
        self.announced = False


class ConsoleReporter:
    """Shows progress (as the engine's observer) and, after the run, the summary."""

    def __init__(
        self,
        stream: IO[str],
        *,
        total: int,
        title: str | None = None,
        quiet: bool = False,
        show_summary: bool = True,
        redactor: Redactor | None = None,
        slow_after: float = SLOW_AFTER_S,
        heartbeat_every: float = HEARTBEAT_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        tick: float = 1.0,
    ) -> None:
        self.stream = stream
        self.quiet = quiet
        self.show_summary = show_summary
        self.total = total
        self.title = title
        self.redactor = redactor or Redactor()
        self.slow_after = slow_after
        self.heartbeat_every = heartbeat_every
        self.clock = clock
        self.tick = tick
        """How often, in real seconds, the heartbeat looks at the clock."""
        self.running: dict[str, Running] = {}
        self.finished = 0
        self.started = clock()
        self.lock = threading.Lock()
        self.live: Live | None = None
        self.heartbeat: Heartbeat | None = None
        self.begun = False
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            # Without a terminal, the width is COLUMNS, else Rich's 80: what a CI log
            # shows unwrapped. Lines are never padded to it (summary.py).
            self._console = Console(file=self.stream, highlight=False, soft_wrap=False)
        return self._console

    @property
    def interactive(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    # -- progress (engine observer) -------------------------------------------------------

    def __enter__(self) -> ConsoleReporter:
        self.started = self.clock()
        if self.quiet:
            return self
        if self.interactive:
            from rich.live import Live

            from readycheck.report.console.progress import LiveView

            self.live = Live(
                LiveView(self), console=self.console, refresh_per_second=8, transient=True
            )
            self.live.start()
        else:
            from readycheck.report.console.progress import Heartbeat

            self.heartbeat = Heartbeat(self, self.tick)
            self.heartbeat.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
            self.heartbeat = None
        if self.live is not None:
            self.live.stop()
            self.live = None

    def check_started(self, check: PlannedCheck, attempt: int) -> None:
        with self.lock:
            first = not self.begun
            self.begun = True
            self.running[check.id] = Running(check, attempt, self.clock())
        if self.heartbeat is None:
            return
        if first:  # said once the engine runs (and a Ctrl-C is an interruption, not a crash)
            of = f" of {self.title}" if self.title else ""
            checks = "check" if self.total == 1 else "checks"
            self.say(f"readycheck: running {self.total} {checks}{of}")
        if attempt > 1:
            self.say(f"{check.id}: attempt {attempt}")

    def check_progress(self, check: PlannedCheck, done: int, total: int | None, note: str) -> None:
        with self.lock:
            running = self.running.get(check.id)
            if running is not None:
                running.done, running.total, running.note = done, total, note

    def check_finished(self, result: CheckResult) -> None:
        with self.lock:
            self.running.pop(result.id, None)
            self.finished += 1

    def snapshot(self) -> tuple[list[Running], int]:
        """The running checks, longest-running first, and how many have finished."""
        with self.lock:
            running = sorted(self.running.values(), key=lambda r: r.since)
            return running, self.finished

    def say(self, text: str, style: str = "") -> None:
        """A line of progress, wrapped at word boundaries; never a control character."""
        from rich.text import Text

        self.print_lines(
            wrap(
                Text(printable(self.redactor.redact(text)), style=style),
                self.console.width,
                indent=2,
            )
        )

    def print_lines(self, lines: Sequence[Text]) -> None:
        target = self.live.console if self.live is not None else self.console
        with self.lock:
            for line in lines:
                target.print(line, soft_wrap=True)

    def message(self, text: str) -> None:
        """A line for the user outside the results (an interruption notice)."""
        for line in text.splitlines() or [""]:
            self.say(line, style="yellow")

    # -- summary -------------------------------------------------------------------------

    def summary(self, result: RunResult, written: Sequence[str] = ()) -> None:
        """Every check once, what was written, and the verdict line last (only the verdict
        line when quiet; nothing when the summary is not to be shown)."""
        if not self.show_summary:
            if not self.quiet:
                width = self.console.width
                for path in written:
                    self.print_lines(wrap(_dim(f"wrote {printable(path)}"), width, indent=2))
            return
        if self.quiet:
            self.print_lines(wrap(verdict_line(result), self.console.width, indent=2))
            return
        # A blank line first: apart from the progress or round lines above.
        self.print_lines([_dim(""), *summary_lines(self.console, result, self.redactor, written)])


def _dim(text: str) -> Text:
    from rich.text import Text

    return Text(text, style="dim")
