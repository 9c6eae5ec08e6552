"""A third-party package adds a check type with no change to readycheck: a wheel is built
and installed in the test, and readycheck lists, explains, validates and runs its type."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

from tests.conftest import CliResult

PLUGIN_MODULE = '''
"""Queue depth of a (pretend) message broker."""
from pydantic import Field

from readycheck import CheckParams, Context, Outcome, check


class QueueParams(CheckParams):
    depth: int = Field(description="Messages waiting right now.")
    max_depth: int = Field(100, description="Most messages that may wait.")


@check("acme.queue_depth", params=QueueParams, category="messaging")
async def queue_depth(p: QueueParams, ctx: Context) -> Outcome:
    """Check that the work queue is not backed up."""
    if p.depth > p.max_depth:
        return Outcome.failed(f"{p.depth} messages waiting, more than {p.max_depth}")
    return Outcome.passed(f"{p.depth} messages waiting", metrics={"depth": p.depth})
'''


def _build_wheel(directory: Path) -> Path:
    """A minimal, valid wheel for the package `acme-readycheck` (what a build backend makes)."""
    name, version = "acme_readycheck", "0.3.0"
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": PLUGIN_MODULE,
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: acme-readycheck\nVersion: {version}\n"
            "Requires-Dist: readycheck\n"
        ),
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist_info}/entry_points.txt": (
            f"[readycheck.checks]\nacme.queue_depth = {name}:queue_depth\n"
        ),
    }
    record_lines = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record_lines.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record_lines.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = "\n".join(record_lines) + "\n"
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def test_an_installed_plugin_adds_a_check_type(
    tmp_path: Path, subprocess_env: dict[str, str], write_profile: Callable[..., Path]
) -> None:
    wheel = _build_wheel(tmp_path)
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    env = {**subprocess_env, "PYTHONPATH": f"{target}:{subprocess_env['PYTHONPATH']}"}

    def readycheck(*args: str | Path) -> CliResult:
        done = subprocess.run(
            [sys.executable, "-m", "readycheck", *map(str, args)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        return CliResult(done.returncode, done.stdout, done.stderr)

    listed = readycheck("checks")
    line = next(line for line in listed.stdout.splitlines() if line.startswith("acme.queue_depth"))
    assert "Check that the work queue is not backed up." in line
    assert "acme-readycheck 0.3.0" in line

    explained = readycheck("explain", "acme.queue_depth")
    assert "max_depth" in explained.stdout and "Most messages that may wait." in explained.stdout

    bad = write_profile("checks: [{id: q, type: acme.queue_depth, with: {depht: 3}}]\n", "bad.yaml")
    refused = readycheck("validate", bad)
    assert refused.exit_code == 2
    assert "checks[q].with.depht: unknown key 'depht'; did you mean 'depth'?" in refused.stderr

    profile = write_profile(
        "checks:\n  - {id: q, type: acme.queue_depth, with: {depth: 3}}\n"
        "  - {id: backlog, type: acme.queue_depth, severity: critical, with: {depth: 500}}\n"
    )
    out = tmp_path / "r.json"
    ran = readycheck("run", profile, "--json", out)
    assert ran.exit_code == 1, ran.output
    checks = {c["id"]: c for c in json.loads(out.read_text())["checks"]}
    assert checks["q"]["status"] == "PASS" and checks["q"]["category"] == "messaging"
    assert checks["backlog"]["summary"] == "500 messages waiting, more than 100"


def test_a_broken_plugin_is_reported_where_it_is_used(
    tmp_path: Path, write_profile: Callable[..., Path], cli: Callable[..., CliResult]
) -> None:
    import sys as _sys

    site = tmp_path / "broken-site"
    dist_info = site / "broken_plugin-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[readycheck.checks]\nbroken.thing = broken_plugin_missing_module:thing\n"
    )
    _sys.path.insert(0, str(site))
    try:
        path = write_profile("checks: [{id: x, type: broken.thing}]\n")
        result = cli("validate", path)
        assert result.exit_code == 2
        assert "check type 'broken.thing' could not be loaded" in result.stderr
        assert "ModuleNotFoundError" in result.stderr
        listed = cli("checks")
        assert listed.exit_code == 0
        assert "unavailable: broken.thing" in listed.stderr
    finally:
        _sys.path.remove(str(site))
