"""The `http.latency` check type, against real HTTP servers on 127.0.0.1.

Small request counts at high rates keep the file fast. The servers run in this process
(threads), so the figures here are not accuracy claims: benchmarks/latency_accuracy.py
makes those, with the server in a process and on a core of its own.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from readycheck.checks.latency import LatencyParams
from readycheck.checks.latency.load import Recorder
from readycheck.checks.latency.stats import HISTOGRAM_BOUNDS_MS, histogram, nearest_rank, summarize
from readycheck.checks.latency.verdict import judge
from readycheck.engine import Engine
from readycheck.errors import ProfileError
from readycheck.profile import load_profile
from readycheck.results import CheckResult, Outcome, Status
from tests.conftest import CliResult
from tests.servers.http import AppServer, SilentServer

RunOne = Callable[..., CheckResult]
# Fast enough for the tests: 100 measured requests at 200/s (and as many to calibrate).
QUICK = "rate: 200, requests: 100, warmup: 5"


UNTRUSTED = "measurement not trustworthy on this machine"


@pytest.fixture
def run_one(write_profile: Callable[..., Path]) -> RunOne:
    """Run one http.latency check given its `with:` block (YAML flow text, no braces).

    The probe refuses to judge (ERROR) on a machine too busy to measure, and the machine
    running the tests may be busy with other work: a run that refused is repeated, and
    after three refusals the test is skipped, saying why, rather than failed. The verdict
    rules themselves are tested on made-up measurements above, which no load can disturb.
    Tests about trust pass `tries=1` and get the refusal back.
    """

    def run(
        params: str | Callable[[], str], *, timeout: str = "20s", tries: int = 3
    ) -> CheckResult:
        for _ in range(tries):
            text = params() if callable(params) else params  # a callable: fresh per try
            path = write_profile(
                "checks:\n  - id: p95\n    type: http.latency\n"
                f"    timeout: {timeout}\n    with: {{{text}}}\n"
            )
            profile = load_profile(path, environ={})
            result = asyncio.run(Engine(profile).run()).checks[0]
            if not result.summary.startswith(UNTRUSTED):
                return result
        if tries > 1:
            pytest.skip(f"this machine was too busy to measure, {tries} times: {result.summary}")
        return result

    return run


# -- percentiles and histogram -----------------------------------------------------------


def test_percentiles_are_nearest_rank_so_always_a_measured_sample() -> None:
    hundred = [float(n) for n in range(1, 101)]
    assert nearest_rank(hundred, 50) == 50
    assert nearest_rank(hundred, 95) == 95
    assert nearest_rank(hundred, 99) == 99
    assert nearest_rank(hundred, 100) == 100
    five_hundred = [float(n) for n in range(1, 501)]
    assert nearest_rank(five_hundred, 95) == 475  # not 475.05, as interpolation would say
    assert nearest_rank([7.0], 99) == 7.0
    summary = summarize([3.0, 1.0, 2.0, 10.0])
    assert summary is not None
    assert (summary.p50, summary.max, summary.min, summary.mean) == (2.0, 10.0, 1.0, 4.0)
    assert summarize([]) is None


def test_the_histogram_has_fixed_log_spaced_buckets_that_count_every_sample() -> None:
    samples = [0.05, 0.1, 0.11, 20.0, 21.0, 535.0, 250_000.0]
    chart = histogram(samples)
    assert chart["bounds_ms"] == list(HISTOGRAM_BOUNDS_MS)
    assert sum(chart["counts"]) == len(samples)
    counts = dict(zip(chart["bounds_ms"], chart["counts"], strict=True))
    assert counts[0.1] == 2  # bucket i holds (bounds[i-1], bounds[i]]; the first, anything less
    assert counts[0.125] == 1
    assert counts[20.0] == 1
    assert counts[25.0] == 1
    assert counts[630.0] == 1
    assert counts[100_000.0] == 1  # the last also holds anything slower
    ratios = {round(b / a, 2) for a, b in itertools.pairwise(HISTOGRAM_BOUNDS_MS)}
    assert ratios <= {1.25, 1.26, 1.28, 1.27, 1.24, 1.23, 1.6, 1.59}


# -- verdict rules, on made-up measurements ----------------------------------------------


def _params(**with_: object) -> LatencyParams:
    return LatencyParams.model_validate({"url": "http://127.0.0.1/", **with_})


def _measured(
    latencies_ms: list[float],
    *,
    lag_ms: float = 0.1,
    rate: float = 50.0,
    ok: int | None = None,
    timeouts: int = 0,
    refused: int = 0,
    stopped_early: bool = False,
) -> Recorder:
    """A recorder as an open run at `rate` would fill it, with a constant send lag."""
    count = len(latencies_ms) + refused
    recorder = Recorder("open", planned=count if not stopped_early else count * 2)
    recorder.latencies_ms = list(latencies_ms)
    recorder.lags_ms = [lag_ms] * count
    recorder.sent = count
    recorder.first_start, recorder.last_start = 0.0, (count - 1) / rate
    recorder.timeouts = timeouts
    recorder.answered_ok = len(latencies_ms) - timeouts if ok is None else ok
    if refused:
        recorder.connection_errors["connection refused"] = refused
    recorder.stopped_early = stopped_early
    return recorder


def _judge(params: LatencyParams, run: Recorder) -> Outcome:
    return judge(params, params.load_shape(), run, None, loop_name="test")


def test_a_late_probe_is_not_trusted_even_when_the_budget_fails() -> None:
    outcome = _judge(_params(p95="300ms", calibrate=False), _measured([500.0] * 100, lag_ms=5))
    assert outcome.status is Status.ERROR
    assert outcome.summary.startswith(f"{UNTRUSTED}: its requests started up to 5.0 ms late")
    assert "p95 500 ms" in "\n".join(outcome.evidence)  # what was measured is still shown


def test_a_probe_that_fell_behind_its_rate_is_not_trusted() -> None:
    outcome = _judge(_params(calibrate=False), _measured([20.0] * 100, rate=40.0))
    assert outcome.status is Status.ERROR
    assert "it started 40.0 requests/s of the 50/s asked" in outcome.summary


def test_refused_connections_fail_even_when_the_timing_is_not_trusted() -> None:
    outcome = _judge(_params(calibrate=False), _measured([20.0] * 50, lag_ms=5, refused=50))
    assert outcome.status is Status.FAIL
    assert outcome.summary.startswith("error rate 50.0% over 1.0%")
    assert any(line.startswith("latency figures not trustworthy") for line in outcome.evidence)


def test_timeouts_are_not_blamed_on_the_server_when_the_probe_was_very_late() -> None:
    # A send lag of a tenth of request_timeout could itself have caused the timeouts.
    late = _measured([5000.0] * 100, lag_ms=800, timeouts=100)
    assert _judge(_params(calibrate=False), late).status is Status.ERROR
    slightly_late = _measured([5000.0] * 100, lag_ms=3, timeouts=100)
    assert _judge(_params(calibrate=False), slightly_late).status is Status.FAIL


def test_a_partial_run_never_passes_but_a_failing_one_fails() -> None:
    fast = _judge(_params(p95="300ms", calibrate=False), _measured([20.0] * 50, stopped_early=True))
    assert fast.status is Status.ERROR
    assert fast.summary.startswith("ran out of time after 50 of 100 requests")
    slow = _judge(
        _params(p95="300ms", calibrate=False), _measured([900.0] * 50, stopped_early=True)
    )
    assert slow.status is Status.FAIL


def test_warn_at_one_turns_warnings_off() -> None:
    near = _measured([290.0] * 100)
    assert _judge(_params(p95="300ms", calibrate=False), near).status is Status.WARN
    assert _judge(_params(p95="300ms", calibrate=False, warn_at=1), near).status is Status.PASS


# -- verdicts against real servers -------------------------------------------------------


def test_a_fixed_latency_endpoint_passes_a_budget_above_it(
    run_one: RunOne, http_server: AppServer
) -> None:
    result = run_one(f"url: '{http_server.url}/sleep?ms=100', {QUICK}, p95: 1s, p99: 2s")
    assert result.status is Status.PASS, result.summary
    assert 100 <= result.metrics["p95_ms"] < 200
    assert result.metrics["p50_ms"] >= 100
    assert result.metrics["requests"] == 100
    assert result.metrics["errors"] == 0
    assert result.metrics["target_rps"] == 200
    assert result.metrics["client_overhead_ms"] >= 0
    for metric in ("achieved_rps", "p90_ms", "min_ms", "mean_ms", "max_ms", "send_lag_p99_ms"):
        assert metric in result.metrics
    assert result.summary.startswith("p95 ")
    assert "open model: 100 requests scheduled at 200/s" in "\n".join(result.evidence)
    chart = result.data["latency"]
    assert chart["model"] == "open"
    assert set(chart["percentiles_ms"]) == {"p50", "p90", "p95", "p99", "max"}
    assert chart["thresholds_ms"] == {"p95": 1000.0, "p99": 2000.0}
    assert sum(chart["histogram"]["counts"]) == 100
    assert len(chart["histogram"]["counts"]) == len(chart["histogram"]["bounds_ms"])


def test_a_budget_below_the_fixed_latency_fails(run_one: RunOne, http_server: AppServer) -> None:
    result = run_one(f"url: '{http_server.url}/sleep?ms=100', {QUICK}, p95: 80ms")
    assert result.status is Status.FAIL, result.summary
    assert "over its 80ms budget" in result.summary
    assert "budgets: p95" in "\n".join(result.evidence)
    assert result.remediation


def test_a_percentile_near_its_budget_warns(run_one: RunOne, http_server: AppServer) -> None:
    result = run_one(f"url: '{http_server.url}/sleep?ms=100', {QUICK}, p95: 150ms, warn_at: 0.6")
    assert result.status is Status.WARN, result.summary
    assert "of its 150ms budget (warn at 60%)" in result.summary


def test_failed_requests_count_and_max_error_rate_decides(
    run_one: RunOne, http_server: AppServer
) -> None:
    # The endpoint fails exactly 5 in every 100 consecutive requests.
    strict = run_one(
        f"url: '{http_server.unreliable_url(5)}', rate: 200, requests: 200, warmup: 0, "
        "calibrate: false"
    )
    assert strict.status is Status.FAIL, strict.summary
    assert strict.summary.startswith("error rate 5.0% over 1.0% (10 of 200)")
    assert "errors: 10 of 200 (5.0%): 10 answered HTTP 500" in strict.evidence
    assert strict.metrics["error_rate"] == 0.05
    lenient = run_one(
        f"url: '{http_server.unreliable_url(5)}', rate: 200, requests: 200, warmup: 0, "
        "calibrate: false, max_error_rate: 0.1"
    )
    assert lenient.status is Status.PASS, lenient.summary
    assert lenient.metrics["errors"] == 10


def test_the_open_model_shows_a_stall_in_p99_that_a_closed_loop_hides(
    run_one: RunOne, http_server: AppServer
) -> None:
    # A 300 ms freeze in a 1.5 s run: requests due during it wait for its end. (At 100/s the
    # burst of answers when it ends delays at most one request's start: the probe stays
    # trusted.)
    opened = run_one(
        lambda: (
            f"url: '{http_server.stall_url(after_ms=400, for_ms=300)}', rate: 100, "
            "requests: 150, warmup: 0, calibrate: false, p99: 200ms"
        )
    )
    assert opened.status is Status.FAIL, opened.summary
    assert opened.metrics["p99_ms"] > 200
    assert opened.metrics["p50_ms"] < 100
    assert "p99" in opened.summary
    closed = run_one(
        lambda: (
            f"url: '{http_server.stall_url(after_ms=300, for_ms=300)}', concurrency: 2, "
            "duration: 1s, calibrate: false"
        )
    )
    assert closed.status is Status.PASS, closed.summary
    assert closed.metrics["p99_ms"] < opened.metrics["p99_ms"] / 2
    assert closed.data["latency"]["model"] == "closed"
    assert "closed model, concurrency 2" in "\n".join(closed.evidence)
    assert "target_rps" not in closed.metrics


@pytest.fixture
def doomed_server() -> Iterator[AppServer]:
    """A server of this test's own, which the test stops while the probe is running."""
    server = AppServer()
    server.start()
    yield server
    server.stop()


