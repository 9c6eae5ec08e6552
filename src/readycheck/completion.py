"""What the shell completes: check types, and the check ids and tags of a profile.

Completion runs the CLI on every <TAB>, so it reads as little as it can: the registry's
names (no check module is imported) and the profile's YAML with what it ``extends``,
without interpolating variables (an unset ``${env:X}`` must not stop a completion) or
validating anything. A profile that cannot be read completes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def matching(candidates: Iterable[str], incomplete: str) -> list[str]:
    return sorted({c for c in candidates if c.startswith(incomplete)})


def check_types(incomplete: str) -> list[str]:
    from readycheck.registry import Registry

    return matching(Registry().names(), incomplete)


def selection(profile: Path | None, incomplete: str) -> list[str]:
    """Check ids and ``tag:NAME`` for ``--only`` and ``--skip``."""
    if profile is None:
        return []
    try:
        from readycheck.profile.files import read_chain

        document, _ = read_chain(profile)
    except Exception:  # half-written, missing, not YAML: nothing to offer
        return []
    checks = document.get("checks")
    ids: set[str] = set()
    for check in checks if isinstance(checks, list) else []:
        if not isinstance(check, dict):
            continue
        if isinstance(check.get("id"), str):
            ids.add(check["id"])
        tags = check.get("tags")
        ids |= {f"tag:{tag}" for tag in (tags if isinstance(tags, list) else []) if tag}
    return matching(ids, incomplete)
