"""`readycheck watch`: rounds through the rollback window, a rollback recommended only
when a blocking failure holds, a flap reported and not acted on, Ctrl-C with outputs."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from readycheck.engine import RunOptions
from readycheck.profile import load_profile
from readycheck.report.rounds import RoundLines
from readycheck.units import Duration
from readycheck.watch import Watch, WatchOptions
from tests.conftest import CliResult, Terminal

Cli = Callable[..., CliResult]


def _profile(write_profile: Callable[..., Path], statuses: str) -> Path:
    return write_profile(
        f"""
        name: shop
        checks:
          - {{id: errors, type: test.sequence, severity: critical, tags: [post-deploy],
             with: {{key: errors, statuses: {statuses}}}}}
          - {{id: docs, type: test.sleep, severity: low}}
        """
    )


def test_a_failure_that_holds_recommends_the_rollback(
    cli: Cli, write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    out, report = tmp_path / "r.json", tmp_path / "r.md"
    path = _profile(write_profile, "[PASS, FAIL, FAIL, PASS, PASS]")
    result = cli(
        "watch",
        path,
        "--for",
        "2s",
        "--every",
        "10ms",
        "--only",
        "tag:post-deploy",
        "--json",
        out,
        "--report",
        report,
    )
    assert result.exit_code == 1, result.output
    assert "rollback recommended: errors FAIL for 2 rounds in a row" in result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("round ")]
    assert len(lines) == 3  # stopped at the third round, not at the end of the window
    assert "blocking: errors FAIL (2 of 2 in a row)" in lines[2]
    assert "rounds (last" not in result.stdout  # the live table is for a terminal
    document = json.loads(out.read_text())
    assert document["verdict"] == "NOT_READY"
    assert document["rollback"].startswith("rollback recommended: errors FAIL")
    errors = next(check for check in document["checks"] if check["id"] == "errors")
    assert [point["status"] for point in errors["timeline"]] == ["PASS", "FAIL", "FAIL"]
    assert "rounds: PASS FAIL FAIL" in errors["evidence"]
    text = report.read_text()
    window = text.split("## Rollback window", 1)[1].split("\n## ", 1)[0]
    assert "3 rounds from" in window and "rollback recommended: errors FAIL" in window
    assert "| `errors` | PASS FAIL FAIL | yes |" in window


def test_on_a_terminal_a_live_table_shows_each_check_round_by_round(
    write_profile: Callable[..., Path],
) -> None:
    profile = load_profile(_profile(write_profile, "[PASS, FAIL, FAIL]"))
    terminal = Terminal()
    console = Console(file=terminal, width=100, color_system=None)
    lines = RoundLines(terminal, 2, profile.redactor(), console=console)
    watch = Watch(
        profile,
        RunOptions(only=("tag:post-deploy",)),
        WatchOptions(duration=Duration("5s"), every=Duration("10ms")),
        rounds=lines,
    )
    with lines.live_table():
        result = asyncio.run(watch.run())
    assert lines.live is None  # stopped with the watch, before the summary is printed
    out = terminal.getvalue()
    assert (result.rollback or "").startswith("rollback recommended: errors FAIL")
    assert "round 3/" in out
    assert "rounds (last 20)" in out
    assert re.search(r"errors\s+PASS\s+P\s", out)  # after the first round
    assert re.search(r"errors\s+FAIL\s+PFF\s+2 of 2 in a row", out)


def test_the_html_report_draws_each_metric_round_by_round(
    cli: Cli, write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_profile(
        "checks:\n  - {id: api, type: test.sleep, with: {metrics: {p99_ms: 12.5}}}\n"
    )
    html = tmp_path / "r.html"
    result = cli("watch", path, "--for", "30ms", "--every", "10ms", "--html", html)
    assert result.exit_code == 0, result.output
    text = html.read_text()
    assert "<h2>Rollback window</h2>" in text
    assert 'aria-label="api: p99_ms, round by round"' in text


def test_a_flapping_check_is_reported_and_not_acted_on(
    cli: Cli, write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "r.json"
    path = _profile(write_profile, "[PASS, FAIL]")
    result = cli("watch", path, "--for", "90ms", "--every", "10ms", "--json", out)
    document = json.loads(out.read_text())
    errors = next(check for check in document["checks"] if check["id"] == "errors")
    statuses = [point["status"] for point in errors["timeline"]]
    assert len(statuses) >= 2 and set(statuses) == {"PASS", "FAIL"}
    assert document["rollback"] is None
    assert errors["blocking"] is False  # never two failures in a row
    if statuses[-1] == "FAIL":  # ended on a single failure: shown, not acted on
        assert any("2 needed to recommend a rollback" in line for line in errors["evidence"])
    assert result.exit_code == 0, result.output


def test_fail_after_1_acts_on_the_first_failure(
    cli: Cli, write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    path = _profile(write_profile, "[FAIL]")
    result = cli("watch", path, "--for", "1m", "--every", "30s", "--fail-after", "1")
    assert result.exit_code == 1
    assert "once a blocking failure holds for 1 round in a row" in result.stdout
    assert "rollback recommended: errors FAIL for 1 round in a row" in result.stderr


def test_bad_windows_are_usage_errors(cli: Cli, write_profile: Callable[..., Path]) -> None:
    path = _profile(write_profile, "[PASS]")
    assert "--for/--every" in cli("watch", path, "--for", "soon").stderr
    assert cli("watch", path, "--for", "0s").exit_code == 2
    assert "no check has the tag" in cli("watch", path, "--for", "1s", "--only", "tag:x").stderr


def test_ctrl_c_ends_the_watch_with_the_outputs_so_far(
    subprocess_env: dict[str, str], write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "r.json"
    path = _profile(write_profile, "[PASS]")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "readycheck",
            "watch",
            path,
            "--for",
            "10m",
            "--every",
            "1s",
            "--json",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env,
    )
    assert process.stdout is not None
    for line in process.stdout:  # wait for a round to end
        if line.startswith("round 2/"):
            break
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    document = json.loads(out.read_text())
    assert document["verdict"] == "INTERRUPTED"
    errors = next(check for check in document["checks"] if check["id"] == "errors")
    assert len(errors["timeline"]) >= 2