def test_a_server_going_away_mid_run_counts_connection_errors(
    run_one: RunOne, doomed_server: AppServer
) -> None:
    stopper = threading.Timer(0.4, doomed_server.stop)
    stopper.start()
    try:
        result = run_one(
            f"url: '{doomed_server.url}/health/live', rate: 200, requests: 300, warmup: 0, "
            "calibrate: false"
        )
    finally:
        stopper.join()
    assert result.status is Status.FAIL, result.summary
    assert result.summary.startswith("error rate")
    errors_line = next(line for line in result.evidence if line.startswith("errors:"))
    assert "connection errors (connection refused)" in errors_line
    assert 0 < result.metrics["errors"] < 300


def test_a_hanging_server_ends_on_time_with_what_was_measured(
    run_one: RunOne, silent_server: SilentServer
) -> None:
    result = run_one(
        f"url: '{silent_server.url}', rate: 100, requests: 50, warmup: 0, p95: 300ms",
        timeout="2s",
    )
    # FAIL, not the engine's "timed out": the check stopped itself and judged what it had.
    assert result.status is Status.FAIL, result.summary
    assert result.metrics["requests"] == 50
    assert result.metrics["errors"] == 50
    evidence = "\n".join(result.evidence)
    assert "50 unanswered when the check's time ran out" in evidence
    assert "stopped at the check's timeout after 50 of 50 requests" in evidence
    assert result.metrics["p95_ms"] > 300  # they waited, and that is their latency
    assert "client overhead" in evidence


