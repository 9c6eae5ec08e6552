"""What the console shows after a run, fitted to its width: every check once, then the
verdict, last.

Narrower than 120 columns (a CI log, a split terminal), one line per check: status, id,
duration and the summary cut at a word boundary (a long path or URL may lose its middle
instead, so the words after it show); below a check that did not pass, its severity,
evidence, waiver and remediation, indented and wrapped at word boundaries (its summary
moves there too when the line would have to cut it). From 120 columns, a table
with the check's name and severity too, and the same details inside the row of a check
that did not pass, when they fit without breaking a word; otherwise the narrow layout.

Lines are built here as finished, unpadded lines no wider than the console, and printed
as they are: no trailing spaces in a log, no word broken across two lines (a single word
wider than a whole line is the only thing ever folded). Strings come from the redacted
RunResult and pass the redactor again; control characters in them (a command's output in
evidence) are shown as ``\\x1b`` escapes, never sent to the terminal.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from readycheck.redact import Redactor
from readycheck.results import CheckResult, RunResult, Status, Verdict
from readycheck.units import format_duration_ms

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table
    from rich.text import Text

TABLE_FROM = 120
"""The narrowest console that gets the table."""
STATUS_WIDTH = max(len(status.value) for status in Status)
DETAIL_INDENT = STATUS_WIDTH + 2
NAME_MAX = 40
DETAILS_MIN = 40
SUMMARY_MIN = 20

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

Scrub = Callable[[str], str]
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with tabs as spaces and other control characters (but newlines) shown as
    escapes: nothing in a result may move the cursor or colour a log."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text.replace("\t", "    "))


def one_line(text: str) -> str:
    return " ".join(text.split())


def cut_at_word(text: str, room: int) -> tuple[str, bool]:
    """``text`` if it fits in ``room`` cells, and False; else a shortened form, and True.

    As many whole words as fit, with "…" after them. When a word longer than half the
    room (a path, a URL) stands in the way, it may lose its middle to "…" instead, if
    that lets more words show: "/tmp/rea…/service.log is present (2.1 KB)" rather than
    "…". Only when not even the first word fits is it cut inside.
    """
    from rich.cells import cell_len

    if cell_len(text) <= room:
        return text, False
    if room <= 1:
        return "…"[:room], True
    limit = max(LONG_WORD, room // 2)
    shortened = _LONG_WORD.sub(lambda match: _middle_out(match.group(), limit), text)
    if cell_len(shortened) <= room:
        return shortened, True
    whole, short = _whole_words(text, room), _whole_words(shortened, room)
    kept = short if len(short.split()) > len(whole.split()) else whole
    return (kept or _cells(text, room - 1)) + "…", True


def _whole_words(text: str, room: int) -> str:
    """The first words of ``text`` that fit in ``room`` with a cell to spare for "…"."""
    from rich.cells import cell_len

    kept = ""
    for match in re.finditer(r"\S+", text):
        candidate = text[: match.end()]
        if cell_len(candidate) + 1 > room:
            break
        kept = candidate
    return kept


LONG_WORD = 12
"""A word this long or shorter is never cut inside while a shorter form can show it."""
_LONG_WORD = re.compile(rf"\S{{{LONG_WORD + 1},}}")


def _middle_out(word: str, limit: int) -> str:
    """``word`` in at most ``limit`` cells: its start, "…", and its end (the file name)."""
    from rich.cells import cell_len

    if cell_len(word) <= limit:
        return word
    head = _cells(word, (limit - 1) * 2 // 5)
    tail = _cells(word[::-1], limit - 1 - cell_len(head))[::-1]
    return f"{head}…{tail}"


def _cells(text: str, cells: int) -> str:
    """The longest start of ``text`` that takes at most ``cells`` cells."""
    from rich.cells import cell_len

    end = min(len(text), max(cells, 0))
    while end and cell_len(text[:end]) > cells:
        end -= 1
    return text[:end]


def summary_lines(
    console: Console,
    result: RunResult,
    redactor: Redactor | None = None,
    written: Sequence[str] = (),
) -> list[Text]:
    """Everything after the run, as lines: the checks, expired waivers, what changed since
    a baseline, the outputs written, and the verdict line last."""
    from rich.text import Text

    redact = (redactor or Redactor()).redact

    def scrub(text: str) -> str:
        return printable(redact(text))

    width = console.width
    title = Text.assemble(("readycheck: ", "bold"), (scrub(result.profile.name), "bold"))
    if result.environment:
        title.append(f" ({scrub(result.environment)})", style="dim")
    lines = [*wrap(title, width), Text()]
    table = _table(console, result, scrub) if width >= TABLE_FROM else None
    if table is not None:
        lines += render(console, table)
        lines += _tracebacks(console, result, scrub)
    else:
        lines += _one_line_per_check(console, result, scrub)
    extra = _expired_waivers(result, scrub) + _changes(result, scrub)
    extra += [Text(f"wrote {scrub(path)}", style="dim") for path in written]
    if extra:
        lines.append(Text())
        for line in extra:
            lines += wrap(line, width, indent=2)
    lines.append(Text())
    lines += wrap(verdict_line(result), width, indent=2)
    return lines


# -- narrow: one line per check ------------------------------------------------------------


def _one_line_per_check(console: Console, result: RunResult, scrub: Scrub) -> list[Text]:
    from rich.cells import cell_len
    from rich.text import Text

    width = console.width
    checks = result.checks
    if not checks:
        return [Text("no checks", style="dim")]
    id_width = min(max(cell_len(check.id) for check in checks), max(12, width // 3))
    times = {check.id: _duration(check) for check in checks}
    time_width = max(len(time) for time in times.values())
    summary_at = STATUS_WIDTH + 2 + id_width + 2 + time_width + 2
    lines: list[Text] = []
    for index, check in enumerate(checks):
        # Assembled, not added: Text + Text gives the whole line the first part's style.
        status = (f"{check.status.value:<{STATUS_WIDTH}}  ", STYLES[check.status])
        timing = (f"{times[check.id]:>{time_width}}  ", "dim")
        summary = scrub(one_line(check.summary))
        if cell_len(check.id) <= id_width:
            head = Text.assemble(status, check.id.ljust(id_width + 2), timing)
        else:  # an id wider than its column pushes the rest along, or to a line of its own
            head = Text.assemble(status, check.id + "  ", (f"{times[check.id]}  ", "dim"))
            if width - head.cell_len < min(cell_len(summary), SUMMARY_MIN):
                lines += wrap(Text.assemble(status, check.id), width, indent=DETAIL_INDENT)
                head = Text.assemble(" " * (summary_at - time_width - 2), timing)
        room = width - head.cell_len
        shown, cut = cut_at_word(summary, room)
        if cut and _has_details(check):
            shown = ""  # said whole below, rather than cut here and repeated there
        line = Text.assemble(head, shown)
        line.rstrip()
        lines.append(line)
        details = _details(check, scrub, whole_summary=summary if cut else None)
        if details:
            for detail in details:
                lines += wrap(detail, width, indent=_hang(detail), margin=DETAIL_INDENT)
            if index < len(checks) - 1:
                lines.append(Text())
    return lines


def _details(check: CheckResult, scrub: Scrub, *, whole_summary: str | None) -> list[Text]:
    """The lines under a check that did not pass (nothing for one that did)."""
    from rich.text import Text

    if not _has_details(check):
        return []
    lines: list[Text] = []
    if whole_summary is not None:
        lines.append(Text(whole_summary))
    blocking = "blocking" if check.blocking else "not blocking"
    lines.append(Text(f"{check.severity.value}, {blocking}", style="dim"))
    lines += _facts(check, scrub)
    if check.traceback:
        lines += [Text(scrub(line), style="dim") for line in check.traceback.splitlines()]
    return lines


def _hang(fact: Text) -> int:
    """How far a fact's second line is indented: under its text, past a "- " or "→ "."""
    return 2 if fact.plain.startswith(("- ", "→ ")) else 0


