"""http.rate_limit: the endpoint throttles a burst, says how long to wait, and recovers.
It sends load: the check's docstring (what the reference shows) says how much."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import Field, field_validator, model_validator

from readycheck.checks.http.client import Reply, RequestFailed, fetch, retry_after
from readycheck.checks.http.request import PayloadParams
from readycheck.registry import check
from readycheck.results import Outcome, broken, held, soft
from readycheck.units import Duration, counted

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import httpx

    from readycheck.context import Context

    Send = Callable[[], Awaitable[Reply]]

# What the check may send without the profile saying, in so many words, that it means
# to load the service (the latency probe's caps, with a burst's own request count).
CAP_REQUESTS = 200
CAP_RATE = 200.0
MAX_IN_FLIGHT = 50  # the run's shared HTTP client keeps at most 50 connections
MAX_CONSECUTIVE_ERRORS = 10
_FIRST_WAIT_S = 1.0
_LONGEST_PAUSE_S = 10.0
# A window that ends "in 1 s" is counted by a clock of its own: ask a moment after.
_SLACK_S = 0.2
_HEADER_NAMES = ("retry-after", "ratelimit")
_HEADER_PREFIXES = ("ratelimit-", "x-ratelimit-")
_EPOCH_2001 = 1e9


class RateLimitParams(PayloadParams):
    expect_429_within: int = Field(
        ge=1,
        le=100_000,
        description="Throttling must start by this request (the limit plus some slack): "
        f"the burst stops there. At most {CAP_REQUESTS} unless i_know_this_is_load.",
    )
    throttle_status: int | list[int] = Field(
        429, description="The status (or statuses) of a throttled answer."
    )
    rate: float = Field(
        100.0,
        gt=0,
        le=100_000,
        description="Requests started per second during the burst (at most "
        f"{CAP_RATE:g} unless i_know_this_is_load).",
    )
    concurrency: int = Field(
        10, ge=1, le=MAX_IN_FLIGHT, description="Most requests in flight at once."
    )
    expect_headers: bool = Field(
        True,
        description="A throttled answer must carry Retry-After or RateLimit-* headers "
        "(X-RateLimit-* count too).",
    )
    recover_within: Duration = Field(
        Duration("60s"),
        description="After the first throttled answer, the endpoint must answer "
        "unthrottled within this long (it is asked again when its Retry-After or reset "
        "says); 0s skips the recovery.",
    )
    i_know_this_is_load: bool = Field(
        False,
        description=f"Lift the caps ({CAP_REQUESTS} requests, {CAP_RATE:g} requests/s): "
        "this is a load test, not a readiness probe.",
    )

    @model_validator(mode="after")
    def _capped(self) -> RateLimitParams:
        if self.i_know_this_is_load:
            return self
        over = []
        if self.expect_429_within > CAP_REQUESTS:
            over.append(f"expect_429_within {self.expect_429_within:,} is over {CAP_REQUESTS}")
        if self.rate > CAP_RATE:
            over.append(f"rate {self.rate:g}/s is over {CAP_RATE:g}/s")
        if over:
            raise ValueError(
                f"{'; '.join(over)} (the caps of a readiness probe); set "
                "i_know_this_is_load: true if you mean to load this service"
            )
        return self

    @field_validator("throttle_status")
    @classmethod
    def _error_codes(cls, value: int | list[int]) -> int | list[int]:
        codes = [value] if isinstance(value, int) else value
        if not codes:
            raise ValueError("give at least one status code")
        for code in codes:
            if not 400 <= code <= 599:
                raise ValueError(f"{code} is not an error status (400-599)")
        return value

    @property
    def throttle_codes(self) -> list[int]:
        codes = self.throttle_status
        return [codes] if isinstance(codes, int) else codes


@dataclass
class Burst:
    """What the requests became, by their number in sending order (from 1)."""

    answers: dict[int, Reply] = field(default_factory=dict)
    failures: dict[int, str] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)
    """Request numbers in the order their answers (or failures) arrived."""
    throttled_at: float | None = None
    """`time.monotonic()` when the first throttled answer arrived."""
    consecutive_errors: int = 0

    @property
    def sent(self) -> int:
        return len(self.answers) + len(self.failures)

    def answered(self, number: int, reply: Reply) -> None:
        self.answers[number] = reply
        self.order.append(number)

    def failed(self, number: int, why: str) -> None:
        self.failures[number] = why
        self.order.append(number)

    def first_throttled(self, codes: list[int]) -> tuple[int, Reply] | None:
        """The first throttled answer to arrive, and how many had arrived with it: with
        several requests in flight, arrivals count requests as the server met them."""
        for position, number in enumerate(self.order, start=1):
            reply = self.answers.get(number)
            if reply is not None and reply.status in codes:
                return position, reply
        return None

    def tally(self) -> str:
        counts = Counter(reply.status_line for reply in self.answers.values())
        parts = [f"{count} answered {status}" for status, count in sorted(counts.items())]
        if self.failures:
            parts.append(f"{len(self.failures)} without an answer")
        return ", ".join(parts)


@check("http.rate_limit", params=RateLimitParams, category="security", timeout="90s")
async def rate_limit(p: RateLimitParams, ctx: Context) -> Outcome:
    """Send a burst (this sends load): throttled in time, with Retry-After, then recovered.

    **This check sends load.** It sends real requests, as fast as `rate` allows, until the
    endpoint answers 429 (or `expect_429_within` requests went unthrottled), then waits the
    window the answer names and asks again. Point it at staging, or at production only where
    a burst of this size is harmless; it is off in the starters.

    It is capped like the latency probe: at most 200 requests in the burst and 200 requests
    per second unless `i_know_this_is_load: true`, at most 50 in flight. It sends its first
    request alone: a target that is down or answers 404 gets that one request and the check
    FAILs there, as a broken target is not sent a load. Ten failed requests in a row (no
    answer, or a 5xx) end the burst early.

    A throttled answer must say when to come back: `Retry-After`, or the `RateLimit-*`
    headers of the IETF draft (`RateLimit`, `RateLimit-Policy`, `RateLimit-Limit`,
    `RateLimit-Remaining`, `RateLimit-Reset`), or their common `X-RateLimit-*` forms.
    Recovery waits what the answer asked (`Retry-After`, a reset), then sends one request
    at a time until one is not throttled, within `recover_within`; a service asking for a
    longer wait than that is a WARN (recovery not confirmed), not a failure.
    """
    content, implied = p.payload()
    shown = f"{p.method} {p.shown_url}"
    burst_s = p.expect_429_within / p.rate
    needed = burst_s + p.recover_within.seconds + 1.0
    if needed > ctx.remaining():
        return Outcome.errored(
            f"{shown}: the burst and the recovery need about {needed:.0f}s, more than the "
            f"check's timeout leaves ({ctx.remaining():.0f}s); nothing was sent",
            remediation=f"Set the check's timeout to at least {Duration(round(needed + 5))}, "
            "or lower recover_within.",
            final="the same plan does not fit the same timeout",
        )

    async def send() -> Reply:
        return await fetch(p, ctx, headers=implied, content=content)

    burst = Burst()
    codes = p.throttle_codes
    # The first request alone: a target that is down or refuses it gets no burst.
    try:
        first = await send()
    except RequestFailed as failure:
        return _not_sent(failure.outcome)
    burst.answered(1, first)
    if first.status in codes:
        burst.throttled_at = time.monotonic()
    elif first.status >= 400:
        return Outcome.failed(
            f"{shown}: the first request was answered {first.status_line}; the burst was not sent",
            evidence=[first.describe(), f"body starts: {first.snippet() or '(empty)'}"],
            metrics={"requests": 1},
            remediation="Point the check at an endpoint that answers 2xx or 3xx when not "
            "throttled (method, headers and body included).",
        )
    else:
        await _send_burst(p, send, burst)

    evidence = [
        f"sent {counted(burst.sent, 'request')} at up to {p.rate:g}/s, {p.concurrency} in "
        f"flight: {burst.tally()}"
    ]
    limits = _limit_headers(first.headers)
    if limits and first.status not in codes:
        evidence.append(f"the first answer carries {limits}")
    problems: list[str] = []
    warnings: list[str] = []
    metrics: dict[str, float] = {"requests": burst.sent}
    errors = {
        n: reply.status_line
        for n, reply in burst.answers.items()
        if reply.status >= 400 and reply.status not in codes
    } | burst.failures
    if errors:
        first_error = min(errors)
        problems.append(
            f"{counted(len(errors), 'request')} failed during the burst (first: request "
            f"{first_error}, {errors[first_error]})"
        )
    metrics["errors"] = len(errors)

    found = burst.first_throttled(codes)
    if found is None:
        problems.append(
            f"no {_codes(codes)} in {burst.sent} requests (expected within {p.expect_429_within})"
        )
        return _verdict(shown, problems, warnings, evidence, metrics, p, None)

    at, throttled = found
    metrics["first_throttled_at"] = at
    metrics["throttled"] = sum(1 for r in burst.answers.values() if r.status in codes)
    headers = _limit_headers(throttled.headers)
    first_throttled = f"the first throttled answer ({throttled.status_line}, answer {at})"
    if headers:
        evidence.append(held(f"{first_throttled} carries {headers}"))
    else:
        line = f"{first_throttled} carries no Retry-After or RateLimit-* header"
        evidence.append(broken(line) if p.expect_headers else line)
        if p.expect_headers:
            problems.append(
                f"{throttled.status_line} without Retry-After or RateLimit-* headers: "
                "clients cannot tell when to retry"
            )
    wait = _wait_asked(throttled.headers)
    if wait is not None:
        metrics["wait_asked_s"] = round(wait, 3)

    if p.recover_within.seconds <= 0:
        evidence.append("recovery not checked (recover_within: 0s)")
    else:
        assert burst.throttled_at is not None
        recovery = await _recover(p, send, codes, burst.throttled_at, wait)
        evidence.extend(recovery.evidence)
        metrics["requests"] += recovery.probes
        if recovery.seconds is not None:
            metrics["recovery_s"] = round(recovery.seconds, 2)
        if recovery.problem:
            problems.append(recovery.problem)
        if recovery.warning:
            warnings.append(recovery.warning)
    return _verdict(shown, problems, warnings, evidence, metrics, p, at)


async def _send_burst(p: RateLimitParams, send: Send, burst: Burst) -> None:
    """Requests 2 to `expect_429_within` at `rate`, at most `concurrency` at a time,
    until one is throttled or too many fail in a row."""
    import asyncio

    stop = asyncio.Event()
    slots = asyncio.Semaphore(p.concurrency)
    codes = p.throttle_codes
    started = time.monotonic()

    async def one(number: int) -> None:
        try:
            reply: Reply = await send()
        except RequestFailed as failure:
            burst.failed(number, failure.outcome.summary.partition(": ")[2] or "failed")
            burst.consecutive_errors += 1
        else:
            burst.answered(number, reply)
            if reply.status in codes:
                if burst.throttled_at is None:
                    burst.throttled_at = time.monotonic()
                stop.set()
            burst.consecutive_errors = burst.consecutive_errors + 1 if reply.status >= 500 else 0
        finally:
            slots.release()
        if burst.consecutive_errors >= MAX_CONSECUTIVE_ERRORS:
            stop.set()

    tasks: list[asyncio.Task[None]] = []
    for number in range(2, p.expect_429_within + 1):
        due = started + (number - 2) / p.rate
        delay = due - time.monotonic()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
        await slots.acquire()
        if stop.is_set():
            slots.release()
            break
        tasks.append(asyncio.create_task(one(number)))
    await asyncio.gather(*tasks)


@dataclass
class Recovery:
    probes: int = 0
    seconds: float | None = None
    evidence: list[str] = field(default_factory=list)
    problem: str | None = None
    warning: str | None = None


async def _recover(
    p: RateLimitParams, send: Send, codes: list[int], throttled_at: float, wait: float | None
) -> Recovery:
    """Ask again when the answer said, then each time the next answer says, until one is
    not throttled or `recover_within` has passed since the first throttled answer."""
    import asyncio

    result = Recovery()
    window = p.recover_within.seconds
    if wait is not None and wait > window:
        result.warning = (
            f"the service asks to wait {Duration(round(wait))}, longer than recover_within "
            f"{p.recover_within}: recovery not confirmed"
        )
        result.evidence.append(soft(result.warning))
        return result
    deadline = throttled_at + window
    pause = wait if wait is not None else _FIRST_WAIT_S
    next_at = throttled_at + pause + _SLACK_S
    last = "no request sent"
    while next_at <= deadline:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        result.probes += 1
        try:
            reply = await send()
        except RequestFailed as failure:
            why = failure.outcome.summary.partition(": ")[2] or failure.outcome.summary
            result.problem = f"after the wait, no answer: {why}"
            return result
        elapsed = time.monotonic() - throttled_at
        if reply.status not in codes:
            if reply.status >= 400:
                result.problem = f"after the wait, answered {reply.status_line}"
                return result
            result.seconds = elapsed
            sent = counted(result.probes, "request")
            result.evidence.append(
                held(
                    f"recovered: {reply.status_line} {elapsed:.1f}s after the first throttled "
                    f"answer ({sent} after the burst)"
                )
            )
            return result
        last = reply.status_line
        asked = _wait_asked(reply.headers)
        pause = min(max(asked if asked is not None else pause * 2, 0.5), _LONGEST_PAUSE_S)
        next_at = time.monotonic() + pause + _SLACK_S
    result.problem = f"still throttled {p.recover_within} after the first throttled answer ({last})"
    sent = counted(result.probes, "request")
    result.evidence.append(f"{sent} sent after the burst, each throttled")
    return result


def _verdict(
    shown: str,
    problems: list[str],
    warnings: list[str],
    evidence: list[str],
    metrics: dict[str, float],
    p: RateLimitParams,
    at: int | None,
) -> Outcome:
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return Outcome.failed(
            f"{shown}: {problems[0]}{more}",
            evidence=[*map(broken, problems), *evidence],
            metrics=metrics,
            remediation="Configure rate limiting for this endpoint (gateway or application): "
            "answer 429 with Retry-After once a client is over its limit, and serve it again "
            "after the window. If its limit is higher, raise expect_429_within.",
        )
    passed = f"throttled at request {at} (expected within {p.expect_429_within})"
    if "recovery_s" in metrics:
        passed += f", recovered after {metrics['recovery_s']:.1f}s"
    if warnings:
        return Outcome.warned(
            f"{shown}: {passed}; {warnings[0]}", evidence=evidence, metrics=metrics
        )
    return Outcome.passed(f"{shown}: {passed}", evidence=evidence, metrics=metrics)


def _not_sent(outcome: Outcome) -> Outcome:
    return Outcome.failed(
        f"{outcome.summary}; the burst was not sent",
        evidence=outcome.evidence,
        metrics={"requests": 1},
        remediation=outcome.remediation,
    )


def _codes(codes: list[int]) -> str:
    return " or ".join(map(str, codes))


def _limit_headers(headers: httpx.Headers) -> str:
    """`Retry-After: 30, RateLimit-Limit: 100, ...`: the rate-limit headers present."""
    found = [
        f"{name.title().replace('Ratelimit', 'RateLimit')}: {value}"
        for name, value in headers.items()
        if name in _HEADER_NAMES or name.startswith(_HEADER_PREFIXES)
    ]
    return ", ".join(found)


def _wait_asked(headers: httpx.Headers) -> float | None:
    """Seconds the answer asks to wait: Retry-After, else a RateLimit reset."""
    asked = retry_after(headers.get("retry-after"))
    if asked is not None:
        return asked
    # The draft's structured field: RateLimit: "default";r=0;t=30
    for part in headers.get("ratelimit", "").replace(",", ";").split(";"):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.strip().isdigit():
            return float(value)
    for name in ("ratelimit-reset", "x-ratelimit-reset"):
        value = headers.get(name, "").strip()
        try:
            seconds = float(value)
        except ValueError:
            continue
        # Some services send the moment of the reset (Unix time), the draft a delay.
        if seconds > _EPOCH_2001:
            seconds -= time.time()
        return max(0.0, seconds)
    return None
