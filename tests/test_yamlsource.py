from __future__ import annotations

import time
import tracemalloc

import pytest

from readycheck.errors import ProfileError
from readycheck.yamlsource import YamlList, YamlMap, load_yaml, read_profile_text


def test_every_value_keeps_its_line_and_column() -> None:
    doc = load_yaml("name: api\nchecks:\n  - id: db\n    with: {dsn: x}\n", "p.yaml")
    assert isinstance(doc, YamlMap)
    assert (doc.locations["name"].line, doc.locations["name"].column) == (1, 7)
    checks = doc["checks"]
    assert isinstance(checks, YamlList)
    assert checks.locations[0].line == 3
    assert checks[0]["with"].locations["dsn"].line == 4
    assert str(checks[0]["with"].locations["dsn"]) == "p.yaml:4:17"


def test_scalars_follow_yaml_1_2_so_no_and_off_stay_strings() -> None:
    doc = load_yaml(
        "a: no\nb: off\nc: true\nd: 2026-12-31\ne: 010\nf: 1.5\ng: null\nh: 0x1f\ni: '5'\n",
        "p.yaml",
    )
    assert doc == {
        "a": "no",
        "b": "off",
        "c": True,
        "d": "2026-12-31",
        "e": 10,
        "f": 1.5,
        "g": None,
        "h": 31,
        "i": "5",
    }


def test_merge_keys_fill_in_what_the_mapping_does_not_set() -> None:
    doc = load_yaml(
        "base: &base {timeout: 5s, retries: 2}\nthis:\n  <<: *base\n  retries: 0\n", "p.yaml"
    )
    assert doc["this"] == {"timeout": "5s", "retries": 0}


def test_duplicate_keys_are_refused_with_both_lines() -> None:
    with pytest.raises(
        ProfileError, match=r"p.yaml:3:1: duplicate key 'name' \(first written at line 1\)"
    ):
        load_yaml("name: a\nchecks: []\nname: b\n", "p.yaml")


def test_python_tags_are_refused() -> None:
    with pytest.raises(ProfileError, match="unsupported YAML tag"):
        load_yaml("a: !!python/object/apply:os.system ['true']\n", "p.yaml")


def test_several_documents_are_refused() -> None:
    with pytest.raises(ProfileError, match="more than one YAML document"):
        load_yaml("a: 1\n---\nb: 2\n", "p.yaml")


def test_an_alias_bomb_is_refused_quickly_in_bounded_memory() -> None:
    # Nine levels of nine aliases each: 9**9 (387 million) strings once expanded.
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 9):
        prev, cur = chr(ord("a") + level - 1), chr(ord("a") + level)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    text = "\n".join(lines) + "\n"
    tracemalloc.start()
    started = time.process_time()
    try:
        with pytest.raises(ProfileError, match="alias bomb"):
            load_yaml(text, "bomb.yaml")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000, f"refusing the bomb used {peak} bytes"
    # CPU time, not wall time: a bomb costs ~0 when refused, seconds or more when expanded.
    assert time.process_time() - started < 5


@pytest.mark.timeout(60)  # the cycle used to be followed for ever
@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("vars: &v {self: *v}\n", "p.yaml:1:11"),
        ("name: x\nvars: &v\n  a: 1\n  b:\n    c: *v\n", "p.yaml:5:5"),
        ("a: &x [1, [2, *x]]\n", "p.yaml:1:11"),
        ("vars: &v\n  <<: *v\n", "p.yaml:2:3"),
    ],
)
def test_an_alias_inside_the_value_it_names_is_refused_with_its_line(text: str, where: str) -> None:
    with pytest.raises(ProfileError, match="a cycle") as raised:
        load_yaml(text, "p.yaml")
    assert str(raised.value).startswith(
        f"{where}: an alias here refers to a value that contains it"
    )


def test_an_alias_used_twice_side_by_side_is_not_a_cycle() -> None:
    doc = load_yaml("base: &b {x: 1}\na: [*b, *b, {y: *b}]\n", "p.yaml")
    assert doc["a"][2]["y"] == {"x": 1}


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(ProfileError, match=r"nested too deeply|YAML"):
        load_yaml("a: " + "[" * 5000 + "]" * 5000 + "\n", "deep.yaml")


def test_binary_and_non_utf8_files_are_refused() -> None:
    with pytest.raises(ProfileError, match="not a text file"):
        read_profile_text("p.yaml", b"\x00\x01abc")
    with pytest.raises(ProfileError, match=r"p.yaml:2:1: not UTF-8"):
        read_profile_text("p.yaml", b"name: a\nb: \xff\xfe\n")
