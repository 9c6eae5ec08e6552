"""Running the programs alembic.safety may use (squawk, pg_dump): bounded in time, killed
when the time is up or the check is cancelled, never given a terminal's stdin."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Completed:
    status: int
    out: bytes
    err: bytes

    def said(self) -> str:
        """What a failing program said: its first line naming an error, or else the last
        line of stderr (or stdout), shortened."""
        for data in (self.err, self.out):
            lines = [line.strip() for line in data.decode(errors="replace").splitlines()]
            lines = [line for line in lines if line]
            if lines:
                named = [line for line in lines if "error" in line.lower()]
                return (named or lines[-1:])[0][:200]
        return ""


async def execute(
    argv: list[str],
    *,
    timeout_s: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Completed | str:
    """Run ``argv`` to its end; a string says why it could not be (not found, too slow)."""
    import asyncio

    name = Path(argv[0]).name
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        return f"{name} could not be started ({exc.strerror or exc})"
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=timeout_s)
    except (TimeoutError, asyncio.CancelledError) as exc:
        process.kill()
        await process.wait()
        if isinstance(exc, asyncio.CancelledError):
            raise
        return f"{name} did not finish within {timeout_s:.1f} s"
    return Completed(process.returncode or 0, out, err)
