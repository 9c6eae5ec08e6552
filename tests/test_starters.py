"""The `readycheck init` starters, as written: each says at the top where its values are
read and lists the variables it expects; each validates with an https:// or an http://
service URL; and each runs against the demo's servers (PostgreSQL, Redis and orders-api)
with only the variables it lists set, without a check erroring for a reason the starter
could have avoided (a certificate check on plain HTTP, a variable it did not list)."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from readycheck.checks.config import PRESETS
from readycheck.checks.latency.verdict import UNDECIDED, UNTRUSTED
from readycheck.cli import STACKS
from readycheck.yamlsource import YamlMap, load_yaml
from tests.conftest import CliResult, placeholder_env

STARTERS = Path(__file__).resolve().parent.parent / "src" / "readycheck" / "starters"
RUN_TIMEOUT_S = 300.0  # a bound that proves nothing hung, not a measure of speed

_LISTED = re.compile(r"^# {3}([A-Z][A-Z0-9_]*)\s+(.*)$")
_ENV_REFERENCE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


@dataclass(frozen=True)
class Header:
    """What a starter's opening comment says."""

    where: str
    """The paragraph that says where values are read."""
    required: frozenset[str]
    optional: frozenset[str]

    @classmethod
    def of(cls, text: str) -> Header:
        comment = []
        for line in text.splitlines():
            if not line.startswith("#"):
                break
            comment.append(line)
        body = "\n".join(comment)
        paragraph = body.split("# Where values are read:", 1)[1].split("#\n", 1)[0]
        where = " ".join(line.lstrip("# ") for line in paragraph.splitlines())
        required: set[str] = set()
        optional: set[str] = set()
        listing = body.split("# Environment (the runner's):", 1)[1]
        for line in listing.splitlines():
            found = _LISTED.match(line)
            if found:
                name, meaning = found.groups()
                (optional if meaning.startswith("optional") else required).add(name)
        return cls(where, frozenset(required), frozenset(optional))

    @property
    def listed(self) -> frozenset[str]:
        return self.required | self.optional


def _starter(stack: str) -> str:
    return (STARTERS / f"{stack}.yaml").read_text()


def _checks(text: str) -> list[YamlMap]:
    document = load_yaml(text, "starter.yaml")
    assert isinstance(document, YamlMap)
    return list(document["checks"])


