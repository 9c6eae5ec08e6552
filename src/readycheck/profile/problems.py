"""Validation errors as problems a person can act on: each with its file, line and
column, the key at fault (``checks[db].with.min_version``), and no secret in it."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError

from readycheck.errors import Location, Problem
from readycheck.redact import Redactor
from readycheck.yamlsource import YamlList, YamlMap

_ECHO_INPUT = {
    "int_parsing",
    "int_type",
    "float_parsing",
    "float_type",
    "bool_parsing",
    "bool_type",
    "string_type",
    "list_type",
    "dict_type",
    "literal_error",
    "enum",
    "date_from_datetime_parsing",
    "date_parsing",
    "date_type",
    "greater_than_equal",
    "less_than_equal",
    "greater_than",
    "less_than",
    "url_parsing",
    "url_scheme",
}
_UNION_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "date", "constrained-int"}


def problems_from(
    error: ValidationError,
    raw: YamlMap,
    model: type[BaseModel],
    *,
    prefix: tuple[str | int, ...] = (),
) -> list[Problem]:
    found: dict[tuple[Location | None, str], list[str]] = {}
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        full = (*prefix, *loc)
        location = _walk(raw, full)
        key = _key_label(raw, full)
        message = _message(item, model, loc)
        messages = found.setdefault((location, key), [])
        if message not in messages:
            messages.append(message)
    keys = [key for _, key in found]
    return [
        Problem(" or ".join(messages), location, key or None)
        for (location, key), messages in found.items()
        # A union reports one error per member; the deepest says what is wrong.
        if not any(other.startswith((f"{key}.", f"{key}[")) for other in keys if key)
    ]


def _key_label(raw: YamlMap, loc: tuple[Any, ...]) -> str:
    """``checks[db].with.min_version`` for a loc of ('checks', 0, 'with', 'min_version')."""
    parts = [part for part in loc if not _is_union_tag(part)]
    label: list[str] = []
    current: Any = raw
    for part in parts:
        if isinstance(part, int) and label:
            item = current[part] if isinstance(current, YamlList) and part < len(current) else None
            name = item.get("id") or item.get("check") if isinstance(item, YamlMap) else None
            label[-1] += f"[{name}]" if isinstance(name, str) else f"[{part}]"
        else:
            label.append(str(part))
        if isinstance(current, YamlMap | YamlList):
            try:
                current = current[part]
            except (KeyError, IndexError, TypeError):
                current = None
    return ".".join(label)


def _is_union_tag(part: object) -> bool:
    return isinstance(part, str) and ("[" in part or "(" in part or part in _UNION_TAGS)


def _message(item: Any, model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    kind = item["type"]
    if kind == "extra_forbidden":
        name = str(loc[-1])
        valid = _valid_keys(model, loc[:-1])
        hint = suggest(name, valid) if valid else ""
        listing = f" (valid keys: {', '.join(sorted(valid))})" if valid and not hint else ""
        return f"unknown key {name!r}{hint}{listing}"
    if kind == "missing":
        return f"missing required key {str(loc[-1])!r}" if loc else "missing"
    if kind == "int_parsing_size":
        return f"a number of {len(str(item.get('input')))} digits is far too large here"
    message = str(item["msg"])
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind in _ECHO_INPUT and not isinstance(item.get("input"), dict | list):
        shown = _yaml_repr(item.get("input"))
        if len(shown) <= 60:
            message += f" (got {shown})"
    return message


def _yaml_repr(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _valid_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys the model accepts at ``loc`` (following nested models and lists)."""
    annotation: Any = model
    for part in loc:
        model_class = _model_in(annotation)
        if model_class is None:
            if isinstance(part, int) or _is_union_tag(part):
                annotation = _item_type(annotation)
                continue
            return []
        if isinstance(part, int) or _is_union_tag(part):
            continue
        field = _field_by_key(model_class, str(part))
        if field is None:
            return []
        annotation = field.annotation
    model_class = _model_in(annotation)
    if model_class is None:
        return []
    return [field.alias or name for name, field in model_class.model_fields.items()]


def _field_by_key(model_class: type[BaseModel], key: str) -> Any:
    for name, field in model_class.model_fields.items():
        if key in (name, field.alias):
            return field
    return None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg) if not _is_container(annotation) else None
        if found is not None:
            return found
    return None


def _is_container(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (list, dict, tuple, set, frozenset)


def _item_type(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        for arg in typing.get_args(annotation):
            if _is_container(arg):
                return _item_type(arg)
    args = typing.get_args(annotation)
    return args[-1] if args else Any


def _walk(raw: Any, loc: tuple[Any, ...]) -> Location | None:
    """The place in the YAML that ``loc`` points to, or the deepest one it reaches."""
    current = raw
    location = getattr(raw, "location", None)
    for part in loc:
        if isinstance(current, YamlMap) and isinstance(part, str) and part in current:
            location = current.locations.get(part, location)
            current = current[part]
        elif isinstance(current, YamlList) and isinstance(part, int) and 0 <= part < len(current):
            location = current.locations[part]
            current = current[part]
        elif not _is_union_tag(part):
            break
    return location


def locate(raw: YamlMap, loc: tuple[Any, ...]) -> Location | None:
    return _walk(raw, loc)


def redacted(problems: list[Problem], secrets: Iterable[str]) -> list[Problem]:
    redactor = Redactor(secrets)
    return [
        Problem(redactor.redact(p.message), p.location, redactor.redact(p.key) if p.key else None)
        for p in problems
    ]


def suggest(name: str, known: Iterable[str]) -> str:
    """``; did you mean 'x'?`` when a known name is close, else nothing."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
