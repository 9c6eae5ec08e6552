"""Disk headroom: the volume a service writes to has room left (uploads, logs, WAL)."""

from __future__ import annotations

import shutil

from pydantic import Field

from readycheck import CheckParams, Context, Outcome, Size, check


class DiskFreeParams(CheckParams):
    path: str = Field(description="A path on the volume, relative to the profile's directory.")
    min_free: Size = Field(Size("1GB"), description="FAIL below this much free space.")
    warn_free: Size | None = Field(None, description="WARN below this much free space.")


@check("example.disk_free", params=DiskFreeParams, category="system")
async def disk_free(p: DiskFreeParams, ctx: Context) -> Outcome:
    """Check that a volume has free space left."""
    target = ctx.resolve(p.path)
    try:
        usage = shutil.disk_usage(target)
    except OSError as exc:
        return Outcome.failed(f"{p.path} cannot be examined: {exc.strerror or exc}")
    free_gb = usage.free / 1e9
    metrics = {"free_bytes": usage.free, "used_ratio": usage.used / usage.total}
    evidence = [f"{free_gb:.1f} GB free of {usage.total / 1e9:.1f} GB"]
    if usage.free < p.min_free.bytes:
        return Outcome.failed(
            f"only {free_gb:.1f} GB free on {p.path}, below {p.min_free}",
            evidence=evidence,
            metrics=metrics,
            remediation="Free space or grow the volume before deploying.",
        )
    if p.warn_free is not None and usage.free < p.warn_free.bytes:
        return Outcome.warned(
            f"{free_gb:.1f} GB free on {p.path}, below {p.warn_free}",
            evidence=evidence,
            metrics=metrics,
        )
    return Outcome.passed(f"{free_gb:.1f} GB free on {p.path}", evidence=evidence, metrics=metrics)
