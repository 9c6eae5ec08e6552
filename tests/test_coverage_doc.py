"""docs/checklist-coverage.md stays true: every check type its table names is a built-in
type, each row's coverage agrees with the types it names, and the totals on the page and
the figures the README quotes are the table's counts."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import pytest

from tests.conftest import REPO
from tests.profilegen import builtin_types

PAGE = REPO / "docs" / "checklist-coverage.md"
README = REPO / "README.md"

GENERIC = frozenset({"command", "file"})
COVERAGES = ("built-in", "command/file", "manual", "not covered")

# What the README's coverage line says, and which count each figure is.
README_FIGURES = {
    r"(\d+)-item production-readiness checklist": "all",
    r"(\d+)% of the items with built-in check types": "built-in",
    r"(\d+)% through `command` and `file`": "command/file",
    r"the (\d+)% that only a person can judge": "manual",
    r"the other (\d+)% it does not cover": "not covered",
}

_ITEM_ROW = re.compile(r"^\| ([A-Z]{2}-\d+) \|")
_CELL_BORDER = re.compile(r"(?<!\\)\|")
_TYPE = re.compile(r"^`([a-z_.]+)`$")
_TOTAL_ROW = re.compile(r"^\| ([a-z/ -]+) \| (\d+) \| (\d+)% \|$")


@dataclass(frozen=True)
class Item:
    id: str
    coverage: str
    types: tuple[str, ...]


def _items() -> list[Item]:
    found = []
    for number, line in enumerate(PAGE.read_text().splitlines(), 1):
        if not _ITEM_ROW.match(line):
            continue
        cells = [cell.strip() for cell in _CELL_BORDER.split(line)[1:-1]]
        assert len(cells) == 6, (
            f"{PAGE.name}:{number}: {len(cells)} cells; a row is "
            "ID | Item | Coverage | Check type | How | Sources"
        )
        ident, _, coverage, named, _, _ = cells
        types = []
        for part in [] if named == "—" else named.split(", "):
            match = _TYPE.match(part)
            assert match, f"{ident}: {part!r} is not a check type in backticks"
            types.append(match[1])
        found.append(Item(ident, coverage, tuple(types)))
    return found


ITEMS = _items()


def _percent(count: int, total: int) -> int:
    """count / total in percent, rounded half up (as the page says it rounds)."""
    return (200 * count + total) // (2 * total)


def _counts() -> dict[str, int]:
    by_coverage = Counter(item.coverage for item in ITEMS)
    return {**{coverage: by_coverage[coverage] for coverage in COVERAGES}, "all": len(ITEMS)}


def test_the_checklist_has_items_with_unique_ids_and_a_known_coverage() -> None:
    assert 120 <= len(ITEMS) <= 170, len(ITEMS)
    repeated = [ident for ident, n in Counter(i.id for i in ITEMS).items() if n > 1]
    assert not repeated, f"IDs used twice: {repeated}"
    unknown = {item.id: item.coverage for item in ITEMS if item.coverage not in COVERAGES}
    assert not unknown, f"coverage must be one of {COVERAGES}: {unknown}"


def test_every_check_type_named_is_a_built_in_one() -> None:
    installed = builtin_types()
    unknown = {item.id: name for item in ITEMS for name in item.types if name not in installed}
    assert not unknown, f"not built-in check types: {unknown}"


@pytest.mark.parametrize("item", ITEMS, ids=[item.id for item in ITEMS])
def test_each_rows_coverage_agrees_with_the_check_types_it_names(item: Item) -> None:
    types = set(item.types)
    if item.coverage == "built-in":
        assert types - GENERIC - {"manual"}, "a built-in item names the type deciding it"
    elif item.coverage == "command/file":
        assert types and types <= GENERIC, "a command/file item names `command` or `file`"
    elif item.coverage == "manual":
        assert item.types == ("manual",), "an attested item names `manual` alone"
    else:
        assert not types, "an item not covered names no check type (—)"


def test_the_pages_totals_are_the_tables_counts() -> None:
    text = PAGE.read_text()
    section = text[text.index("## Totals") : text.index("## The checklist")]
    stated = {
        match[1]: (int(match[2]), int(match[3]))
        for match in map(_TOTAL_ROW.match, section.splitlines())
        if match
    }
    total = len(ITEMS)
    expected = {label: (n, _percent(n, total)) for label, n in _counts().items()}
    assert stated == expected


def test_the_readme_quotes_the_pages_figures() -> None:
    readme = " ".join(README.read_text().split())  # the line may wrap anywhere
    counts = _counts()
    total = counts["all"]
    for pattern, label in README_FIGURES.items():
        match = re.search(pattern, readme)
        assert match, f"the README's coverage line no longer says {pattern!r}"
        expected = total if label == "all" else _percent(counts[label], total)
        assert int(match[1]) == expected, f"README: {match[0]!r}, the table makes it {expected}"
