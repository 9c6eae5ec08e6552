"""Write docs/screenshots/console-80.svg and console-120.svg: the console after a run of
`readycheck demo`, as an 80- and a 120-column log shows it.

    python scripts/console_screenshots.py             # redraw from the saved results
    python scripts/console_screenshots.py --refresh   # run the demo first, save its results

The pictures are drawn from docs/screenshots/demo-results.json, as `readycheck report`
re-renders a run without running anything, by the same code that prints the summary of
a run (report/console/summary.py), recorded by Rich and exported with
``Console.export_svg``. ``--refresh`` runs the demo in a temporary directory and saves its
results with two machine-specific paths made plain (the demo's temporary directory and
the Python interpreter's path), so the pictures do not change with the machine.
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from readycheck.report.console.summary import summary_lines
from readycheck.results import RunResult

REPO = Path(__file__).resolve().parent.parent
SHOTS = REPO / "docs" / "screenshots"
RESULTS = SHOTS / "demo-results.json"
WIDTHS = (80, 120)


def refresh() -> None:
    """Run `readycheck demo` and save its results.json (it ends NOT READY: exit 1)."""
    with tempfile.TemporaryDirectory() as cwd:
        done = subprocess.run(
            [sys.executable, "-m", "readycheck", "demo", "--dir", "out"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=300,
        )
        saved = Path(cwd) / "out" / "results.json"
        if done.returncode not in (0, 1) or not saved.exists():
            sys.exit(f"the demo failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
        text = saved.read_text()
    text = re.sub(r"/[^\s\"']*/readycheck-demo-\d+-[A-Za-z0-9_]+", "/tmp/readycheck-demo", text)
    text = text.replace(sys.executable, "python3")
    SHOTS.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(f"wrote {RESULTS.relative_to(REPO)}")


def draw(result: RunResult, width: int) -> str:
    console = Console(
        width=width, record=True, file=io.StringIO(), force_terminal=True, color_system="truecolor"
    )
    console.print(f"$ COLUMNS={width} readycheck report demo-results.json", style="dim")
    console.print()
    for line in summary_lines(console, result):
        console.print(line, soft_wrap=True)
    return console.export_svg(title=f"readycheck: {width} columns")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refresh", action="store_true", help="run the demo first")
    args = parser.parse_args()
    if args.refresh or not RESULTS.exists():
        refresh()
    result = RunResult.model_validate_json(RESULTS.read_text())
    for width in WIDTHS:
        path = SHOTS / f"console-{width}.svg"
        path.write_text(draw(result, width))
        print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
