"""``--json``: the whole RunResult, with a ``schema_version``."""

from __future__ import annotations

import json
from typing import Any

from readycheck.redact import Redactor
from readycheck.results import RunResult


def render(result: RunResult, redactor: Redactor | None = None) -> str:
    document: dict[str, Any] = result.model_dump(mode="json")
    for check in document["checks"]:
        if check.get("traceback") is None:
            check.pop("traceback", None)
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return (redactor or Redactor()).redact(text)
