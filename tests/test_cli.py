"""The command line, end to end: run with every output, validate, checks, explain, schema,
selection, exit codes, and a real Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import jsonschema
import yaml

from readycheck import __version__
from tests.conftest import REPO, CliResult

Cli = Callable[..., CliResult]

NOT_READY = """
name: shop
checks:
  - {id: db, type: test.sleep, severity: critical, with: {summary: db answered}}
  - {id: migrations, type: test.sleep, needs: [db], with: {status: FAIL, summary: 2 pending}}
  - {id: docs, type: test.sleep, severity: low, tags: [docs], with: {status: FAIL}}
"""


def test_version_in_process_and_as_a_module(
    cli: Cli, readycheck_process: Callable[..., CliResult]
) -> None:
    assert cli("--version").stdout == f"readycheck {__version__}\n"
    result = readycheck_process("--version")
    assert (result.exit_code, result.stdout) == (0, f"readycheck {__version__}\n")


def test_run_writes_every_output_and_exits_1_when_not_ready(
    cli: Cli, write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_profile(NOT_READY)
    report, results, junit = (
        tmp_path / "readiness.md",
        tmp_path / "results.json",
        tmp_path / "junit.xml",
    )
    result = cli("run", path, "--report", report, "--json", results, "--junit", junit)
    assert result.exit_code == 1, result.output
    assert "NOT READY: 1 blocking (migrations)" in result.stdout
    assert "2 pending" in result.stdout
    document = json.loads(results.read_text())
    assert document["verdict"] == "NOT_READY"
    assert "## Verdict: ❌ NOT READY" in report.read_text()
    assert ET.parse(junit).getroot().find("testsuite").get("failures") == "2"  # type: ignore[union-attr]


def test_run_exits_0_when_ready(cli: Cli, write_profile: Callable[..., Path]) -> None:
    path = write_profile("checks: [{id: a, type: test.sleep}]\n")
    result = cli("run", path)
    assert result.exit_code == 0
    assert "READY" in result.stdout and "1 pass" in result.stdout


def test_json_to_stdout_keeps_the_console_on_stderr(
    cli: Cli, write_profile: Callable[..., Path]
) -> None:
    result = cli("run", write_profile(NOT_READY), "--json", "-")
    assert json.loads(result.stdout)["verdict"] == "NOT_READY"
    assert "NOT READY" in result.stderr


def test_quiet_prints_only_the_verdict(cli: Cli, write_profile: Callable[..., Path]) -> None:
    result = cli("run", write_profile(NOT_READY), "--quiet")
    assert result.stdout.strip().startswith("NOT READY")
    assert len(result.stdout.strip().splitlines()) == 1


def test_strict_makes_warnings_block(cli: Cli, write_profile: Callable[..., Path]) -> None:
    path = write_profile("checks: [{id: a, type: test.sleep, with: {status: WARN}}]\n")
    assert cli("run", path).exit_code == 0
    assert cli("run", path, "--strict").exit_code == 1


def test_only_and_skip_select_checks(
    cli: Cli, write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_profile(NOT_READY)
    out = tmp_path / "r.json"
    assert cli("run", path, "--skip", "migrations", "--json", out).exit_code == 0
    statuses = {c["id"]: c["status"] for c in json.loads(out.read_text())["checks"]}
    assert statuses == {"db": "PASS", "migrations": "SKIP", "docs": "FAIL"}
    assert cli("run", path, "--only", "tag:docs", "--json", out).exit_code == 0
    statuses = {c["id"]: c["status"] for c in json.loads(out.read_text())["checks"]}
    assert statuses == {"db": "SKIP", "migrations": "SKIP", "docs": "FAIL"}
    unknown = cli("run", path, "--only", "migratoins")
    assert unknown.exit_code == 2
    assert "did you mean 'migrations'" in unknown.stderr


def test_bad_options_and_output_paths_exit_2_before_running(
    cli: Cli, write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    path = write_profile(
        f"checks: [{{id: a, type: command, with: {{argv: [touch, '{marker}']}}}}]\n"
    )
    cases = [
        (["--deadline", "soon"], "--deadline: 'soon' is not a duration"),
        (["--report", str(tmp_path / "no" / "such" / "dir.md")], "does not exist"),
        (["--junit", str(tmp_path)], "is a directory"),
        (
            ["--template", str(tmp_path / "missing.j2"), "--report", str(tmp_path / "r.md")],
            "no such file",
        ),
        (["--var", "novalue"], "write NAME=VALUE"),
        (["--concurrency", "0"], "--concurrency"),
    ]
    for args, message in cases:
        result = cli("run", path, *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output
    assert not marker.exists()


def test_outputs_are_written_when_one_of_them_fails(
    cli: Cli, write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    template = tmp_path / "bad.j2"
    template.write_text("{{ result.no_such_field.deeper }}\n")
    out = tmp_path / "r.json"
    result = cli(
        "run",
        write_profile(NOT_READY),
        "--template",
        template,
        "--report",
        tmp_path / "r.md",
        "--json",
        out,
    )
    assert result.exit_code == 1  # the verdict's code: the checks ran, the JSON was written
    assert "--report" in result.stderr and "no_such_field" in result.stderr
    assert json.loads(out.read_text())["verdict"] == "NOT_READY"


def test_checks_lists_builtin_and_plugin_types(cli: Cli) -> None:
    result = cli("checks")
    assert result.exit_code == 0
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert "Run a command" in lines["command"]
    assert "file" in lines
    assert "readycheck-testtypes 1.0" in lines["test.sleep"]


def test_explain_shows_each_parameter_with_type_default_and_meaning(cli: Cli) -> None:
    result = cli("explain", "command")
    assert result.exit_code == 0
    text = result.stdout
    for fragment in [
        "argv",
        "required",
        "list of string | ValueSource | string",
        "expect_exit",
        "timeout",
        "duration",
        "max_output",
        "1MB",
        "Regex(es) the output",
    ]:
        assert fragment in text, fragment
    unknown = cli("explain", "comand")
    assert unknown.exit_code == 2
    assert "did you mean 'command'" in unknown.stderr


def test_schema_is_valid_and_accepts_the_example_profiles(cli: Cli) -> None:
    result = cli("schema")
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for profile in sorted((REPO / "profiles").glob("*.yaml")):
        document = yaml.safe_load(profile.read_text())
        errors = [e.message for e in validator.iter_errors(document)]
        assert errors == [], (profile.name, errors)
    bad = {"checks": [{"id": "a", "type": "command", "with": {"argv": ["x"], "bogus": 1}}]}
    assert any("bogus" in e.message for e in validator.iter_errors(bad))


def test_the_example_profile_passes_on_this_repository(
    readycheck_process: Callable[..., CliResult], tmp_path: Path
) -> None:
    report = tmp_path / "readiness.md"
    result = readycheck_process("run", REPO / "profiles" / "local.yaml", "--report", report)
    assert result.exit_code == 0, result.output
    assert "READY" in result.stdout
    assert "Readiness report: readycheck" in report.read_text()


def test_ctrl_c_writes_partial_results_and_exits_130(
    write_profile: Callable[..., Path], tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    path = write_profile(
        """
        checks:
          - {id: quick, type: test.sleep}
          - {id: long, type: command, timeout: 60s, with: {argv: [sleep, "30"]}}
          - {id: after, type: test.sleep, needs: [long]}
        """
    )
    out, report, junit = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "j.xml"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "readycheck",
            "run",
            str(path),
            "--json",
            str(out),
            "--report",
            str(report),
            "--junit",
            str(junit),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env,
    )
    # Wait until the engine is running the long check, then press Ctrl-C.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = subprocess.run(["pgrep", "-f", "^sleep 30$"], capture_output=True, text=True)
        if found.stdout.strip():
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stdout + stderr
    assert "Traceback" not in stdout + stderr
    document = json.loads(out.read_text())
    assert document["verdict"] == "INTERRUPTED"
    statuses = {c["id"]: (c["status"], c["summary"]) for c in document["checks"]}
    assert statuses["quick"][0] == "PASS"
    assert statuses["long"][0] == "ERROR" and statuses["long"][1].startswith("interrupted")
    assert statuses["after"] == ("SKIP", "not run: needs long is ERROR")
    assert "INTERRUPTED" in report.read_text()
    assert junit.exists()
    # The command's process was stopped with the run.
    assert subprocess.run(["pgrep", "-f", "^sleep 30$"], capture_output=True).returncode == 1


def test_sigterm_is_an_interruption_too(
    write_profile: Callable[..., Path], tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    path = write_profile("checks: [{id: long, type: test.sleep, with: {seconds: 30}}]\n")
    out = tmp_path / "r.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "readycheck", "run", str(path), "--json", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env,
    )
    time.sleep(1.5)  # start-up; if it is slower, the signal lands while loading: still 130
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=30)
    assert process.returncode == 130
