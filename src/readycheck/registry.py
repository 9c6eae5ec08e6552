"""Check types by name, from the ``readycheck.checks`` entry-point group.

Built-in check types register through the same group as third-party plugins. Listing
the names reads only package metadata; a module is imported when a profile names one of
its types (or when ``readycheck checks`` lists them all), so ``--help``, ``--version`` and
``validate`` do not pay for drivers a profile does not use.

A plugin declares, in its own ``pyproject.toml``::

    [project.entry-points."readycheck.checks"]
    "acme.queue_depth" = "acme_readycheck.queue:queue_depth"

where ``queue_depth`` is an ``async def`` decorated with :func:`check`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from readycheck.context import Context
    from readycheck.params import CheckParams
    from readycheck.results import Outcome
    from readycheck.units import Duration

ENTRY_POINT_GROUP = "readycheck.checks"
_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")

P = TypeVar("P", bound="CheckParams")
P_contra = TypeVar("P_contra", bound="CheckParams", contravariant=True)


class _CheckFunction(Protocol[P_contra]):
    __name__: str
    __doc__: str | None

    def __call__(self, params: P_contra, ctx: Context, /) -> Awaitable[Outcome]: ...


@dataclass(frozen=True)
class CheckType:
    """A named check: its parameter model, its category and the coroutine that runs it."""

    name: str
    params: type[CheckParams]
    run: Callable[[Any, Context], Awaitable[Outcome]]
    category: str
    exclusive: bool = False
    timeout: Duration | None = None
    """The type's own default timeout, for checks that need longer than the profile's
    default (a load probe): used when the check sets none, if longer."""
    doc: str = ""
    provider: str = field(default="", compare=False)

    @property
    def description(self) -> str:
        """The first line of the check function's docstring."""
        return self.doc.strip().splitlines()[0].strip() if self.doc.strip() else ""


def check(
    name: str,
    *,
    params: type[P],
    category: str,
    exclusive: bool = False,
    timeout: str | None = None,
) -> Callable[[_CheckFunction[P]], CheckType]:
    """Declare a check type.

    ``exclusive`` check types run one at a time after every other check, so that they do
    not measure each other (latency probes). ``timeout`` (e.g. "30s") is the type's own
    default, used instead of a shorter profile default when a check sets no timeout.
    """
    from readycheck.units import Duration

    default_timeout = Duration.parse(timeout) if timeout is not None else None
    if not _TYPE_NAME.match(name):
        raise ValueError(
            f"check type name {name!r} must be lower-case words joined by dots, "
            "like 'postgres.pool'"
        )

    def register(function: _CheckFunction[P]) -> CheckType:
        return CheckType(
            name=name,
            params=params,
            run=function,
            category=category,
            exclusive=exclusive,
            timeout=default_timeout,
            doc=function.__doc__ or "",
        )

    return register


class UnknownCheckType(LookupError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.suggestions = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
        hint = (
            f"; did you mean {' or '.join(map(repr, self.suggestions))}?"
            if self.suggestions
            else ""
        )
        super().__init__(f"unknown check type {name!r}{hint}")


class CheckTypeUnavailable(LookupError):
    """The type is declared but cannot be used: its module fails to import, or two
    packages declare the same name."""


class Registry:
    """The check types installed in this environment."""

    def __init__(self, entry_points: Iterable[metadata.EntryPoint] | None = None) -> None:
        if entry_points is None:
            entry_points = metadata.entry_points(group=ENTRY_POINT_GROUP)
        self._entry_points: dict[str, list[metadata.EntryPoint]] = {}
        seen: set[tuple[str, str]] = set()
        for entry_point in entry_points:
            if (entry_point.name, entry_point.value) in seen:
                continue  # the same distribution found twice on sys.path
            seen.add((entry_point.name, entry_point.value))
            self._entry_points.setdefault(entry_point.name, []).append(entry_point)
        self._loaded: dict[str, CheckType] = {}

    def names(self) -> list[str]:
        return sorted(self._entry_points)

    def __contains__(self, name: str) -> bool:
        return name in self._entry_points

    def get(self, name: str) -> CheckType:
        if name in self._loaded:
            return self._loaded[name]
        candidates = self._entry_points.get(name)
        if not candidates:
            raise UnknownCheckType(name, self.names())
        if len(candidates) > 1:
            providers = ", ".join(f"{_provider(ep)} ({ep.value})" for ep in candidates)
            raise CheckTypeUnavailable(
                f"check type {name!r} is declared by more than one package: {providers}; "
                "uninstall one of them"
            )
        entry_point = candidates[0]
        try:
            loaded = entry_point.load()
        except Exception as exc:
            raise CheckTypeUnavailable(
                f"check type {name!r} could not be loaded from {entry_point.value} "
                f"({_provider(entry_point)}): {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(loaded, CheckType):
            raise CheckTypeUnavailable(
                f"entry point {name!r} = {entry_point.value} is not a check type: decorate "
                "its function with @readycheck.check(...)"
            )
        if loaded.name != name:
            raise CheckTypeUnavailable(
                f"entry point {name!r} = {entry_point.value} declares the check type "
                f"{loaded.name!r}; the two names must match"
            )
        check_type = CheckType(
            name=loaded.name,
            params=loaded.params,
            run=loaded.run,
            category=loaded.category,
            exclusive=loaded.exclusive,
            timeout=loaded.timeout,
            doc=loaded.doc,
            provider=_provider(entry_point),
        )
        self._loaded[name] = check_type
        return check_type

    def all(self) -> list[CheckType]:
        """Every usable check type (loading each module); unusable ones are skipped."""
        types = []
        for name in self.names():
            try:
                types.append(self.get(name))
            except CheckTypeUnavailable:
                continue
        return types

    def problems(self) -> dict[str, str]:
        """The declared types that cannot be used, with the reason."""
        found = {}
        for name in self.names():
            try:
                self.get(name)
            except CheckTypeUnavailable as exc:
                found[name] = str(exc)
        return found


def _provider(entry_point: metadata.EntryPoint) -> str:
    dist = entry_point.dist
    if dist is None:
        return "unknown package"
    return f"{dist.name} {dist.version}"
