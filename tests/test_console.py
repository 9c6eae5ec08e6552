"""The console as a CI log shows it: at 60, 80, 120 and 250 columns without a terminal,
every line fits, no word is broken, nothing is padded or escaped to the terminal, each
failure is shown once and the verdict line comes last; progress lines for a long check;
the live view on a terminal; `report` and its --show; completion; the help's metavars."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.console import Console

from readycheck.engine import Engine
from readycheck.profile import PlannedCheck, load_profile
from readycheck.report.console import ConsoleReporter
from readycheck.report.console.progress import LiveView
from readycheck.report.console.summary import cut_at_word, summary_lines
from readycheck.results import CheckResult, RunResult, Severity, Status
from tests.conftest import CliResult, Terminal

Cli = Callable[..., CliResult]
WIDTHS = [60, 80, 120, 250]
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")

# One 2,000-character line of evidence, of words of many lengths, each word unique: a word
# broken across two lines would no longer be found whole.
_lengths = itertools.cycle([3, 9, 1, 14, 6, 2, 11, 5, 7, 4])
_words: list[str] = []
while len(" ".join(_words)) < 2000:
    index = len(_words)
    _words.append(f"w{index}" + "x" * next(_lengths))
LONG_EVIDENCE = " ".join(_words)[:2000].rsplit(" ", 1)[0]
ODD_ID = "v2__orders_list__.x"  # Markdown would read the underscores as bold
ODD_NAME = "<b>Orders</b> & [x](y) *z*"
ODD_SUMMARY = "[bold]kept as written[/bold] <i>as is</i> `code` | pipe"
LONG_SUMMARY = (
    "3 revisions pending: 0004 (add orders.shipped_at), 0005 (backfill order totals), "
    "0006 (drop the legacy carts table) after the database was restored from a snapshot"
)

PROFILE = f"""
name: console-shop
environment: production
checks:
  - {{id: db, type: test.sleep, severity: critical, name: Database answers,
      with: {{summary: PostgreSQL 16.2 answered in 3.1 ms}}}}
  - id: migrations
    type: test.sleep
    severity: critical
    name: No pending migration
    with:
      status: FAIL
      summary: "{LONG_SUMMARY}"
      evidence: ["{LONG_EVIDENCE}", "scripts head: 0006 (drop the legacy carts table)"]
  - id: {ODD_ID}
    type: test.sleep
    severity: high
    name: "{ODD_NAME}"
    with: {{status: WARN, summary: "{ODD_SUMMARY}", evidence: [2 of 6 headers missing]}}
  - {{id: docs-site, type: test.sleep, severity: low, with: {{status: FAIL, summary: 404 Not Found}}}}
  - {{id: a-check-whose-id-is-longer-than-most, type: test.sleep,
      with: {{summary: answered in 4 ms from the replica}}}}
  - {{id: after-migrations, type: test.sleep, needs: [migrations], with: {{summary: never}}}}
