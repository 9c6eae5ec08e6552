"""Where a run's results go: the outputs asked for, checked before anything runs, and
written (each by the rule for what is at its path) whatever the verdict; one failing
output does not stop the others."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from readycheck.errors import OutputError
from readycheck.redact import Redactor
from readycheck.report.files import STDOUT, Destination, check_outputs, write_output
from readycheck.results import RunResult


@dataclass(frozen=True)
class Targets:
    """The outputs of one run, by option; each a path or "-" (standard output)."""

    report: str | None = None
    json: str | None = None
    junit: str | None = None
    html: str | None = None
    template: Path | None = None

    def outputs(self) -> dict[str, str | None]:
        return {
            "--json": self.json,
            "--junit": self.junit,
            "--report": self.report,
            "--html": self.html,
        }

    @property
    def asked(self) -> bool:
        return any(self.outputs().values())

    def check(
        self, inputs: Iterable[tuple[str, Path]] = (), *, log: Path | None = None
    ) -> list[Destination]:
        """Refuse, before anything runs, outputs that could not be written or would
        overwrite something the run reads (``inputs``, the template included). The
        ``--log`` file is held to the same rules."""
        read = list(inputs)
        if self.template is not None:
            from readycheck.report.markdown import check_template

            check_template(self.template)
            read.append(("the --template file", self.template))
        extra = {"--log": str(log)} if log is not None else {}
        return check_outputs({**self.outputs(), **extra}, read)

    def to_stdout(self) -> bool:
        """Whether an output goes to standard output (the console then uses stderr)."""
        if STDOUT in self.outputs().values():
            return True
        try:
            ours = os.fstat(1)
        except OSError:
            return False
        for given in self.outputs().values():
            if not given:
                continue
            try:
                info = os.stat(given)
            except OSError:
                continue
            if (info.st_dev, info.st_ino) == (ours.st_dev, ours.st_ino):
                return True
        return False

    def write(self, result: RunResult, redactor: Redactor) -> Published:
        """Write every output asked for; what was written and what failed (with why)."""

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

        renderers: dict[str, Callable[[], str]] = {
            "--json": as_json,
            "--junit": as_junit,
            "--report": as_markdown,
            "--html": as_html,
        }
        published = Published()
        for option, given in self.outputs().items():
            if not given:
                continue
            try:
                text = renderers[option]()
            except OutputError as exc:
                published.failed.append(redactor.redact(f"{option} {given}: not written: {exc}"))
                continue
            try:
                published.written.append(write_output(option, given, text))
            except OutputError as exc:
                published.failed.append(redactor.redact(str(exc)))
        return published


@dataclass
class Published:
    """The outputs a run wrote, and the messages of those it could not."""

    written: list[Destination] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def nothing_recorded(self) -> bool:
        """Outputs were asked for and not one was written: the run left no record."""
        return bool(self.failed) and not self.written

    def files(self) -> list[str]:
        """The files written, as the user named them (not standard output)."""
        return [dest.given for dest in self.written if dest.kind != "stdout"]
