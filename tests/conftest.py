"""Shared fixtures: the test check types installed as a plugin, profile files, the CLI."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from readycheck.engine import Engine
from readycheck.profile import load_profile
from readycheck.results import CheckResult

pytest_plugins = [
    "tests.servers.http",
    "tests.servers.postgres",
    "tests.servers.prometheus",
    "tests.servers.ratelimit",
    "tests.servers.redis",
]

REPO = Path(__file__).resolve().parent.parent

TEST_TYPES = {
    "test.sleep": "tests.checktypes:sleep",
    "test.exclusive": "tests.checktypes:exclusive",
    "test.flaky": "tests.checktypes:flaky",
    "test.sequence": "tests.checktypes:sequence",
    "test.secret": "tests.checktypes:secret",
    "test.raise": "tests.checktypes:raises",
    "test.exit": "tests.checktypes:exits",
    "test.stubborn": "tests.checktypes:stubborn",
    "test.wrong_return": "tests.checktypes:wrong_return",
    "test.patient": "tests.checktypes:patient",
}


def placeholder_env(profile_text: str) -> dict[str, str]:
    """A value for every ${env:NAME} a profile reads, fit for validating it: profiles
    read their addresses and secrets from the environment, and validation connects to
    nothing."""
    env = {}
    for name in set(re.findall(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}", profile_text)):
        upper = name.upper()
        if "REDIS" in upper:
            env[name] = "redis://:example-password@cache.invalid:6379/0"
        elif "DATABASE" in upper or "DSN" in upper or upper.startswith("PG"):
            env[name] = "postgresql://app:example-password@db.invalid:5432/app"
        elif upper.endswith("URL"):
            env[name] = "https://service.invalid"
        else:
            env[name] = "example-value"
    return env


@pytest.fixture(scope="session", autouse=True)
def test_types_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Install tests/checktypes.py's types the way a plugin is installed: a distribution
    whose metadata declares `readycheck.checks` entry points, on sys.path."""
    site = tmp_path_factory.mktemp("plugin-site")
    dist_info = site / "readycheck_testtypes-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: readycheck-testtypes\nVersion: 1.0\n"
    )
    lines = [f"{name} = {target}" for name, target in TEST_TYPES.items()]
    (dist_info / "entry_points.txt").write_text("[readycheck.checks]\n" + "\n".join(lines) + "\n")
    sys.path.insert(0, str(site))
    try:
        yield site
    finally:
        sys.path.remove(str(site))


@pytest.fixture
def subprocess_env(test_types_plugin: Path) -> dict[str, str]:
    """Environment for running readycheck in a subprocess with the test types."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(test_types_plugin), str(REPO)])
    env.pop("GITHUB_ACTIONS", None)
    env["COLUMNS"] = "200"
    return env


@pytest.fixture
def write_profile(tmp_path: Path) -> Callable[..., Path]:
    """Write a profile (dedented YAML) into the test's directory and return its path."""

    def write(text: str, name: str = "profile.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write


@dataclass
class CheckRun:
    """One check run through the real engine, and the engine (to look at its redactor)."""

    result: CheckResult
    engine: Engine

    @property
    def shown(self) -> str:
        """Everything the result shows a reader."""
        r = self.result
        return "\n".join([r.summary, *r.evidence, r.remediation or ""])


RunCheck = Callable[..., CheckRun]


@pytest.fixture
def run_check(write_profile: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> RunCheck:
    """Run one check: its type and `with:` block (YAML flow text, or a mapping written as
    JSON), under `timeout`, with `extra` check keys (YAML lines) and `env` set in the
    process environment for the run."""

    def run(
        check_type: str,
        params: str | Mapping[str, Any],
        *,
        timeout: str = "10s",
        extra: str = "",
        env: Mapping[str, str] | None = None,
        check_id: str = "it",
    ) -> CheckRun:
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        block = params if isinstance(params, str) else json.dumps(dict(params))
        path = write_profile(
            f"checks:\n  - id: {check_id}\n    type: {check_type}\n    timeout: {timeout}\n"
            f"{extra}    with: {block}\n"
        )
        engine = Engine(load_profile(path))
        return CheckRun(asyncio.run(engine.run()).checks[0], engine)

    return run


class Terminal(io.StringIO):
    """A stream that says it is a terminal: the console draws its live views into it."""

    def isatty(self) -> bool:
        return True


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    """Run the readycheck CLI in-process (fast); returns exit code, stdout and stderr."""
    from readycheck.cli import app

    def invoke(*args: str | Path, env: dict[str, str] | None = None) -> CliResult:
        runner = CliRunner()
        result = runner.invoke(
            app,
            [str(arg) for arg in args],
            env={"COLUMNS": "200", **(env or {})},
            catch_exceptions=False,
        )
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return invoke


@pytest.fixture
def readycheck_process(subprocess_env: dict[str, str]) -> Callable[..., CliResult]:
    """Run ``python -m readycheck`` in a subprocess, as a user or CI would."""

    def run(
        *args: str | Path,
        cwd: Path | None = None,
        timeout: float = 60,
        env: dict[str, str] | None = None,
    ) -> CliResult:
        completed = subprocess.run(
            [sys.executable, "-m", "readycheck", *map(str, args)],
            capture_output=True,
            text=True,
            cwd=cwd,
            env={**subprocess_env, **(env or {})},
            timeout=timeout,
        )
        return CliResult(completed.returncode, completed.stdout, completed.stderr)

    return run


@pytest.fixture(autouse=True)
def _clear_test_type_state() -> None:
    from tests import checktypes

    checktypes.EVENTS.clear()
    checktypes.ATTEMPTS.clear()
