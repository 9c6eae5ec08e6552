"""Regular-expression parameters: validated when the profile loads, matched line-aware."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator


def _compiles(pattern: str) -> str:
    try:
        re.compile(pattern, re.MULTILINE)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    return pattern


Regex = Annotated[str, AfterValidator(_compiles)]
"""A Python regular expression, matched with re.MULTILINE (^ and $ match at each line)."""


def _scalar_text(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


Argument = Annotated[str, BeforeValidator(_scalar_text)]
"""A command-line argument: YAML numbers and booleans are taken as the text written."""


def as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def first_match_line(pattern: str, text: str) -> int | None:
    """The 1-based line where ``pattern`` first matches ``text``, or None."""
    match = re.search(pattern, text, re.MULTILINE)
    if match is None:
        return None
    return text.count("\n", 0, match.start()) + 1
