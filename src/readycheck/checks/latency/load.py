"""The load generators: open (requests on a schedule) and closed (workers in a loop).

**Open model** (the default): request ``i`` is due at ``t0 + i / rate`` whatever became of
the earlier ones, and its latency is measured from that *intended* time, not from when it
left. A server that freezes for a second therefore shows a second of latency for every
request that was due during the freeze, as a user arriving at that moment would see it
(coordinated-omission correction, as in wrk2 and k6's constant-arrival-rate). The time a
request waits for a free connection (``max_in_flight`` are open at most) counts in its
latency too: it is queueing a user would see.

**Closed model** (``concurrency``): each worker sends its next request when its last
answer arrived, and latency runs from that send. During a freeze the workers wait with
the server, so only ``concurrency`` slow samples are taken: a closed loop under-reports
stalls, and the output says which model was used. Workers join at seeded random moments
over the first ``concurrency`` milliseconds (at most 1 s) rather than all at once: see
``ramp()``.

Every sample is kept (the safety caps bound their number). A timeout counts as a request
as slow as the time it was given; requests still unanswered when the check's own time
runs out are counted as timeouts, with the time they had waited. Connection errors and
oversized bodies have no latency: they count in the error rate only.

Send lag is how late a request started, by the probe's own fault (a busy loop or CPU):
it is measured when the request's task first runs, so waiting for a connection from a
stalled server is not lag. It is part of every latency measured from the intended time,
and the verdict takes it off before it blames the server (verdict.py).

**Early stop.** ``stop_after_errors`` failed requests in a row (in the order they ended,
warmup included: an answer other than 2xx/3xx, a timeout, a connection error, an
oversized body) end the run at once: what is still in flight is abandoned, uncounted,
and the recorder says so (``stopped_for_errors``, ``streak``), with how many requests
were sent. A target that broke mid-run is not sent the rest of the plan.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from readycheck.checks.latency.client import (
    BodyTooLarge,
    Client,
    ProbeError,
    Target,
)

# Past this much time before a request is due, and with nothing in flight, the scheduler
# sleeps on the loop's timer; otherwise it yields to the loop and keeps it busy until the
# moment comes. Two reasons: timers on both loops are millisecond-grained (epoll, libuv),
# which alone would add up to 1 ms to every latency; and a CPU that went idle waiting for
# an answer takes 0.3-0.5 ms (on a VM) to wake when the answer arrives, which would be
# counted as the server's. The price is one busy core while requests are in flight.
_SPIN_WINDOW_S = 0.0015
# On a quiet machine this takes 0.3 ms off every latency error; on a machine short of CPU
# a busy probe is preempted more, which its send lag then shows (and the result says).
_BUSY_WHILE_IN_FLIGHT = True
# A request that started more than this after its intended time was "sent late".
LATE_S = 0.001
# The kind of error a timeout is, in a run of errors (Recorder.streak).
TIMEOUTS = "timeouts"
# Closed model: workers join over this much time each, on average (see ramp()).
_JOIN_EVERY_S = 0.001
# How long stopping may wait for cancelled requests to finish.
_CLOSE_GRACE_S = 0.25

Model = Literal["open", "closed"]


@dataclass(frozen=True)
class RequestSpec:
    """What every request of the run sends, and what it may take."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    timeout_s: float
    max_body_bytes: int
    tls: ssl.SSLContext | None = None
    """Trust for an https URL: the run's shared context (checks/http/certificates.py)."""
    # Calibration only: the header in which the loopback server reports its service time.
    service_header: str | None = None


@dataclass(frozen=True)
class LoadShape:
    """How requests are sent: the model, its rate or workers, and when to stop."""

    model: Model
    total: int | None
    """Measured requests (warmup excluded); None: until ``duration_s`` has passed."""
    duration_s: float | None = None
    rate: float | None = None
    concurrency: int = 1
    max_in_flight: int = 100
    warmup: int = 0
    max_requests: int = 10_000
    """A hard stop on measured requests, whatever the duration says (the safety cap)."""
    stop_after_errors: int = 0
    """End the run after this many failed requests in a row (0: never)."""

    @property
    def connections(self) -> int:
        return self.concurrency if self.model == "closed" else self.max_in_flight

    @property
    def planned(self) -> int | None:
        """Measured requests this shape will send, when known in advance."""
        if self.total is not None:
            return min(self.total, self.max_requests)
        if self.model == "open" and self.rate is not None and self.duration_s is not None:
            return min(max(1, round(self.rate * self.duration_s)), self.max_requests)
        return None

    @property
    def planned_with_warmup(self) -> int | None:
        """Every request this shape will send, warmup included, when known in advance."""
        planned = self.planned
        return None if planned is None else planned + self.warmup


