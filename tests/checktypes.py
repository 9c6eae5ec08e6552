"""Check types used by the engine and CLI tests, registered like a third-party plugin
(see ``plugin_dist`` in conftest.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from readycheck import CheckParams, Context, Duration, Outcome, Secret, check

# What ran, when: (check id, "start"/"end", monotonic time). Tests read and clear it.
EVENTS: list[tuple[str, str, float]] = []
# Attempts per key, for the flaky type.
ATTEMPTS: dict[str, int] = {}


class SleepParams(CheckParams):
    seconds: float = Field(0.0, description="How long to sleep.")
    status: str = Field("PASS", description="Status to return: PASS, WARN, FAIL, ERROR, SKIP.")
    summary: str = Field("slept", description="Summary to return.")
    evidence: list[str] = Field(default_factory=list, description="Evidence to return.")
    marks: list[str] = Field(
        default_factory=list,
        description="A mark per evidence line: held, broken, soft, or empty for a fact.",
    )
    metrics: dict[str, float] = Field(default_factory=dict, description="Metrics to return.")
    data: dict[str, Any] = Field(default_factory=dict, description="Data to return.")


@check("test.sleep", params=SleepParams, category="testing")
async def sleep(p: SleepParams, ctx: Context) -> Outcome:
    """Sleep, then return the status asked for."""
    EVENTS.append((ctx.check_id, "start", time.monotonic()))
    try:
        await asyncio.sleep(p.seconds)
    finally:
        EVENTS.append((ctx.check_id, "end", time.monotonic()))
    from readycheck.results import Mark, MarkedLine, Status

    marks = [*p.marks, *[""] * len(p.evidence)]
    evidence = tuple(
        MarkedLine(line, Mark(mark)) if mark else line
        for line, mark in zip(p.evidence, marks, strict=False)
    )
    return Outcome(Status(p.status), p.summary, evidence, dict(p.metrics), None, p.data)


@check("test.exclusive", params=SleepParams, category="performance", exclusive=True)
async def exclusive(p: SleepParams, ctx: Context) -> Outcome:
    """Like test.sleep, but runs alone after the other checks."""
    result: Outcome = await sleep.run(p, ctx)
    return result


class FlakyParams(CheckParams):
    key: str = Field(description="Counter name.")
    fail_times: int = Field(description="Attempts that FAIL before one PASSes.")


@check("test.flaky", params=FlakyParams, category="testing")
async def flaky(p: FlakyParams, ctx: Context) -> Outcome:
    """FAIL the first fail_times attempts, then PASS."""
    ATTEMPTS[p.key] = ATTEMPTS.get(p.key, 0) + 1
    if ATTEMPTS[p.key] <= p.fail_times:
        return Outcome.failed(f"attempt {ATTEMPTS[p.key]} fails")
    return Outcome.passed(f"attempt {ATTEMPTS[p.key]} passes")


class SecretParams(CheckParams):
    token: Secret = Field(description="A secret.")
    outcome: str = Field("FAIL", description="FAIL, ERROR, PASS or RAISE.")
    delay: Duration = Field(Duration("0s"), description="Sleep before answering.")


@check("test.secret", params=SecretParams, category="security")
async def secret(p: SecretParams, ctx: Context) -> Outcome:
    """Put the secret's value into every field of the outcome (to test redaction)."""
    value = p.token.reveal()
    await asyncio.sleep(p.delay.seconds)
    ctx.logger.warning("about to report token %s", value)
    if p.outcome == "RAISE":
        raise RuntimeError(f"connection to https://user:{value}@db.example failed: {value}")
    data: dict[str, Any] = {"echo": value, "nested": [{"value": value}]}
    return Outcome(
        _status(p.outcome),
        f"token is {value}",
        (f"evidence {value}",),
        {"length": len(value)},
        f"rotate {value}",
        data,
    )


def _status(name: str) -> Any:
    from readycheck.results import Status

    return Status(name)


class NoParams(CheckParams):
    pass


@check("test.raise", params=NoParams, category="testing")
async def raises(p: NoParams, ctx: Context) -> Outcome:
    """Raise an exception (a bug in a check)."""
    raise ZeroDivisionError("division by zero in the check")


@check("test.exit", params=NoParams, category="testing")
async def exits(p: NoParams, ctx: Context) -> Outcome:
    """Call sys.exit() (a plugin that thinks it is a script)."""
    raise SystemExit(3)


class StubbornParams(SleepParams):
    done_file: str | None = Field(None, description="Created when the check finally ends.")


@check("test.stubborn", params=StubbornParams, category="testing")
async def stubborn(p: StubbornParams, ctx: Context) -> Outcome:
    """Ignore cancellation for a while (a badly written check)."""
    end = time.monotonic() + p.seconds
    while time.monotonic() < end:
        try:
            await asyncio.sleep(end - time.monotonic())
        except asyncio.CancelledError:
            continue
    if p.done_file:
        Path(p.done_file).touch()
    return Outcome.passed("finally done")


@check("test.wrong_return", params=NoParams, category="testing")
async def wrong_return(p: NoParams, ctx: Context) -> Outcome:
    """Return something that is not an Outcome."""
    return "PASS"  # type: ignore[return-value]


@check("test.patient", params=SleepParams, category="testing", timeout="45s")
async def patient(p: SleepParams, ctx: Context) -> Outcome:
    """Like test.sleep, with a default timeout of its own."""
    result: Outcome = await sleep.run(p, ctx)
    return result


class SequenceParams(CheckParams):
    key: str = Field(description="Counter name.")
    statuses: list[str] = Field(description="The status of each call, in turn (cycled).")


@check("test.sequence", params=SequenceParams, category="testing")
async def sequence(p: SequenceParams, ctx: Context) -> Outcome:
    """Return the next status of the list on each call (a flapping check)."""
    from readycheck.results import Status

    ATTEMPTS[p.key] = ATTEMPTS.get(p.key, 0) + 1
    status = Status(p.statuses[(ATTEMPTS[p.key] - 1) % len(p.statuses)])
    return Outcome(status, f"call {ATTEMPTS[p.key]}: {status.value}")
