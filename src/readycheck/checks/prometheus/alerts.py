"""prometheus.alerts: the alerting rules a release relies on are loaded and healthy, and
no alert of a blocking severity is firing."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from readycheck.checks.http.client import RequestFailed, one_line
from readycheck.checks.prometheus.api import Answer, PrometheusParams, ask, warning_lines
from readycheck.checks.prometheus.query import series_name
from readycheck.registry import check
from readycheck.results import Outcome, broken, held, soft
from readycheck.units import counted

if TYPE_CHECKING:
    from readycheck.context import Context

ANY_SEVERITY = "*"
_TEXT_WIDTH = 120


class RuleRef(BaseModel):
    """An alerting rule, by its name, by a part of its expression, or by both."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, description="The rule's alert name (`alert:`), exactly.")
    expr_contains: str | None = Field(
        None, description="Text the rule's expression contains, e.g. http_requests_total."
    )

    @model_validator(mode="after")
    def _something(self) -> RuleRef:
        if not (self.name or "").strip() and not (self.expr_contains or "").strip():
            raise ValueError("give name, expr_contains or both")
        return self

    def matches(self, rule: Mapping[str, Any]) -> bool:
        if self.name is not None and rule.get("name") != self.name:
            return False
        return self.expr_contains is None or self.expr_contains in str(rule.get("query", ""))

    def __str__(self) -> str:
        if self.expr_contains is None:
            return str(self.name)
        shown = f"expression containing {self.expr_contains!r}"
        return f"{self.name} ({shown})" if self.name else f"a rule with an {shown}"


class AlertsParams(PrometheusParams):
    require: list[str | RuleRef] = Field(
        default_factory=list,
        description="Alerting rules that must be loaded and healthy: an alert name, or "
        "{name, expr_contains}.",
    )
    forbid_firing: list[str] = Field(
        default_factory=lambda: ["critical"],
        description='Severities of which no alert may be firing ("*": any alert at all); '
        "[] checks only the rules.",
    )
    severity_label: str = Field("severity", description="The label that holds an alert's severity.")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Only alerts carrying these labels count, e.g. {service: payments} on a "
        "Prometheus shared by several services.",
    )
    ignore: list[str] = Field(
        default_factory=list,
        description="Alert names that never count (an always-firing Watchdog, say).",
    )
    evidence_alerts: int = Field(
        10, ge=0, le=100, description="How many firing or pending alerts to show as evidence."
    )

    @model_validator(mode="after")
    def _something_to_check(self) -> AlertsParams:
        if not self.require and not self.forbid_firing:
            raise ValueError("give require, forbid_firing or both")
        return self

    @property
    def required(self) -> list[RuleRef]:
        return [RuleRef(name=ref) if isinstance(ref, str) else ref for ref in self.require]


@dataclass(frozen=True)
class Findings:
    problems: list[str]
    warnings: list[str]
    evidence: list[str]
    metrics: dict[str, float]


@check("prometheus.alerts", params=AlertsParams, category="observability")
async def alerts(p: AlertsParams, ctx: Context) -> Outcome:
    """Require alerting rules to be loaded and healthy, and no blocking alert firing.

    Rules are read from `/api/v1/rules` (alerting rules only), alerts from
    `/api/v1/alerts`. A required rule is found by its name, by a part of its expression, or
    both; one Prometheus has loaded but cannot evaluate (health `err`) FAILs with
    Prometheus' error, because it would never fire. An alert of a forbidden severity that is
    pending (its condition holds, its `for:` has not yet run out) WARNs: it is about to fire.
    """
    found = Findings([], [], [], {})
    answers: list[Answer] = []
    try:
        if p.require:
            answer = await ask(p, ctx, "/api/v1/rules", {"type": "alert"})
            answers.append(answer)
            _rules(p, answer.data, found)
        if p.forbid_firing:
            answer = await ask(p, ctx, "/api/v1/alerts")
            answers.append(answer)
            _firing(p, answer.data, found)
    except RequestFailed as failure:
        return failure.outcome
    for answer in answers:
        found.evidence.extend(warning_lines(answer))
        found.warnings.extend(f"Prometheus warns: {w}" for w in answer.warnings)
    found.evidence.append(answers[-1].reply.describe())
    if found.problems:
        more = f" (and {len(found.problems) - 1} more)" if len(found.problems) > 1 else ""
        return Outcome.failed(
            found.problems[0] + more,
            evidence=found.evidence,
            metrics=found.metrics,
            remediation="Load the missing rules (rule_files, then reload Prometheus) and fix "
            "the failing ones; resolve or silence what is firing before the deploy.",
        )
    if found.warnings:
        return Outcome.warned(found.warnings[0], evidence=found.evidence, metrics=found.metrics)
    parts = []
    if p.require:
        parts.append(f"{counted(len(p.require), 'required rule')} loaded")
    if p.forbid_firing:
        parts.append(f"no {_severity(p)}alert firing")
    return Outcome.passed(", ".join(parts), evidence=found.evidence, metrics=found.metrics)


