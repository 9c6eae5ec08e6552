"""Profiles made by the tests: the smallest valid ``with:`` of every built-in check type,
which of its settings are numbers, and a seeded generator of hostile variations.

The generator writes YAML text (not data), so it can also write what no YAML library
would: values of 5,000 digits, aliases inside themselves, tabs, duplicate keys.
"""

from __future__ import annotations

import json
import random
from typing import Any

from readycheck.registry import Registry
from readycheck.units import Duration, Size

# Addresses that are never reached: validation connects to nothing.
MINIMAL: dict[str, dict[str, Any]] = {
    "command": {"argv": ["true"]},
    "file": {"path": "profile.yaml"},
    "manual": {"question": "Was the rollback rehearsed?"},
    "secret.strength": {"source": {"env": "HOME"}},
    "secret.distinct": {"sources": [{"env": "HOME"}, {"env": "PATH"}]},
    "config.env": {"rules": [{"name": "HOME"}]},
    "postgres.connectivity": {"dsn": "postgresql://app:pw@db.invalid/app"},
    "postgres.pool": {"dsn": "postgresql://app:pw@db.invalid/app", "pool_size": 5},
    "postgres.schema": {"dsn": "postgresql://app:pw@db.invalid/app"},
    "postgres.indexes": {"dsn": "postgresql://app:pw@db.invalid/app"},
    "postgres.query": {"dsn": "postgresql://app:pw@db.invalid/app", "sql": "SELECT 1", "rows": 1},
    "postgres.replication": {"dsn": "postgresql://app:pw@db.invalid/app"},
    "postgres.backups": {"dsn": "postgresql://app:pw@db.invalid/app"},
    "alembic.head": {"dsn": "postgresql://app:pw@db.invalid/app"},
    "alembic.safety": {"dsn": "postgresql://app:pw@db.invalid/app", "script_location": "m"},
    "redis.ping": {"url": "redis://:pw@cache.invalid:6379/0"},
    "http.endpoint": {"url": "https://service.invalid/health"},
    "http.security_headers": {"url": "https://service.invalid/"},
    "http.request_id": {"url": "https://service.invalid/"},
    "http.error_contract": {"url": "https://service.invalid/missing"},
    "http.metrics": {"url": "https://service.invalid/metrics"},
    "http.rate_limit": {"url": "https://service.invalid/", "expect_429_within": 50},
    "http.latency": {"url": "https://service.invalid/"},
    "tls.certificate": {"url": "https://service.invalid/"},
    "websocket.handshake": {"url": "wss://service.invalid/ws"},
    "prometheus.query": {"url": "https://prometheus.invalid", "query": "up", "expect": {"==": 1}},
    "prometheus.alerts": {"url": "https://prometheus.invalid"},
}

# Check types whose run touches only this machine (with the values the generator uses).
LOCAL = ("command", "file", "config.env", "secret.strength", "secret.distinct", "manual")


def builtin_types() -> set[str]:
    return {t.name for t in Registry().all() if t.provider.startswith("readycheck ")}


def number_settings(check_type: str) -> dict[str, str]:
    """The top-level ``with:`` settings of a type that hold a number, duration or size:
    name -> kind (``int``, ``float``, ``duration`` or ``size``)."""
    params = Registry().get(check_type).params
    properties = params.model_json_schema()["properties"]
    found = {}
    for name, schema in properties.items():
        kinds = {_kind(arm) for arm in schema.get("anyOf", [schema])} - {None}
        if kinds:
            found[name] = sorted(kinds)[0]
    return found


def _kind(schema: dict[str, Any]) -> str | None:
    if schema.get("type") == "integer":
        return "int"
    if schema.get("type") == "number":
        return "float"
    if schema.get("pattern") == Duration.pattern:
        return "duration"
    if schema.get("pattern") == Size.pattern:
        return "size"
    return None


def huge(kind: str) -> str:
    """YAML text of a value of ``kind`` with 5,000 digits."""
    digits = "9" * 5000
    return {"int": digits, "float": f"{digits}.5", "duration": f"{digits}s", "size": f"{digits}MB"}[
        kind
    ]


def flow(value: Any) -> str:
    """A value as YAML flow text (JSON is YAML)."""
    return json.dumps(value)


# -- the fuzzer ----------------------------------------------------------------------------

