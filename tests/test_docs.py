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
def test_every_example_profile_validates(profile: Path, cli: Callable[..., CliResult]) -> None:
    result = cli("validate", profile, env=placeholder_env(profile.read_text()))
    assert result.exit_code == 0, result.output
