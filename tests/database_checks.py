"""Running one check of the database and cache families, for their tests.

``run_check`` loads a one-check profile and runs it through the real Engine (fast).
``run_everywhere`` runs it as a user would, ``python -m readycheck run`` with every output
(console, JSON, JUnit, Markdown report, debug log), and returns all they say, so a test
can assert that a password appears nowhere.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from readycheck.engine import Engine
from readycheck.profile import load_profile
from readycheck.results import CheckResult

REPO = Path(__file__).resolve().parent.parent


def write_check_profile(
    directory: Path, check_type: str, params: Mapping[str, Any], *, timeout: str = "10s"
) -> Path:
    check = {"id": "it", "type": check_type, "timeout": timeout, "with": dict(params)}
    path = directory / "profile.yaml"
    path.write_text(yaml.safe_dump({"name": "it", "checks": [check]}, sort_keys=False))
    return path


def run_check(
    directory: Path,
    check_type: str,
    params: Mapping[str, Any],
    *,
    timeout: str = "10s",
    environ: Mapping[str, str] | None = None,
) -> CheckResult:
    path = write_check_profile(directory, check_type, params, timeout=timeout)
    profile = load_profile(path, environ=environ or {})
    return asyncio.run(Engine(profile).run()).checks[0]


@dataclass(frozen=True)
class Everywhere:
    exit_code: int
    result: dict[str, Any]
    """The check's entry in the JSON output."""
    text: str
    """Everything written: stdout, stderr, JSON, JUnit, Markdown report, debug log."""


def run_everywhere(
    directory: Path,
    check_type: str,
    params: Mapping[str, Any],
    *,
    environ: Mapping[str, str] | None = None,
    timeout: str = "10s",
) -> Everywhere:
    path = write_check_profile(directory, check_type, params, timeout=timeout)
    outputs = {name: directory / name for name in ("run.json", "junit.xml", "report.md", "log")}
    env = {
        **os.environ,
        **(environ or {}),
        "PYTHONPATH": str(REPO),
        "COLUMNS": "200",
    }
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "readycheck",
            "run",
            str(path),
            "--debug",
            *("--json", str(outputs["run.json"])),
            *("--junit", str(outputs["junit.xml"])),
            *("--report", str(outputs["report.md"])),
            *("--log", str(outputs["log"])),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    written = [path.read_text() for path in outputs.values() if path.exists()]
    document = json.loads(outputs["run.json"].read_text())
    return Everywhere(
        exit_code=completed.returncode,
        result=document["checks"][0],
        text="\n".join([completed.stdout, completed.stderr, *written]),
    )
