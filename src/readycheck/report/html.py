"""``--html``: the sign-off report as one self-contained HTML file.

The same content as the Markdown report (the same context), styled inline, with each
latency chart drawn as inline SVG: no script, font or stylesheet is fetched from
anywhere, so the file opens the same on a laptop, in CI artifacts and offline.
"""

from __future__ import annotations

from importlib import resources

import jinja2
from markupsafe import Markup, escape

from readycheck.baseline import describe_metric_change
from readycheck.errors import OutputError
from readycheck.redact import Redactor
from readycheck.report import overview
from readycheck.results import RunResult, Status
from readycheck.units import format_duration_ms

_STATUS_CLASS = {
    Status.PASS: "pass",
    Status.WARN: "warn",
    Status.FAIL: "fail",
    Status.ERROR: "error",
    Status.SKIP: "skip",
    Status.WAIVED: "waived",
}


def render(result: RunResult, *, redactor: Redactor | None = None) -> str:
    folder = resources.files("readycheck") / "templates"
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters.update(
        duration=format_duration_ms,
        when=overview.when,
        category=overview.category_title,
        score=lambda value: "n/a" if value is None else f"{value:.1f}/5",
        metric=lambda name, value: overview.format_metric(name, value),
        metric_change=describe_metric_change,
        status_class=lambda status: _STATUS_CLASS[status],
        evidence=overview.evidence,
        is_web_url=lambda url: str(url).lower().startswith(("http://", "https://")),
    )
    context = overview.context(result)
    context["timeline_charts"] = timeline_svgs(result)
    context["svg_charts"] = [
        (chart, latency_svg(chart), distribution_svg(chart) if chart.distribution else None)
        for chart in context["charts"]
    ]
    try:
        text = environment.get_template("report.html.j2").render(**context)
    except jinja2.TemplateError as exc:
        raise OutputError(f"HTML report template: {exc}") from None
    return (redactor or Redactor()).redact(text)


MAX_TIMELINE_CHARTS = 12


def timeline_svgs(result: RunResult) -> list[Markup]:
    """``readycheck watch``: each check's metrics, round by round (the first few)."""
    charts = []
    for check in result.checks:
        names = sorted({name for point in check.timeline for name in point.metrics})
        for name in names:
            bars = [
                (str(point.round), point.metrics[name])
                for point in check.timeline
                if name in point.metrics
            ]
            if len(bars) < 2:
                continue
            top = max(value for _, value in bars)
            charts.append(
                bar_chart(
                    f"{check.id}: {name}, round by round",
                    bars,
                    ceiling=top * 1.15 if top > 0 else 1.0,
                    value_format="{:.3g}",
                )
            )
            if len(charts) == MAX_TIMELINE_CHARTS:
                return charts
    return charts


def latency_svg(chart: overview.LatencyChart) -> Markup:
    """The percentiles as bars, the budget as a dashed line."""
    return bar_chart(
        f"{chart.check_id}: latency percentiles in ms ({chart.model} model)",
        chart.percentiles,
        ceiling=overview.chart_top(chart),
        line=chart.threshold_ms,
        line_label=f"budget {chart.threshold_ms:g} ms" if chart.threshold_ms else "",
        value_format="{:.1f}",
    )


def distribution_svg(chart: overview.LatencyChart) -> Markup:
    """Requests by latency, from the probe's histogram."""
    counts = [count for _, count in chart.distribution]
    return bar_chart(
        f"{chart.check_id}: requests by latency (upper bound, ms)",
        [(label, float(count)) for label, count in chart.distribution],
        ceiling=max(counts) * 1.15 if counts else 1.0,  # room for the tallest bar's label
        value_format="{:.0f}",
    )


def bar_chart(
    title: str,
    bars: list[tuple[str, float]],
    *,
    ceiling: float,
    line: float | None = None,
    line_label: str = "",
    value_format: str,
) -> Markup:
    """A small bar chart as inline SVG: labelled axes, the values on the bars, and an
    optional dashed line (a budget) that colours the bars above it."""
    width, height = 560, 260
    left, right, top, bottom = 56, 16, 28, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    ceiling = ceiling or 1.0
    slot = plot_w / max(len(bars), 1)
    bar_w = slot * 0.6

    def y(value: float) -> float:
        return top + plot_h * (1 - value / ceiling)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{left}" y="18" class="chart-title">{escape(title)}</text>',
    ]
    for step in range(5):
        value = ceiling * step / 4
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            'class="grid"/>'
            f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end" class="tick">'
            f"{value:g}</text>"
        )
    for index, (name, value) in enumerate(bars):
        x = left + slot * index + (slot - bar_w) / 2
        over = line is not None and value > line
        parts.append(
            f'<rect x="{x:.1f}" y="{y(value):.1f}" width="{bar_w:.1f}" '
            f'height="{top + plot_h - y(value):.1f}" class="bar{" over" if over else ""}"/>'
            f'<text x="{x + bar_w / 2:.1f}" y="{y(value) - 4:.1f}" text-anchor="middle" '
            f'class="value">{value_format.format(value)}</text>'
            f'<text x="{x + bar_w / 2:.1f}" y="{height - 14}" text-anchor="middle" '
            f'class="tick">{escape(name)}</text>'
        )
    if line is not None:
        line_y = y(line)
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{line_y:.1f}" y2="{line_y:.1f}" '
            'class="budget"/>'
            f'<text x="{width - right}" y="{line_y - 5:.1f}" text-anchor="end" '
            f'class="budget-label">{escape(line_label)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