def _has_details(check: CheckResult) -> bool:
    return check.status in (Status.FAIL, Status.ERROR, Status.WARN, Status.WAIVED) or (
        check.status is Status.SKIP and check.blocking
    )


def _facts(check: CheckResult, scrub: Scrub) -> list[Text]:
    """Evidence, waiver and remediation of a check that did not pass."""
    from rich.text import Text

    lines = [Text(f"- {scrub(line)}") for line in check.evidence]
    if check.waiver is not None and check.status is Status.WAIVED:
        waiver = check.waiver
        lines.append(
            Text(
                f"waived by {scrub(waiver.approved_by)} until {waiver.until}: "
                f"{scrub(waiver.reason)}",
                style="cyan",
            )
        )
    if check.remediation:
        lines.append(Text(f"→ {scrub(check.remediation)}", style="yellow"))
    return lines


# -- wide: the table -----------------------------------------------------------------------


def _table(console: Console, result: RunResult, scrub: Scrub) -> Table | None:
    """The table, or None when a check that did not pass has a word too wide for it.

    A row is one line (name and summary cut at a word boundary) but for a check that did
    not pass, whose summary and facts wrap in their column.
    """
    from rich import box
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    checks = result.checks
    if not checks:
        return None
    width = console.width
    cells = {check.id: _cell(check, scrub) for check in checks}
    detailed = [str(cells[check.id]) for check in checks if _has_details(check)]
    longest_word = max((cell_len(w) for text in detailed for w in text.split()), default=0)
    natural = max(cell_len(line) for text in map(str, cells.values()) for line in text.split("\n"))
    severities = {check.id: _severity(check) for check in checks}
    id_width = max(cell_len(check.id) for check in checks)
    severity_width = max(cell_len(str(s)) for s in severities.values())
    time_width = max(len(_duration(check)) for check in checks)
    fixed = STATUS_WIDTH + id_width + severity_width + time_width
    names = {check.id: scrub(one_line(check.name)) for check in checks}
    name_width = 0
    if any(check.name != check.id for check in checks):
        name_width = min(max(cell_len(name) for name in names.values()), NAME_MAX)
    room = width - fixed - name_width - 3 * (5 if name_width else 4)
    if name_width and room < max(DETAILS_MIN, longest_word):
        name_width = 0
        room = width - fixed - 3 * 4
    if room < max(DETAILS_MIN, longest_word):
        return None
    summary_width = max(min(room, natural), len("Summary"))

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("Status", width=STATUS_WIDTH, no_wrap=True)
    table.add_column("Check", width=id_width, no_wrap=True)
    if name_width:
        table.add_column("Name", width=name_width, no_wrap=True)
    table.add_column("Severity", width=severity_width, no_wrap=True)
    table.add_column("Time", width=time_width, justify="right", no_wrap=True)
    table.add_column("Summary", width=summary_width, overflow="fold")
    for index, check in enumerate(checks):
        row: list[RenderableType] = [
            Text(check.status.value, style=STYLES[check.status]),
            Text(check.id),
        ]
        if name_width:
            row.append(Text(cut_at_word(names[check.id], name_width)[0]))
        cell = cells[check.id]
        if _has_details(check):  # wrapped here, to hang each fact's lines under its text
            cell = Text("\n").join(
                line
                for fact in cell.split("\n")
                for line in wrap(fact, summary_width, indent=_hang(fact))
            )
        else:
            cell = Text(cut_at_word(cell.plain, summary_width)[0])
        row += [severities[check.id], Text(_duration(check), style="dim"), cell]
        # A blank line around the row of a check that did not pass, so it reads as one.
        following = checks[index + 1] if index + 1 < len(checks) else None
        apart = _has_details(check) or (following is not None and _has_details(following))
        table.add_row(*row, end_section=apart)
    if result.blocking:
        table.caption = "● blocking"
        table.caption_justify = "left"
    return table


