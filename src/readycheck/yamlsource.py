"""YAML read safely, keeping the file, line and column of every value.

Scalars follow the YAML 1.2 core schema: only ``true``/``false`` are booleans (``on``,
``no`` and ``NO`` stay strings) and dates stay strings for the models to parse. Aliases
are allowed, but the document's expanded size is counted before anything is built, so an
alias bomb is refused in bounded time and memory.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

import yaml

from readycheck.errors import Location, Problem, ProfileError

MAX_FILE_BYTES = 2_000_000
MAX_EXPANDED_NODES = 100_000

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


# libyaml's parser when PyYAML was built with it: several times faster, and it bounds the
# nesting depth itself.
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc]
    yaml_implicit_resolvers: dict[Any, Any] = {}  # noqa: RUF012 - PyYAML's class registry


for _tag, _pattern in [
    (_BOOL, r"^(?:true|True|TRUE|false|False|FALSE)$"),
    (_INT, r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    (
        _FLOAT,
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
    ),
    (_NULL, r"^(?:~|null|Null|NULL|)$"),
    (_MERGE, r"^(?:<<)$"),
]:
    _Loader.add_implicit_resolver(_tag, re.compile(_pattern), None)


class YamlMap(dict[str, Any]):
    """A mapping that remembers where it and each of its keys' values were written."""

    location: Location
    locations: dict[str, Location]


class YamlList(list[Any]):
    """A sequence that remembers where it and each item were written."""

    location: Location
    locations: list[Location]


def read_profile_text(path: str, data: bytes) -> str:
    """Decode a profile file's bytes, refusing what is not a text file."""
    if len(data) > MAX_FILE_BYTES:
        raise ProfileError(
            Problem(
                f"the file is {len(data)} bytes; a profile may be at most {MAX_FILE_BYTES}",
                Location(path, 1, 1),
            )
        )
    if b"\x00" in data:
        raise ProfileError(Problem("not a text file (it contains NUL bytes)", Location(path, 1, 1)))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ProfileError(
            Problem("not UTF-8 text: a profile must be a UTF-8 YAML file", Location(path, line, 1))
        ) from None


def load_yaml(text: str, path: str) -> Any:
    """Parse one YAML document into YamlMap / YamlList / scalars (None when empty)."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or str(exc)
        if "expected a single document" in (exc.context or ""):
            problem = "the file holds more than one YAML document; a profile is one document"
        raise ProfileError(
            Problem(f"YAML syntax error: {problem}", _location(path, mark))
        ) from None
    except yaml.YAMLError as exc:
        raise ProfileError(Problem(f"YAML error: {exc}", Location(path, 1, 1))) from None
    except RecursionError:
        raise ProfileError(Problem("the YAML is nested too deeply", Location(path, 1, 1))) from None
    if node is None:
        return None
    _check_expanded_size(node, path)
    try:
        return _Builder(path).build(node)
    except RecursionError:
        raise ProfileError(Problem("the YAML is nested too deeply", Location(path, 1, 1))) from None


def _location(path: str, mark: yaml.Mark | None) -> Location:
    if mark is None:
        return Location(path, 1, 1)
    return Location(path, mark.line + 1, mark.column + 1)


def _check_expanded_size(root: yaml.Node, path: str) -> None:
    """Count the values the document expands to, aliases followed, without expanding it;
    refuse an alias inside the value it names (a cycle, which never ends expanding).

    Each node's size is computed once (memoised by identity), so the count is linear in
    the document even when aliases make the expansion exponential.
    """
    sizes: dict[int, int] = {}
    # Nodes whose children are being counted: every one of them encloses the node at the
    # top of the stack, so meeting one again is meeting a value inside itself.
    open_nodes: set[int] = set()
    # Iterative post-order walk: a deep document must not exhaust the Python stack.
    stack: list[tuple[yaml.Node, bool, yaml.Mark | None]] = [(root, False, None)]
    while stack:
        node, children_done, where = stack.pop()
        if id(node) in sizes:
            continue
        if not children_done and id(node) in open_nodes:
            raise ProfileError(
                Problem(
                    "an alias here refers to a value that contains it (a cycle, as in "
                    "`vars: &v {self: *v}`); a profile cannot be recursive",
                    _location(path, where or node.start_mark),
                )
            )
        children = list(_children(node))
        if not children_done:
            open_nodes.add(id(node))
            stack.append((node, True, where))
            stack.extend((child, False, mark) for child, mark in children if id(child) not in sizes)
            continue
        open_nodes.discard(id(node))
        total = 1 + sum(sizes.get(id(child), 0) for child, _ in children)
        sizes[id(node)] = total
        if total > MAX_EXPANDED_NODES:
            raise ProfileError(
                Problem(
                    f"the document expands to more than {MAX_EXPANDED_NODES} values once its "
                    "aliases are followed (an alias bomb?); refusing to load it",
                    _location(path, node.start_mark),
                )
            )


def _children(node: yaml.Node) -> Iterator[tuple[yaml.Node, yaml.Mark]]:
    """Each child, with where it is written (a mapping value: its key; an alias keeps no
    place of its own)."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield key, key.start_mark
            yield value, key.start_mark
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield item, node.start_mark


