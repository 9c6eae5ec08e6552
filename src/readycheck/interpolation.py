"""``${env:NAME}``, ``${env:NAME:-default}`` and ``${vars.name}`` in profile values.

Interpolation applies to string values only (never to keys). ``$${`` writes a literal
``${``. A value that is exactly one ``${vars.x}`` keeps the variable's type, so
``port: ${vars.port}`` stays a number. ``:-`` follows the shell: the default is used when
the variable is unset or empty. Values read from variables whose names look secret
(``DB_PASSWORD``, ``API_TOKEN``) are reported to the caller for redaction.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from readycheck.errors import Location, Problem
from readycheck.redact import embedded_credentials, looks_secret, url_has_credentials
from readycheck.yamlsource import YamlList, YamlMap

_REFERENCE = re.compile(r"\$(\$?)\{([^}]*)\}")
_ENV = re.compile(r"^env:([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$", re.DOTALL)
_VAR = re.compile(r"^vars\.([A-Za-z_][A-Za-z0-9_-]*)$")


@dataclass
class Interpolator:
    environ: Mapping[str, str]
    variables: Mapping[str, Any]
    problems: list[Problem] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)

    def value(self, value: Any, location: Location | None, key: str | None = None) -> Any:
        """Interpolate one value (recursing into maps and lists); ``key`` is its path,
        like ``checks[db].with.dsn``, for messages."""
        if isinstance(value, YamlMap):
            for name in list(value):
                child = f"{key}.{name}" if key else name
                value[name] = self.value(value[name], value.locations.get(name), child)
            return value
        if isinstance(value, YamlList):
            for index, item in enumerate(value):
                label = item.get("id") or item.get("check") if isinstance(item, YamlMap) else None
                child = f"{key}[{label if isinstance(label, str) else index}]"
                value[index] = self.value(item, value.locations[index], child)
            return value
        if isinstance(value, str) and "${" in value:
            return self._string(value, location, key)
        return value

    def _string(self, text: str, location: Location | None, key: str | None) -> Any:
        whole = _REFERENCE.fullmatch(text)
        if whole and not whole.group(1):
            var = _VAR.match(whole.group(2).strip())
            if var and var.group(1) in self.variables:
                return self.variables[var.group(1)]

        def replace(match: re.Match[str]) -> str:
            if match.group(1):  # $${...} is a literal ${...}
                return "${" + match.group(2) + "}"
            resolved = self._reference(match.group(2).strip(), location, key)
            return "" if resolved is None else str(resolved)

        return _REFERENCE.sub(replace, text)

    def _reference(self, reference: str, location: Location | None, key: str | None) -> Any:
        env = _ENV.match(reference)
        if env:
            name, default = env.group(1), env.group(2)
            value = self.environ.get(name)
            if value is None or (value == "" and default is not None):
                if default is None:
                    self.problems.append(
                        Problem(
                            f"environment variable {name} is not set; set it, or give a "
                            f"default with ${{env:{name}:-default}}",
                            location,
                            key,
                        )
                    )
                    return None
                value = default
            if looks_secret(name) or url_has_credentials(value):
                # The password inside a DSN too: a program may print it on its own.
                self.secrets.update({value, *embedded_credentials(value)})
            return value
        var = _VAR.match(reference)
        if var:
            name = var.group(1)
            if name not in self.variables:
                known = ", ".join(sorted(self.variables)) or "none are defined"
                self.problems.append(
                    Problem(f"unknown variable vars.{name} (known: {known})", location, key)
                )
                return None
            return self.variables[name]
        self.problems.append(
            Problem(
                f"cannot interpolate ${{{reference}}}: write ${{env:NAME}}, "
                "${env:NAME:-default} or ${vars.name} (and $${ for a literal ${)",
                location,
                key,
            )
        )
        return None