"""


def _run(cli: Cli, path: Path, *args: str, columns: int) -> CliResult:
    return cli("run", path, *args, env={"COLUMNS": str(columns)})


def _paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text.strip("\n")) if p.strip()]


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def shop(write_profile: Callable[..., Path]) -> Path:
    return write_profile(PROFILE)


@pytest.mark.parametrize("columns", WIDTHS)
def test_the_summary_fits_the_width_without_breaking_a_word(
    cli: Cli, shop: Path, columns: int
) -> None:
    result = _run(cli, shop, columns=columns)
    assert result.exit_code == 1, result.output
    out = result.stdout
    lines = out.splitlines()
    too_wide = [line for line in lines if cell_len(line) > columns]
    assert too_wide == [], f"lines over {columns} columns:\n" + "\n".join(too_wide)
    padded = [line for line in lines if line != line.rstrip()]
    assert padded == [], f"{len(padded)} lines end in spaces"
    assert not CONTROL.search(out), "a control character reached a log"
    assert "\r" not in out and "\x1b" not in out

    flat = _flat(out)
    # Every word of the 2,000 characters is there whole, in order, once.
    assert flat.count(_flat(LONG_EVIDENCE)) == 1
    # Each failure once: its line, its summary, its evidence.
    for check_id in ("migrations", "docs-site"):
        assert len(re.findall(rf"^FAIL\s+{check_id}\b", out, re.M)) == 1, out
    assert flat.count(_flat(LONG_SUMMARY)) == 1
    assert flat.count("scripts head: 0006 (drop the legacy carts table)") == 1
    # Metacharacters are shown as written: no markup read, nothing escaped.
    assert len(re.findall(rf"^WARN\s+{re.escape(ODD_ID)}\b", out, re.M)) == 1
    assert ODD_SUMMARY in flat
    assert "\\_" not in out and "&lt;" not in out
    # The verdict comes last, naming the blocking checks.
    last = _flat(_paragraphs(out)[-1])
    assert last.startswith("NOT READY: 2 blocking (migrations, after-migrations)"), last
    assert last.endswith("exit 1")


def test_at_80_columns_each_check_has_one_line_and_the_evidence_below(cli: Cli, shop: Path) -> None:
    out = _run(cli, shop, columns=80).stdout
    assert "Status" not in out  # no table
    lines = out.splitlines()
    db = [line for line in lines if re.match(r"PASS\s+db\s", line)]
    assert len(db) == 1 and db[0].endswith("PostgreSQL 16.2 answered in 3.1 ms")
    # A summary that does not fit the line of a failed check is said whole below it.
    head = next(i for i, line in enumerate(lines) if re.match(r"FAIL\s+migrations\s", line))
    assert re.fullmatch(r"FAIL\s+migrations\s+[\d.]+ ms", lines[head])
    below = lines[head + 1 : head + 40]
    assert below[0].startswith(" " * 8 + "3 revisions pending:")
    severity = below.index(" " * 8 + "critical, blocking")
    assert all(line.startswith(" " * 8) for line in below[:severity])
    assert below[severity + 1].startswith(" " * 8 + "- w0x")
    after = below[severity + 2 : severity + 10]
    assert all(line.startswith(" " * 10) for line in after)  # wrapped under its text
    # An id longer than its column pushes the rest of the line along; a passing summary
    # is cut at a word boundary with "…".
    long_id = next(line for line in lines if "a-check-whose-id-is-longer-than-most" in line)
    found = re.fullmatch(r"PASS\s+a-check-whose-id-is-longer-than-most\s+[\d.]+ ms\s+(.*)", long_id)
    assert found and _cut_at_a_word(found[1], "answered in 4 ms from the replica")


def test_at_60_columns_an_id_too_long_for_the_line_has_a_line_of_its_own(
    cli: Cli, shop: Path
) -> None:
    lines = _run(cli, shop, columns=60).stdout.splitlines()
    at = lines.index("PASS    a-check-whose-id-is-longer-than-most")
    found = re.fullmatch(r" +[\d.]+ ms  (.*)", lines[at + 1])
    assert found and _cut_at_a_word(found[1], "answered in 4 ms from the replica")


def _cut_at_a_word(shown: str, whole: str) -> bool:
    """``shown`` is the first words of ``whole`` and "…", at least one of them."""
    kept = shown.removesuffix("…").split()
    return (
        shown.endswith("…")
        and 0 < len(kept) < len(whole.split())
        and (kept == whole.split()[: len(kept)])
    )


@pytest.mark.parametrize("columns", [120, 250])
def test_from_120_columns_it_is_a_table_with_more_columns(
    cli: Cli, shop: Path, columns: int
) -> None:
    out = _run(cli, shop, columns=columns).stdout
    header = next(line for line in out.splitlines() if line.startswith("Status"))
    assert header.split()[:2] == ["Status", "Check"]
    assert "Severity" in header and "Summary" in header
    if columns == 250:
        assert "Name" in header
        assert ODD_NAME in out
    assert re.search(r"^FAIL\s+migrations\s+(No pending migration\s+)?critical ●", out, re.M)


def test_a_word_wider_than_the_whole_line_is_the_only_thing_folded() -> None:
    assert cut_at_word("one two three", 9) == ("one two…", True)
    assert cut_at_word("one two", 7) == ("one two", False)
    assert cut_at_word("unbreakable", 5) == ("unbr…", True)


def test_a_long_path_loses_its_middle_so_what_follows_it_still_shows() -> None:
    summary = "/tmp/readycheck-demo-7971-u2bcfwow/service.log is present (2.1 KB)"
    shown, cut = cut_at_word(summary, 42)
    assert cut and len(shown) <= 42
    assert shown.startswith("/tmp/") and "service.log is present (2.1 KB)" in shown
    url = "GET http://127.0.0.1:45701/api/orders/00000000-0000: 404 Not Found with the body"
    shown, _ = cut_at_word(url, 42)
    assert shown.startswith("GET http://") and "0000: 404 Not Found" in shown
    assert len(shown) <= 42 and shown.endswith("…")
    # Words of ordinary length are left whole.
    assert cut_at_word("answered in 4 ms from the replica", 20) == ("answered in 4 ms…", True)


def test_control_characters_in_evidence_are_shown_not_sent(
    cli: Cli, write_profile: Callable[..., Path]
) -> None:
    path = write_profile(
        'checks: [{id: out, type: test.sleep, with: {status: FAIL, summary: "red\\x1b[31m", '
        'evidence: ["bell\\x07 tab\\there cr\\rend"]}}]\n'
    )
    out = _run(cli, path, columns=80).stdout
    assert not CONTROL.search(out)
    assert "red\\x1b[31m" in out
    assert "bell\\x07 tab    here cr\\x0dend" in out


# -- progress without a terminal --------------------------------------------------------


class FastClock:
    """Time as the reporter reads it, running ``speed`` times faster than the wall's."""

    def __init__(self, speed: float) -> None:
        self.start = time.monotonic()
        self.speed = speed

    def __call__(self) -> float:
        return self.start + (time.monotonic() - self.start) * self.speed


