"""GitHub Actions: the report in the job summary, and annotations for what failed.

Runs when ``GITHUB_ACTIONS=true``. Annotations use the workflow-command syntax
(``::error file=…,line=…,title=…::message``) with GitHub's escaping, point at the line of
the profile that defines the check when the profile is inside the workspace, and are
limited as GitHub limits them (10 errors and 10 warnings a step are shown).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from readycheck.redact import Redactor
from readycheck.report.files import append_text
from readycheck.results import CheckResult, RunResult, Status


def enabled(environ: Mapping[str, str]) -> bool:
    return environ.get("GITHUB_ACTIONS", "").lower() == "true"


def annotation_lines(result: RunResult, *, workspace: Path | None = None) -> list[str]:
    """One workflow command per failing check: blocking ones are errors, the rest
    warnings; passes and skips by selection say nothing."""
    lines = []
    for check in result.checks:
        if check.blocking:
            level = "error"
        elif check.status in (Status.FAIL, Status.ERROR, Status.WARN) or check.regression:
            level = "warning"
        else:
            continue
        properties = {"title": f"readycheck {check.status.value}: {check.id} ({check.severity})"}
        properties.update(_place(check, workspace))
        message = check.summary
        if check.regression:
            message += f" ({check.regression})"
        if check.remediation:
            message += f"\n{check.remediation}"
        rendered = ",".join(f"{key}={_escape_property(value)}" for key, value in properties.items())
        lines.append(f"::{level} {rendered}::{_escape_data(message)}")
    return lines


def write_summary(markdown: str, environ: Mapping[str, str]) -> Path | None:
    """Append the report to the step summary file, when the runner gives one."""
    target = environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    path = Path(target)
    append_text(path, markdown if markdown.endswith("\n") else markdown + "\n")
    return path


def emit(
    result: RunResult,
    markdown: str,
    *,
    environ: Mapping[str, str],
    redactor: Redactor,
    annotate: bool,
    write: Callable[[str], object] = print,
) -> None:
    write_summary(redactor.redact(markdown), environ)
    if annotate:
        workspace = Path(environ.get("GITHUB_WORKSPACE") or os.getcwd())
        for line in annotation_lines(result, workspace=workspace):
            write(redactor.redact(line))


def _place(check: CheckResult, workspace: Path | None) -> dict[str, str]:
    if not check.location or workspace is None:
        return {}
    file, _, rest = check.location.rpartition(":")
    file, _, line = file.rpartition(":")
    if not file or not line.isdigit():
        return {}
    path = Path(file)
    try:
        relative = path.resolve().relative_to(workspace.resolve())
    except (ValueError, OSError):
        return {}
    return {"file": relative.as_posix(), "line": line, "col": rest}


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")
