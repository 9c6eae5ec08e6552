"""The process groups that command checks start, ended on every way out of readycheck.

Each command runs in a session (and process group) of its own, so that what it puts in
the background can be found again: the command check kills the whole group when it ends
(normally, at its timeout, or cancelled). This registry is the net under that: whatever
group is still here when readycheck exits (a signal, an abandoned check, the interpreter
shutting down) is killed too. A process that leaves its group on purpose (``setsid``, a
daemon's double fork) is out of reach, as it is for a shell's job control.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal

_GROUPS: set[int] = set()


def started(pgid: int) -> None:
    """Remember a process group a check started (its leader's pid)."""
    _GROUPS.add(pgid)


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to every process of the group; nothing when none is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def end(pgid: int) -> None:
    """Kill whatever is left of the group (children in the background included)."""
    signal_group(pgid, signal.SIGKILL)
    _GROUPS.discard(pgid)


def end_all() -> None:
    """Kill every group still running: readycheck is on its way out."""
    for pgid in list(_GROUPS):
        end(pgid)


def running() -> set[int]:
    """The groups not ended yet (for the tests)."""
    return set(_GROUPS)


atexit.register(end_all)
