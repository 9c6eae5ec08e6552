"""``--report``: the Markdown sign-off report, rendered from a Jinja template.

The packaged template is ``readycheck/templates/signoff.md.j2``; ``--template`` takes
another, which receives the same context (see :func:`context`).
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import jinja2

from readycheck.baseline import describe_metric_change
from readycheck.errors import OutputError
from readycheck.redact import Redactor
from readycheck.report import overview
from readycheck.results import RunResult, Status
from readycheck.units import format_duration_ms

# Characters that would start emphasis, code, links, HTML or a table cell; "_" only at a
# word's edge, since inside a word (add_orders_idx) it is literal in CommonMark and GFM.
_MD_SPECIAL = re.compile(r"([\\`*\[\]<>|#]|(?<!\w)_|_(?!\w))")
_BOXES = {Status.PASS: "[x]", Status.WAIVED: "[~]", Status.WARN: "[x]", Status.SKIP: "[ ]"}


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
        text = loaded.render(**overview.context(result))
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
        when=overview.when,
        box=lambda status: _BOXES.get(status, "[ ]"),
        score=lambda value: "n/a" if value is None else f"{value:.1f}/5",
        metric=lambda name, value: overview.format_metric(name, value),
        metric_change=describe_metric_change,
        chart_top=overview.chart_top,
        category=overview.category_title,
        number=lambda value: f"{value:g}",
    )
    return environment


def markdown_escape(text: object) -> str:
    """Text that renders as itself in Markdown (no accidental emphasis, links or HTML)."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def table_cell(text: object) -> str:
    return markdown_escape(text).replace("\r", "")


def _tidy(text: str) -> str:
    """Collapse runs of blank lines the template's conditionals leave behind."""
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