def _cell(check: CheckResult, scrub: Scrub) -> Text:
    """The table's last column: the summary, and for a check that did not pass, its
    evidence, waiver and remediation, one to a line."""
    from rich.text import Text

    cell = Text(scrub(one_line(check.summary)))
    if _has_details(check):
        for fact in _facts(check, scrub):
            cell.append("\n")
            cell.append_text(fact.copy())
    return cell


def _severity(check: CheckResult) -> Text:
    from rich.text import Text

    text = Text(check.severity.value, style="bold" if check.blocking else "")
    if check.blocking:
        text.append(" ●", style="red")
    return text


def _tracebacks(console: Console, result: RunResult, scrub: Scrub) -> list[Text]:
    from rich.text import Text

    lines: list[Text] = []
    for check in result.checks:
        if check.traceback:
            lines += [Text(), Text(f"{check.id}: traceback", style="bold")]
            for line in check.traceback.splitlines():
                lines += wrap(Text(scrub(line), style="dim"), console.width, indent=2)
    return lines


# -- after the checks ----------------------------------------------------------------------


def _expired_waivers(result: RunResult, scrub: Scrub) -> list[Text]:
    from rich.text import Text

    return [
        Text(f"waiver for {scrub(w.check)} expired on {w.until}: not applied", style="yellow")
        for w in result.waivers
        if w.state == "expired"
    ]