@pytest.mark.parametrize("stack", STACKS)
def test_each_starter_says_where_its_values_come_from_and_lists_every_variable(
    stack: str,
) -> None:
    text = _starter(stack)
    header = Header.of(text)
    assert "the runner's" in header.where
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for name, default in _ENV_REFERENCE.findall(body):
        assert name in (header.listed if default else header.required), (
            f"{stack}: ${{env:{name}}} is read but not listed" + ("" if default else " as required")
        )
    for check in _checks(text):
        params = check.get("with") or {}
        source = params.get("source") or {}
        if "env" in source:
            assert source["env"] in header.required, f"{stack}: {check['id']} reads {source}"
        if check["type"] == "config.env" and not source:
            # It judges the runner's environment: the preset's required variables are ones
            # the runner must have, so the header names them.
            for rule in PRESETS.get(params.get("preset") or "", ()):
                if rule.required:
                    assert rule.name in header.required, f"{stack}: {rule.name} not listed"


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("scheme", ["https", "http"])
def test_each_starter_validates_unchanged_with_an_https_or_an_http_service(
    stack: str, scheme: str, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    target = tmp_path / "readycheck.yaml"
    (tmp_path / "migrations").mkdir()  # the Alembic folder the FastAPI starter names
    assert cli("init", target, "--stack", stack).exit_code == 0
    env = {
        name: value.replace("https://", f"{scheme}://")
        for name, value in placeholder_env(target.read_text()).items()
    }
    validated = cli("validate", target, env=env)
    assert validated.exit_code == 0, validated.output


# -- against the demo's servers ---------------------------------------------------------


@pytest.fixture(scope="module")
def demo_stack() -> Iterator[Mapping[str, str]]:
    """The demo's PostgreSQL (migrated to its head), Redis and orders-api, started as
    `readycheck demo --fix` starts them; yields the READYCHECK_DEMO_* it sets."""
    from readycheck import demo

    with demo.running(fix=True):
        yield {
            name: value for name, value in os.environ.items() if name.startswith("READYCHECK_DEMO_")
        }


def _values(demo: Mapping[str, str]) -> dict[str, str]:
    """What a user pointing a starter at the demo would export."""
    return {
        "SERVICE_URL": demo["READYCHECK_DEMO_HTTP_URL"],
        "SITE_URL": demo["READYCHECK_DEMO_HTTP_URL"],
        "DATABASE_URL": demo["READYCHECK_DEMO_DATABASE_URL"],
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(48),
        "DJANGO_SETTINGS_MODULE": "shop.settings.production",
        "ENVIRONMENT": "production",
        "RELEASE_VERSION": "1.0.0",
    }


# Checks of each starter the demo's servers satisfy (the rest may fail on what the demo
# lacks: a Django project, FastAPI's error body; failing is a finding, not an error).
EXPECTED_PASS = {
    "fastapi-postgres": {
        "db",
        "migrations",
        "pool",
        "ready",
        "deep-health",
        "secret-key",
        "production-config",
    },
    "django-postgres": {"db", "secret-key"},
    "generic-http": {"health", "request-id"},
}


def _avoidable(check: dict) -> str | None:
    """Why an ERROR is one the starter could have avoided, or None when only the machine
    is to blame (a latency probe on a machine too busy to measure: its own lateness
    would decide the verdict, and it says so rather than guess)."""
    if check["status"] != "ERROR":
        return None
    if check["type"] == "http.latency" and check["summary"].startswith((UNTRUSTED, UNDECIDED)):
        return None
    return f"{check['id']} ERROR: {check['summary']}"


@pytest.mark.parametrize("stack", STACKS)
def test_each_starter_runs_against_the_demo_with_only_the_variables_it_lists(
    stack: str, demo_stack: Mapping[str, str], tmp_path: Path
) -> None:
    text = _starter(stack)
    header = Header.of(text)
    values = _values(demo_stack)
    unknown = header.required - set(values)
    assert not unknown, f"the header lists {sorted(unknown)}: give the demo's value here"

    project = tmp_path / "project"
    project.mkdir()
    profile = project / "readycheck.yaml"
    profile.write_text(text)  # unchanged
    # Where the FastAPI starter looks for Alembic's scripts: the demo's, whose head the
    # demo's database is at.
    shutil.copytree(
        STARTERS.parent / "demo" / "migrations",
        project / "migrations",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    # The runner's environment: the variables the header lists, and nothing else of ours.
    env = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        **{name: values[name] for name in header.listed if name in values},
    }
    results = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "readycheck", "run", str(profile), "--json", str(results)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr  # it loaded, ran, and gave a verdict
    checks = {check["id"]: check for check in json.loads(results.read_text())["checks"]}

    avoidable = [reason for check in checks.values() if (reason := _avoidable(check))]
    assert not avoidable, avoidable
    unset = [
        f"{check['id']}: {line}"
        for check in checks.values()
        for line in [check["summary"], *check["evidence"]]
        if "not set" in line and "(optional)" not in line
    ]
    assert not unset, f"a variable the header did not list, or the test did not set: {unset}"
    passed = {check_id for check_id, check in checks.items() if check["status"] == "PASS"}
    assert EXPECTED_PASS[stack] <= passed, {
        check_id: checks[check_id]["summary"] for check_id in EXPECTED_PASS[stack] - passed
    }
    # Plain HTTP: the certificate check says why it did not run, among the checks not run.
    certificate = checks["certificate"]
    assert certificate["status"] == "SKIP"
    assert "served over plain HTTP" in certificate["summary"]
