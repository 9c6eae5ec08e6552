"""Durations (``250ms``, ``10s``, ``1m30s``) and sizes (``512KB``, ``50MB``, ``1GiB``).

Both parse from the strings people write in profiles and format back to the same
notation, so an error message, ``explain`` and the report all speak the profile's
language. A bare number is refused: ``timeout: 10`` could mean seconds or milliseconds.
Both are bounded (:data:`MAX_DURATION`, :data:`MAX_SIZE`): a number too large to mean
anything (``timeout: 99…9s``, 5,000 digits) is a clear error, never an infinity that
breaks a timer later.
"""

from __future__ import annotations

import math
import re
from functools import total_ordering
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
    from pydantic.json_schema import JsonSchemaValue
    from pydantic_core import CoreSchema

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|s|m|h)")
_DURATION_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_NAMES = {"b": "B", "kb": "KB", "mb": "MB", "gb": "GB", "tb": "TB"}
# Longer than any run, timeout or threshold a readiness profile needs, and far inside
# what every timer (asyncio, threads, libpq) accepts.
MAX_DURATION_SECONDS = 7 * 24 * 3600
MAX_DURATION_TEXT = "168h (7 days)"
# Larger than any disk a file or directory check measures.
MAX_SIZE_BYTES = 1000**5
MAX_SIZE_TEXT = "1000TB"
_SHOWN = 40
_SIZE_NAMES.update({"kib": "KiB", "mib": "MiB", "gib": "GiB", "tib": "TiB"})


class _Unit:
    """Shared pydantic plumbing: validate from the profile notation, dump back to it."""

    pattern: ClassVar[str]
    example: ClassVar[str]

    @classmethod
    def parse(cls, text: str) -> Any:
        raise NotImplementedError

    @classmethod
    def _validate(cls, value: object) -> Any:
        if isinstance(value, cls):
            return value
        if isinstance(value, bool) or not isinstance(value, str):
            raise ValueError(
                f"expected a string with a unit such as {cls.example!r}, got {value!r}"
            )
        return cls.parse(value)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.to_string_ser_schema(),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "pattern": cls.pattern, "examples": [cls.example]}


@total_ordering
class Duration(_Unit):
    """A non-negative span of time, written with units: ``250ms``, ``10s``, ``2m``, ``1m30s``."""

    pattern = r"^\s*(\d+(\.\d+)?(ms|us|µs|s|m|h))+\s*$"
    example = "10s"
    __slots__ = ("seconds",)

    def __init__(self, value: str | float) -> None:
        seconds = self.parse(value).seconds if isinstance(value, str) else float(value)
        if math.isnan(seconds) or seconds < 0:
            raise ValueError("a duration cannot be negative")
        if seconds > MAX_DURATION_SECONDS:
            raise ValueError(f"a duration is at most {MAX_DURATION_TEXT}")
        self.seconds: float = seconds

    @classmethod
    def parse(cls, text: str) -> Duration:
        compact = text.strip().replace(" ", "")
        parts = _DURATION_PART.findall(compact)
        if not compact or "".join(n + u for n, u in parts) != compact:
            raise ValueError(
                f"{_shown(text)} is not a duration: write a number and a unit (ms, s, m, h), "
                "e.g. 250ms, 10s, 2m or 1m30s"
            )
        seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
        if not seconds <= MAX_DURATION_SECONDS:  # infinity too, from a number of 309 digits
            raise ValueError(
                f"{_shown(text)} is too long: a duration is at most {MAX_DURATION_TEXT}"
            )
        return cls(seconds)

    @property
    def milliseconds(self) -> float:
        return self.seconds * 1000.0

    def __str__(self) -> str:
        s = self.seconds
        if s == 0:
            return "0s"
        if s < 1:
            return f"{_trim(s * 1000)}ms"
        if s < 60 or s % 60:
            return f"{_trim(s)}s" if s < 60 else f"{int(s // 60)}m{_trim(s % 60)}s"
        if s % 3600 == 0:
            return f"{int(s // 3600)}h"
        return f"{int(s // 60)}m"

    def __repr__(self) -> str:
        return f"Duration({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Duration) and self.seconds == other.seconds

    def __lt__(self, other: Duration) -> bool:
        return self.seconds < other.seconds

    def __hash__(self) -> int:
        return hash(self.seconds)


@total_ordering
class Size(_Unit):
    """A size in bytes, written with units: ``512KB``, ``50MB`` (10^6), ``1GiB`` (2^30)."""

    pattern = r"^\s*\d+(\.\d+)?\s*([KMGT]i?B|B)\s*$"
    example = "50MB"
    __slots__ = ("_text", "bytes")

    def __init__(self, value: str | int) -> None:
        if isinstance(value, str):
            parsed = self.parse(value)
            self.bytes: int = parsed.bytes
            self._text: str = parsed._text
        else:
            if value < 0:
                raise ValueError("a size cannot be negative")
            if value > MAX_SIZE_BYTES:
                raise ValueError(f"a size is at most {MAX_SIZE_TEXT}")
            self.bytes = int(value)
            self._text = f"{self.bytes}B"

    @classmethod
    def parse(cls, text: str) -> Size:
        match = _SIZE.fullmatch(text.strip())
        if match is None:
            raise ValueError(
                f"{_shown(text)} is not a size: write a number and a unit (B, KB, MB, GB, "
                "KiB, MiB, GiB), e.g. 512KB or 50MB"
            )
        number, unit = match.groups()
        count = float(number) * _SIZE_UNITS[unit.lower()]
        if not count <= MAX_SIZE_BYTES:  # infinity too, from a number of 309 digits
            raise ValueError(f"{_shown(text)} is too large: a size is at most {MAX_SIZE_TEXT}")
        size = cls(int(count))
        size._text = f"{_trim(float(number))}{_SIZE_NAMES[unit.lower()]}"
        return size

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"Size({self._text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Size) and self.bytes == other.bytes

    def __lt__(self, other: Size) -> bool:
        return self.bytes < other.bytes

    def __hash__(self) -> int:
        return hash(self.bytes)


def counted(number: int, word: str, plural: str | None = None) -> str:
    """``1 statement``, ``3 statements``, ``2 standbys``; ``plural`` where "s" is wrong."""
    return f"{number} {word if number == 1 else plural or word + 's'}"


def format_bytes(count: float) -> str:
    """A byte count for people: ``1.5 MB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{_trim(round(count, 1))} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


def format_duration_ms(ms: float) -> str:
    """A measured duration for people: ``850 ms``, ``3.2 s``, ``1m05s``."""
    if ms < 1:
        return f"{ms:.2f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def _shown(text: str) -> str:
    """``text`` quoted for a message, shortened when it is long."""
    return repr(text) if len(text) <= _SHOWN else repr(text[:_SHOWN] + "…")


def _trim(number: float) -> str:
    return f"{number:.3f}".rstrip("0").rstrip(".")