def _changes(result: RunResult, scrub: Scrub) -> list[Text]:
    """What changed since the baseline, when there is one."""
    comparison = result.comparison
    if comparison is None:
        return []
    from rich.text import Text

    from readycheck.baseline import describe_metric_change

    lines = [
        Text(
            f"Since {scrub(comparison.baseline_path)} ({comparison.baseline_verdict.value}, "
            f"{comparison.baseline_started_at:%Y-%m-%d %H:%M}):",
            style="bold",
        )
    ]
    for word, changes, style in (
        ("regressed", comparison.regressed, "red"),
        ("recovered", comparison.recovered, "green"),
    ):
        lines += [
            Text(f"  {word:<10} {c.check}: {c.before.value} -> {c.after.value}", style=style)
            for c in changes
        ]
    lines += [Text(f"  new        {check_id}") for check_id in comparison.new]
    lines += [Text(f"  gone       {check_id}", style="dim") for check_id in comparison.gone]
    for metric in comparison.metrics:
        verdict = {True: "worse", False: "better", None: "changed"}[metric.worse]
        lines.append(
            Text(
                f"  {verdict:<10} {metric.check}: {scrub(describe_metric_change(metric))}",
                style="red" if metric.worse else "",
            )
        )
    if len(lines) == 1:
        lines.append(Text("  nothing changed", style="dim"))
    return lines


def verdict_line(result: RunResult) -> Text:
    """READY / NOT READY, the blocking checks by id, the counts, the time and the exit
    code: the last line of every run."""
    from rich.text import Text

    from readycheck.report.overview import not_run_note

    counts = (
        ", ".join(f"{count} {name}" for name, count in result.summary.items() if count)
        or "no checks"
    )
    text = Text.assemble((result.verdict.value.replace("_", " "), VERDICT_STYLES[result.verdict]))
    blocking = result.blocking
    if blocking:
        ids = ", ".join(check.id for check in blocking)
        text.append(f": {len(blocking)} blocking ({ids})")
    note = not_run_note(result)
    if note:
        text.append(f"; {note}", style="yellow")
    text.append(f"; {counts}; {format_duration_ms(result.duration_ms)}", style="dim")
    text.append(f"; exit {result.exit_code}", style="dim")
    return text


# -- lines ---------------------------------------------------------------------------------


def _duration(check: CheckResult) -> str:
    return format_duration_ms(check.duration_ms) if check.attempts else "-"


def wrap(text: Text, width: int, *, indent: int = 0, margin: int = 0) -> list[Text]:
    """``text`` in lines of at most ``width`` cells, broken at spaces (a newline ends a
    line), every line after the first of a paragraph indented by ``indent`` more, every
    line by ``margin``; no trailing spaces. Only a word wider than a whole line is folded."""
    from rich.text import Text

    lines: list[Text] = []
    for paragraph in text.split("\n", allow_blank=True):
        for line in _wrap_paragraph(paragraph, max(1, width - margin), indent):
            if margin and line.plain:
                line = Text.assemble(" " * margin, line)
            line.rstrip()
            lines.append(line)
    return lines


def _wrap_paragraph(paragraph: Text, width: int, indent: int) -> list[Text]:
    from rich.cells import cell_len
    from rich.text import Text

    plain = paragraph.plain
    spans: list[tuple[int, int]] = []
    start, end = 0, -1  # the line being filled: from start, its last word ending at end

    def room() -> int:
        return width if not spans else max(1, width - indent)

    for word in re.finditer(r"\S+", plain):
        if end >= 0 and cell_len(plain[start : word.end()]) <= room():
            end = word.end()
            continue
        if end >= 0:
            spans.append((start, end))
            start = word.start()
        while cell_len(plain[start : word.end()]) > room():  # wider than a line: fold it
            cut = start + 1
            while cut < word.end() and cell_len(plain[start : cut + 1]) <= room():
                cut += 1
            spans.append((start, cut))
            start = cut
        end = word.end()
    if end < 0:
        return [Text()]
    spans.append((start, end))
    return [
        paragraph[a:b] if index == 0 else Text.assemble(" " * indent, paragraph[a:b])
        for index, (a, b) in enumerate(spans)
    ]


def render(console: Console, renderable: RenderableType) -> list[Text]:
    """A renderable (the table) as lines of styled text, trailing spaces removed."""
    from rich.text import Text

    lines = []
    for segments in console.render_lines(renderable, console.options, pad=False):
        line = Text()
        for segment in segments:
            if not segment.control:
                line.append(segment.text, segment.style)
        line.rstrip()
        lines.append(line)
    return lines
