"""The engine: concurrency, timeouts, retries, needs, exclusive checks, deadline,
interruption, exceptions, waivers and the gate."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from readycheck.engine import Engine, RunOptions, select
from readycheck.errors import UsageError
from readycheck.profile import load_profile
from readycheck.results import RunResult, Status, Verdict
from readycheck.units import Duration
from tests import checktypes

Run = Callable[..., RunResult]


@pytest.fixture
def run(write_profile: Callable[..., Path]) -> Run:
    def run_profile(text: str, **options: object) -> RunResult:
        profile = load_profile(write_profile(text), environ={})
        clock = options.pop("clock", None)
        engine = Engine(profile, RunOptions(**options))  # type: ignore[arg-type]
        if clock is not None:
            engine.clock = clock  # type: ignore[assignment]
        return asyncio.run(engine.run())

    return run_profile


def by_id(result: RunResult) -> dict[str, object]:
    return {check.id: check for check in result.checks}


def test_checks_run_concurrently_up_to_the_limit(run: Run) -> None:
    checks = "\n".join(
        f"  - {{id: c{i}, type: test.sleep, with: {{seconds: 0.2}}}}" for i in range(6)
    )
    run("checks:\n" + checks, concurrency=3)
    # At most 3 in flight at any moment, and 3 did overlap.
    in_flight = peak = 0
    for _, kind, _ in sorted(checktypes.EVENTS, key=lambda event: event[2]):
        in_flight += 1 if kind == "start" else -1
        peak = max(peak, in_flight)
    assert peak == 3


def test_a_check_over_its_timeout_is_an_error_and_the_run_goes_on(run: Run) -> None:
    result = run(
        """
        checks:
          - {id: slow, type: test.sleep, timeout: 200ms, with: {seconds: 30}}
          - {id: fast, type: test.sleep}
        """
    )
    slow, fast = result.checks
    assert slow.status is Status.ERROR
    assert slow.summary == "timed out after 200ms"
    assert fast.status is Status.PASS
    assert result.verdict is Verdict.NOT_READY
    assert result.exit_code == 1


def test_retries_repeat_until_pass_and_count_attempts(run: Run) -> None:
    result = run(
        """
        checks:
          - {id: flaky, type: test.flaky, retries: 3, retry_interval: 10ms, with: {key: f, fail_times: 2}}
          - {id: hopeless, type: test.flaky, retries: 1, retry_interval: 10ms, with: {key: h, fail_times: 9}}
        """
    )
    flaky, hopeless = result.checks
    assert (flaky.status, flaky.attempts) == (Status.PASS, 3)
    assert (hopeless.status, hopeless.attempts) == (Status.FAIL, 2)


def test_retry_for_polls_until_pass_within_the_window(run: Run) -> None:
    result = run(
        """
        checks:
          - {id: deploy, type: test.flaky, retry_for: 30s, retry_interval: 10ms, with: {key: d, fail_times: 2}}
        """
    )
    assert (result.checks[0].status, result.checks[0].attempts) == (Status.PASS, 3)


def test_retry_for_gives_up_when_the_window_closes(run: Run) -> None:
    result = run(
        """
        checks:
          - {id: never, type: test.flaky, retry_for: 300ms, retry_interval: 50ms, with: {key: n, fail_times: 1000}}
        """
    )
    check = result.checks[0]
    assert check.status is Status.FAIL
    assert 2 <= check.attempts < 10  # backoff: 50ms, 100ms, 200ms... within 300ms


def test_a_check_whose_need_did_not_pass_is_skipped_with_the_reason(run: Run) -> None:
    result = run(
        """
        checks:
          - {id: db, type: test.sleep, with: {status: FAIL}}
          - {id: migrations, type: test.sleep, needs: [db]}
          - {id: after-migrations, type: test.sleep, needs: [migrations]}
          - {id: warned, type: test.sleep, with: {status: WARN}}
          - {id: after-warn, type: test.sleep, needs: [warned]}
        """
    )
    checks = by_id(result)
    assert checks["migrations"].status is Status.SKIP  # type: ignore[attr-defined]
    assert checks["migrations"].summary == "not run: needs db is FAIL"  # type: ignore[attr-defined]
    assert checks["after-migrations"].summary == "not run: needs migrations is SKIP"  # type: ignore[attr-defined]
    # A blocking check that could not run blocks: the gate fails closed.
    assert checks["migrations"].blocking  # type: ignore[attr-defined]
    # WARN means the requirement is met, so what needs it runs.
    assert checks["after-warn"].status is Status.PASS  # type: ignore[attr-defined]
    assert [e[0] for e in checktypes.EVENTS if e[1] == "start"].count("migrations") == 0


def test_exclusive_checks_run_alone_after_the_others(run: Run) -> None:
    run(
        """
        checks:
          - {id: probe-1, type: test.exclusive, with: {seconds: 0.05}}
          - {id: a, type: test.sleep, with: {seconds: 0.1}}
          - {id: probe-2, type: test.exclusive, with: {seconds: 0.05}}
          - {id: b, type: test.sleep, with: {seconds: 0.1}}
          - {id: after-probe, type: test.sleep, needs: [probe-1]}
        """
    )
    order = [
        (check_id, kind) for check_id, kind, _ in sorted(checktypes.EVENTS, key=lambda e: e[2])
    ]
    starts = [check_id for check_id, kind in order if kind == "start"]
    assert set(starts[:2]) == {"a", "b"}
    assert starts[2:] == ["probe-1", "probe-2", "after-probe"]
    # Each exclusive check ends before anything else starts.
    for probe in ("probe-1", "probe-2"):
        index = order.index((probe, "start"))
        assert order[index + 1] == (probe, "end")


def test_the_deadline_ends_the_run_and_marks_what_was_cut_off(run: Run) -> None:
    result = run(
        """
        checks:
          - {id: long, type: test.sleep, timeout: 60s, with: {seconds: 30}}
          - {id: queued, type: test.sleep, needs: [long]}
          - {id: quick, type: test.sleep}
        """,
        deadline=Duration("300ms"),
    )
    checks = by_id(result)
    assert checks["long"].status is Status.ERROR  # type: ignore[attr-defined]
    assert checks["long"].summary.startswith("run deadline (300ms) reached after")  # type: ignore[attr-defined]
    assert checks["queued"].status is Status.SKIP  # type: ignore[attr-defined]
    assert checks["quick"].status is Status.PASS  # type: ignore[attr-defined]
    assert result.verdict is Verdict.NOT_READY


def test_interrupting_cancels_running_checks_and_keeps_every_result(
    write_profile: Callable[..., Path],
) -> None:
    profile = load_profile(
        write_profile(
            """
            checks:
              - {id: running, type: test.sleep, with: {seconds: 30}}
              - {id: waiting, type: test.sleep, needs: [running]}
              - {id: done, type: test.sleep}
            """
        ),
        environ={},
    )
    engine = Engine(profile)

    async def interrupt_soon() -> RunResult:
        asyncio.get_running_loop().call_later(0.2, engine.interrupt)
        return await engine.run()

    result = asyncio.run(interrupt_soon())
    checks = by_id(result)
    assert result.verdict is Verdict.INTERRUPTED
    assert result.exit_code == 130
    assert checks["running"].status is Status.ERROR  # type: ignore[attr-defined]
    assert checks["running"].summary.startswith("interrupted after")  # type: ignore[attr-defined]
    assert checks["waiting"].status is Status.SKIP  # type: ignore[attr-defined]
    assert checks["done"].status is Status.PASS  # type: ignore[attr-defined]


def test_a_check_that_ignores_cancellation_is_abandoned_not_waited_for(
    write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    done = tmp_path / "done"
    profile = write_profile(
        f"""
        checks:
          - id: stubborn
            type: test.stubborn
            timeout: 100ms
            with: {{seconds: 3, done_file: "{done}"}}
        """
    )

    async def run_and_look() -> tuple[RunResult, bool]:
        result = await Engine(load_profile(profile, environ={}), RunOptions()).run()
        return result, done.exists()

    # asyncio.run then waits for the abandoned check while it shuts the loop down; the
    # command line does not (it exits), and the run's result was complete before that.
    result, finished = asyncio.run(run_and_look())
    check = result.checks[0]
    assert check.status is Status.ERROR
    assert check.summary == "timed out after 100ms"
    assert not finished  # the run ended while the check was still going


def test_an_exception_in_a_check_is_an_error_with_its_type(run: Run) -> None:
    result = run("checks: [{id: buggy, type: test.raise}, {id: odd, type: test.wrong_return}]")
    buggy, odd = result.checks
    assert buggy.status is Status.ERROR
    assert buggy.summary == "the check raised ZeroDivisionError: division by zero in the check"
    assert buggy.traceback is None
    assert odd.status is Status.ERROR
    assert "returned str, not an Outcome" in odd.summary


def test_a_check_that_calls_sys_exit_is_an_error_and_the_run_goes_on(run: Run) -> None:
    result = run("checks: [{id: exits, type: test.exit}, {id: after, type: test.sleep}]")
    exits, after = result.checks
    assert exits.status is Status.ERROR
    assert exits.summary == "the check raised SystemExit: 3"
    assert after.status is Status.PASS


def test_debug_keeps_the_traceback(run: Run) -> None:
    result = run("checks: [{id: buggy, type: test.raise}]", debug=True)
    assert result.checks[0].traceback is not None
    assert "ZeroDivisionError" in result.checks[0].traceback


WAIVERS = """
checks:
  - {id: cache-warm, type: test.sleep, with: {status: FAIL}}
  - {id: old-risk, type: test.sleep, with: {status: FAIL}}
  - {id: fine, type: test.sleep}
