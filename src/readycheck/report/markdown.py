"""``--report``: the Markdown sign-off report, rendered from a Jinja template.

The packaged template is ``readycheck/templates/signoff.md.j2``; ``--template`` takes
another, which receives the same context (see :func:`context`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from readycheck.errors import OutputError
from readycheck.redact import Redactor
from readycheck.results import CheckResult, RunResult, Status, Verdict
from readycheck.units import format_duration_ms

# Characters that would start emphasis, code, links, HTML or a table cell; "_" only at a
# word's edge, since inside a word (add_orders_idx) it is literal in CommonMark and GFM.
_MD_SPECIAL = re.compile(r"([\\`*\[\]<>|#]|(?<!\w)_|_(?!\w))")
_BOXES = {Status.PASS: "[x]", Status.WAIVED: "[~]", Status.WARN: "[x]", Status.SKIP: "[ ]"}
_BADGES = {
    Verdict.READY: "✅ READY",
    Verdict.READY_WITH_WAIVERS: "✅ READY WITH WAIVERS",
    Verdict.NOT_READY: "❌ NOT READY",
    Verdict.INTERRUPTED: "⚠️ INTERRUPTED",
}
_WAIVER_STATES = {
    "applied": "applied",
    "expired": "**expired, not applied**",
    "unused": "not needed (check did not fail)",
}
DEFAULT_APPROVERS = ["Release manager"]


def render(
    result: RunResult, *, template: Path | None = None, redactor: Redactor | None = None
) -> str:
    environment = _environment(template)
    try:
        loaded = (
            environment.get_template(template.name)
            if template
            else environment.get_template("signoff.md.j2")
        )
        text = loaded.render(**context(result))
    except jinja2.TemplateSyntaxError as exc:
        raise OutputError(
            f"template {exc.filename or template}:{exc.lineno}: {exc.message}"
        ) from None
    except jinja2.TemplateError as exc:
        raise OutputError(f"template {template or 'signoff.md.j2'}: {exc}") from None
    return (redactor or Redactor()).redact(_tidy(text))


def check_template(template: Path) -> None:
    """Refuse, before anything runs, a template that is missing or does not parse."""
    try:
        _environment(template).get_template(template.name)
    except jinja2.TemplateSyntaxError as exc:
        raise OutputError(f"template {template}:{exc.lineno}: {exc.message}") from None
    except jinja2.TemplateError as exc:
        raise OutputError(f"template {template}: {exc}") from None


def context(result: RunResult) -> dict[str, Any]:
    """What a report template can use."""
    signoff = dict(result.signoff or {})
    blocking = [check for check in result.checks if check.blocking]
    findings = [
        check
        for check in result.checks
        if not check.blocking and check.status in (Status.FAIL, Status.ERROR, Status.WARN)
    ]
    return {
        "result": result,
        "signoff": _Namespace(signoff),
        "service": signoff.get("service") or result.profile.name,
        "approvers": signoff.get("approvers") or DEFAULT_APPROVERS,
        "blocking": blocking,
        "findings": findings,
        "categories": _by_category(result.checks),
        "verdict_badge": _BADGES[result.verdict],
        "verdict_sentence": verdict_sentence(result),
        "waiver_states": _WAIVER_STATES,
    }


def verdict_sentence(result: RunResult) -> str:
    total = len(result.checks)
    blocking = [check.id for check in result.checks if check.blocking]
    waived = result.summary.get("waived", 0)
    if result.verdict is Verdict.INTERRUPTED:
        return (
            f"The run was interrupted; {total - result.summary.get('skip', 0)} of {total} "
            "checks ran. This report is partial and cannot be signed off."
        )
    if result.verdict is Verdict.NOT_READY:
        return (
            f"Not ready to release: {len(blocking)} blocking "
            f"{'issue' if len(blocking) == 1 else 'issues'} ({', '.join(blocking)})."
        )
    if result.verdict is Verdict.READY_WITH_WAIVERS:
        return (
            f"Ready to release, with {waived} accepted "
            f"{'risk' if waived == 1 else 'risks'} (see Accepted risks)."
        )
    return f"Ready to release: no check blocks the gate ({total} {_plural(total, 'check')})."


def _plural(count: int, word: str) -> str:
    return word if count == 1 else f"{word}s"


def _by_category(checks: Iterable[CheckResult]) -> list[tuple[str, list[CheckResult]]]:
    groups: dict[str, list[CheckResult]] = {}
    for check in checks:
        groups.setdefault(check.category, []).append(check)
    return list(groups.items())


class _Namespace(dict[str, Any]):
    """A dict whose missing keys read as None in templates (``signoff.rollback``)."""

    def __getattr__(self, name: str) -> Any:
        return self.get(name)


def _environment(template: Path | None) -> jinja2.Environment:
    if template is not None:
        if not template.is_file():
            raise OutputError(f"--template {template}: no such file")
        loader: jinja2.BaseLoader = jinja2.FileSystemLoader(str(template.parent))
    else:
        folder = resources.files("readycheck") / "templates"
        loader = jinja2.FileSystemLoader(str(folder))
    environment = jinja2.Environment(
        loader=loader,
        autoescape=False,  # Markdown, not HTML: text is escaped for Markdown by `md`
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters.update(
        md=markdown_escape,
        cell=table_cell,
        duration=format_duration_ms,
        when=_when,
        box=lambda status: _BOXES.get(status, "[ ]"),
    )
    return environment


def markdown_escape(text: object) -> str:
    """Text that renders as itself in Markdown (no accidental emphasis, links or HTML)."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def table_cell(text: object) -> str:
    return markdown_escape(text).replace("\r", "")


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def _tidy(text: str) -> str:
    """Collapse runs of blank lines the template's conditionals leave behind."""
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
