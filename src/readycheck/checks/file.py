"""Files: existence, size and content of a file or directory (a Dockerfile's HEALTHCHECK,
a lock file present, an offline bundle under 50 MB)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from readycheck.checks.patterns import Regex, as_list, match_lines
from readycheck.params import INPUT_FILE, BufferSize, CheckParams
from readycheck.registry import check
from readycheck.results import Outcome, held
from readycheck.units import Size, format_bytes

if TYPE_CHECKING:
    from readycheck.context import Context

_MAX_ENTRIES = 200_000


class FileParams(CheckParams):
    path: Annotated[str, INPUT_FILE] = Field(
        description="The file or directory, relative to the profile's directory."
    )
    exists: bool = Field(True, description="Whether it must exist (false: must be absent).")
    kind: Literal["file", "directory", "any"] = Field(
        "any", description="What the path must be: file, directory or any."
    )
    contains: Regex | list[Regex] | None = Field(
        None, description="Regex(es) the file's text must match (^ and $ match at each line)."
    )
    not_contains: Regex | list[Regex] | None = Field(
        None,
        description="Regex(es) the file's text must not match; only the line number of a "
        "match is shown, never its text.",
    )
    max_size: Size | None = Field(
        None, description="Largest allowed size (a directory counts every file inside)."
    )
    min_size: Size | None = Field(None, description="Smallest allowed size.")
    max_read: BufferSize = Field(
        Size("16MB"), description="Largest file whose content is searched for patterns."
    )

    @model_validator(mode="after")
    def _consistent(self) -> FileParams:
        wants_content = self.contains is not None or self.not_contains is not None
        if not self.exists and (wants_content or self.max_size or self.min_size):
            raise ValueError("exists: false cannot be combined with content or size checks")
        if wants_content and self.kind == "directory":
            raise ValueError("contains / not_contains apply to files, not directories")
        return self


@check("file", params=FileParams, category="system")
async def file(p: FileParams, ctx: Context) -> Outcome:
    """Check that a file or directory exists (or not), its size, and its content."""
    import asyncio

    path = ctx.resolve(p.path)
    shown = p.path
    if not path.exists():
        if not p.exists:
            return Outcome.passed(f"{shown} is absent, as required")
        return Outcome.failed(f"{shown} does not exist", evidence=[f"looked for {path}"])
    if not p.exists:
        return Outcome.failed(
            f"{shown} exists but must not", remediation=f"Remove {shown} from the deployment."
        )
    is_dir = path.is_dir()
    if not is_dir and not path.is_file():
        # A FIFO or a device would block a read forever, or never end.
        return Outcome.failed(f"{shown} is not a regular file or directory")
    if p.kind == "file" and is_dir:
        return Outcome.failed(f"{shown} is a directory, expected a file")
    if p.kind == "directory" and not is_dir:
        return Outcome.failed(f"{shown} is not a directory")
    if is_dir and (p.contains or p.not_contains):
        return Outcome.failed(f"{shown} is a directory; contains / not_contains need a file")

    try:
        size, counted = await asyncio.to_thread(_size_of, path)
    except OSError as exc:
        return Outcome.failed(f"{shown} cannot be read: {exc.strerror or exc}")
    what = f"{counted} files, " if is_dir else ""
    evidence = [f"{shown}: {what}{format_bytes(size)}"]
    metrics: dict[str, float] = {"size_bytes": size}
    problems: list[str] = []
    if p.max_size is not None:
        if size > p.max_size.bytes:
            problems.append(f"{format_bytes(size)} exceeds the limit of {p.max_size}")
        else:
            evidence.append(held(f"within the limit of {p.max_size}"))
    if p.min_size is not None and size < p.min_size.bytes:
        problems.append(f"{format_bytes(size)} is below the minimum of {p.min_size}")

    patterns = as_list(p.contains) + as_list(p.not_contains)
    if patterns:
        if size > p.max_read.bytes:
            return Outcome.errored(
                f"{shown} is {format_bytes(size)}, larger than max_read ({p.max_read}); "
                "not searched",
                evidence=evidence,
                metrics=metrics,
            )
        try:
            text = await asyncio.to_thread(_read_text, path, p.max_read.bytes)
        except OSError as exc:
            return Outcome.failed(f"{shown} cannot be read: {exc.strerror or exc}")
        if text is None:  # grew past max_read since its size was read, or a device
            return Outcome.errored(
                f"{shown} holds more than max_read ({p.max_read}); not searched",
                evidence=evidence,
                metrics=metrics,
            )
        lines = await asyncio.to_thread(match_lines, text, patterns)
        for pattern in as_list(p.contains):
            if lines[pattern] is None:
                problems.append(f"does not match '{pattern}'")
            else:
                evidence.append(held(f"matches '{pattern}' at line {lines[pattern]}"))
        for pattern in as_list(p.not_contains):
            if lines[pattern] is not None:
                problems.append(f"line {lines[pattern]} matches forbidden '{pattern}'")
            else:
                evidence.append(held(f"no match for forbidden '{pattern}'"))

    if problems:
        return Outcome.failed(f"{shown}: {'; '.join(problems)}", evidence=evidence, metrics=metrics)
    return Outcome.passed(
        f"{shown} is present ({format_bytes(size)})", evidence=evidence, metrics=metrics
    )


def _size_of(path: Path) -> tuple[int, int]:
    """Bytes of a file, or of every file under a directory (symlinks not followed)."""
    if not path.is_dir():
        return path.stat().st_size, 1
    total = count = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            count += 1
            if count > _MAX_ENTRIES:
                raise OSError(f"more than {_MAX_ENTRIES} files under the directory")
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue  # removed while we walked
    return total, count


def _read_text(path: Path, limit: int) -> str | None:
    """The file's text, or None when it holds more than ``limit`` bytes."""
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    return None if len(data) > limit else data.decode("utf-8", errors="replace")