waivers:
  - {check: cache-warm, reason: cache warms for 10 minutes, approved_by: rm, until: 2026-12-31}
  - {check: old-risk, reason: accepted last quarter, approved_by: rm, until: 2026-01-31}
  - {check: fine, reason: just in case, approved_by: rm, until: 2026-12-31}
"""


def test_waivers_apply_until_their_date_and_expired_ones_do_not(run: Run) -> None:
    clock = lambda: datetime(2026, 11, 25, 12, tzinfo=UTC)  # noqa: E731
    result = run(WAIVERS, clock=clock)
    checks = by_id(result)
    assert checks["cache-warm"].status is Status.WAIVED  # type: ignore[attr-defined]
    assert not checks["cache-warm"].blocking  # type: ignore[attr-defined]
    assert checks["old-risk"].status is Status.FAIL  # type: ignore[attr-defined]
    assert checks["old-risk"].blocking  # type: ignore[attr-defined]
    states = {w.check: w.state for w in result.waivers}
    assert states == {"cache-warm": "applied", "old-risk": "expired", "fine": "unused"}
    assert result.verdict is Verdict.NOT_READY


def test_a_waiver_is_valid_through_its_last_day(run: Run) -> None:
    clock = lambda: datetime(2026, 12, 31, 23, 59, tzinfo=UTC)  # noqa: E731
    result = run(WAIVERS.replace("2026-01-31", "2026-12-31"), clock=clock)
    assert result.verdict is Verdict.READY_WITH_WAIVERS
    assert result.exit_code == 0
    assert result.waivers[0].until == date(2026, 12, 31)


def test_the_gate_blocks_by_severity_and_strict_makes_warn_block(run: Run) -> None:
    profile = """
    gate: {fail_on: high}
    checks:
      - {id: low-fail, type: test.sleep, severity: low, with: {status: FAIL}}
      - {id: high-warn, type: test.sleep, severity: high, with: {status: WARN}}
    """
    result = run(profile)
    assert result.verdict is Verdict.READY
    assert [c.blocking for c in result.checks] == [False, False]
    strict = run(profile, strict=True)
    assert strict.verdict is Verdict.NOT_READY
    assert [c.blocking for c in strict.checks] == [False, True]


def test_selection_by_id_and_tag_brings_in_needs(write_profile: Callable[..., Path]) -> None:
    profile = load_profile(
        write_profile(
            """
            checks:
              - {id: db, type: test.sleep, tags: [database]}
              - {id: migrations, type: test.sleep, needs: [db], tags: [database]}
              - {id: api, type: test.sleep, tags: [http]}
              - {id: p95, type: test.sleep, tags: [http, slow]}
            """
        ),
        environ={},
    )
    assert select(profile, ["migrations"], []) == {
        "api": "not selected (--only)",
        "p95": "not selected (--only)",
    }
    assert select(profile, ["tag:http"], ["tag:slow"]) == {
        "db": "not selected (--only)",
        "migrations": "not selected (--only)",
        "p95": "skipped (--skip)",
    }
    with pytest.raises(UsageError, match="no check has this id; did you mean 'api'"):
        select(profile, ["apj"], [])
    with pytest.raises(UsageError, match="no check has the tag 'nope'"):
        select(profile, [], ["tag:nope"])


def test_skipping_a_need_skips_dependents_without_blocking(run: Run) -> None:
    result = run(
        """
        checks:
          - {id: db, type: test.sleep}
          - {id: migrations, type: test.sleep, needs: [db]}
          - {id: api, type: test.sleep}
        """,
        skip=("db",),
    )
    db, migrations, _ = result.checks
    assert db.status is Status.SKIP and db.summary == "skipped (--skip)"
    assert migrations.status is Status.SKIP and not migrations.blocking
    assert result.verdict is Verdict.READY
    assert result.not_run == ["db", "migrations"]  # named beside the verdict


def test_non_finite_metrics_are_dropped_and_data_is_json(run: Run) -> None:
    result = run(
        "checks: [{id: m, type: test.sleep, with: {metrics: {good: 1.5, bad: .nan, worse: .inf}}}]"
    )
    assert result.checks[0].metrics == {"good": 1.5}
