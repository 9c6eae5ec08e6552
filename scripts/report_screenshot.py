"""Refresh docs/report.png: the Markdown sign-off report as a reader sees it rendered.

    python scripts/report_screenshot.py                  # run the demo, shoot its report
    python scripts/report_screenshot.py REPORT.md        # shoot a report you already have
    python scripts/report_screenshot.py --out x.png --width 1100

With no report given, the demo's servers are started (as `readycheck demo` starts them)
and `readycheck run` checks them and writes the report. The Markdown is rendered by
markdown-it-py (CommonMark and GFM tables, as the tests render it) into a page styled
like a code host's, and headless Chromium takes the whole page as a PNG (`apt-get install
chromium`; the emoji of the verdict need a colour emoji font, fonts-noto-color-emoji).
Needs `pip install -e '.[test]'` (markdown-it-py, the demo's servers, websockets).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STYLE = """
body { font: 15px/1.5 -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif,
       "Noto Color Emoji"; color: #1f2328; max-width: 960px; margin: 24px auto; padding: 0 24px; }
h1, h2 { border-bottom: 1px solid #d1d9e0; padding-bottom: .3em; }
table { border-collapse: collapse; margin: 12px 0; display: block; overflow: auto; }
th, td { border: 1px solid #d1d9e0; padding: 5px 12px; vertical-align: top; }
tr:nth-child(2n) { background: #f6f8fa; }
code { background: #eff1f3; border-radius: 5px; padding: .15em .35em; font-size: 85%;
       font-family: "DejaVu Sans Mono", monospace; }
pre { background: #f6f8fa; padding: 12px; border-radius: 6px; overflow: auto; }
pre code { background: none; padding: 0; }
li, td, p { overflow-wrap: anywhere; }
details { margin: 4px 0 12px; } summary { cursor: pointer; color: #59636e; }
"""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "report", nargs="?", type=Path, help="a Markdown report (default: the demo's)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "report.png")
    parser.add_argument("--width", type=int, default=1000, help="page width in CSS pixels")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO))  # the browser helper the tests use
    from tests.servers.browser import chromium, chromium_binary, open_page

    browser = chromium_binary()
    if browser is None:
        print("Chromium is not installed: apt-get install chromium", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="readycheck-shot-") as work:
        folder = Path(work)
        markdown = args.report.read_text() if args.report else demo_report(folder)
        page = folder / "report.html"
        page.write_text(as_html(markdown))
        with (
            chromium(browser, folder / "chrome") as base_url,
            open_page(base_url, page.as_uri()) as tab,
        ):
            png = tab.screenshot(width=args.width)
    args.out.write_bytes(png)
    print(f"wrote {args.out} ({len(png) // 1024} KB)")
    return 0


def demo_report(folder: Path) -> str:
    """The report of a run against the demo's servers (the last migration left pending and
    a placeholder SECRET_KEY, as `readycheck demo` plants them)."""
    from readycheck import demo

    report = folder / "readiness-report.md"
    with demo.running(fix=False) as run:
        done = subprocess.run(
            [sys.executable, "-m", "readycheck", "run", str(run.profile), "--report", str(report)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    if not report.exists():
        raise SystemExit(f"the run wrote no report:\n{done.stdout}\n{done.stderr}")
    return report.read_text()


def as_html(markdown: str) -> str:
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
