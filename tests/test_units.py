from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from readycheck.units import Duration, Size, format_duration_ms


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("10s", 10),
        ("2m", 120),
        ("1h", 3600),
        ("1m30s", 90),
        ("1.5s", 1.5),
        (" 5s ", 5),
        ("0s", 0),
        ("500us", 0.0005),
    ],
)
def test_durations_parse_from_profile_notation(text: str, seconds: float) -> None:
    assert Duration.parse(text).seconds == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["10 sec", "10", "", "ms", "-5s", "5x", "1m30", "s10"])
def test_malformed_durations_are_refused_with_the_expected_notation(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        Duration.parse(text)


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0.25, "250ms"), (10, "10s"), (90, "1m30s"), (120, "2m"), (7200, "2h")]
)
def test_durations_print_back_in_profile_notation(seconds: float, shown: str) -> None:
    assert str(Duration(seconds)) == shown
    assert Duration.parse(shown).seconds == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("1MB", 1_000_000),
        ("50MB", 50_000_000),
        ("1MiB", 1_048_576),
        ("512KB", 512_000),
        ("100B", 100),
        ("1.5GB", 1_500_000_000),
        ("2 kib", 2048),
    ],
)
def test_sizes_parse_decimal_and_binary_units(text: str, count: int) -> None:
    assert Size.parse(text).bytes == count


@pytest.mark.parametrize("text", ["1 megabyte", "50", "MB", "-1MB"])
def test_malformed_sizes_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size"):
        Size.parse(text)


class _Model(BaseModel):
    timeout: Duration
    limit: Size


def test_models_refuse_bare_numbers_because_the_unit_would_be_a_guess() -> None:
    with pytest.raises(ValidationError, match="with a unit"):
        _Model.model_validate({"timeout": 10, "limit": "1MB"})
    model = _Model.model_validate({"timeout": "10s", "limit": "1MB"})
    assert model.model_dump(mode="json") == {"timeout": "10s", "limit": "1MB"}


def test_units_compare_by_value() -> None:
    assert Duration("1m") == Duration("60s")
    assert Duration("250ms") < Duration("1s")
    assert Size("1KB") < Size("1KiB")


def test_measured_durations_read_naturally() -> None:
    assert format_duration_ms(0.5) == "0.50 ms"
    assert format_duration_ms(3.25) == "3.2 ms"
    assert format_duration_ms(850) == "850 ms"
    assert format_duration_ms(3200) == "3.2 s"
    assert format_duration_ms(65_000) == "1m05s"
