"""Every number in a profile is bounded by its model: a value far out of range (5,000
digits, an infinity) is a profile error naming the file, line and setting, never an
internal error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult
from tests.profilegen import MINIMAL, builtin_types, flow, huge, number_settings

Cli = Callable[..., CliResult]


def test_every_builtin_check_type_has_a_minimal_profile() -> None:
    assert set(MINIMAL) == builtin_types()


CASES = [
    (check_type, setting, kind)
    for check_type in sorted(MINIMAL)
    for setting, kind in number_settings(check_type).items()
]


@pytest.mark.parametrize(("check_type", "setting", "kind"), CASES)
def test_a_number_setting_of_5000_digits_is_a_profile_error_with_its_line(
    cli: Cli, write_profile: Callable[..., Path], check_type: str, setting: str, kind: str
) -> None:
    block = {key: flow(value) for key, value in MINIMAL[check_type].items()}
    block[setting] = huge(kind)
    lines = "\n".join(f"      {key}: {value}" for key, value in block.items())
    path = write_profile(f"checks:\n  - id: it\n    type: {check_type}\n    with:\n{lines}\n")
    line = 4 + list(block).index(setting) + 1
    result = cli("validate", path)
    assert result.exit_code == 2, result.output
    assert f"profile.yaml:{line}:" in result.stderr
    assert f"checks[it].with.{setting}" in result.stderr
    assert "internal error" not in result.output and "Traceback" not in result.output
    assert "9" * 100 not in result.output  # the value is not echoed whole


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (f"    timeout: {huge('duration')}\n", "checks[it].timeout", "at most 168h"),
        (f"    retries: {huge('int')}\n", "checks[it].retries", "far too large"),
        ("    retry_for: 200h\n", "checks[it].retry_for", "at most 168h"),
        ("    retry_interval: 1e400s\n", "checks[it].retry_interval", "is not a duration"),
    ],
)
def test_a_checks_own_numbers_are_bounded_too(
    cli: Cli, write_profile: Callable[..., Path], text: str, where: str, message: str
) -> None:
    path = write_profile(f"checks:\n  - id: it\n    type: command\n{text}    with: {{argv: [x]}}\n")
    result = cli("validate", path)
    assert result.exit_code == 2, result.output
    assert "profile.yaml:4:" in result.stderr and where in result.stderr
    assert message in result.stderr
    assert "internal error" not in result.output


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (f"defaults: {{timeout: {huge('duration')}}}\n", "defaults.timeout"),
        ("gate: {regression: 1e400}\n", "gate.regression"),
        ("gate: {regression: .nan}\n", "gate.regression"),
    ],
)
def test_profile_level_numbers_are_bounded(
    cli: Cli, write_profile: Callable[..., Path], text: str, where: str
) -> None:
    path = write_profile(text + "checks: [{id: it, type: command, with: {argv: [x]}}]\n")
    result = cli("validate", path)
    assert result.exit_code == 2, result.output
    assert "profile.yaml:1:" in result.stderr and where in result.stderr


def test_a_deadline_of_5000_digits_is_a_usage_error(
    cli: Cli, write_profile: Callable[..., Path]
) -> None:
    path = write_profile("checks: [{id: it, type: command, with: {argv: ['true']}}]\n")
    result = cli("run", path, "--deadline", huge("duration"))
    assert result.exit_code == 2
    assert "--deadline:" in result.stderr and "at most 168h" in result.stderr


def test_a_long_number_given_as_an_argument_stays_the_text_written(
    cli: Cli, write_profile: Callable[..., Path]
) -> None:
    digits = "7" * 5000
    path = write_profile(f"checks: [{{id: it, type: command, with: {{argv: [echo, {digits}]}}}}]\n")
    assert cli("run", path).exit_code == 0


def test_a_size_held_in_memory_is_at_most_1gb(cli: Cli, write_profile: Callable[..., Path]) -> None:
    path = write_profile("checks: [{id: it, type: command, with: {argv: [x], max_output: 2GB}}]\n")
    result = cli("validate", path)
    assert result.exit_code == 2
    assert "checks[it].with.max_output: at most 1GB" in result.stderr
