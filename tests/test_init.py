"""`readycheck init` and shell completion: a newcomer's first profile."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from readycheck.cli import STACKS
from tests.conftest import REPO, CliResult, placeholder_env

Cli = Callable[..., CliResult]


@pytest.mark.parametrize("stack", STACKS)
def test_init_writes_a_starter_profile_that_validates(stack: str, tmp_path: Path, cli: Cli) -> None:
    target = tmp_path / "readycheck.yaml"
    result = cli("init", target, "--stack", stack)
    assert result.exit_code == 0, result.output
    text = target.read_text()
    assert text.startswith("# yaml-language-server: $schema=readycheck.schema.json\n")
    assert "${env:" in text
    (tmp_path / "migrations").mkdir()  # the project's Alembic scripts, which validate finds
    validated = cli("validate", target, env=placeholder_env(text))
    assert validated.exit_code == 0, validated.output
    # The starter in profiles/ is the same file (a link), so it cannot drift.
    assert (REPO / "profiles" / f"starter-{stack}.yaml").read_text() == text


def test_init_refuses_to_overwrite_without_force(tmp_path: Path, cli: Cli) -> None:
    target = tmp_path / "readycheck.yaml"
    target.write_text("mine\n")
    refused = cli("init", target)
    assert refused.exit_code == 2
    assert "exists; pass --force to overwrite it" in refused.stderr
    assert target.read_text() == "mine\n"
    assert cli("init", target, "--force").exit_code == 0
    assert "http.endpoint" in target.read_text()


def test_init_with_an_unknown_stack_names_the_choices(tmp_path: Path, cli: Cli) -> None:
    result = cli("init", tmp_path / "p.yaml", "--stack", "django")
    assert result.exit_code == 2
    assert "did you mean 'django-postgres'" in result.stderr
    assert not (tmp_path / "p.yaml").exists()


def test_shell_completion_completes_commands_and_options(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "_READYCHECK_COMPLETE": "complete_bash",
        "COMP_CWORD": "1",
        "COMP_WORDS": "readycheck va",
    }
    done = subprocess.run(
        [sys.executable, "-m", "readycheck"], env=env, capture_output=True, text=True, timeout=30
    )
    assert "validate" in done.stdout.split()
    env.update({"COMP_CWORD": "2", "COMP_WORDS": "readycheck run --jun"})
    done = subprocess.run(
        [sys.executable, "-m", "readycheck"], env=env, capture_output=True, text=True, timeout=30
    )
    assert "--junit" in done.stdout.split()