NASTY_SCALARS = [
    "9" * 5000,
    "-" + "9" * 400,
    "1e400",
    "-1e400",
    ".nan",
    ".inf",
    "-.inf",
    "0",
    "-1",
    "0x7fffffffffffffffffff",
    "0o777777777777777777777",
    "1e-400",
    '""',
    "~",
    "true",
    '"' + "x" * 3000 + '"',
    '"\\u0000"',
    '"${env:READYCHECK_FUZZ_UNSET}"',
    '"${vars.nope}"',
    '"${secret:x}"',
    '"$${env:HOME}"',
    "[]",
    "{}",
    "[1, [2, [3]]]",
    "{a: {b: {c: d}}}",
    '"1e5s"',
    '"-1s"',
    '"99999999999999999999h"',
    '"0s"',
    '"1.5.5s"',
    '"10 s"',
    '"5GiB"',
    '"99999999999999999999TB"',
    '"(a+)+$"',
    '"^(a+)+$"',
    r"'(\w+) \1'",
    '"(?=x)"',
    '"["',
    "'é\u202e漢字'",
]
# Values that break the YAML itself: rarer, or they would hide every other mistake.
BROKEN_YAML = ['"\\ud800"', '"\\w"', "!!binary aGVsbG8=", "!custom x", "*undefined_alias"]

TOP_KEYS = ["timeout", "retries", "retry_for", "retry_interval", "severity", "needs", "tags"]


class ProfileFuzzer:
    """Seeded variations on valid profiles; each call to ``profile()`` is one YAML text."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def scalar(self) -> str:
        if self.random.random() < 0.03:
            return self.random.choice(BROKEN_YAML)
        return self.random.choice(NASTY_SCALARS)

    def with_block(self, check_type: str) -> dict[str, str]:
        """``with:`` as {key: YAML text}: the minimal one, some settings made hostile."""
        block = {key: flow(value) for key, value in MINIMAL[check_type].items()}
        settings = list(number_settings(check_type))
        for _ in range(self.random.randint(0, 3)):
            roll = self.random.random()
            if roll < 0.45 and settings:
                block[self.random.choice(settings)] = self.scalar()
            elif roll < 0.8 and block:
                block[self.random.choice(list(block))] = self.scalar()
            else:
                block[self.random.choice(["unknown", "argv", "url", "with"])] = self.scalar()
        return block

    def check(self, index: int) -> str:
        check_type = self.random.choice(sorted(MINIMAL))
        if self.random.random() < 0.05:
            check_type = self.random.choice(["nope", "http.endpiont", "", "command "])
        lines = [f"  - id: c{index}", f"    type: {check_type}"]
        for _ in range(self.random.randint(0, 2)):
            key = self.random.choice(TOP_KEYS)
            value = self.scalar() if self.random.random() < 0.7 else f"[c{index - 1}]"
            lines.append(f"    {key}: {value}")
        block = self.with_block(check_type) if check_type in MINIMAL else {"x": "1"}
        lines.append("    with:")
        lines += [f"      {key}: {value}" for key, value in block.items()]
        return "\n".join(lines)

    def profile(self) -> str:
        head = ["version: 1", "name: fuzzed"]
        roll = self.random.random()
        if roll < 0.05:
            head.append("vars: &v {self: *v}")
        elif roll < 0.1:
            head.append(f"defaults: {{timeout: {self.scalar()}}}")
        elif roll < 0.15:
            head.append(f"gate: {{regression: {self.scalar()}}}")
        elif roll < 0.18:
            head.append("\tname: tabbed")
        elif roll < 0.2:
            head.append("name: twice")
        checks = [self.check(i) for i in range(self.random.randint(1, 3))]
        return "\n".join([*head, "checks:", *checks]) + "\n"

    def runnable_profile(self) -> str:
        """A profile of local checks with hostile settings, safe to run here."""
        checks = []
        for index in range(self.random.randint(1, 3)):
            check_type = self.random.choice(LOCAL)
            block = self.with_block(check_type)
            if check_type == "command":
                block["argv"] = flow(self.random.choice([["true"], ["false"], ["echo", "a" * 41]]))
            block.pop("with", None)
            block.pop("url", None)
            checks.append(
                "\n".join(
                    [f"  - id: c{index}", f"    type: {check_type}", "    timeout: 5s", "    with:"]
                    + [f"      {key}: {value}" for key, value in block.items()]
                )
            )
        return "version: 1\nname: fuzzed\nchecks:\n" + "\n".join(checks) + "\n"
