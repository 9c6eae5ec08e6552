"""``--junit``: JUnit XML, one testsuite, one testcase per check.

FAIL is a ``<failure>``, ERROR an ``<error>``, SKIP and WAIVED are ``<skipped>`` (a waived
check's message says who accepted it and until when); PASS and WARN pass, and their
evidence goes to ``<system-out>``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from readycheck.redact import Redactor
from readycheck.results import CheckResult, RunResult, Status

# XML 1.0 cannot carry most control characters, even escaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def render(result: RunResult, redactor: Redactor | None = None) -> str:
    redact = (redactor or Redactor()).redact
    summary = result.summary
    seconds = f"{result.duration_ms / 1000:.3f}"
    counts = {
        "tests": str(len(result.checks)),
        "failures": str(summary.get("fail", 0)),
        "errors": str(summary.get("error", 0)),
        "skipped": str(summary.get("skip", 0) + summary.get("waived", 0)),
        "time": seconds,
    }
    suites = ET.Element("testsuites", {"name": "readycheck", **counts})
    suite = ET.SubElement(
        suites,
        "testsuite",
        {
            "name": _clean(result.profile.name),
            **counts,
            "timestamp": result.started_at.replace(microsecond=0).isoformat(),
            "hostname": "readycheck",
        },
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in [
        ("verdict", result.verdict.value),
        ("not_run", ", ".join(result.not_run)),
        ("exit_code", str(result.exit_code)),
        ("environment", result.environment or ""),
        ("profile_digest", result.profile.digest),
        ("readycheck_version", result.tool.version),
    ]:
        ET.SubElement(properties, "property", {"name": name, "value": _clean(value)})
    for check in result.checks:
        _testcase(suite, check)
    ET.indent(suites)
    xml = ET.tostring(suites, encoding="unicode", xml_declaration=False)
    return redact('<?xml version="1.0" encoding="UTF-8"?>\n' + xml + "\n")


def _testcase(suite: ET.Element, check: CheckResult) -> None:
    case = ET.SubElement(
        suite,
        "testcase",
        {
            "name": _clean(check.id if check.name == check.id else f"{check.id}: {check.name}"),
            "classname": _clean(f"readycheck.{check.category}.{check.type}"),
            "time": f"{check.duration_ms / 1000:.3f}",
        },
    )
    details = _details(check)
    prefix = f"[{check.severity.value}{', blocking' if check.blocking else ''}] "
    if check.status is Status.FAIL:
        element = ET.SubElement(
            case, "failure", {"message": _clean(prefix + check.summary), "type": "FAIL"}
        )
        element.text = _clean(details)
    elif check.status is Status.ERROR:
        element = ET.SubElement(
            case, "error", {"message": _clean(prefix + check.summary), "type": "ERROR"}
        )
        element.text = _clean(details)
    elif check.status is Status.SKIP:
        ET.SubElement(case, "skipped", {"message": _clean(check.summary)})
    elif check.status is Status.WAIVED:
        waiver = check.waiver
        accepted = (
            f" by {waiver.approved_by} until {waiver.until.isoformat()}: {waiver.reason}"
            if waiver
            else ""
        )
        ET.SubElement(case, "skipped", {"message": _clean(f"waived{accepted} ({check.summary})")})
    if details and check.status in (Status.PASS, Status.WARN, Status.WAIVED):
        out = ET.SubElement(case, "system-out")
        out.text = _clean(f"{check.status.value}: {check.summary}\n{details}")


def _details(check: CheckResult) -> str:
    lines = list(check.evidence)
    if check.remediation:
        lines.append(f"Remediation: {check.remediation}")
    if check.traceback:
        lines.append(check.traceback)
    return "\n".join(lines)


def _clean(text: str) -> str:
    return _NOT_XML.sub("", text)
