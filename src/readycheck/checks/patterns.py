"""Regular-expression parameters: validated when the profile loads, matched in linear time.

A profile's patterns are matched against text the target controls: a command's output, a
file's contents, HTTP bodies, WebSocket messages, configuration values. Python's ``re``
backtracks, so ``^(a+)+$`` against forty ``a`` and a ``!`` runs for hours, holding the
event loop: no timeout, deadline or signal could end the run. RE2 (google-re2) matches in
time linear in the text and refuses the constructs that need backtracking
(backreferences, lookaround): such a pattern is a profile error, naming its field and line.

Where RE2 is not installed (a platform without its wheel), a pattern is matched by ``re``
in a child process that is killed at the time limit: slower, but a pattern still cannot
stop the run. Every text matched is already bounded by its check's cap (``max_output``,
``max_read``, ``max_body``, ``max_message``).
"""

from __future__ import annotations

import functools
import re
import time
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

try:
    import re2
except ImportError:  # pragma: no cover - exercised by forcing the fallback in the tests
    re2 = None

# The longest a match may take in the fallback (Python's re in a child process).
FALLBACK_LIMIT_SECONDS = 5.0
# A hint for what RE2 refuses, by the start of its message.
_REFUSALS = {
    "invalid escape sequence: \\": "backreferences (\\1) are not supported; in RE2 \\z is "
    "the end of the text (Python's \\Z)",
    "invalid perl operator: (?=": "lookahead is not supported",
    "invalid perl operator: (?!": "lookahead is not supported",
    "invalid perl operator: (?<": "lookbehind is not supported",
    "invalid named capture group": "backreferences are not supported",
    "pattern too large": "the pattern is too large",
}


class PatternTimeout(Exception):
    """A pattern took longer than its limit (only without RE2)."""


def engine() -> str:
    """The engine patterns are matched with: ``re2`` or ``re (in a child process)``."""
    return "re2" if re2 is not None else "re (in a child process)"


def validate_pattern(pattern: str) -> str:
    """``pattern`` itself when the engine accepts it; ValueError saying why not."""
    _compiled(pattern, multiline=True)
    return pattern


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str, *, multiline: bool) -> Any:
    """The compiled pattern (RE2's, or re's in the fallback); ValueError with the reason."""
    if re2 is None:
        try:
            return re.compile(pattern, re.MULTILINE if multiline else 0)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(("(?m)" if multiline else "") + pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        hint = next((h for start, h in _REFUSALS.items() if reason.startswith(start)), None)
        detail = f"{reason} ({hint})" if hint else reason
        raise ValueError(
            f"invalid regular expression {pattern!r}: {detail}. Patterns are matched with RE2 "
            "(linear time, so no pattern can hang a run)"
        ) from None


Regex = Annotated[str, AfterValidator(validate_pattern)]
"""A regular expression in RE2 syntax (Python's, less backreferences and lookaround),
matched with ^ and $ at each line where the field says so."""


def search(pattern: str, text: str, *, multiline: bool = False) -> int | None:
    """The 1-based line where ``pattern`` first matches ``text``, or None.

    With RE2 this runs in time linear in ``text``; without it, in a child process killed
    after :data:`FALLBACK_LIMIT_SECONDS` (:class:`PatternTimeout`).
    """
    compiled = _compiled(pattern, multiline=multiline)
    if re2 is None:
        return _search_in_child(pattern, text, multiline)
    # Bytes in, so that text with undecodable bytes (kept as surrogates) matches too.
    data = text.encode("utf-8", errors="surrogateescape")
    match = compiled.search(data)
    if match is None:
        return None
    return data.count(b"\n", 0, match.start()) + 1


def matches(pattern: str, text: str) -> bool:
    """Whether ``pattern`` matches anywhere in ``text`` (``re.search`` semantics)."""
    return search(pattern, text) is not None


def first_match_line(pattern: str, text: str) -> int | None:
    """The 1-based line where ``pattern`` first matches ``text`` (^ and $ at each line)."""
    return search(pattern, text, multiline=True)


def match_lines(text: str, patterns: list[str]) -> dict[str, int | None]:
    """Each pattern's first matching line in ``text`` (^ and $ at each line), or None."""
    return {pattern: first_match_line(pattern, text) for pattern in patterns}


_CHILD = """
import re, sys
data = sys.stdin.buffer.read().decode("utf-8", "surrogateescape")
pattern, flags, text = data.split("\\0", 2)
match = re.search(pattern, text, int(flags))
sys.stdout.write("" if match is None else str(text.count("\\n", 0, match.start()) + 1))
"""


def _search_in_child(pattern: str, text: str, multiline: bool) -> int | None:
    import subprocess
    import sys

    if "\0" in pattern:
        raise ValueError("a pattern cannot contain a NUL character")
    flags = str(int(re.MULTILINE) if multiline else 0)
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", _CHILD],
            input=f"{pattern}\0{flags}\0{text}".encode("utf-8", errors="surrogateescape"),
            capture_output=True,
            timeout=FALLBACK_LIMIT_SECONDS,
            check=True,
        )
    except subprocess.TimeoutExpired:
        raise PatternTimeout(
            f"the pattern {pattern!r} did not finish matching within "
            f"{time.monotonic() - started:.1f}s (install google-re2 for linear-time matching)"
        ) from None
    found = done.stdout.decode().strip()
    return int(found) if found else None


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