def _rules(p: AlertsParams, data: Any, found: Findings) -> None:
    rules = list(_alerting_rules(data))
    found.metrics.update({"rules_loaded": len(rules), "rules_required": len(p.require)})
    missing = failing = 0
    for ref in p.required:
        matched = [rule for rule in rules if ref.matches(rule)]
        if not matched:
            missing += 1
            names = [str(rule.get("name", "")) for rule in rules]
            close = difflib.get_close_matches(ref.name or "", names, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            line = f"required rule {ref} is not loaded{hint}"
            found.problems.append(line)
            found.evidence.append(broken(line))
            continue
        for rule in matched:
            where = f"group {rule.get('_group', '?')}"
            health = rule.get("health")
            if health == "err":
                failing += 1
                error = one_line(str(rule.get("lastError") or "no message"), _TEXT_WIDTH)
                line = f"rule {rule.get('name')} is loaded ({where}) but fails: {error}"
                found.problems.append(line)
                found.evidence.append(broken(line))
            else:
                state = rule.get("state", "?")
                fresh = ", not evaluated yet" if health == "unknown" else ""
                found.evidence.append(
                    held(f"rule {rule.get('name')} loaded ({where}), {state}{fresh}")
                )
    found.metrics.update({"rules_missing": missing, "rules_failing": failing})
    if not rules and missing:
        found.evidence.append("Prometheus has no alerting rule loaded at all")


def _alerting_rules(data: Any) -> Iterator[dict[str, Any]]:
    groups = data.get("groups") if isinstance(data, dict) else None
    for group in groups if isinstance(groups, list) else []:
        rules = group.get("rules") if isinstance(group, dict) else None
        for rule in rules if isinstance(rules, list) else []:
            if isinstance(rule, dict) and rule.get("type", "alerting") == "alerting":
                yield {**rule, "_group": group.get("name")}


def _firing(p: AlertsParams, data: Any, found: Findings) -> None:
    listed = data.get("alerts") if isinstance(data, dict) else None
    active = [a for a in listed if isinstance(a, dict)] if isinstance(listed, list) else []
    judged = [a for a in active if _counts(p, a)]
    forbidden = [a for a in judged if _forbidden(p, a)]
    firing = [a for a in forbidden if a.get("state") == "firing"]
    pending = [a for a in forbidden if a.get("state") == "pending"]
    others = sorted(
        {
            _labels(a).get("alertname", "?")
            + f" ({_labels(a).get(p.severity_label, 'no severity')})"
            for a in judged
            if a.get("state") == "firing" and not _forbidden(p, a)
        }
    )
    found.metrics.update(
        {
            "alerts_firing": sum(1 for a in active if a.get("state") == "firing"),
            "forbidden_firing": len(firing),
            "forbidden_pending": len(pending),
        }
    )
    severity = _severity(p)
    if firing:
        found.problems.append(
            f"{counted(len(firing), severity + 'alert')} firing: " + _names(firing)
        )
    if pending:
        found.warnings.append(
            f"{counted(len(pending), severity + 'alert')} pending "
            f"(about to fire): {_names(pending)}"
        )
    shown = [*firing, *pending]
    found.evidence.extend(_alert_line(p, a) for a in shown[: p.evidence_alerts])
    if len(shown) > p.evidence_alerts:
        found.evidence.append(f"... and {len(shown) - p.evidence_alerts} more")
    if not shown:
        found.evidence.append(held(f"no {severity}alert firing or pending"))
    if others:
        found.evidence.append(
            f"also firing, of a severity not forbidden: {one_line(', '.join(others), 200)}"
        )


def _labels(alert: Mapping[str, Any]) -> dict[str, str]:
    labels = alert.get("labels")
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def _counts(p: AlertsParams, alert: Mapping[str, Any]) -> bool:
    labels = _labels(alert)
    if labels.get("alertname") in p.ignore:
        return False
    return all(labels.get(key) == value for key, value in p.labels.items())


def _forbidden(p: AlertsParams, alert: Mapping[str, Any]) -> bool:
    return (
        ANY_SEVERITY in p.forbid_firing or _labels(alert).get(p.severity_label) in p.forbid_firing
    )


def _severity(p: AlertsParams) -> str:
    """`critical ` or `critical/page ` before "alert"; nothing when any alert counts."""
    return "" if ANY_SEVERITY in p.forbid_firing else "/".join(p.forbid_firing) + " "


def _names(alerts: list[dict[str, Any]]) -> str:
    names = list(dict.fromkeys(_labels(a).get("alertname", "?") for a in alerts))
    return one_line(", ".join(names), _TEXT_WIDTH)


def _alert_line(p: AlertsParams, alert: Mapping[str, Any]) -> str:
    labels = _labels(alert)
    name = labels.pop("alertname", "?")
    state = str(alert.get("state", "?")).upper()
    since = str(alert.get("activeAt") or "")[:19].replace("T", " ")
    annotations = alert.get("annotations")
    summary = ""
    if isinstance(annotations, dict):
        text = annotations.get("summary") or annotations.get("description")
        summary = f": {one_line(str(text), _TEXT_WIDTH)}" if text else ""
    when = f" since {since} UTC" if since else ""
    line = f"{state} {series_name({'__name__': name, **labels})}{when}{summary}"
    return broken(line) if alert.get("state") == "firing" else soft(line)
