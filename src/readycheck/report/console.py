"""The console: live progress while checks run, then the table, the details and the verdict.

On a terminal the progress is a live view of what is running; elsewhere (CI logs) each
check prints one plain line as it finishes. Every string shown comes from a redacted
RunResult or passes the redactor.

Rich is imported only where it draws, so a run in CI starts its checks without waiting
for it.
"""

from __future__ import annotations

import time
from typing import IO, TYPE_CHECKING

from readycheck.redact import Redactor
from readycheck.results import CheckResult, RunResult, Status, Verdict
from readycheck.units import format_duration_ms

if TYPE_CHECKING:
    from types import TracebackType

    from rich.console import Console, Group, RenderableType
    from rich.live import Live
    from rich.table import Table
    from rich.text import Text

    from readycheck.profile import PlannedCheck

STYLES = {
    Status.PASS: "green",
    Status.WARN: "yellow",
    Status.FAIL: "bold red",
    Status.ERROR: "bold magenta",
    Status.SKIP: "dim",
    Status.WAIVED: "cyan",
}
VERDICT_STYLES = {
    Verdict.READY: "bold green",
    Verdict.READY_WITH_WAIVERS: "bold cyan",
    Verdict.NOT_READY: "bold red",
    Verdict.NO_CHECKS_RUN: "bold red",
    Verdict.INTERRUPTED: "bold yellow",
}


