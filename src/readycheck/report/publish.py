"""Where a run's results go: the files asked for, checked before anything runs, and
written (each atomically) whatever the verdict; one failing output does not stop the
others."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from readycheck.errors import OutputError
from readycheck.redact import Redactor
from readycheck.report.files import check_writable, write_atomic
from readycheck.results import RunResult


@dataclass(frozen=True)
class Targets:
    report: Path | None = None
    json: str | None = None
    """A path, or "-" for standard output."""
    junit: Path | None = None
    html: Path | None = None
    template: Path | None = None

    def files(self) -> dict[str, Path]:
        """The files to write, by the option that asked for them."""
        found = {"--report": self.report, "--junit": self.junit, "--html": self.html}
        if self.json not in (None, "-"):
            found["--json"] = Path(self.json)
        return {option: path for option, path in found.items() if path is not None}

    def check(self) -> None:
        """Refuse, before anything runs, outputs that could not be written."""
        for option, path in self.files().items():
            check_writable(path, option)
        if self.template is not None:
            from readycheck.report.markdown import check_template

            check_template(self.template)

    def write(self, result: RunResult, redactor: Redactor) -> tuple[list[str], list[str]]:
        """Write every output; the ones written and the ones that failed (with why)."""

        def as_json() -> str:
            from readycheck.report import json as json_report

            return json_report.render(result, redactor)

        def as_junit() -> str:
            from readycheck.report import junit as junit_report

            return junit_report.render(result, redactor)

        def as_markdown() -> str:
            from readycheck.report import markdown

            return markdown.render(result, template=self.template, redactor=redactor)

        def as_html() -> str:
            from readycheck.report import html

            return html.render(result, redactor=redactor)

        jobs: list[tuple[str | Path | None, Callable[[], str]]] = [
            (self.json, as_json),
            (self.junit, as_junit),
            (self.report, as_markdown),
            (self.html, as_html),
        ]
        written, failed = [], []
        for target, render in jobs:
            if target is None:
                continue
            try:
                text = render()
                if target == "-":
                    sys.stdout.write(text)
                    sys.stdout.flush()
                else:
                    write_atomic(Path(target), text)
                    written.append(str(target))
            except OutputError as exc:
                failed.append(redactor.redact(str(exc)))
        return written, failed
