"""Expectations on values found in a response: dotted JSON paths and operator maps.

A path walks a JSON document: ``checks.database`` (object keys), ``items.0.id`` (a list
index); ``\\.`` writes a dot inside a key. An expectation is either a value, compared for
equality (``true`` is not ``1``), or an operator map::

    {gte: 1}  {lt: 500}  {in: [ok, degraded]}  {not_in: [down]}  {matches: "^v2"}
    {present: true}  {contains: db}  {type: string}  {eq: x}  {ne: x}

whose operators must all hold. Each unmet one is one line of evidence, e.g.
``checks.database: expected true, got false``. Maps are validated when the profile loads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from readycheck.checks import patterns
from readycheck.results import Mark, MarkedLine, Outcome

OPERATORS: Final = (
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "not_in",
    "matches",
    "present",
    "contains",
    "type",
)
JSON_TYPES: Final = ("string", "number", "integer", "boolean", "array", "object", "null")
_PATH_SEPARATOR = re.compile(r"(?<!\\)\.")
_SHOWN_LENGTH = 60


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


def split_path(path: str) -> list[str]:
    parts = [part.replace("\\.", ".") for part in _PATH_SEPARATOR.split(path)]
    if not path or any(part == "" for part in parts):
        raise ValueError(f"{path!r} is not a path: write keys joined by dots, e.g. checks.database")
    return parts


def lookup(document: Any, path: str) -> Any:
    """The value at ``path`` in ``document``, or MISSING."""
    current = document
    for part in split_path(path):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            index = int(part)
            if not -len(current) <= index < len(current):
                return MISSING
            current = current[index]
        else:
            return MISSING
    return current


def is_operator_map(expected: Any) -> bool:
    return isinstance(expected, dict) and bool(expected) and all(k in OPERATORS for k in expected)


def validate(expected: Any) -> Any:
    """``expected`` unchanged if it is a value or a well-formed operator map; else ValueError."""
    if not isinstance(expected, dict) or not expected:
        return expected
    operators = [key for key in expected if key in OPERATORS]
    if not operators:
        return expected  # a literal object, compared for equality
    if len(operators) != len(expected):
        others = ", ".join(repr(k) for k in expected if k not in OPERATORS)
        raise ValueError(
            f"mixes operators with other keys ({others}); operators are {', '.join(OPERATORS)}"
        )
    for name, argument in expected.items():
        if name in ("gt", "gte", "lt", "lte") and not _is_number(argument):
            raise ValueError(f"{name} takes a number, got {show(argument)}")
        if name in ("in", "not_in") and not isinstance(argument, list):
            raise ValueError(f"{name} takes a list, e.g. {{{name}: [ok, degraded]}}")
        if name == "present" and not isinstance(argument, bool):
            raise ValueError("present takes true or false")
        if name == "type" and argument not in JSON_TYPES:
            raise ValueError(f"type takes one of {', '.join(JSON_TYPES)}")
        if name == "matches":
            if not isinstance(argument, str):
                raise ValueError("matches takes a regular expression (a string)")
            patterns.validate_pattern(argument)
    return expected


def validate_map(expectations: Mapping[str, Any]) -> None:
    """Validate ``{path: expectation}``; the ValueError names the path at fault."""
    for path, expected in expectations.items():
        try:
            split_path(path)
            validate(expected)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None


def unmet(path: str, expected: Any, found: Any) -> list[str]:
    """One line per expectation on ``found`` (MISSING when absent) that does not hold."""
    if not is_operator_map(expected):
        expected = {"eq": expected}
    problems = []
    for name, argument in expected.items():
        if name == "present":
            if argument and found is MISSING:
                problems.append(f"{path}: missing")
            elif not argument and found is not MISSING:
                problems.append(f"{path}: expected absent, got {show(found)}")
            continue
        wanted = _WANTED[name](argument)
        if found is MISSING:
            problems.append(f"{path}: missing (expected {wanted})")
        elif not _HOLDS[name](found, argument):
            problems.append(f"{path}: expected {wanted}, got {show(found)}")
    return problems


def verdict(
    shown: str,
    problems: Sequence[str],
    *,
    passed: str,
    evidence: Iterable[str],
    metrics: Mapping[str, float],
    remediation: str,
    warnings: Sequence[str] = (),
    met: Sequence[str] = (),
) -> Outcome:
    """FAIL on the first problem (counting the others), else WARN on the first warning,
    else PASS with ``passed``; every summary starts with what was probed (``shown``).

    Evidence lines that are problems are marked broken, warnings soft, and ``met`` lines
    (rules that held) held, for the reports' ✗, ⚠ and ✓.
    """
    marks = dict.fromkeys(met, Mark.HELD)
    marks.update(dict.fromkeys(warnings, Mark.SOFT))
    marks.update(dict.fromkeys(problems, Mark.BROKEN))
    evidence = [
        line if isinstance(line, MarkedLine) or line not in marks else MarkedLine(line, marks[line])
        for line in evidence
    ]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return Outcome.failed(
            f"{shown}: {problems[0]}{more}",
            evidence=evidence,
            metrics=metrics,
            remediation=remediation,
        )
    if warnings:
        return Outcome.warned(
            f"{shown}: {warnings[0]}", evidence=evidence, metrics=metrics, remediation=remediation
        )
    return Outcome.passed(f"{shown}: {passed}", evidence=evidence, metrics=metrics)


def same(a: Any, b: Any) -> bool:
    """JSON equality: ``true`` is not ``1``, ``1`` is ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def show(value: Any) -> str:
    """A value as JSON on one line, shortened."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _SHOWN_LENGTH else text[: _SHOWN_LENGTH - 3] + "..."


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compare(test: Callable[[float, float], bool]) -> Callable[[Any, Any], bool]:
    return lambda found, argument: _is_number(found) and test(found, argument)


def _contains(found: Any, argument: Any) -> bool:
    if isinstance(found, str):
        return isinstance(argument, str) and argument in found
    if isinstance(found, list):
        return any(same(item, argument) for item in found)
    if isinstance(found, dict):
        return isinstance(argument, str) and argument in found
    return False


def _has_type(found: Any, argument: str) -> bool:
    kind = json_type(found)
    return kind == argument or (argument == "number" and kind == "integer")


_HOLDS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": same,
    "ne": lambda found, argument: not same(found, argument),
    "gt": _compare(lambda a, b: a > b),
    "gte": _compare(lambda a, b: a >= b),
    "lt": _compare(lambda a, b: a < b),
    "lte": _compare(lambda a, b: a <= b),
    "in": lambda found, argument: any(same(found, item) for item in argument),
    "not_in": lambda found, argument: not any(same(found, item) for item in argument),
    "matches": lambda found, argument: isinstance(found, str) and patterns.matches(argument, found),
    "contains": _contains,
    "type": _has_type,
}

_WANTED: dict[str, Callable[[Any], str]] = {
    "eq": show,
    "ne": lambda argument: f"anything but {show(argument)}",
    "gt": lambda argument: f"> {show(argument)}",
    "gte": lambda argument: f">= {show(argument)}",
    "lt": lambda argument: f"< {show(argument)}",
    "lte": lambda argument: f"<= {show(argument)}",
    "in": lambda argument: f"one of {show(argument)}",
    "not_in": lambda argument: f"none of {show(argument)}",
    "matches": lambda argument: f"a string matching {show(argument)}",
    "contains": lambda argument: f"to contain {show(argument)}",
    "type": lambda argument: f"a value of type {argument}",
}
