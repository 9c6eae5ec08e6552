"""HTTP latency: p50-p99 under a steady request rate, measured so a release manager can
trust it, and capped so it is safe to aim at production.

The probe (``http.latency``) sends requests on a schedule (the open model) and times each
from when it was *due*, so a stalled server is seen as its users see it; it measures its
own overhead against a loopback endpoint first, and never lets its own lateness or
overhead decide the verdict. Its parts:

    preflight.py  the first request, alone: a broken target is not sent a load
    load.py       the open and closed load generators, and the early stop on errors
    client.py     the probe's HTTP/1.1 client: a keep-alive pool of asyncio protocols
    calibrate.py  the loopback endpoint that waits 20 ms, and the overhead it shows
    runner.py     the probe's own thread and event loop (uvloop when installed)
    stats.py      nearest-rank percentiles and the fixed log-spaced histogram
    trust.py      how much of a figure may be the probe's, and what a budget concludes
    verdict.py    errors, budgets and trust -> PASS / WARN / FAIL / ERROR

**How the verdict stays fair to the server.** Each latency is timed from when its request
was due, so besides the server's time it holds the probe's own part: how late the probe
started the request (its send lag, when the machine running readycheck is busy) and the
probe's overhead (what calibration measured). The figure reported is therefore at most
the server's plus that part, and at least the server's own. The probe judges each budget
on that:

- PASS when the figure is within its budget: the server's own can only be lower.
- FAIL when the figure is over its budget even with the probe's whole part taken off
  (the send lag p99 and the calibrated overhead; for ``max``, the largest of each).
- ERROR, "too close to call", only when the probe's part is what decides. The summary
  says so with both figures: "p95 312 ms, of which up to 40 ms may be the probe's
  lateness; budget 300ms". A machine with a CPU to spare makes that part small.

So a healthy service (p95 20 ms against a 300 ms budget) passes on a busy CI machine too,
where the probe may start some requests tens of milliseconds late; and a slow one fails
there too, when it is slow beyond what the probe could have added.

A warning (``warn_at``) follows the same rule: a result is near its budget only when the
figure less the probe's part is near it. Errors are counted, not timed, and count against
the server (timeouts too, unless the probe started requests later than a tenth of
``request_timeout``). A probe that started under 95% of the asked rate gave the service
less load than asked: it may FAIL but not PASS. With ``strict_trust: true`` the probe
also vouches for every figure it shows: it answers ERROR ("measurement not trustworthy on
this machine") whenever its send lag p99 is over ``max_send_lag`` or its overhead is over
``max_overhead_share`` of the tightest budget, whatever the figures.

**A broken target gets one request, not a load.** The probe first sends its request
once. If that cannot connect, gets no answer within ``request_timeout``, or is answered
other than 2xx/3xx, the check FAILs at once with the status and the start of the body
(redacted, a few hundred characters), and nothing more is sent. During the run,
``max_consecutive_errors`` failed requests in a row (20) end it early: FAIL, saying how
many requests were sent of how many were planned.

**Time.** The check must finish within its ``timeout`` (30 s for this type unless the
check or a longer profile default says otherwise), and a latency run takes longer than
most checks: calibration (about 200 requests at the profile's rate, about 4 s at most;
``calibrate: false`` skips it), the warmup, then the measured requests (500 at 50/s:
10 s). The check computes this before sending anything and, when it does not fit, ends in
ERROR naming the timeout to set (the type's 30 s default fits its default load). While
running, it stops itself a little before its timeout and reports what it measured so far,
counting unanswered requests as timeouts.

**What is sent.** Every request is the same: HTTP/1.1 on keep-alive connections, with
``Accept-Encoding: gzip, deflate`` as browsers and HTTP libraries send it, so a server
that compresses is timed compressing (the answer is counted, never decoded). To measure
without compression, set ``Accept-Encoding: identity`` in ``headers``. Redirects are
answers, not followed. Proxy settings in the environment are not used: a proxy in the
way would be timed too.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Literal

from pydantic import Field, JsonValue, model_validator

from readycheck.checks.http.request import ConnectionParams, Method
from readycheck.params import BufferSize
from readycheck.registry import check
from readycheck.results import Outcome
from readycheck.units import Duration, Size

if TYPE_CHECKING:
    import ssl

    from readycheck.checks.latency.load import LoadShape, RequestSpec
    from readycheck.context import Context

DEFAULT_RATE = 50.0
DEFAULT_REQUESTS = 500
# What a readiness probe may send without the profile saying, in so many words, that it
# means to load the service: i_know_this_is_load: true.
CAP_RATE = 200.0
CAP_IN_FLIGHT = 100
CAP_REQUESTS = 10_000
CAP_SECONDS = 60.0
THRESHOLDS = ("p50", "p90", "p95", "p99", "max")


class LatencyParams(ConnectionParams):
    """The probe: url, headers (secret ones never shown), TLS trust as every HTTP check
    takes them, then the load and the budgets."""

    method: Method = Field(
        "GET",
        description="HTTP method. Every request is sent for real: measure a side-effect-free "
        "endpoint.",
    )
    json_: JsonValue | None = Field(
        None, alias="json", description="A JSON request body (sets Content-Type)."
    )
    body: str | None = Field(None, description="A raw request body (UTF-8).")
    rate: float | None = Field(
        None,
        gt=0,
        le=100_000,
        description="Open model (the default): requests started per second, on a schedule, "
        f"whatever the earlier ones became (default {DEFAULT_RATE:g}). Latency counts from "
        f"each request's scheduled time. At most {CAP_RATE:g}/s unless i_know_this_is_load.",
    )
    requests: int | None = Field(
        None,
        ge=1,
        le=10_000_000,
        description=f"Measured requests (default {DEFAULT_REQUESTS}, or as many as `duration` "
        f"allows). At most {CAP_REQUESTS:,} with the warmup unless i_know_this_is_load.",
    )
    duration: Duration | None = Field(
        None,
        description="Measure for this long instead of a number of requests (at most "
        f"{CAP_SECONDS:g}s unless i_know_this_is_load).",
    )
    concurrency: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description="Closed model instead: this many workers, each sending its next request "
        "when its last one was answered. It under-reports stalls (the workers wait with the "
        f"server); the output says so. At most {CAP_IN_FLIGHT} unless i_know_this_is_load.",
    )
    max_in_flight: int = Field(
        CAP_IN_FLIGHT,
        ge=1,
        le=10_000,
        description="Open model: most requests in flight (connections) at once; a request "
        "due while all are busy waits for one, and the wait counts in its latency.",
    )
    warmup: int = Field(
        10,
        ge=0,
        le=100_000,
        description="Requests sent first and not counted (connections, caches).",
    )
    request_timeout: Duration = Field(
        Duration("5s"),
        description="Give up on one request after this long; it counts as an error and as a "
        "latency of this long.",
    )
    max_body: BufferSize = Field(
        Size("1MB"), description="Largest response body read; a larger one counts as an error."
    )
    p50: Duration | None = Field(None, description="Budget for the median latency.")
    p90: Duration | None = Field(None, description="Budget for the 90th percentile.")
    p95: Duration | None = Field(None, description="Budget for the 95th percentile.")
    p99: Duration | None = Field(None, description="Budget for the 99th percentile.")
    max: Duration | None = Field(None, description="Budget for the slowest request.")
    max_error_rate: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Largest share of failed requests: answers other than 2xx/3xx, timeouts "
        "and connection errors all count (each kind is tallied apart).",
    )
    warn_at: float = Field(
        0.8,
        gt=0,
        le=1,
        description="WARN when a percentile, even less the probe's own part, reaches this "
        "fraction of its budget (0.8: at 80%); 1 turns warnings off.",
    )
    max_consecutive_errors: int = Field(
        20,
        ge=0,
        description="End the run early after this many failed requests in a row (warmup "
        "included): FAIL, saying how many requests were sent of how many planned, instead "
        "of sending the rest at a broken target. 0 never ends it early.",
    )
    calibrate: bool = Field(
        True,
        description="First measure the probe's own overhead (about 200 requests to a "
        "loopback endpoint waiting 20 ms, at the same rate), so that it is taken off a "
        "figure before the figure is called over its budget. Adds up to about 4 s to the "
        "run.",
    )
    strict_trust: bool = Field(
        False,
        description="Answer ERROR whenever the probe cannot vouch for its figures (send lag "
        "p99 over max_send_lag, overhead over max_overhead_share of the tightest budget, "
        "under 95% of the asked rate), even when they could not change the verdict. By "
        "default the probe's lateness and overhead only matter when they decide.",
    )
    max_send_lag: Duration = Field(
        Duration("2ms"),
        description="With strict_trust: the most the probe may start its requests late "
        "(send lag, at p99).",
    )
    max_overhead_share: float = Field(
        0.05,
        gt=0,
        le=1,
        description="With strict_trust: the largest share of the tightest budget the "
        "probe's calibrated overhead may be (0.05: 5%).",
    )
    i_know_this_is_load: bool = Field(
        False,
        description=f"Lift the safety caps ({CAP_RATE:g} requests/s, {CAP_IN_FLIGHT} in "
        f"flight, {CAP_REQUESTS:,} requests, {CAP_SECONDS:g}s): this is a load test, not a "
        "readiness probe.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> LatencyParams:
        if self.json_ is not None and self.body is not None:
            raise ValueError("give json or body, not both")
        if self.rate is not None and self.concurrency is not None:
            raise ValueError(
                "rate is the open model and concurrency the closed one: set one of them"
            )
        if self.concurrency is not None and "max_in_flight" in self.model_fields_set:
            raise ValueError("max_in_flight is for the open model; with concurrency, it is that")
        if self.requests is not None and self.duration is not None:
            raise ValueError("give requests or duration, not both")
        if self.duration is not None and self.duration.seconds <= 0:
            raise ValueError("duration must be more than 0s")
        if self.request_timeout.seconds <= 0:
            raise ValueError("request_timeout must be more than 0s")
        strict_limits = {"max_send_lag", "max_overhead_share"} & self.model_fields_set
        if strict_limits and not self.strict_trust:
            raise ValueError(
                f"{' and '.join(sorted(strict_limits))} only apply with strict_trust: true "
                "(by default the probe's lateness and overhead count only when they decide)"
            )
        if self.max_send_lag.seconds < 0:
            raise ValueError("max_send_lag cannot be negative")
        if self.ca_file is not None and not self.verify_tls:
            raise ValueError("ca_file is used to verify TLS: it cannot go with verify_tls: false")
        if not self.i_know_this_is_load:
            self._within_caps()
        return self

    def _within_caps(self) -> None:
        over: list[str] = []
        if self.model == "open":
            if self.target_rate > CAP_RATE:
                over.append(f"rate {self.target_rate:g}/s is over {CAP_RATE:g}/s")
            if self.max_in_flight > CAP_IN_FLIGHT:
                over.append(f"max_in_flight {self.max_in_flight} is over {CAP_IN_FLIGHT}")
        elif self.concurrency is not None and self.concurrency > CAP_IN_FLIGHT:
            over.append(f"concurrency {self.concurrency} is over {CAP_IN_FLIGHT}")
        planned = self.planned_requests
        if planned is None and self.warmup > CAP_REQUESTS:
            over.append(f"warmup {self.warmup:,} is over {CAP_REQUESTS:,} requests")
        if planned is not None and planned + self.warmup > CAP_REQUESTS:
            over.append(
                f"{planned + self.warmup:,} requests (with the warmup) is over {CAP_REQUESTS:,}"
            )
        seconds = self.planned_seconds
        if seconds is not None and seconds > CAP_SECONDS:
            over.append(f"the run would last {seconds:g}s, over {CAP_SECONDS:g}s")
        if over:
            raise ValueError(
                f"over the latency probe's safety caps: {'; '.join(over)}. Send less, or set "
                "i_know_this_is_load: true if you mean to load-test this service"
            )

    # -- the load this asks for ----------------------------------------------------------

    @property
    def model(self) -> Literal["open", "closed"]:
        return "closed" if self.concurrency is not None else "open"

    @property
    def target_rate(self) -> float:
        return self.rate if self.rate is not None else DEFAULT_RATE

    @property
    def planned_requests(self) -> int | None:
        """Measured requests, when known in advance."""
        if self.requests is not None:
            return self.requests
        if self.duration is None:
            return DEFAULT_REQUESTS
        if self.model == "open":
            return max(1, round(self.target_rate * self.duration.seconds))
        return None

    @property
    def planned_seconds(self) -> float | None:
        """How long sending lasts, warmup included, when known in advance."""
        if self.model == "open":
            planned = self.planned_requests
            assert planned is not None
            return (self.warmup + planned) / self.target_rate
        return self.duration.seconds if self.duration is not None else None

    @property
    def thresholds(self) -> dict[str, Duration]:
        """The budgets that are set, by percentile name."""
        found = {name: getattr(self, name) for name in THRESHOLDS}
        return {name: value for name, value in found.items() if value is not None}

    def load_shape(self) -> LoadShape:
        from readycheck.checks.latency.load import LoadShape

        capped = not self.i_know_this_is_load
        if self.model == "open":
            return LoadShape(
                model="open",
                total=self.planned_requests,
                rate=self.target_rate,
                max_in_flight=self.max_in_flight,
                warmup=self.warmup,
                max_requests=CAP_REQUESTS if capped else 10**9,
                stop_after_errors=self.max_consecutive_errors,
            )
        assert self.concurrency is not None
        duration = self.duration.seconds if self.duration is not None else None
        if capped:  # a closed run's length is not known in advance: the cap stops it
            duration = min(duration, CAP_SECONDS) if duration is not None else CAP_SECONDS
        return LoadShape(
            model="closed",
            total=self.requests
            if self.requests is not None
            else (None if self.duration is not None else DEFAULT_REQUESTS),
            duration_s=duration,
            concurrency=self.concurrency,
            warmup=self.warmup,
            max_requests=max(1, CAP_REQUESTS - self.warmup) if capped else 10**9,
            stop_after_errors=self.max_consecutive_errors,
        )

    def request_spec(self, tls: ssl.SSLContext | None, user_agent: str) -> RequestSpec:
        from readycheck.checks.latency.load import RequestSpec

        headers = dict(self.headers)
        body: bytes | None = None
        if self.json_ is not None:
            body = json.dumps(self.json_).encode()
            if not any(name.lower() == "content-type" for name in headers):
                headers["Content-Type"] = "application/json"
        elif self.body is not None:
            body = self.body.encode()
        if not any(name.lower() == "user-agent" for name in headers):
            headers["User-Agent"] = user_agent
        return RequestSpec(
            method=self.method,
            url=self.url,
            headers=headers,
            body=body,
            timeout_s=self.request_timeout.seconds,
            max_body_bytes=self.max_body.bytes,
            tls=tls,
        )


@check("http.latency", params=LatencyParams, category="performance", exclusive=True, timeout="30s")
async def latency(p: LatencyParams, ctx: Context) -> Outcome:
    """Measure p50-p99 latency at a steady request rate (open model); FAIL over budget."""
    from readycheck import __version__
    from readycheck.checks.http.certificates import TrustError, tls_context
    from readycheck.checks.latency import calibrate, load, preflight, progress, runner, verdict

    tls = None
    if p.url.lower().startswith("https:"):
        # The run's shared context for this trust, as every HTTP check gets it.
        try:
            tls = await tls_context(ctx, verify=p.verify_tls, ca_file=p.ca_file)
        except TrustError as exc:
            return exc.outcome()
    spec = p.request_spec(tls, f"readycheck/{__version__} (http.latency)")
    shape = p.load_shape()

    # Stop a little before the engine would cancel us, to report what was measured.
    remaining = ctx.remaining()
    budget = remaining - min(1.0, max(0.25, 0.05 * remaining))
    calibration_s = calibrate.calibration_seconds(shape) if p.calibrate else 0.0
    sending_s = p.planned_seconds or 0.0
    answers_s = min(p.request_timeout.seconds, 0.5)
    if calibration_s + sending_s + answers_s > budget:
        return verdict.too_long(calibration_s, sending_s, answers_s, remaining)
    stop_at = time.perf_counter() + budget
    _, loop_name = runner.loop_factory()

    async def probe() -> tuple[preflight.Preflight, load.Recorder | None, load.Recorder | None]:
        left = stop_at - time.perf_counter()
        if p.request_timeout.seconds <= left:
            first = await preflight.send(spec, p.request_timeout.seconds, "request_timeout")
        else:
            first = await preflight.send(spec, max(0.0, left), "the check's timeout")
        if not first.ok:
            return first, None, None
        measured_overhead = None
        if p.calibrate:
            # Generous: opening connections and a busy machine slow calibration too.
            calibration_stop = min(stop_at, time.perf_counter() + 2 * calibration_s + 5.0)
            measured_overhead = await calibrate.calibrate(spec, shape, calibration_stop)
            if measured_overhead.stopped_early:
                return first, measured_overhead, None
        return first, measured_overhead, await load.run_load(spec, shape, stop_at, watcher.follow)

    async with progress.Watcher(ctx) as watcher:
        first, calibration, run = await runner.run_on_own_loop(
            probe, name=f"readycheck:{ctx.check_id}"
        )
    if not first.ok:
        return preflight.failed(p, first, ctx.redactor.redact)
    return verdict.judge(p, shape, run, calibration, loop_name=loop_name, preflight=first)