def test_a_run_that_cannot_fit_in_the_timeout_sends_nothing(
    run_one: RunOne, http_server: AppServer
) -> None:
    path = f"/api/never-{uuid.uuid4().hex}"
    result = run_one(f"url: '{http_server.url}{path}'", timeout="5s")  # 500 at 50/s: 10 s
    assert result.status is Status.ERROR
    assert (
        "the run needs about 14.9 s (calibration 4.2 s, sending 10.2 s, last answers 0.5 s)"
        in result.summary
    )
    assert "nothing was sent" in result.summary
    assert result.remediation is not None and "timeout: 20s" in result.remediation
    assert http_server.hits(path) == 0


def test_an_overhead_large_beside_the_budget_makes_the_result_untrustworthy(
    run_one: RunOne, http_server: AppServer
) -> None:
    # No client measures 1 ms budgets to 5% (0.05 ms): ERROR, neither PASS nor FAIL.
    result = run_one(f"url: '{http_server.url}/health/live', {QUICK}, p99: 1ms", tries=1)
    assert result.status is Status.ERROR
    assert result.summary.startswith(f"{UNTRUSTED}: ")
    assert "its own overhead" in result.summary
    assert "over 5% of the tightest budget (p99 1ms)" in result.summary
    assert result.metrics["client_overhead_ms"] > 0.05


