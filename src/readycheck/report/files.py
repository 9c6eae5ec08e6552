"""Writing outputs: atomically (temp file and rename), checked before the run starts."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from readycheck.errors import OutputError


def check_writable(path: Path, option: str) -> None:
    """Refuse, before anything runs, an output path that cannot be written."""
    if path.is_dir():
        raise OutputError(f"{option} {path}: is a directory; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{option} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{option} {path}: directory {parent} is not writable")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new, never half."""
    parent = path.parent if str(path.parent) else Path(".")
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)  # mkstemp makes 0600; outputs are ordinary files
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


def append_text(path: Path, text: str) -> None:
    """Append to a file others also append to (the CI step summary)."""
    try:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise OutputError(f"cannot append to {path}: {exc.strerror or exc}") from None