@dataclass
class Recorder:
    """Everything a run measured; filled from the probe's loop only."""

    model: Model
    latencies_ms: list[float] = field(default_factory=list)
    lags_ms: list[float] = field(default_factory=list)
    overheads_ms: list[float] = field(default_factory=list)
    sent: int = 0
    answered_ok: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    timeouts: int = 0
    cut_short: int = 0
    connection_errors: Counter[str] = field(default_factory=Counter)
    too_large: int = 0
    late: int = 0
    dispatched: int = 0
    """Requests started, warmup included."""
    streak: Counter[str] = field(default_factory=Counter)
    """The current run of failed requests, by kind; kept as it was once stopped_for_errors."""
    stopped_for_errors: bool = False
    first_start: float | None = None
    last_start: float | None = None
    last_end: float | None = None
    stopped_early: bool = False
    planned: int | None = None

    @property
    def requests(self) -> int:
        """Measured requests that have an outcome (every counted request, at the end)."""
        return (
            self.answered_ok
            + sum(self.statuses.values())
            + self.timeouts
            + self.cut_short
            + sum(self.connection_errors.values())
            + self.too_large
        )

    @property
    def errors(self) -> int:
        return self.requests - self.answered_ok

    def achieved_rps(self) -> float | None:
        """Open model: the rate at which requests started; closed: answers per second."""
        if self.first_start is None or self.requests < 2:
            return None
        if self.model == "open":
            if self.last_start is None or self.last_start <= self.first_start:
                return None
            return (self.sent - 1) / (self.last_start - self.first_start)
        if self.last_end is None or self.last_end <= self.first_start:
            return None
        return self.requests / (self.last_end - self.first_start)


def client_for(spec: RequestSpec, shape: LoadShape) -> Client:
    """One client with one keep-alive pool, sized to the load, for the whole run.

    The probe's own HTTP/1.1 client, not aiohttp nor httpx: client.py says why, with the
    figures of benchmarks/latency_accuracy.py.
    """
    target = Target.build(spec.method, spec.url, spec.headers, spec.body, spec.tls)
    return Client(
        target,
        limit=shape.connections,
        max_body=spec.max_body_bytes,
        service_header=spec.service_header,
    )