def test_a_json_body_is_sent_with_its_method(run_one: RunOne, http_server: AppServer) -> None:
    result = run_one(
        f"url: '{http_server.url}/echo', method: POST, json: {{order: 42}}, {QUICK}, "
        "calibrate: false, p95: 2s"
    )
    assert result.status is Status.PASS, result.summary
    assert result.metrics["errors"] == 0


def test_tls_is_verified_against_the_given_ca_file(
    run_one: RunOne, https_server: AppServer
) -> None:
    assert https_server.ca_file is not None
    trusted = run_one(
        f"url: '{https_server.url}/health/live', ca_file: '{https_server.ca_file}', "
        "rate: 200, requests: 50, warmup: 5, calibrate: false"
    )
    assert trusted.status is Status.PASS, trusted.summary
    unknown_issuer = run_one(
        f"url: '{https_server.url}/health/live', rate: 200, requests: 50, warmup: 0, "
        "calibrate: false"
    )
    assert unknown_issuer.status is Status.FAIL
    assert "50 connection errors (TLS certificate rejected)" in "\n".join(unknown_issuer.evidence)


@pytest.mark.parametrize("content", [None, "not a certificate\n"])
def test_an_unusable_ca_file_is_an_error_before_any_request(
    run_one: RunOne, https_server: AppServer, tmp_path: Path, content: str | None
) -> None:
    ca_file = tmp_path / "ca.pem"
    if content is not None:
        ca_file.write_text(content)
    before = https_server.hits("/health/live")
    result = run_one(
        f"url: '{https_server.url}/health/live', ca_file: '{ca_file}', "
        "rate: 200, requests: 50, warmup: 5, calibrate: false"
    )
    assert result.status is Status.ERROR
    assert result.summary.startswith(f"ca_file {ca_file}")
    assert (
        "does not exist" if content is None else "not a PEM certificate bundle"
    ) in result.summary
    assert https_server.hits("/health/live") == before


def test_interrupting_the_run_stops_the_probe_and_its_thread(
    write_profile: Callable[..., Path], http_server: AppServer
) -> None:
    path = write_profile(
        "checks:\n  - id: p95\n    type: http.latency\n    timeout: 60s\n"
        f"    with: {{url: '{http_server.url}/sleep?ms=20', rate: 20, duration: 30s}}\n"
    )
    engine = Engine(load_profile(path, environ={}))

    async def run_then_interrupt() -> CheckResult:
        asyncio.get_running_loop().call_later(1.0, engine.interrupt)
        return (await engine.run()).checks[0]

    result = asyncio.run(run_then_interrupt())
    assert result.status is Status.ERROR
    assert result.summary.startswith("interrupted after")
    probe_threads = [t for t in threading.enumerate() if t.name == "readycheck:p95"]
    for thread in probe_threads:
        thread.join(timeout=5)  # generous: proves it ends, not how fast
    assert not any(thread.is_alive() for thread in probe_threads)


