"""The probe's progress for the console: requests answered of planned, and the current p95.

The probe runs on a loop of its own (runner.py) and must do nothing there but send and
time requests. So the probe only hands over its Recorder when a load run starts
(``load.run_load(..., watch=...)``), and the figures are read from the engine's loop, a
couple of times a second, while the check waits for the probe's thread. "Current" p95 is
over the last answers only: sorting every sample so far, up to the cap's 10,000, would
hold the interpreter long enough to be seen in the probe's own timings.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TYPE_CHECKING

from readycheck.checks.latency.stats import nearest_rank

if TYPE_CHECKING:
    from readycheck.checks.latency.load import Recorder
    from readycheck.context import Context

POLL_EVERY_S = 0.5
RECENT_ANSWERS = 500


class Watcher:
    """``async with Watcher(ctx) as watcher:`` around the probe; pass ``watcher.follow``
    to ``run_load``. Reports nothing when nobody watches the check."""

    def __init__(self, ctx: Context, every: float = POLL_EVERY_S) -> None:
        self.ctx = ctx
        self.every = every
        self.recorder: Recorder | None = None
        self._task: asyncio.Task[None] | None = None

    def follow(self, recorder: Recorder) -> None:
        """Called on the probe's thread when a load run starts."""
        self.recorder = recorder

    def report(self) -> None:
        recorder = self.recorder
        if recorder is None:
            return
        recent = sorted(recorder.latencies_ms[-RECENT_ANSWERS:])
        note = f"p95 {nearest_rank(recent, 95):.1f} ms" if recent else ""
        self.ctx.progress(recorder.requests, recorder.planned, note)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            self.report()

    async def __aenter__(self) -> Watcher:
        if self.ctx.on_progress is not None:
            self._task = asyncio.create_task(self._poll())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()  # not awaited: the check's own cancellation must stay its own
