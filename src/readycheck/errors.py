"""readycheck's own errors.

Every error a user can meet is one of these, and each carries a message a person can act
on. The CLI prints them without a traceback (``--debug`` adds it) and maps them to exit
codes::

    ReadycheckError                 base class; str() is the message shown to the user
    ├── ProfileError                the profile cannot be used; nothing was run (exit 2)
    │                               .problems: one Problem per finding, each with its
    │                               Location (file:line:column) and the key at fault
    ├── UsageError                  a command-line argument is wrong; nothing was run (exit 2)
    ├── OutputError                 an output cannot be written: before the run, a path
    │                               refused (exit 2, nothing was run); after it, the output
    │                               is named and the verdict's code stands (3 when the run
    │                               left no record at all)
    └── demo.processes.ServerStartError
                                    `readycheck demo` could not start one of its servers;
                                    the message has the server's log tail (exit 2)

A check never raises these: a check reports FAIL for a system that is not ready, and
an exception escaping a check is turned into an ERROR result by the engine.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """A place in a profile file; line and column are 1-based."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    """One finding in a profile: where, which key, and what is wrong."""

    message: str
    location: Location | None = None
    key: str | None = None

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.message}"


class ReadycheckError(Exception):
    """Base class of every error readycheck reports to a user."""


class ProfileError(ReadycheckError):
    """The profile cannot be loaded; nothing was run."""

    def __init__(self, problems: list[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = problems
        super().__init__("\n".join(str(p) for p in problems))


class UsageError(ReadycheckError):
    """A command-line argument is wrong; nothing was run."""


class OutputError(ReadycheckError):
    """An output cannot be written (or, before the run, would damage what is there)."""
