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

# Characters that would start emphasis, code, links, HTML, entities, strikethrough or a
# table cell; "_" only at a word's edge, since inside a word (add_orders_idx) it is
# literal in CommonMark and GFM.
_MD_SPECIAL = re.compile(r"([\\`*\[\]<>|#&~]|(?<!\w)_|_(?!\w))")
# What would start a list item at the start of a line ("1. ", "- ").
_BLOCK_START = re.compile(r"^(\s*\d*)((?<=\d)[.)]|(?<!\d)[-+])(?=\s|$)")
# A code span as CommonMark finds one: a run of backticks, and the next run of as many.
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)")
_BACKTICKS = re.compile(r"`+")
_URL_UNSAFE = re.compile(r"[\s<>|`]")
_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")
_BOXES = {Status.PASS: "[x]", Status.WAIVED: "[~]", Status.WARN: "[~]"}
"""Ticked only when it passed; [~] for a pass with reservations (WARN, WAIVED); [ ] else."""


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
        extensions=["jinja2.ext.do"],
    )
    environment.globals.update(table=table)
    environment.filters.update(
        md=markdown_escape,
        cell=table_cell,
        code=code_span,
        link=autolink,
        evidence=overview.evidence,
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
    """Text that renders as itself in Markdown: no accidental emphasis, link, HTML, list
    or table cell. A code span the text holds (``alembic upgrade head`` between backticks)
    stays a code span, written as it is: nothing inside a code span is escaped."""
    flat = " ".join(str(text).splitlines())
    parts: list[str] = []
    position = 0
    for span in _CODE_SPAN.finditer(flat):
        parts.append(_escape_text(flat[position : span.start()]))
        parts.append(span.group(0))
        position = span.end()
    parts.append(_escape_text(flat[position:]))
    return _BLOCK_START.sub(r"\1\\\2", "".join(parts), count=1)


def _escape_text(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text)


def table_cell(text: object) -> str:
    """Text for a table cell: escaped as ``md`` does, pipes in code spans too."""
    return _UNESCAPED_PIPE.sub(r"\\|", markdown_escape(text))


def code_span(text: object) -> str:
    """Any text as one code span, shown exactly as written: fenced by more backticks than
    it holds in a row, and padded with a space where it starts or ends with a backtick
    (CommonMark removes that one space). In a table, ``table()`` escapes its pipes, which
    GFM then shows as pipes inside the code span too."""
    flat = " ".join(str(text).splitlines())
    if not flat.strip():
        return flat
    longest = max((len(run) for run in _BACKTICKS.findall(flat)), default=0)
    fence = "`" * (longest + 1)
    padded = flat.startswith(("`", " ")) and flat.endswith(("`", " "))
    pad = " " if padded or flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def autolink(url: object) -> str:
    """An http(s) URL as a link that shows itself; anything else as text."""
    text = str(url)
    if not text.lower().startswith(("http://", "https://")):
        return markdown_escape(text)
    return "<" + _URL_UNSAFE.sub(lambda match: f"%{ord(match.group()):02X}", text) + ">"


def table(
    headers: list[str], rows: list[list[object]], *, align: str = "", blanks: bool = False
) -> str:
    """A GFM table of Markdown cells (already escaped with ``cell``, ``code`` or ``md``).

    A column empty in every row is left out (a table never shows an empty column), unless
    ``blanks`` (the sign-off table's columns are for a pen). ``align`` is one letter a
    column, ``l`` or ``r``. Cells are kept on one line and their pipes escaped.
    """
    cells = [
        [_UNESCAPED_PIPE.sub(r"\\|", " ".join(str(cell).splitlines()).strip()) for cell in row]
        + [""] * (len(headers) - len(row))
        for row in rows
    ]
    keep = [index for index, _ in enumerate(headers) if blanks or any(row[index] for row in cells)]

    def line(values: list[str]) -> str:
        return "|" + "|".join(f" {value} " if value else " " for value in values) + "|"

    rule = ["---:" if align[index : index + 1] == "r" else "---" for index in keep]
    return "\n".join(
        [
            line([headers[index] for index in keep]),
            "|" + "|".join(rule) + "|",
            *(line([row[index] for index in keep]) for row in cells),
        ]
    )


def _tidy(text: str) -> str:
    """Collapse runs of blank lines the template's conditionals leave behind."""
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
