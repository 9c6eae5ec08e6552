"""The git commit of the directory readycheck runs in, for the report's header."""

from __future__ import annotations

import subprocess
from pathlib import Path

from readycheck.results import GitInfo


def current_commit(directory: Path | None = None) -> GitInfo | None:
    """HEAD and whether tracked files changed; None outside a repository or without git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--verify", "HEAD"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=3,
            check=False,
        )
        if head.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=3,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = head.stdout.strip()
    if not commit:
        return None
    return GitInfo(commit=commit, dirty=bool(status.stdout.strip()))