def test_a_check_running_40_s_gets_a_line_at_10_s_and_a_heartbeat_at_30_s(
    write_profile: Callable[..., Path],
) -> None:
    # 0.4 real seconds of a check read as 40 s by the reporter's clock.
    path = write_profile(
        """
        name: slow-shop
        checks:
          - {id: quick, type: test.sleep}
          - {id: slow, type: test.sleep, with: {seconds: 0.4, summary: done at last}}
        """
    )
    stream = io.StringIO()
    reporter = ConsoleReporter(
        stream, total=2, title="slow-shop", clock=FastClock(100.0), tick=0.005
    )
    profile = load_profile(path)
    with reporter:
        result = asyncio.run(Engine(profile, observer=reporter).run())
    reporter.summary(result)
    out = stream.getvalue()
    lines = out.splitlines()
    assert lines[0] == "readycheck: running 2 checks of slow-shop"
    slow_lines = [line for line in lines if line.startswith("slow: still running after")]
    assert len(slow_lines) == 1, out
    assert re.fullmatch(r"slow: still running after 1\d s", slow_lines[0])
    beats = [line for line in lines if re.match(r"\d+ s: \d of 2 checks done", line)]
    assert beats, out
    assert re.fullmatch(r"3\d s: 1 of 2 checks done; still running: slow \(\d+ s\)", beats[0])
    assert not CONTROL.search(out) and "\r" not in out
    assert not any("quick" in line for line in slow_lines + beats)
    assert _flat(_paragraphs(out)[-1]).startswith("READY")


