"""SIGINT, SIGTERM and SIGHUP: how a signal ends a run, whenever it arrives.

A hang-up (a closed terminal or SSH session) is taken as SIGTERM. What a signal does
depends on where the run is::

    where the run is            first signal                     another signal
    loading, before any check   exit 130 (nothing ran)           -
    checks running              orderly stop: running checks     stop now: the outputs are
                                are cancelled, the others SKIP,  skipped (none was begun),
                                the outputs are written, 130     130
    writing the outputs         they are all written, then 130   the one being written is
                                                                 finished or left as it was
                                                                 (each is atomic), the rest
                                                                 skipped, 130

On every way out, the process groups command checks started are killed (children.py).
Handlers are Python-level ones installed for the whole command, so no signal ever falls
to the default action (exit 143 or 129, half-written files, orphans) between phases.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, NoReturn

from readycheck import children

if TYPE_CHECKING:
    import asyncio

EXIT_INTERRUPTED = 130
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread by a signal that ends readycheck now; str() says what
    was left undone."""


_active: Interrupts | None = None
# True when this process is readycheck's command line (not a library user's program):
# then no signal is ever given back to its default action, not even after the command.
_process_wide = False


def take_over_process() -> None:
    """Called by the command line's entry point: the process is readycheck's."""
    global _process_wide
    _process_wide = True


class Interrupts:
    """The signal handlers of one command, from its start to its exit code."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_stop: Callable[[str], None] | None = None
        self._phase = "loading"
        self._previous: dict[int, object] = {}

    # -- the command's lifetime ----------------------------------------------------------

    def __enter__(self) -> Interrupts:
        global _active
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        _active = self
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _active
        children.end_all()
        _active = None
        for sig, previous in self._previous.items():
            signal.signal(sig, _exit_now if _process_wide else previous)  # type: ignore[arg-type]

    @property
    def interrupted(self) -> bool:
        return bool(self.received)

    def exit_code(self, code: int) -> int:
        """The code to exit with: 130 once a signal asked readycheck to stop."""
        return EXIT_INTERRUPTED if self.received else code

    @contextlib.contextmanager
    def running(
        self, loop: asyncio.AbstractEventLoop, on_stop: Callable[[str], None]
    ) -> Iterator[None]:
        """While checks run on ``loop``: a first signal calls ``on_stop(name)`` on the
        loop (an orderly stop), another ends the run now."""
        self._loop, self._on_stop, self._phase = loop, on_stop, "running"
        try:
            yield
        finally:
            self._loop, self._on_stop, self._phase = None, None, "writing"

    def writing(self) -> None:
        """From now on the outputs are being written (``readycheck report``)."""
        self._phase = "writing"

    # -- the handler ---------------------------------------------------------------------

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self.received.append(name)
        if self._phase == "loading":
            raise Interrupted(f"{name}: interrupted before any check ran")
        if len(self.received) > 1:
            children.end_all()
            left = (
                "the outputs were not written"
                if self._phase == "running"
                else "the outputs not written yet were skipped"
            )
            raise Interrupted(f"{name} again: stopped at once; {left}")
        if self._phase == "running" and self._loop is not None and self._on_stop is not None:
            # The handler runs between two bytecodes of the loop's own code: hand the stop
            # to the loop rather than touch the engine from here.
            self._loop.call_soon_threadsafe(self._on_stop, name)
        else:
            _say(f"\n{name}: finishing the outputs, then exiting (again to skip the rest)\n")


def _exit_now(signum: int, frame: FrameType | None) -> None:
    """A signal after the command's work is done, while the process exits."""
    children.end_all()
    os._exit(EXIT_INTERRUPTED)


def leave(code: object) -> NoReturn:
    """End the process with ``code`` (a SystemExit's), with the handlers still in place.

    Python gives every signal back to its default action while it shuts down, so a
    signal in that last moment would end readycheck with 143 or 129; and shutting down
    waits for threads a check may have left. Everything readycheck writes is flushed and
    closed by then, so the exit itself need not wait for anything.
    """
    import logging
    import sys

    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        _say(f"{code}\n")
        status = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    children.end_all()
    os._exit(status)


def current() -> Interrupts:
    """The handlers of the command being run; a fresh set (not installed) when readycheck
    is used as a library."""
    return _active if _active is not None else Interrupts()


def _say(text: str) -> None:
    # Straight to the descriptor: the handler may interrupt a write to sys.stderr, and
    # the buffered stream refuses a reentrant call. A closed terminal (SIGHUP) refuses
    # the write: the stop goes on regardless.
    with contextlib.suppress(OSError):
        os.write(2, text.encode())
