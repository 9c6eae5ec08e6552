"""readycheck: a deployment-readiness gate.

The public names a plugin check needs are importable from here::

    from readycheck import CheckParams, Context, Duration, Outcome, Secret, check

They are resolved lazily so that ``readycheck --version`` imports neither pydantic nor
any driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_PUBLIC = {
    "check": "readycheck.registry",
    "CheckType": "readycheck.registry",
    "CheckParams": "readycheck.params",
    "Duration": "readycheck.units",
    "Size": "readycheck.units",
    "Secret": "readycheck.params",
    "SecretDsn": "readycheck.params",
    "SecretUrl": "readycheck.params",
    "Outcome": "readycheck.results",
    "Status": "readycheck.results",
    "held": "readycheck.results",
    "broken": "readycheck.results",
    "soft": "readycheck.results",
    "compared": "readycheck.results",
    "Context": "readycheck.context",
}

__all__ = [
    "CheckParams",
    "CheckType",
    "Context",
    "Duration",
    "Outcome",
    "Secret",
    "SecretDsn",
    "SecretUrl",
    "Size",
    "Status",
    "__version__",
    "broken",
    "check",
    "compared",
    "held",
    "soft",
]

if TYPE_CHECKING:
    from readycheck.context import Context
    from readycheck.params import CheckParams, Secret, SecretDsn, SecretUrl
    from readycheck.registry import CheckType, check
    from readycheck.results import Outcome, Status, broken, compared, held, soft
    from readycheck.units import Duration, Size


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'readycheck' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