class ConsoleReporter:
    """Shows progress (as the engine's observer) and the final summary."""

    def __init__(
        self,
        stream: IO[str],
        *,
        total: int,
        quiet: bool = False,
        redactor: Redactor | None = None,
    ) -> None:
        self.stream = stream
        self.quiet = quiet
        self.total = total
        self.redactor = redactor or Redactor()
        self.running: dict[str, tuple[PlannedCheck, int, float]] = {}
        self.finished = 0
        self.live: Live | None = None
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            import os

            from rich.console import Console

            # A CI log is not 80 columns wide: without a terminal (and no COLUMNS), give
            # the table room rather than wrap every summary.
            width = None if self.interactive or os.environ.get("COLUMNS") else 140
            self._console = Console(file=self.stream, highlight=False, soft_wrap=False, width=width)
        return self._console

    @property
    def interactive(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    # -- progress (engine observer) -------------------------------------------------------

    def __enter__(self) -> ConsoleReporter:
        if not self.quiet and self.interactive:
            from rich.live import Live

            self.live = Live(
                _Progress(self),
                console=self.console,
                refresh_per_second=8,
                transient=True,
            )
            self.live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def check_started(self, check: PlannedCheck, attempt: int) -> None:
        self.running[check.id] = (check, attempt, time.monotonic())
        if attempt > 1 and self.live is None and not self.quiet:
            self._plain(f"  ... {check.id}: attempt {attempt}")

    def check_finished(self, result: CheckResult) -> None:
        self.running.pop(result.id, None)
        self.finished += 1
        if self.quiet:
            return
        duration = format_duration_ms(result.duration_ms) if result.attempts else "-"
        summary = self.redactor.redact(result.summary)
        if self.live is not None:
            from rich.text import Text

            self.live.console.print(
                Text.assemble(
                    (f"{result.status.value:<6}", STYLES[result.status]),
                    f" {result.id}",
                    (f"  {duration}", "dim"),
                    f"  {summary}",
                )
            )
        else:
            self._plain(f"{result.status.value:<6} {result.id}  {duration}  {summary}")

    def _plain(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A line for the user outside the results (an interruption notice)."""
        if self.live is not None:
            self.live.console.print(text, style="yellow", highlight=False)
        else:
            self._plain(text)

    # -- summary -------------------------------------------------------------------------

    def summary(self, result: RunResult) -> None:
        if not self.quiet:
            self.console.print()
            self.console.print(results_table(result, self.redactor))
            details = failure_details(result, self.redactor)
            if details is not None:
                self.console.print()
                self.console.print(details)
            changes = comparison_lines(result)
            if changes is not None:
                self.console.print()
                self.console.print(changes)
            self.console.print()
        self.console.print(verdict_line(result), soft_wrap=True)


class _Progress:
    """The live view: one spinner line per running check, and a count."""

    def __init__(self, reporter: ConsoleReporter) -> None:
        from rich.spinner import Spinner

        self.reporter = reporter
        self.spinners: dict[str, Spinner] = {}

    def __rich__(self) -> RenderableType:
        from rich.console import Group
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        reporter = self.reporter
        now = time.monotonic()
        lines: list[RenderableType] = []
        for check_id, (check, attempt, since) in list(reporter.running.items()):
            spinner = self.spinners.setdefault(check_id, Spinner("dots", style="cyan"))
            label = Text.assemble(
                f" {check.id}",
                (f"  {check.type.name}", "dim"),
                (f"  attempt {attempt}" if attempt > 1 else "", "yellow"),
                (f"  {now - since:.1f}s", "dim"),
            )
            table = Table.grid(padding=(0, 1))
            table.add_row(spinner, label)
            lines.append(table)
        lines.append(Text(f"{reporter.finished}/{reporter.total} checks done", style="dim"))
        return Group(*lines)


def results_table(result: RunResult, redactor: Redactor | None = None) -> Table:
    from rich.table import Table
    from rich.text import Text

    scrub = (redactor or Redactor()).redact
    show_names = any(check.name != check.id for check in result.checks)
    table = Table(title=f"readycheck: {result.profile.name}", title_justify="left", expand=False)
    table.add_column("Status", no_wrap=True)
    table.add_column("Check", no_wrap=True, overflow="fold")
    if show_names:
        table.add_column("Name", overflow="fold")
    table.add_column("Severity", no_wrap=True)
    table.add_column("Time", justify="right", no_wrap=True)
    table.add_column("Summary", overflow="fold")
    for check in result.checks:
        severity = Text(check.severity.value, style="bold" if check.blocking else "")
        if check.blocking:
            severity.append(" ●", style="red")
        row: list[RenderableType] = [
            Text(check.status.value, style=STYLES[check.status]),
            Text(check.id),
        ]
        if show_names:
            row.append(Text(check.name))
        row += [
            severity,
            Text(format_duration_ms(check.duration_ms) if check.attempts else "-", style="dim"),
            Text(scrub(check.summary)),
        ]
        table.add_row(*row)
    if result.blocking:
        table.caption = "● blocking"
        table.caption_justify = "left"
    return table


def failure_details(result: RunResult, redactor: Redactor | None = None) -> Group | None:
    from rich.console import Group
    from rich.text import Text

    scrub = (redactor or Redactor()).redact
    shown = [
        check
        for check in result.checks
        if check.status in (Status.FAIL, Status.ERROR, Status.WARN, Status.WAIVED)
        or (check.status is Status.SKIP and check.blocking)
    ]
    if not shown:
        return None
    parts: list[RenderableType] = []
    for check in shown:
        header = Text.assemble(
            (f"{check.status.value} ", STYLES[check.status]),
            (check.id, "bold"),
            (f"  ({check.severity.value}{', blocking' if check.blocking else ''})", "dim"),
        )
        parts.append(header)
        parts.append(Text(f"  {scrub(check.summary)}"))
        for line in check.evidence:
            parts.append(Text(f"    - {scrub(line)}", style="dim"))
        if check.waiver is not None and check.status is Status.WAIVED:
            waiver = check.waiver
            parts.append(
                Text(
                    f"  waived by {waiver.approved_by} until {waiver.until}: "
                    f"{scrub(waiver.reason)}",
                    style="cyan",
                )
            )
        if check.remediation:
            parts.append(Text(f"  → {scrub(check.remediation)}", style="yellow"))
        if check.traceback:
            parts.append(Text(scrub(check.traceback), style="dim"))
        parts.append(Text(""))
    expired = [w for w in result.waivers if w.state == "expired"]
    for waiver in expired:
        parts.append(
            Text(
                f"waiver for {waiver.check} expired on {waiver.until}: not applied", style="yellow"
            )
        )
    return Group(*parts)


def comparison_lines(result: RunResult) -> Group | None:
    """What changed since the baseline, when there is one."""
    comparison = result.comparison
    if comparison is None:
        return None
    from rich.console import Group
    from rich.text import Text

    from readycheck.baseline import describe_metric_change

    lines: list[RenderableType] = [
        Text(
            f"Since {comparison.baseline_path} ({comparison.baseline_verdict.value}, "
            f"{comparison.baseline_started_at:%Y-%m-%d %H:%M}):",
            style="bold",
        )
    ]
    for change in comparison.regressed:
        lines.append(
            Text(
                f"  regressed  {change.check}: {change.before.value} -> {change.after.value}",
                style="red",
            )
        )
    for change in comparison.recovered:
        lines.append(
            Text(
                f"  recovered  {change.check}: {change.before.value} -> {change.after.value}",
                style="green",
            )
        )
    lines += [Text(f"  new        {check_id}") for check_id in comparison.new]
    lines += [Text(f"  gone       {check_id}", style="dim") for check_id in comparison.gone]
    for metric in comparison.metrics:
        verdict = {True: "worse", False: "better", None: "changed"}[metric.worse]
        lines.append(
            Text(
                f"  {verdict:<10} {metric.check}: {describe_metric_change(metric)}",
                style="red" if metric.worse else "",
            )
        )
    if len(lines) == 1:
        lines.append(Text("  nothing changed", style="dim"))
    return Group(*lines)


def verdict_line(result: RunResult) -> Text:
    from rich.text import Text

    from readycheck.report.overview import not_run_note

    counts = (
        ", ".join(f"{count} {name}" for name, count in result.summary.items() if count)
        or "no checks"
    )
    blocking = result.blocking
    text = Text.assemble((result.verdict.value.replace("_", " "), VERDICT_STYLES[result.verdict]))
    if blocking:
        ids = ", ".join(check.id for check in blocking[:5])
        more = f" and {len(blocking) - 5} more" if len(blocking) > 5 else ""
        text.append(f": {len(blocking)} blocking ({ids}{more})")
    note = not_run_note(result)
    if note:
        text.append(f"; {note}", style="yellow")
    text.append(f"  {counts}  in {format_duration_ms(result.duration_ms)}", style="dim")
    text.append(f"  exit {result.exit_code}", style="dim")
    return text
