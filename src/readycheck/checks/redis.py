"""redis.ping: the cache answers, fast enough, with the expected role, version and memory.

redis-py's asyncio client is imported only when the check runs. Its retries are turned
off (each retry would wait a whole timeout again), the first PING is bounded by
``connect_timeout`` (a server that accepts and never answers must not use up the check's
time), and a failure is described from what we know (the address, whether the URL gave
a password), never from the library's message, which may carry the URL.
"""

from __future__ import annotations

import contextlib
import re
import time
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from readycheck.checks.roundtrips import BUDGET_MEANING, RoundTrips
from readycheck.params import CheckParams, PositiveDuration, SecretUrl
from readycheck.registry import check
from readycheck.results import Outcome
from readycheck.units import Duration, format_bytes, format_duration_ms

if TYPE_CHECKING:
    from readycheck.context import Context

_MARGIN_SECONDS = 0.5
_VERSION = re.compile(r"^\d+(\.\d+){0,2}$")


class PingParams(CheckParams):
    url: SecretUrl = Field(
        description="redis://[user]:password@host:6379/0 (rediss:// for TLS); its password "
        "never appears in any output.",
    )
    connect_timeout: PositiveDuration = Field(
        Duration("5s"),
        description="Give up on connecting (and the first PING) after this long and FAIL.",
    )
    max_latency: Duration = Field(
        Duration("50ms"),
        description=f"PING. {BUDGET_MEANING}",
    )
    expect_role: Literal["master", "replica"] | None = Field(
        None, description="The role the server must have (INFO replication)."
    )
    min_version: str | None = Field(
        None, description="Lowest Redis version accepted, e.g. '7.2' (quote it in YAML)."
    )
    max_memory_usage: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Highest used_memory / maxmemory accepted, e.g. 0.9 (only checked when "
        "the server has a maxmemory).",
    )

    @field_validator("min_version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        if isinstance(value, float):
            raise ValueError(
                "write the version as a string, e.g. '7.2': a YAML number loses its digits "
                "(7.10 reads as 7.1)"
            )
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and not _VERSION.match(value.strip()):
            raise ValueError(f"{value!r} is not a version such as '7.2' or '6.2.14'")
        return value.strip() if isinstance(value, str) else value


@check("redis.ping", params=PingParams, category="cache")
async def ping(p: PingParams, ctx: Context) -> Outcome:
    """Connect to Redis, PING it, and check latency, role, version and memory use."""
    import asyncio

    import redis.asyncio as aioredis
    from redis import exceptions
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    where, has_password = _address(p.url.reveal())
    usable = max(0.1, ctx.remaining() - _MARGIN_SECONDS)
    connect_limit = min(p.connect_timeout.seconds, usable)
    try:
        client = aioredis.Redis.from_url(
            p.url.reveal(),
            socket_connect_timeout=connect_limit,
            socket_timeout=usable,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
        )
    except ValueError:
        return Outcome.errored(
            "the Redis URL does not parse",
            remediation="Write it as redis://:password@host:6379/0 (rediss:// for TLS); "
            "percent-encode special characters in the password.",
        )
    try:
        started = time.perf_counter()
        try:
            await asyncio.wait_for(client.ping(), timeout=connect_limit)
        except TimeoutError:
            return Outcome.failed(
                f"{where} did not answer within {Duration(round(connect_limit, 3))} "
                "(connect_timeout)",
                remediation="Check that Redis is up and reachable from here.",
            )
        connect_ms = (time.perf_counter() - started) * 1000.0

        async def ping() -> float:
            started = time.perf_counter()
            await client.ping()
            return (time.perf_counter() - started) * 1000.0

        trips = await RoundTrips.measure(ping)
        info = await client.info()
    except exceptions.AuthenticationError:
        if has_password:
            return Outcome.failed(
                f"authentication failed at {where}: wrong password (or user)",
                remediation="Check the URL's password (or the secret it comes from).",
            )
        return Outcome.failed(
            f"authentication failed: {where} requires a password and the URL gives none",
            remediation="Put the password in the URL: redis://:${env:REDIS_PASSWORD}@host:6379/0.",
        )
    except exceptions.TimeoutError:
        return Outcome.failed(f"{where} stopped answering (timed out)")
    except exceptions.ConnectionError as exc:
        if "refused" in str(exc).lower() or "connect call failed" in str(exc).lower():
            return Outcome.failed(
                f"nothing is listening at {where} (connection refused)",
                remediation="Start Redis, or fix the host and port in the URL.",
            )
        return Outcome.failed(
            f"could not connect to {where}: {_kind(exc)}",
            remediation="Check the host, port and TLS settings of the URL.",
        )
    except exceptions.ResponseError as exc:
        return Outcome.failed(f"{where} refused a command: {ctx.redactor.redact(_first_word(exc))}")
    finally:
        with contextlib.suppress(Exception):  # closing is best effort; the verdict is made
            await client.aclose()
    return _verdict(p, info, trips, connect_ms)


def _verdict(p: PingParams, info: dict[str, Any], trips: RoundTrips, connect_ms: float) -> Outcome:
    latency = trips.fastest
    version = str(info.get("redis_version", "unknown"))
    role = "replica" if info.get("role") == "slave" else str(info.get("role", "unknown"))
    used = int(info.get("used_memory", 0))
    maxmemory = int(info.get("maxmemory", 0) or 0)
    ratio = used / maxmemory if maxmemory else None
    memory = (
        f"memory {format_bytes(used)} of maxmemory {format_bytes(maxmemory)} ({ratio:.1%})"
        if ratio is not None
        else f"memory {format_bytes(used)} (no maxmemory set)"
    )
    evidence = [
        f"Redis {version}, role {role}",
        trips.evidence("PING", p.max_latency),
        *trips.notes(p.max_latency),
        memory,
        f"connected in {format_duration_ms(connect_ms)}",
    ]
    metrics = {**trips.metrics(), "used_memory_bytes": float(used)}
    if ratio is not None:
        metrics["used_memory_ratio"] = round(ratio, 4)
    problems = []
    if trips.over(p.max_latency):
        problems.append(
            f"PING took {format_duration_ms(latency)} at the fastest of "
            f"{len(trips.samples_ms)}, over the {p.max_latency} allowed"
        )
    if p.expect_role is not None and role != p.expect_role:
        problems.append(f"role {role}, expected {p.expect_role}")
    if p.min_version is not None and _version_tuple(version) < _version_tuple(p.min_version):
        problems.append(f"Redis {version} is older than the required {p.min_version}")
    if p.max_memory_usage is not None and ratio is not None and ratio > p.max_memory_usage:
        problems.append(f"memory {ratio:.1%} of maxmemory, over {p.max_memory_usage:.0%}")
    if problems:
        return Outcome.failed("; ".join(problems), evidence=evidence, metrics=metrics)
    return Outcome.passed(
        f"Redis {version} ({role}) answered PING in {format_duration_ms(latency)}",
        evidence=evidence,
        metrics=metrics,
    )


def _address(url: str) -> tuple[str, bool]:
    """``host:port`` of a Redis URL (never its credentials), and whether it has a password."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = parts.port or 6379
        return f"{host}:{port}", bool(parts.password)
    except ValueError:
        return "the Redis server", "@" in url


def _version_tuple(text: str) -> tuple[int, ...]:
    numbers = re.findall(r"\d+", text)
    return tuple(int(number) for number in numbers[:3]) or (0,)


def _kind(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return type(exc).__name__


def _first_word(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
