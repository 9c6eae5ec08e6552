"""Core speed: start-up, validating a 50-check profile, and a concurrent run.

    python benchmarks/core.py [--runs N]

Prints medians over several runs of wall time for:
  - `readycheck --version`          (target < 0.15 s)
  - `readycheck validate` 50 checks (target < 0.3 s)
  - `readycheck run`, 20 checks of 1 s each at --concurrency 20 (target < 1.3 s)
and whether any heavy driver (psycopg, httpx, aiohttp, sqlalchemy, alembic) was imported
on the first two paths (it must not be).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

HEAVY = ["psycopg", "httpx", "aiohttp", "sqlalchemy", "alembic", "redis"]
READYCHECK = str(Path(sys.executable).parent / "readycheck")


def wall(argv: list[str], runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def heavy_imports(args: list[str]) -> list[str]:
    """Which heavy modules the CLI imports for these arguments. Through ``app``, not
    ``main``: main ends the process with os._exit, before the probe could look."""
    code = (
        "import sys\n"
        "from readycheck.cli import app\n"
        f"sys.argv = ['readycheck', *{args!r}]\n"
        "try:\n    app(prog_name='readycheck')\nexcept SystemExit:\n    pass\n"
        f"sys.stderr.write('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    line = next((line for line in done.stderr.splitlines() if line.startswith("HEAVY=")), None)
    if line is None:
        raise SystemExit(f"the import probe for {args} printed no HEAVY= line:\n{done.stderr}")
    return [name for name in line.removeprefix("HEAVY=").split(",") if name]


def fifty_check_profile(directory: Path) -> Path:
    lines = ["name: fifty", "checks:"]
    for i in range(25):
        lines.append(
            f"  - {{id: cmd-{i}, type: command, timeout: 5s, tags: [t{i % 5}], "
            f"with: {{argv: [echo, '{i}'], contains: '^{i}$', expect_exit: [0]}}}}"
        )
        lines.append(
            f"  - {{id: file-{i}, type: file, severity: medium, needs: [cmd-{i}], "
            f"with: {{path: f{i}.txt, contains: ['^ok$'], max_size: 1MB}}}}"
        )
    path = directory / "fifty.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def sleepy_profile(directory: Path) -> Path:
    lines = ["name: twenty", "checks:"]
    for i in range(20):
        lines.append(f"  - {{id: s{i}, type: command, with: {{argv: [sleep, '1']}}}}")
    path = directory / "twenty.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=11)
    options = parser.parse_args()
    # A regular install compiles bytecode; an editable one under PYTHONDONTWRITEBYTECODE
    # would recompile every module on every start and time the compiler instead.
    import readycheck

    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(Path(readycheck.__file__).parent)],
        check=True,
    )
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        fifty = fifty_check_profile(directory)
        twenty = sleepy_profile(directory)
        rows = [
            ("readycheck --version", [READYCHECK, "--version"], options.runs, 0.15, ["--version"]),
            (
                "readycheck validate (50 checks)",
                [READYCHECK, "validate", str(fifty)],
                options.runs,
                0.3,
                ["validate", str(fifty)],
            ),
            (
                "readycheck run (20 x 1 s, concurrency 20)",
                [READYCHECK, "run", str(twenty), "--concurrency", "20", "-q"],
                max(3, options.runs // 3),
                1.3,
                None,
            ),
        ]
        print(f"readycheck core benchmark, {date.today()}, {machine()}")
        # The machine's speed of the moment, next to the reference figures (python
        # -c pass 0.01 s, typer + rich 0.06 s, pydantic 0.08 s): a shared VM varies by 2x.
        for label, code, reference in [
            ("reference: python -c pass", "pass", 0.01),
            ("reference: import typer, rich", "import typer, rich", 0.06),
            (
                "reference: pydantic and one model",
                "from pydantic import BaseModel\nclass M(BaseModel):\n    x: int",
                0.08,
            ),
        ]:
            median, _ = wall([sys.executable, "-c", code], options.runs)
            print(f"{label:<44} {median:>7.3f}s {reference:>7.2f}s  (the issue's figure)")
        print(f"{'what':<44} {'median':>8} {'target':>8}  heavy imports")
        for label, argv, runs, target, import_args in rows:
            median, _ = wall(argv, runs)
            found = heavy_imports(import_args) if import_args is not None else None
            heavy = "n/a" if found is None else (", ".join(found) or "none")
            verdict = "ok" if median < target else "OVER"
            print(f"{label:<44} {median:>7.3f}s {target:>7.2f}s  {heavy}  [{verdict}, {runs} runs]")


if __name__ == "__main__":
    main()