class _Builder:
    def __init__(self, path: str) -> None:
        self.path = path

    def build(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return self._sequence(node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node)
        raise self._error(node, "unsupported YAML node")

    def _error(self, node: yaml.Node, message: str) -> ProfileError:
        return ProfileError(Problem(message, _location(self.path, node.start_mark)))

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        tag, value = node.tag, node.value
        if tag in (_STR, "!"):  # "!" is what a quoted scalar resolves to
            return value
        if tag == _NULL:
            return None
        if tag == _BOOL:
            return value.lower() == "true"
        if tag == _INT:
            try:
                return int(value, 0) if value.startswith(("0o", "0x")) else int(value, 10)
            except ValueError:
                # Past Python's 4,300 digits: kept as the text written, so that the model
                # of the setting says what is wrong with it (and an argument stays text).
                return value
        if tag == _FLOAT:
            lowered = value.lower().lstrip("+")
            if lowered in (".inf", "-.inf"):
                return -math.inf if lowered.startswith("-") else math.inf
            if lowered == ".nan":
                return math.nan
            try:
                return float(value)
            except ValueError:
                raise self._error(node, f"{value!r} is not a number") from None
        raise self._error(node, f"unsupported YAML tag {tag!r}")

    def _sequence(self, node: yaml.SequenceNode) -> YamlList:
        if node.tag not in (_SEQ,):
            raise self._error(node, f"unsupported YAML tag {node.tag!r}")
        result = YamlList(self.build(item) for item in node.value)
        result.location = _location(self.path, node.start_mark)
        result.locations = [_location(self.path, item.start_mark) for item in node.value]
        return result

    def _mapping(self, node: yaml.MappingNode) -> YamlMap:
        if node.tag not in (_MAP,):
            raise self._error(node, f"unsupported YAML tag {node.tag!r}")
        result = YamlMap()
        result.location = _location(self.path, node.start_mark)
        result.locations = {}
        merged: list[YamlMap] = []
        key_nodes: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merged.extend(self._merge_sources(value_node))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise self._error(
                    key_node, "a mapping key must be a plain value, not a list or map"
                )
            key = self._scalar(key_node)
            if not isinstance(key, str):
                key = str(key).lower() if isinstance(key, bool) else str(key)
            if key in key_nodes:
                first = _location(self.path, key_nodes[key].start_mark)
                raise self._error(
                    key_node, f"duplicate key {key!r} (first written at line {first.line})"
                )
            key_nodes[key] = key_node
            result[key] = self.build(value_node)
            result.locations[key] = _location(self.path, value_node.start_mark)
        # Merge keys (<<: *base) fill in what the mapping does not set itself; the first
        # merged mapping wins over later ones, as the YAML merge-key spec says.
        for source in merged:
            for key, value in source.items():
                if key not in result:
                    result[key] = value
                    result.locations[key] = source.locations[key]
        return result

    def _merge_sources(self, node: yaml.Node) -> list[YamlMap]:
        built = self.build(node)
        sources = built if isinstance(built, list) else [built]
        if not all(isinstance(source, YamlMap) for source in sources):
            raise self._error(node, "'<<' merges a mapping or a list of mappings")
        return sources
