"""A few hundred generated profiles, hostile in every setting: readycheck answers each
with a verdict or a clear profile error, never a traceback, never an internal error, and
only with the exit codes it documents.

The generator is seeded: a failure names its seed and case, and the profile is printed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult
from tests.profilegen import ProfileFuzzer

SEED = 19
VALIDATED = 300
RUN = 40
VALIDATE_CODES = {0, 2}
RUN_CODES = {0, 1, 2, 3}  # ready, not ready, profile error, ready without a record


def assert_clear(result: CliResult, codes: set[int], text: str, case: int) -> None:
    where = f"seed {SEED}, case {case}:\n{text[:2000]}\n--- output:\n{result.output[-3000:]}"
    assert result.exit_code in codes, where
    assert "Traceback" not in result.output, where
    assert "internal error" not in result.output, where
    if result.exit_code == 2:
        assert result.stderr.startswith("error: "), where


@pytest.mark.timeout(300)
def test_generated_profiles_validate_or_fail_clearly(
    cli: Callable[..., CliResult], write_profile: Callable[..., Path]
) -> None:
    fuzzer = ProfileFuzzer(SEED)
    codes = set()
    for case in range(VALIDATED):
        text = fuzzer.profile()
        result = cli("validate", write_profile(text))
        assert_clear(result, VALIDATE_CODES, text, case)
        codes.add(result.exit_code)
    assert codes == VALIDATE_CODES  # the generator makes both kinds


@pytest.mark.timeout(300)
def test_generated_local_profiles_run_to_a_verdict_or_fail_clearly(
    cli: Callable[..., CliResult], write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    fuzzer = ProfileFuzzer(SEED + 1)
    out = tmp_path / "results.json"
    codes = set()
    for case in range(RUN):
        text = fuzzer.runnable_profile()
        result = cli("run", write_profile(text), "--json", out, "--deadline", "20s")
        assert_clear(result, RUN_CODES, text, case)
        codes.add(result.exit_code)
    assert {0, 1, 2} <= codes
