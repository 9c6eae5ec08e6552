"""Running a profile's checks: concurrency, timeouts, retries, needs, deadline, cancellation.

Checks run concurrently up to ``concurrency``, each attempt under its own timeout and the
whole run under an optional deadline. A check waits for the checks it ``needs`` and is
SKIP when one did not pass. Exclusive check types (latency probes) run one at a time
after every other check, so they do not measure each other. ``interrupt()`` (Ctrl-C,
SIGTERM) cancels what runs; the run still returns a complete RunResult.

A check that ignores cancellation is given a short grace period and then abandoned: the
engine never waits on a check beyond its timeout plus that grace.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from readycheck import __version__
from readycheck.context import Context, SharedResources
from readycheck.errors import UsageError
from readycheck.gate import verdict_of
from readycheck.profile import PlannedCheck, Profile, Waiver
from readycheck.redact import Redactor
from readycheck.results import (
    CheckResult,
    GateInfo,
    Outcome,
    ProfileInfo,
    RunResult,
    Status,
    ToolInfo,
    WaiverRecord,
    marks_of,
    summarize,
)
from readycheck.units import Duration

log = logging.getLogger("readycheck")

CANCEL_GRACE_SECONDS = 2.0
MAX_RETRY_INTERVAL_SECONDS = 15.0
_NEEDS_MET = {Status.PASS, Status.WARN}


@dataclass(frozen=True)
class RunOptions:
    concurrency: int = 8
    deadline: Duration | None = None
    only: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    strict: bool = False
    require_all: bool = False
    debug: bool = False


class Observer(Protocol):
    """Progress callbacks (the console's live view); called on the event loop."""

    def check_started(self, check: PlannedCheck, attempt: int) -> None: ...

    def check_finished(self, result: CheckResult) -> None: ...

    def check_progress(self, check: PlannedCheck, done: int, total: int | None, note: str) -> None:
        """A running check's ``ctx.progress()``; may come from another thread."""


SkipCause = Literal["selection", "needs", "stopped"]


@dataclass
class _Finished:
    outcome: Outcome
    attempts: int
    duration_ms: float
    traceback: str | None = None
    skip_cause: SkipCause | None = None


def select(profile: Profile, only: Iterable[str], skip: Iterable[str]) -> dict[str, str]:
    """Which checks are left out by ``--only`` / ``--skip``, with the reason for each.

    Each takes check ids or ``tag:NAME``. ``--only`` brings in what the chosen checks
    need, so a check is never skipped for want of a need the user did not name.
    """
    only, skip = list(only), list(skip)
    by_id = {check.id: check for check in profile.checks}

    def resolve(selectors: list[str], option: str) -> set[str]:
        chosen: set[str] = set()
        for selector in selectors:
            if selector.startswith("tag:"):
                tag = selector[4:]
                tagged = {check.id for check in profile.checks if tag in check.tags}
                if not tagged:
                    known = sorted({t for check in profile.checks for t in check.tags})
                    raise UsageError(
                        f"{option} {selector}: no check has the tag {tag!r} "
                        f"(tags in this profile: {', '.join(known) or 'none'})"
                    )
                chosen |= tagged
            elif selector in by_id:
                chosen.add(selector)
            else:
                import difflib

                close = difflib.get_close_matches(selector, list(by_id), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise UsageError(f"{option} {selector}: no check has this id{hint}")
        return chosen

    left_out: dict[str, str] = {}
    if only:
        chosen = resolve(only, "--only")
        pending = list(chosen)
        while pending:
            for need in by_id[pending.pop()].needs:
                if need not in chosen:
                    chosen.add(need)
                    pending.append(need)
        for check in profile.checks:
            if check.id not in chosen:
                left_out[check.id] = "not selected (--only)"
    for check_id in resolve(skip, "--skip"):
        left_out[check_id] = "skipped (--skip)"
    return left_out


class Engine:
    def __init__(
        self,
        profile: Profile,
        options: RunOptions | None = None,
        *,
        observer: Observer | None = None,
        redactor: Redactor | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.profile = profile
        self.options = options or RunOptions()
        if self.options.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        self.observer = observer
        self.redactor = redactor or profile.redactor()
        self.clock = clock
        self.timer = timer
        self.gate = dataclasses.replace(
            profile.gate,
            strict=profile.gate.strict or self.options.strict,
            require_all=profile.gate.require_all or self.options.require_all,
        )
        self.left_out = select(profile, self.options.only, self.options.skip)
        self.abandoned: list[asyncio.Task[Any]] = []
        self._stop: asyncio.Future[str] | None = None
        self._stop_reason: str | None = None
        self._interrupted = False
        self._finished: dict[str, _Finished] = {}
        self._done: dict[str, asyncio.Event] = {}

    # -- control -------------------------------------------------------------------------

    def interrupt(self) -> None:
        """Stop the run as soon as possible (Ctrl-C, SIGTERM): results stay complete."""
        self._interrupted = True
        self._request_stop("interrupted")

    def _request_stop(self, reason: str) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(reason)

    @property
    def stopping(self) -> bool:
        return self._stop_reason is not None

    @property
    def interrupted(self) -> bool:
        return self._interrupted

    # -- running -------------------------------------------------------------------------

    async def run(self) -> RunResult:
        loop = asyncio.get_running_loop()
        self._stop = loop.create_future()
        if self._stop_reason is not None:
            self._stop.set_result(self._stop_reason)
        started_at, start = self.clock(), self.timer()
        deadline_handle = None
        if self.options.deadline is not None:
            deadline_handle = loop.call_later(
                self.options.deadline.seconds,
                self._request_stop,
                f"run deadline ({self.options.deadline}) reached",
            )
        resources = SharedResources()
        self._preload_secrets()
        self._done = {check.id: asyncio.Event() for check in self.profile.checks}
        try:
            concurrent, sequential = self._phases()
            semaphore = asyncio.Semaphore(self.options.concurrency)
            tasks = [
                asyncio.create_task(self._run_check(check, semaphore, resources))
                for check in concurrent
            ]
            if tasks:
                await asyncio.gather(*tasks)
            for check in sequential:
                await self._run_check(check, None, resources)
        finally:
            if deadline_handle is not None:
                deadline_handle.cancel()
            await resources.aclose()
        finished_at = self.clock()
        return self._result(started_at, finished_at, (self.timer() - start) * 1000.0)

    def _preload_secrets(self) -> None:
        for check in self.profile.checks:
            try:
                self.redactor.add(*check.params.runtime_secrets(self.profile.base_dir))
            except Exception:  # the check itself reports what it cannot read
                log.debug("%s: reading its secrets ahead failed", check.id, exc_info=True)

    def _phases(self) -> tuple[list[PlannedCheck], list[PlannedCheck]]:
        """Concurrent checks, then those that run alone: exclusive types and any check
        that (transitively) needs one, in dependency order."""
        by_id = {check.id: check for check in self.profile.checks}
        late: set[str] = {check.id for check in self.profile.checks if check.type.exclusive}
        changed = True
        while changed:
            changed = False
            for check in self.profile.checks:
                if check.id not in late and any(need in late for need in check.needs):
                    late.add(check.id)
                    changed = True
        ordered: list[PlannedCheck] = []
        placed: set[str] = set()

        def place(check: PlannedCheck) -> None:
            if check.id in placed:
                return
            placed.add(check.id)
            for need in check.needs:
                if need in late:
                    place(by_id[need])
            ordered.append(check)

        for check in self.profile.checks:
            if check.id in late:
                place(check)
        return [c for c in self.profile.checks if c.id not in late], ordered

    async def _run_check(
        self,
        check: PlannedCheck,
        semaphore: asyncio.Semaphore | None,
        resources: SharedResources,
    ) -> None:
        try:
            finished = await self._evaluate(check, semaphore, resources)
        except Exception as exc:  # the engine's own bug: still a result, never a crash
            log.debug("engine failure on %s", check.id, exc_info=True)
            finished = _Finished(
                Outcome.errored(f"readycheck internal error: {type(exc).__name__}: {exc}"),
                attempts=0,
                duration_ms=0.0,
                traceback=traceback.format_exc(),
            )
        self._finished[check.id] = finished
        self._done[check.id].set()
        log.debug(
            "%s finished: %s after %d attempt(s) in %.0f ms",
            check.id,
            finished.outcome.status.value,
            finished.attempts,
            finished.duration_ms,
        )
        if self.observer is not None:
            self.observer.check_finished(self._check_result(check, finished))

    async def _evaluate(
        self,
        check: PlannedCheck,
        semaphore: asyncio.Semaphore | None,
        resources: SharedResources,
    ) -> _Finished:
        if check.id in self.left_out:
            return _Finished(Outcome.skipped(self.left_out[check.id]), 0, 0.0, None, "selection")
        for need in check.needs:
            await self._done[need].wait()
        unmet = [(n, self._finished[n]) for n in check.needs]
        unmet = [(n, f) for n, f in unmet if f.outcome.status not in _NEEDS_MET]
        if unmet:
            reasons = ", ".join(f"{n} is {f.outcome.status.value}" for n, f in unmet)
            by_user = all(f.skip_cause == "selection" for _, f in unmet)
            return _Finished(
                Outcome.skipped(f"not run: needs {reasons}"),
                0,
                0.0,
                None,
                "selection" if by_user else "needs",
            )
        if semaphore is None:
            return await self._attempts(check, resources)
        async with semaphore:
            return await self._attempts(check, resources)

    async def _attempts(self, check: PlannedCheck, resources: SharedResources) -> _Finished:
        if self.stopping:
            return self._not_started()
        start = self.timer()
        window_end = start + check.retry_for.seconds if check.retry_for else None
        interval = check.retry_interval.seconds
        attempt = 0
        while True:
            attempt += 1
            if self.observer is not None:
                self.observer.check_started(check, attempt)
            outcome, trace = await self._attempt(check, attempt, resources)
            if outcome.status in (Status.PASS, Status.WARN, Status.SKIP) or self.stopping:
                break
            retrying = attempt <= check.retries or window_end is not None
            if outcome.final is not None:
                # Waiting cannot change it (an HTTP 404): say so rather than wait.
                if retrying:
                    outcome = _noted(outcome, f"not retried: {outcome.final}")
                break
            pause = max(interval, outcome.retry_after or 0.0)
            now = self.timer()
            more_by_count = attempt <= check.retries
            more_by_window = window_end is not None and now + pause < window_end
            if not (more_by_count or more_by_window):
                if outcome.retry_after is not None and retrying and window_end is not None:
                    outcome = _noted(
                        outcome,
                        f"not retried: the service asked to wait {Duration(pause)} "
                        "(Retry-After), past the end of retry_for",
                    )
                break
            log.debug(
                "%s: attempt %d was %s; retrying in %.1fs",
                check.id,
                attempt,
                outcome.status,
                pause,
            )
            if await self._pause(pause):
                break
            interval = min(interval * 2, MAX_RETRY_INTERVAL_SECONDS)
        return _Finished(outcome, attempt, (self.timer() - start) * 1000.0, trace)

    def _progress_of(self, check: PlannedCheck) -> Callable[[int, int | None, str], None] | None:
        observer = self.observer
        if observer is None:
            return None
        return lambda done, total, note: observer.check_progress(check, done, total, note)

    def _not_started(self) -> _Finished:
        reason = self._stop_reason or "stopped"
        if self._interrupted:
            return _Finished(Outcome.skipped(f"not run: {reason}"), 0, 0.0, None, "stopped")
        return _Finished(Outcome.errored(f"not started: {reason}"), 0, 0.0)

    async def _pause(self, seconds: float) -> bool:
        """Sleep between attempts; True when the run was stopped meanwhile."""
        assert self._stop is not None
        done, _ = await asyncio.wait({self._stop}, timeout=seconds)
        return bool(done)

    async def _attempt(
        self, check: PlannedCheck, attempt: int, resources: SharedResources
    ) -> tuple[Outcome, str | None]:
        assert self._stop is not None
        timeout = check.timeout.seconds
        ctx = Context(
            check_id=check.id,
            environment=self.profile.environment,
            base_dir=self.profile.base_dir,
            redactor=self.redactor,
            logger=log.getChild(check.id),
            deadline=time.monotonic() + timeout,
            attempt=attempt,
            resources=resources,
            profile_digest=self.profile.digest,
            release=self.profile.signoff.release if self.profile.signoff else None,
            on_progress=self._progress_of(check),
        )
        task: asyncio.Task[Any] = asyncio.create_task(
            _call(check, ctx), name=f"readycheck:{check.id}"
        )
        started = self.timer()
        done, _ = await asyncio.wait(
            {task, self._stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if task in done:
            return self._outcome_of(task, check)
        elapsed = Duration(round(self.timer() - started, 3))
        await self._cancel(task)
        if self._stop.done():
            return Outcome.errored(f"{self._stop.result()} after {elapsed} of running"), None
        return (
            Outcome.errored(
                f"timed out after {check.timeout}",
                remediation="Raise the check's 'timeout' if the system is slow but healthy.",
            ),
            None,
        )

    async def _cancel(self, task: asyncio.Task[Any]) -> None:
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=CANCEL_GRACE_SECONDS)
        if not done:
            log.warning(
                "%s did not stop within %.0fs of being cancelled; abandoned",
                task.get_name(),
                CANCEL_GRACE_SECONDS,
            )
            self.abandoned.append(task)
        elif not task.cancelled() and task.exception() is not None:
            log.debug("%s raised while being cancelled", task.get_name(), exc_info=task.exception())

    def _outcome_of(
        self, task: asyncio.Task[Any], check: PlannedCheck
    ) -> tuple[Outcome, str | None]:
        if task.cancelled():
            return Outcome.errored("the check was cancelled"), None
        exc = task.exception()
        if isinstance(exc, _Exited) and exc.__cause__ is not None:
            exc = exc.__cause__
        if exc is not None:
            trace = "".join(traceback.format_exception(exc)) if self.options.debug else None
            log.debug("check %s raised", check.id, exc_info=exc)
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            summary = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
            return (
                Outcome.errored(
                    f"the check raised {summary}",
                    remediation="This is a bug in the check type; run with --debug for the "
                    "traceback and report it to its maintainers.",
                ),
                trace,
            )
        outcome = task.result()
        if not isinstance(outcome, Outcome):
            return (
                Outcome.errored(
                    f"the check returned {type(outcome).__name__}, not an Outcome "
                    f"(a bug in check type {check.type.name!r})"
                ),
                None,
            )
        if outcome.status is Status.WAIVED:
            return Outcome.errored(
                "a check cannot return WAIVED; waivers come from the profile"
            ), None
        return outcome, None

    # -- results -------------------------------------------------------------------------

    def _check_result(
        self, check: PlannedCheck, finished: _Finished, waiver: WaiverRecord | None = None
    ) -> CheckResult:
        outcome = finished.outcome
        redact = self.redactor.redact
        status = outcome.status
        if waiver is not None and waiver.state == "applied":
            status = Status.WAIVED
        failing = status in (Status.FAIL, Status.ERROR, Status.WARN)
        remediation = (check.remediation or outcome.remediation) if failing else None
        judged = self.gate.judge(
            status,
            check.severity,
            check.rule,
            skipped_for_needs=status is Status.SKIP and finished.skip_cause == "needs",
        )
        return CheckResult(
            id=check.id,
            type=check.type.name,
            name=check.name,
            category=check.category,
            severity=check.severity,
            tags=list(check.tags),
            status=status,
            blocking=judged.blocking,
            not_run=judged.not_run,
            gate_rule=check.rule.describe(),
            summary=redact(outcome.summary),
            evidence=[redact(line) for line in outcome.evidence],
            marks=marks_of(outcome.evidence),
            metrics=_finite(outcome.metrics),
            remediation=redact(remediation) if remediation else None,
            duration_ms=round(finished.duration_ms, 3),
            attempts=finished.attempts,
            waiver=waiver,
            data=_json_safe(outcome.data, self.redactor),
            location=str(check.location) if check.location else None,
            traceback=redact(finished.traceback) if finished.traceback else None,
        )

    def _waiver_record(self, waiver: Waiver, status: Status | None, today: Any) -> WaiverRecord:
        if waiver.expired(today):
            state: Literal["applied", "expired", "unused"] = "expired"
        elif status in (Status.FAIL, Status.ERROR, Status.WARN):
            state = "applied"
        else:
            state = "unused"
        return WaiverRecord(
            check=waiver.check,
            reason=self.redactor.redact(waiver.reason),
            approved_by=waiver.approved_by,
            until=waiver.until,
            state=state,
            waived_status=status if state == "applied" else None,
        )

    def _result(self, started_at: datetime, finished_at: datetime, duration_ms: float) -> RunResult:
        today = started_at.astimezone(UTC).date()
        waivers = {waiver.check: waiver for waiver in self.profile.waivers}
        records: list[WaiverRecord] = []
        checks: list[CheckResult] = []
        for check in self.profile.checks:
            finished = self._finished.get(check.id) or self._not_started()
            record = None
            if check.id in waivers:
                record = self._waiver_record(waivers[check.id], finished.outcome.status, today)
                records.append(record)
            checks.append(self._check_result(check, finished, record))
        verdict = verdict_of(checks, interrupted=self._interrupted)
        return RunResult(
            tool=ToolInfo(version=__version__),
            profile=ProfileInfo(
                name=self.profile.name, path=str(self.profile.path), digest=self.profile.digest
            ),
            environment=self.profile.environment,
            started_at=started_at,
            finished_at=finished_at,
            duration_ms=round(duration_ms, 3),
            verdict=verdict,
            exit_code=verdict.exit_code,
            summary=summarize(check.status for check in checks),
            gate=GateInfo.model_validate(
                {
                    "fail_on": self.gate.fail_on,
                    "strict": self.gate.strict,
                    "require_all": self.gate.require_all,
                    "fail_on_regression": self.gate.fail_on_regression,
                    **self.gate.regression.info(),
                }
            ),
            checks=checks,
            not_run=[check.id for check in checks if check.not_run],
            waivers=records,
            signoff=_json_safe(self.profile.signoff.model_dump(exclude_none=True), self.redactor)
            if self.profile.signoff
            else None,
        )


def _noted(outcome: Outcome, line: str) -> Outcome:
    return dataclasses.replace(outcome, evidence=(*outcome.evidence, line))


class _Exited(Exception):
    """A check called sys.exit(); the SystemExit is its cause."""


async def _call(check: PlannedCheck, ctx: Context) -> Any:
    try:
        return await check.type.run(check.params, ctx)
    except SystemExit as exc:
        # asyncio lets SystemExit through the event loop: a check calling sys.exit() (a
        # plugin, or code it imports) would end readycheck with its code, no result and
        # no outputs. It is the check's bug like any other exception.
        raise _Exited from exc


def _finite(metrics: Any) -> dict[str, float]:
    """Metrics as JSON numbers: non-numbers and NaN/infinity are dropped."""
    clean = {}
    for name, value in dict(metrics).items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            clean[str(name)] = float(value)
    return clean


def _json_safe(data: Any, redactor: Redactor) -> dict[str, Any]:
    """Structured data as plain JSON values, every string in it redacted."""
    cleaned = _clean(dict(data), redactor, depth=0)
    return cleaned if isinstance(cleaned, dict) else {}


def _clean(value: Any, redactor: Redactor, depth: int) -> Any:
    if depth > 20:
        return None
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return redactor.redact(value)
    if isinstance(value, dict):
        return {
            redactor.redact(str(key)): _clean(item, redactor, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(item, redactor, depth + 1) for item in value]
    return redactor.redact(str(value))
