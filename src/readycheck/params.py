"""The base of every check type's parameter model, and the secret-typed values.

A parameter model is the single source of truth for a check type's parameters: load-time
validation, ``readycheck explain``, the JSON Schema and the reference docs all come from
it. Models import no driver, so validating a profile stays fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict

from readycheck.redact import embedded_credentials
from readycheck.units import Duration, Size

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationInfo
    from pydantic.json_schema import JsonSchemaValue
    from pydantic_core import CoreSchema


class Secret:
    """A value that never appears in any output: ``str()`` and ``repr()`` show ``***``.

    Call :meth:`reveal` at the point of use (opening the connection, sending the header).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def redaction_values(self) -> list[str]:
        """Every string the redactor must mask for this secret."""
        return [self._value]

    def __str__(self) -> str:
        return "***"

    def __repr__(self) -> str:
        return f"{type(self).__name__}('***')"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Secret) and type(other) is type(self) and other._value == self._value
        )

    def __hash__(self) -> int:
        return hash((type(self), self._value))

    def __len__(self) -> int:
        return len(self._value)

    @classmethod
    def _validate(cls, value: object) -> Secret:
        if isinstance(value, cls):
            return value
        if isinstance(value, bool) or not isinstance(value, str | int):
            # Never echo the value: it is a secret, even when it is of the wrong type.
            kind = (
                "list"
                if isinstance(value, list)
                else "mapping"
                if isinstance(value, dict)
                else "number"
                if isinstance(value, float)
                else type(value).__name__
            )
            raise ValueError(f"expected a string, got a {kind}")
        return cls(str(value))

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda _: "***"),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "format": "password", "writeOnly": True}


class SecretDsn(Secret):
    """A connection string (URL or libpq ``key=value`` form) whose password is secret.

    The whole string and the password inside it, decoded, are masked in every output.
    """

    __slots__ = ()

    def redaction_values(self) -> list[str]:
        values = [self._value, *embedded_credentials(self._value)]
        return [value for value in values if value]

    @classmethod
    def _validate(cls, value: object) -> Secret:
        secret = super()._validate(value)
        if not secret.reveal().strip():
            raise ValueError("the connection string is empty")
        return secret

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "format": "password",
            "writeOnly": True,
            "examples": ["postgresql://app:${env:DB_PASSWORD}@db.internal:5432/app"],
        }


class SecretUrl(SecretDsn):
    """A URL whose credentials are secret (``redis://:password@host:6379/0``)."""

    __slots__ = ()

    @classmethod
    def _validate(cls, value: object) -> Secret:
        secret = super()._validate(value)
        if "://" not in secret.reveal():
            raise ValueError("expected a URL such as scheme://user:password@host:port/path")
        return secret

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "format": "password", "writeOnly": True}


class _InputFile:
    """Marks a parameter naming a file the check reads (``Annotated[str, INPUT_FILE]``):
    no output of the run may be written over it."""

    def __repr__(self) -> str:
        return "INPUT_FILE"


INPUT_FILE = _InputFile()


def _positive(value: Duration) -> Duration:
    if value.seconds <= 0:
        raise ValueError("must be longer than 0s")
    return value


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
"""A duration that must be longer than zero (a timeout)."""

_LARGEST_BUFFER = Size("1GB")


def _buffer(value: Size) -> Size:
    if value > _LARGEST_BUFFER:
        raise ValueError(f"at most {_LARGEST_BUFFER}: this much is held in memory")
    return value


BufferSize = Annotated[Size, AfterValidator(_buffer)]
"""A size readycheck holds in memory (output, a body, a message read): at most 1GB."""


PROFILE_DIR = "profile_dir"
"""The validation-context key under which the profile loader gives the profile's folder."""


def resolve_path(base_dir: Path, path: str | Path) -> Path:
    """A path from the profile, relative to the profile's folder (``~`` expanded)."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else base_dir / candidate


def profile_path(path: str, info: ValidationInfo) -> Path | None:
    """Where a path parameter points, when validated by the profile loader; ``None`` when
    validated without a profile (a model built in code), where nothing can be resolved."""
    folder = info.context.get(PROFILE_DIR) if isinstance(info.context, dict) else None
    return resolve_path(Path(folder), path) if folder is not None else None


class CheckParams(BaseModel):
    """Base class of every check type's parameters (the ``with:`` block of a check).

    Unknown keys are refused. Subclasses give every field a ``description``: it is what
    ``readycheck explain`` and the reference docs show. The loader validates them with
    the profile's folder in the validation context (:func:`profile_path`), so that a
    parameter naming a file can say, before anything runs, that it names nothing.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def secret_values(self) -> Iterator[str]:
        """Every secret string in these parameters, for the redactor.

        The default walks the fields for :class:`Secret` values; a model whose secrecy
        depends on another field (headers named in ``secret_headers``) extends it.
        """
        for name in type(self).model_fields:
            yield from _walk_secrets(getattr(self, name))

    def runtime_secrets(self, base_dir: Path) -> Iterator[str]:
        """Secrets known only once read (a mounted file, a .env entry), read before any
        check starts so that no output shows one before its own check has read it.

        Best effort and quick: a source that cannot be read yields nothing here, and its
        check reports the problem when it runs. The default asks nested models.
        """
        for name in type(self).model_fields:
            value = getattr(self, name)
            for item in value if isinstance(value, list | tuple) else [value]:
                if isinstance(item, CheckParams):
                    yield from item.runtime_secrets(base_dir)

    def input_files(self, base_dir: Path) -> Iterator[Path]:
        """The files these parameters name for reading (fields marked INPUT_FILE, nested
        models included), resolved against the profile's directory."""
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            marked = INPUT_FILE in info.metadata
            for item in value if isinstance(value, list | tuple) else [value]:
                if isinstance(item, CheckParams):
                    yield from item.input_files(base_dir)
                elif marked and isinstance(item, str) and item:
                    yield resolve_path(base_dir, item)


def _walk_secrets(value: object) -> Iterator[str]:
    if isinstance(value, Secret):
        yield from value.redaction_values()
    elif isinstance(value, CheckParams):
        yield from value.secret_values()
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _walk_secrets(getattr(value, name))
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _walk_secrets(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _walk_secrets(item)