class Probe:
    """Sends the requests of one run through one client and records what happened."""

    def __init__(self, client: Client, spec: RequestSpec, shape: LoadShape):
        self.client = client
        self.spec = spec
        self.shape = shape
        self.recorder = Recorder(shape.model, planned=shape.planned)
        self._pending: dict[int, tuple[float, bool, asyncio.Task[None]]] = {}
        self._seq = 0
        self._driver: asyncio.Task[None] | None = None

    # -- one request -------------------------------------------------------------------

    async def _send(self, seq: int, intended: float, counted: bool) -> None:
        spec, rec = self.spec, self.recorder
        started = time.perf_counter()
        try:
            if rec.stopped_for_errors:
                return  # due before the stop took effect: not sent
            rec.dispatched += 1
            if counted:
                rec.sent += 1
                if rec.first_start is None:
                    rec.first_start = started
                rec.last_start = started
                lag = started - intended
                rec.lags_ms.append(lag * 1000.0)
                if lag > LATE_S:
                    rec.late += 1
            try:
                answer = await self.client.request(spec.timeout_s)
            except TimeoutError:
                if counted:
                    ended = time.perf_counter()
                    rec.timeouts += 1
                    rec.latencies_ms.append((ended - intended) * 1000.0)
                    rec.last_end = ended
                self._failed(TIMEOUTS)
                return
            except BodyTooLarge:
                if counted:
                    rec.too_large += 1
                    rec.last_end = time.perf_counter()
                self._failed("bodies over max_body")
                return
            except ProbeError as exc:
                if counted:
                    rec.connection_errors[exc.reason] += 1
                    rec.last_end = time.perf_counter()
                self._failed(f"connection errors ({exc.reason})")
                return
            if 200 <= answer.status < 400:
                if rec.streak and not rec.stopped_for_errors:
                    rec.streak.clear()
            else:
                self._failed(f"answered HTTP {answer.status}")
            if not counted:
                return
            ended, status = answer.ended, answer.status
            latency_ms = (ended - intended) * 1000.0
            rec.latencies_ms.append(latency_ms)
            rec.last_end = ended
            if 200 <= status < 400:
                rec.answered_ok += 1
            else:
                rec.statuses[status] += 1
            if answer.service_header is not None:
                service_ms = _service_ms(answer.service_header)
                if service_ms is not None:
                    rec.overheads_ms.append(latency_ms - service_ms)
        finally:
            self._pending.pop(seq, None)

    def _failed(self, kind: str) -> None:
        """One more failed request in a row; enough of them end the run at once."""
        rec = self.recorder
        if rec.stopped_for_errors:
            return
        rec.streak[kind] += 1
        limit = self.shape.stop_after_errors
        if limit and rec.streak.total() >= limit:
            rec.stopped_for_errors = True
            if self._driver is not None:
                self._driver.cancel()  # run() sees why, and abandons what is in flight

    def _dispatch(self, intended: float, counted: bool) -> asyncio.Task[None]:
        seq = self._seq
        self._seq += 1
        task = asyncio.create_task(self._send(seq, intended, counted))
        self._pending[seq] = (intended, counted, task)
        return task

    # -- the two models ----------------------------------------------------------------

    async def _open(self) -> None:
        shape = self.shape
        assert shape.rate is not None
        interval = 1.0 / shape.rate
        measured = shape.planned
        assert measured is not None
        total = shape.warmup + measured
        perf = time.perf_counter
        t0 = perf() + 0.002
        pending = self._pending
        for index in range(total):
            intended = t0 + index * interval
            while (wait := intended - perf()) > 0:
                # Sleep on the (coarse) timer only when idle and the request is not yet
                # near; otherwise yield to the loop, which keeps reading answers.
                idle = wait > _SPIN_WINDOW_S and not (pending and _BUSY_WHILE_IN_FLIGHT)
                await asyncio.sleep(wait - _SPIN_WINDOW_S if idle else 0)
            self._dispatch(intended, counted=index >= shape.warmup)
        while pending:
            if _BUSY_WHILE_IN_FLIGHT:
                await asyncio.sleep(0)
            else:
                await asyncio.wait([task for _, _, task in list(pending.values())])

    async def _closed(self) -> None:
        shape = self.shape
        perf = time.perf_counter
        limit = shape.planned
        handed_out = 0
        measure_until: float | None = None

        async def worker(joins_after: float) -> None:
            nonlocal handed_out, measure_until
            task = asyncio.current_task()
            assert task is not None
            if joins_after:
                await asyncio.sleep(joins_after)
            while not self.recorder.stopped_for_errors:
                counted = handed_out >= shape.warmup
                if counted:
                    measured = handed_out - shape.warmup
                    now = perf()
                    if shape.duration_s is not None:
                        if measure_until is None:
                            measure_until = now + shape.duration_s
                        elif now >= measure_until:
                            return
                    if measured >= (limit if limit is not None else shape.max_requests):
                        return
                handed_out += 1
                seq = self._seq
                self._seq += 1
                intended = perf()
                self._pending[seq] = (intended, counted, task)
                await self._send(seq, intended, counted)

        workers = asyncio.gather(*(worker(after) for after in ramp(shape.concurrency)))
        try:
            while _BUSY_WHILE_IN_FLIGHT and not workers.done():
                await asyncio.sleep(0)  # keeps the loop busy: see _SPIN_WINDOW_S
            await workers
        finally:
            workers.cancel()

    async def run(self, stop_at: float) -> Recorder:
        """Send the load; at ``stop_at`` (a ``time.perf_counter()`` value) stop, count what
        is unanswered as timeouts, and return what was measured."""
        driver = asyncio.create_task(self._open() if self.shape.model == "open" else self._closed())
        self._driver = driver
        try:
            done, _ = await asyncio.wait({driver}, timeout=max(0.0, stop_at - time.perf_counter()))
            if driver in done:
                if not (driver.cancelled() and self.recorder.stopped_for_errors):
                    driver.result()  # a bug in the driver surfaces here, not as a lost task
            else:
                self._cut_short()
            return self.recorder
        finally:
            tasks = {task for _, _, task in self._pending.values()} | {driver}
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=_CLOSE_GRACE_S)

    def _cut_short(self) -> None:
        """Count every request still unanswered as a timeout of the time it waited."""
        rec = self.recorder
        rec.stopped_early = True
        now = time.perf_counter()
        for intended, counted, _ in self._pending.values():
            if counted:
                rec.cut_short += 1
                rec.latencies_ms.append((now - intended) * 1000.0)
                rec.last_end = now


def ramp(concurrency: int) -> list[float]:
    """When each closed-model worker sends its first request, in seconds from the start.

    Workers join at random moments over ``concurrency`` milliseconds (at most 1 s), not all
    at once: started together, they stay in step against a steady service time and their
    answers keep arriving in bursts of ``concurrency``, a pattern no real traffic has that
    makes the probe time its own queue of answers (+1-2 ms at 200 workers here). Users do
    not arrive in lockstep, and a production service is not sent a spike of ``concurrency``
    requests in one instant. Seeded: the same run sends the same way each time.
    """
    spread = min(1.0, concurrency * _JOIN_EVERY_S)
    rng = random.Random(concurrency)
    return [0.0, *sorted(rng.uniform(0.0, spread) for _ in range(concurrency - 1))]


async def run_load(
    spec: RequestSpec,
    shape: LoadShape,
    stop_at: float,
    watch: Callable[[Recorder], None] | None = None,
) -> Recorder:
    """One run: a client of its own, the load, and every connection closed. ``watch`` is
    handed the run's Recorder as it starts (the console's progress: progress.py)."""
    client = client_for(spec, shape)
    try:
        probe = Probe(client, spec, shape)
        if watch is not None:
            watch(probe.recorder)
        return await probe.run(stop_at)
    finally:
        client.close()


def _service_ms(value: bytes) -> float | None:
    if not value.isdigit():
        return None
    return int(value) / 1000.0