def test_a_heartbeat_names_every_running_check_with_its_progress(
    write_profile: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    path = write_profile(
        """
        checks:
          - {id: probe, type: test.sleep}
          - {id: pool, type: test.sleep}
          - {id: done, type: test.sleep}
        """
    )
    now = [0.0]
    stream = io.StringIO()
    # Its own thread looks once an hour: this test calls beat() at the times it sets.
    reporter = ConsoleReporter(stream, total=3, clock=lambda: now[0], tick=3600)
    probe, pool, done = load_profile(path).checks
    with reporter:
        heartbeat = reporter.heartbeat
        assert heartbeat is not None
        for check in (probe, pool, done):
            reporter.check_started(check, 1)
        now[0] = 2.0
        reporter.check_started(pool, 2)  # a retry starts its clock again
        reporter.check_progress(probe, 1200, 3000, "p95 7.2 ms")
        now[0] = 5.0
        heartbeat.beat()
        # Nothing due yet but the start of the run and the retry.
        assert stream.getvalue() == "readycheck: running 3 checks\npool: attempt 2\n"
        reporter.check_finished(_result_of(done))
        now[0] = 30.0
        heartbeat.beat()
        now[0] = 45.0
        heartbeat.beat()  # nothing new: each check is announced once, the next beat at 60 s
    lines = stream.getvalue().splitlines()[2:]
    assert lines[:2] == [
        "probe: still running after 30 s (1,200/3,000, p95 7.2 ms)",
        "pool: still running after 28 s",
    ]
    # Wrapped to the console's width (80 here), the lines after the first indented.
    assert lines[2:] == [
        "30 s: 1 of 3 checks done; still running: probe (30 s, 1,200/3,000, p95 7.2 ms),",
        "  pool (28 s)",
    ]


def _result_of(check: PlannedCheck) -> CheckResult:
    return CheckResult(
        id=check.id,
        type=check.type.name,
        name=check.id,
        category="testing",
        severity=Severity.HIGH,
        status=Status.PASS,
        blocking=False,
        summary="ok",
    )


# -- progress on a terminal --------------------------------------------------------------


def test_the_live_view_shows_running_checks_and_a_probes_progress_bar(
    write_profile: Callable[..., Path],
) -> None:
    path = write_profile(
        "checks: [{id: orders-p95, type: test.sleep}, {id: db, type: test.sleep}]\n"
    )
    probe, db = load_profile(path).checks
    now = [100.0]
    reporter = ConsoleReporter(Terminal(), total=2, clock=lambda: now[0])
    reporter.check_started(probe, 1)
    reporter.check_started(db, 2)
    reporter.check_progress(probe, 1200, 3000, "p95 7.2 ms")
    now[0] = 112.5
    console = Console(width=100, record=True, file=io.StringIO(), color_system=None)
    console.print(LiveView(reporter))
    view = console.export_text()
    assert re.search(r"orders-p95\s+test\.sleep\s+12\.5s\s+\S+\s+1,200/3,000, p95 7\.2 ms", view)
    assert re.search(r"db\s+test\.sleep\s+attempt 2\s+12\.5s", view)
    assert "0/2 checks done" in view


def test_on_a_terminal_progress_is_live_and_gone_when_the_summary_comes(
    write_profile: Callable[..., Path],
) -> None:
    path = write_profile("checks: [{id: a, type: test.sleep, with: {seconds: 0.3}}]\n")
    stream = Terminal()
    reporter = ConsoleReporter(stream, total=1)
    with reporter:
        result = asyncio.run(Engine(load_profile(path), observer=reporter).run())
    reporter.summary(result)
    out = stream.getvalue()
    assert "readycheck: running" not in out  # the plain start line is for logs only
    assert "READY" in out


def test_the_latency_probe_reports_requests_sent_and_its_p95(
    write_profile: Callable[..., Path], http_server: object
) -> None:
    seen: list[tuple[str, int, int | None, str]] = []

    class Recorder:
        def check_started(self, check: object, attempt: int) -> None: ...

        def check_finished(self, result: object) -> None: ...

        def check_progress(self, check: object, done: int, total: int | None, note: str) -> None:
            seen.append((check.id, done, total, note))  # type: ignore[attr-defined]

    url = f"{http_server.url}/sleep?ms=5"  # type: ignore[attr-defined]
    path = write_profile(
        "checks:\n  - id: p95\n    type: http.latency\n    timeout: 20s\n"
        f"    with: {{url: '{url}', rate: 100, requests: 200, warmup: 5, p95: 2s}}\n"
    )
    asyncio.run(Engine(load_profile(path, environ={}), observer=Recorder()).run())
    assert seen, "no progress reported"
    assert all(check_id == "p95" and total == 200 for check_id, _, total, _ in seen)
    assert all(0 <= done <= 200 for _, done, _, _ in seen)
    assert any(re.fullmatch(r"p95 [\d.]+ ms", note) for *_, note in seen)


# -- report, help, completion ---------------------------------------------------------------


def test_report_shows_the_summary_only_when_asked_or_when_nothing_is_written(
    cli: Cli, shop: Path, tmp_path: Path
) -> None:
    saved = tmp_path / "results.json"
    assert _run(cli, shop, "--json", str(saved), columns=80).exit_code == 1
    written = tmp_path / "again.md"
    quiet = cli("report", saved, "--report", written, env={"COLUMNS": "80"})
    assert quiet.exit_code == 0
    assert quiet.stdout == f"wrote {written}\n"
    shown = cli("report", saved, "--report", written, "--show", env={"COLUMNS": "80"})
    bare = cli("report", saved, env={"COLUMNS": "80"})
    for result in (shown, bare):
        assert re.search(r"^FAIL\s+migrations", result.stdout, re.M)
        assert _flat(_paragraphs(result.stdout)[-1]).startswith("NOT READY")
    assert f"wrote {written}" in shown.stdout


def test_a_report_of_the_demos_results_reads_at_every_width(cli: Cli) -> None:
    saved = Path(__file__).parent.parent / "docs" / "screenshots" / "demo-results.json"
    document = json.loads(saved.read_text())
    for columns in WIDTHS:
        out = cli("report", saved, env={"COLUMNS": str(columns)}).stdout
        assert max(cell_len(line) for line in out.splitlines()) <= columns
        for check in document["checks"]:
            assert len(re.findall(rf"^{check['status']}\s+{check['id']}\b", out, re.M)) == 1


def test_help_names_values_as_good_clis_do(cli: Cli) -> None:
    text = cli("run", "--help", env={"COLUMNS": "100"}).stdout
    for shown in (
        "--only ID",
        "--skip ID",
        "--concurrency N",
        "--deadline DURATION",
        "--report FILE",
        "--json FILE",
        "--log FILE",
    ):
        assert shown in text, shown
    assert "list[str]" not in text and "<int" not in text and "<str>" not in text
    assert "--stack NAME" in cli("init", "--help", env={"COLUMNS": "100"}).stdout


def _complete(readycheck_process: Callable[..., CliResult], words: str) -> list[str]:
    env = {
        "_READYCHECK_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
    }
    return readycheck_process(env=env).stdout.split()


def test_the_shell_completes_check_types_starters_and_a_profiles_ids(
    readycheck_process: Callable[..., CliResult], write_profile: Callable[..., Path]
) -> None:
    path = write_profile(
        """
        checks:
          - {id: db-main, type: command, tags: [database], with: {argv: ["${env:UNSET_HERE}"]}}
          - {id: db-replica, type: command, with: {argv: [x]}}
          - {id: api, type: command, tags: [http], with: {argv: [x]}}
        """
    )
    from readycheck.registry import Registry

    postgres = sorted(t.name for t in Registry().all() if t.name.startswith("post"))
    assert "postgres.pool" in postgres
    assert _complete(readycheck_process, "readycheck explain post") == postgres
    assert _complete(readycheck_process, "readycheck init --stack ") == [
        "django-postgres",
        "fastapi-postgres",
        "generic-http",
    ]
    assert _complete(readycheck_process, f"readycheck run {path} --only db") == [
        "db-main",
        "db-replica",
    ]
    assert _complete(readycheck_process, f"readycheck run {path} --skip tag:") == [
        "tag:database",
        "tag:http",
    ]
    assert _complete(readycheck_process, "readycheck run /no/such.yaml --skip ") == []


def test_summary_lines_are_what_a_recording_console_exports(
    cli: Cli, shop: Path, tmp_path: Path
) -> None:
    """The screenshots in docs/ are made this way (scripts/console_screenshots.py)."""
    saved = tmp_path / "r.json"
    _run(cli, shop, "--json", str(saved), columns=80)
    result = RunResult.model_validate_json(saved.read_text())
    console = Console(width=80, record=True, file=io.StringIO(), color_system="truecolor")
    for line in summary_lines(console, result):
        console.print(line, soft_wrap=True)
    svg = console.export_svg(title="readycheck")
    assert svg.startswith("<svg") and "migrations" in svg
