"""The example plugin in examples/ installs into a fresh virtual environment and its check
type runs: the plugin guide's promise, kept by a test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "readycheck-example-plugin"


def test_the_example_plugin_installs_into_a_fresh_venv_and_runs(
    tmp_path: Path, write_profile: Callable[..., Path]
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # readycheck and its dependencies come from the environment under test; the venv sees
    # them through a .pth file (processed as a site directory, so editable installs work).
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(purelib, "readycheck_under_test.pth").write_text(
        f"import site; site.addsitedir({ours!r})\n"
    )
    install = subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-build-isolation",
            "--no-deps",
            "--no-index",
            str(EXAMPLE),
        ],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr

    def readycheck(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [python, "-m", "readycheck", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "200"},
        )

    listed = readycheck("checks")
    assert "example.disk_free" in listed.stdout, listed.stdout + listed.stderr
    assert "readycheck-example-plugin 1.0.0" in listed.stdout
    profile = write_profile(
        """
        checks:
          - {id: room, type: example.disk_free, with: {path: ., min_free: 1KB}}
          - {id: impossible, type: example.disk_free, severity: low, with: {path: ., min_free: 1000TB}}
        """
    )
    out = tmp_path / "r.json"
    ran = readycheck("run", profile, "--json", out)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    statuses = {c["id"]: c["status"] for c in json.loads(out.read_text())["checks"]}
    assert statuses == {"room": "PASS", "impossible": "FAIL"}
