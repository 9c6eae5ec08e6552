"""What a running check may use: its deadline, shared clients, the redactor, a logger."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from readycheck.params import resolve_path
from readycheck.redact import Redactor

if TYPE_CHECKING:
    import asyncio

T = TypeVar("T")


class SharedResources:
    """Per-run clients shared by checks (one HTTP client for every HTTP check, ...).

    Created on first use, closed by the engine when the run ends, whatever happened.
    """

    def __init__(self) -> None:
        self._items: dict[Hashable, object] = {}
        self._locks: dict[Hashable, asyncio.Lock] = {}

    async def get(self, key: Hashable, factory: Callable[[], T | Awaitable[T]]) -> T:
        import asyncio

        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key not in self._items:
                made = factory()
                self._items[key] = await made if inspect.isawaitable(made) else made
        return cast(T, self._items[key])

    async def aclose(self) -> None:
        items, self._items = list(self._items.values()), {}
        for item in reversed(items):
            closer: Any = getattr(item, "aclose", None) or getattr(item, "close", None)
            if closer is None:
                continue
            try:
                result = closer()
                if inspect.isawaitable(result):
                    import asyncio

                    await asyncio.wait_for(result, timeout=5)
            except Exception:  # closing is best effort: the run's results are already made
                logging.getLogger("readycheck").debug("closing %r failed", item, exc_info=True)


@dataclass
class Context:
    """Handed to a check with its parameters. Checks never print: they return an Outcome
    and may log through ``logger`` (redacted)."""

    check_id: str
    environment: str | None
    base_dir: Path
    redactor: Redactor
    logger: logging.Logger
    deadline: float
    """``time.monotonic()`` value by which this attempt must have returned."""
    attempt: int = 1
    resources: SharedResources = field(default_factory=SharedResources)
    profile_digest: str | None = None
    """The digest of the profile being run (what an attestation was made for)."""
    release: str | None = None
    """The release being gated (``signoff.release``), when the profile names one."""
    on_progress: Callable[[int, int | None, str], None] | None = None
    """Where ``progress()`` goes: the engine's observer (the console), or nowhere."""

    def remaining(self) -> float:
        """Seconds left before this attempt's timeout (never negative)."""
        return max(0.0, self.deadline - time.monotonic())

    def progress(self, done: int, total: int | None = None, note: str = "") -> None:
        """Say how far the check has got: ``done`` of ``total`` steps (requests sent of
        planned), and a short ``note`` ("p95 12 ms"). The console shows it while the check
        runs; nothing keeps it. Cheap, safe from any thread, a no-op when nobody watches."""
        if self.on_progress is not None:
            self.on_progress(done, total, self.redactor.redact(note))

    async def shared(self, key: Hashable, factory: Callable[[], T | Awaitable[T]]) -> T:
        """A client shared by every check of the run, made by ``factory`` on first use."""
        return await self.resources.get(key, factory)

    def resolve(self, path: str | Path) -> Path:
        """A path from the profile, relative to the profile's directory."""
        return resolve_path(self.base_dir, path)