# -- safety caps and parameters ----------------------------------------------------------


@pytest.mark.parametrize(
    ("load", "complaint"),
    [
        ("rate: 500", "rate 500/s is over 200/s"),
        ("concurrency: 150", "concurrency 150 is over 100"),
        ("max_in_flight: 400", "max_in_flight 400 is over 100"),
        ("rate: 200, requests: 20000", "20,010 requests (with the warmup) is over 10,000"),
        ("rate: 10, requests: 1000", "the run would last 101s, over 60s"),
        ("concurrency: 10, duration: 2m", "the run would last 120s, over 60s"),
    ],
)
def test_load_over_a_safety_cap_is_a_profile_error_naming_its_line(
    write_profile: Callable[..., Path], load: str, complaint: str
) -> None:
    text = (
        "checks:\n  - id: p95\n    type: http.latency\n    with: {url: 'http://127.0.0.1/', %s}\n"
    )
    with pytest.raises(ProfileError) as caught:
        load_profile(write_profile(text % load), environ={})
    message = str(caught.value)
    assert "profile.yaml:4:" in message
    assert "checks[p95].with: over the latency probe's safety caps" in message
    assert complaint in message
    assert "i_know_this_is_load: true" in message
    # Saying so in the profile lifts the caps.
    load_profile(write_profile(text % f"{load}, i_know_this_is_load: true"), environ={})


def test_validate_refuses_a_capped_profile_with_exit_2(
    write_profile: Callable[..., Path], cli: Callable[..., CliResult]
) -> None:
    path = write_profile(
        "checks:\n  - id: p95\n    type: http.latency\n"
        "    with: {url: 'http://127.0.0.1/', rate: 1000}\n"
    )
    result = cli("validate", path)
    assert result.exit_code == 2
    assert "rate 1000/s is over 200/s" in result.output


@pytest.mark.parametrize(
    ("params", "complaint"),
    [
        ("rate: 10, concurrency: 5", "rate is the open model and concurrency the closed one"),
        ("requests: 10, duration: 5s", "give requests or duration, not both"),
        ("json: {a: 1}, body: x", "give json or body, not both"),
        ("secret_headers: [X-Token]", "secret_headers names 'X-Token', which is not in headers"),
    ],
)
def test_contradictory_parameters_are_refused_at_load(
    write_profile: Callable[..., Path], params: str, complaint: str
) -> None:
    path = write_profile(
        "checks:\n  - id: p95\n    type: http.latency\n"
        f"    with: {{url: 'http://127.0.0.1/', {params}}}\n"
    )
    with pytest.raises(ProfileError, match=complaint):
        load_profile(path, environ={})


def test_the_parameter_model_imports_no_http_client() -> None:
    code = "import sys, readycheck.checks.latency; print('aiohttp' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


# -- secrets -----------------------------------------------------------------------------

SECRET_TOKEN = "tok-" + uuid.uuid4().hex
SECRET_CUSTOM = "cus-" + uuid.uuid4().hex


@pytest.mark.parametrize("target", ["/echo", "closed-port"])
def test_a_secret_header_value_appears_in_no_output(
    write_profile: Callable[..., Path],
    cli: Callable[..., CliResult],
    http_server: AppServer,
    closed_port_url: str,
    tmp_path: Path,
    target: str,
) -> None:
    url = closed_port_url if target == "closed-port" else f"{http_server.url}{target}"
    path = write_profile(
        f"""
        checks:
          - id: p95
            type: http.latency
            timeout: 20s
            with:
              url: '{url}'
              headers: {{Authorization: 'Bearer {SECRET_TOKEN}', X-Tenant: '{SECRET_CUSTOM}'}}
              secret_headers: [X-Tenant]
              rate: 200
              requests: 100
              warmup: 5
              p95: 1s
        """
    )
    outputs = [tmp_path / name for name in ("out.json", "report.md", "junit.xml")]
    result = cli(
        "run",
        path,
        "--json",
        outputs[0],
        "--report",
        outputs[1],
        "--junit",
        outputs[2],
        "--debug",
    )
    texts = [result.output, *(file.read_text() for file in outputs)]
    for text in texts:
        assert SECRET_TOKEN not in text
        assert SECRET_CUSTOM not in text
    checked = json.loads(outputs[0].read_text())["checks"][0]
    assert checked["type"] == "http.latency"
    assert checked["metrics"]["requests"] == 100  # it ran: the secret went out, and no further
    if target == "closed-port":
        assert checked["status"] == "FAIL"
