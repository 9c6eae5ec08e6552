"""Describing check types from their parameter models: ``explain``, the JSON Schema, docs.

The parameter model is the single source of truth; nothing here restates a parameter's
name, type, default or meaning.
"""

from __future__ import annotations

import enum
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from readycheck.params import Secret, SecretDsn, SecretUrl
from readycheck.registry import CheckType, Registry
from readycheck.units import Duration, Size

_TYPE_NAMES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    Duration: "duration",
    Size: "size",
    Secret: "secret",
    SecretDsn: "secret DSN",
    SecretUrl: "secret URL",
    type(None): "null",
    Any: "any",
}


@dataclass(frozen=True)
class ParamRow:
    name: str
    type: str
    default: str
    description: str
    required: bool


def describe_type(annotation: Any) -> str:
    """A type as a profile author reads it: ``duration``, ``list of string``, ``a | b``."""
    if annotation in _TYPE_NAMES:
        return _TYPE_NAMES[annotation]
    if isinstance(annotation, type) and issubclass(annotation, Secret):
        # A family's own secret type (PostgresDsn) reads as the kind it refines.
        return next(_TYPE_NAMES[kind] for kind in annotation.__mro__ if kind in _TYPE_NAMES)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        metadata = getattr(annotation, "__metadata__", ())
        validators = [getattr(m, "func", None) for m in metadata]
        if any(getattr(v, "__name__", "") == "validate_pattern" for v in validators):
            return "regex"
        return describe_type(args[0])
    if origin in (types.UnionType, typing.Union):
        parts = [describe_type(arg) for arg in args if arg is not type(None)]
        return " | ".join(dict.fromkeys(parts))
    if origin is typing.Literal:
        return " | ".join(str(arg) for arg in args)
    if origin in (list, tuple, set, frozenset):
        return f"list of {describe_type(args[0])}" if args else "list"
    if origin is dict:
        return f"map of {describe_type(args[0])} to {describe_type(args[1])}" if args else "map"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " | ".join(str(member.value) for member in annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.__name__
    return getattr(annotation, "__name__", str(annotation))


def describe_default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return ""
    value = (
        field.default_factory()  # type: ignore[call-arg]
        if field.default_factory is not None
        else field.default
    )
    return format_value(value)


def format_value(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def describe_field(field: FieldInfo) -> str:
    """A field's type; pydantic moves a bare ``Annotated`` type's validators into the
    field's metadata, where ``Regex`` is recognised."""
    validators = [getattr(item, "func", None) for item in field.metadata]
    if any(getattr(validator, "__name__", "") == "validate_pattern" for validator in validators):
        return "regex"
    return describe_type(field.annotation)


def param_rows(model: type[BaseModel]) -> list[ParamRow]:
    rows = []
    for name, field in model.model_fields.items():
        rows.append(
            ParamRow(
                name=field.alias or name,
                type=describe_field(field),
                default=describe_default(field),
                description=field.description or "",
                required=field.is_required(),
            )
        )
    return rows


def nested_models(model: type[BaseModel]) -> list[type[BaseModel]]:
    """Models used inside a parameter model (list items, maps), each once, in order."""
    found: dict[type[BaseModel], None] = {}

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in found:
                found[annotation] = None
                for field in annotation.model_fields.values():
                    visit(field.annotation)
            return
        for arg in typing.get_args(annotation):
            visit(arg)

    for field in model.model_fields.values():
        visit(field.annotation)
    return list(found)


def profile_schema(registry: Registry) -> dict[str, Any]:
    """The JSON Schema of a profile, each check type's ``with:`` block included."""
    from readycheck.profile import ProfileModel

    schema = ProfileModel.model_json_schema(mode="validation")
    definitions: dict[str, Any] = schema.setdefault("$defs", {})
    check_schema = definitions["CheckSpecModel"]
    check_types: list[CheckType] = registry.all()
    check_schema["properties"]["type"]["enum"] = [t.name for t in check_types]
    branches = []
    for check_type in check_types:
        prefix = f"{check_type.name}."
        params = check_type.params.model_json_schema(
            mode="validation", ref_template=f"#/$defs/{prefix}{{model}}"
        )
        for name, definition in params.pop("$defs", {}).items():
            definitions[prefix + name] = definition
        params["description"] = check_type.description
        definitions[f"{prefix}params"] = params
        branches.append(
            {
                "if": {"properties": {"type": {"const": check_type.name}}, "required": ["type"]},
                "then": {"properties": {"with": {"$ref": f"#/$defs/{prefix}params"}}},
            }
        )
    check_schema["allOf"] = branches
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://readycheck.dev/schema/profile-v1.json",
        "title": "readycheck profile",
        **schema,
    }
