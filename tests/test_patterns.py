"""Profile patterns: matched in linear time wherever the target controls the text.

A pattern that backtracks catastrophically under Python's ``re`` (``^(a+)+$`` against
forty ``a`` and a ``!``) is run against every kind of text a profile matches. The runs are
readycheck processes under the test's own timeout: were a pattern to hold the event loop,
the subprocess timeout would end the test, and no timeout inside readycheck could.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from readycheck.checks import patterns
from tests.conftest import CliResult
from tests.servers.http import AppServer

BACKTRACKS = "^(a+)+$"
VICTIM = "a" * 40 + "!"


def test_a_backtracking_pattern_cannot_hang_a_run(
    write_profile: Callable[..., Path],
    readycheck_process: Callable[..., CliResult],
    http_server: AppServer,
    tmp_path: Path,
) -> None:
    (tmp_path / "victim.txt").write_text(f"first line\n{VICTIM}\n")
    path = write_profile(
        f"""
        checks:
          - id: output
            type: command
            with: {{argv: [printf, "{VICTIM}"], contains: '{BACKTRACKS}'}}
          - id: forbidden-output
            type: command
            with: {{argv: [printf, "{VICTIM}"], not_contains: '{BACKTRACKS}'}}
          - id: content
            type: file
            with: {{path: victim.txt, contains: '{BACKTRACKS}'}}
          - id: environment
            type: config.env
            with: {{rules: [{{name: VICTIM, matches: '{BACKTRACKS}'}}]}}
          - id: body
            type: http.endpoint
            with:
              url: {http_server.url}/echo
              headers: {{X-Victim: "{VICTIM}"}}
              expect: {{json: {{headers.x-victim: {{matches: '{BACKTRACKS}'}}}}}}
          - id: header
            type: http.endpoint
            with:
              url: {http_server.url}/echo
              expect: {{headers: {{content-type: {{matches: '^(a+)+$'}}}}}}
        """
    )
    out = tmp_path / "results.json"
    result = readycheck_process("run", path, "--json", out, env={"VICTIM": VICTIM}, timeout=120)
    assert result.exit_code == 1, result.output
    statuses = {c["id"]: (c["status"], c["summary"]) for c in json.loads(out.read_text())["checks"]}
    assert statuses["output"][0] == "FAIL"
    assert f"does not match '{BACKTRACKS}'" in statuses["output"][1]
    assert statuses["forbidden-output"][0] == "PASS"
    assert statuses["content"][0] == "FAIL"
    assert statuses["environment"][0] == "FAIL"
    assert statuses["body"][0] == "FAIL"
    assert statuses["header"][0] == "FAIL"


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(\w+) \1", "backreferences (\\1) are not supported"),
        (r"token(?=s)", "lookahead is not supported"),
        (r"(?<!no)secret", "lookbehind is not supported"),
    ],
)
def test_a_pattern_re2_refuses_is_a_profile_error_naming_field_and_line(
    cli: Callable[..., CliResult], write_profile: Callable[..., Path], pattern: str, reason: str
) -> None:
    path = write_profile(
        f"""
        checks:
          - id: ok
            type: command
            with: {{argv: ["true"]}}
          - id: output
            type: command
            with:
              argv: ["true"]
              contains: '{pattern}'
        """
    )
    result = cli("validate", path)
    assert result.exit_code == 2
    assert "profile.yaml:9:" in result.stderr
    assert "checks[output].with.contains" in result.stderr
    assert reason in result.stderr
    assert "Traceback" not in result.output and "internal error" not in result.output


def test_lines_are_counted_in_text_with_other_alphabets_and_undecodable_bytes() -> None:
    text = "naïve\n日本語\n\udcff broken\nfound here\n"
    assert patterns.first_match_line("^found", text) == 4
    assert patterns.first_match_line("^日本語$", text) == 2
    assert patterns.matches("ï", text)
    assert not patterns.matches("^found", text)  # not multiline: ^ is the text's start


@pytest.fixture
def without_re2(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Match as on a platform where google-re2 is not installed."""
    monkeypatch.setattr(patterns, "re2", None)
    monkeypatch.setattr(patterns, "FALLBACK_LIMIT_SECONDS", 2.0)
    patterns._compiled.cache_clear()
    yield
    patterns._compiled.cache_clear()


def test_re2_is_the_engine_here() -> None:
    assert patterns.engine() == "re2"


@pytest.mark.usefixtures("without_re2")
def test_without_re2_a_backtracking_match_is_ended_at_its_time_limit() -> None:
    with pytest.raises(patterns.PatternTimeout, match="did not finish matching"):
        patterns.matches(BACKTRACKS, VICTIM)


@pytest.mark.usefixtures("without_re2")
def test_without_re2_python_patterns_still_match_with_their_lines() -> None:
    assert patterns.validate_pattern(r"token(?=s)") == r"token(?=s)"
    assert patterns.first_match_line(r"^(\w+) \1$", "x\nbye bye\n") == 2
    assert patterns.first_match_line("^é$", "a\n\udcff\né\n") == 3
    assert not patterns.matches("^b", "a\nb")
    with pytest.raises(ValueError, match="invalid regular expression"):
        patterns.validate_pattern("(")
