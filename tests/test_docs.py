"""The documentation stays true: generated check pages match the models, and every
example profile loads."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO, CliResult, placeholder_env

PROFILES = sorted((REPO / "profiles").glob("*.yaml"))


def test_check_reference_pages_are_up_to_date() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "generate_check_docs.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("profile", PROFILES, ids=[p.name for p in PROFILES])
def test_every_example_profile_validates(
    profile: Path, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    # Validating checks that the Alembic scripts folder exists: copied into a project
    # that has one beside the profile (the starters) and one folder up (database.yaml).
    project = tmp_path / "project"
    for folder in (project / "migrations", project / "profiles" / "migrations"):
        folder.mkdir(parents=True)
    copy = project / "profiles" / profile.name
    copy.write_text(profile.read_text())
    result = cli("validate", copy, env=placeholder_env(profile.read_text()))
    assert result.exit_code == 0, result.output
