"""Writing outputs without damaging what is at the path.

What an output path names decides how it is written::

    "-"                                     standard output
    a path that does not exist yet,         a temporary file in the same directory, flushed
    or a regular file                       and fsynced, given the target's mode (and owner,
                                            when we may), renamed over the target: a reader
                                            sees the old file or the new, never half of one
    a symlink                               the same rule on the file it resolves to; the
                                            link stays a link
    anything else: a character device,      opened and written in place, never created,
    a FIFO, a socket, /dev/stdout,          replaced or removed (a FIFO with no reader is
    /dev/fd/N, /proc/self/fd/N              waited for, a bounded time)

Every output is checked before any check runs (:func:`check_outputs`): its directory
exists and takes a new file, it is not a directory, not the profile or one of its inputs,
and no two outputs share a path. A write that fails midway leaves the previous file as it
was and raises :class:`OutputError` naming the output and the operating system's reason.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import select
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from readycheck.errors import OutputError

STDOUT = "-"
FIFO_READER_WAIT_SECONDS = 10.0
"""How long a FIFO without a reader is waited for before its output fails."""
STALLED_WRITE_SECONDS = 30.0
"""How long a write in place may make no progress (a reader that stopped reading)."""
_MAX_SYMLINKS = 40  # as the kernel's own limit on a path's symlinks

# Names of an already open stream rather than of a file: writing through them must reach
# that stream, never replace the file it happens to be.
_STREAM_ALIAS = re.compile(
    r"^/(dev/(stdin|stdout|stderr|fd/\d+)|proc/(self|thread-self|\d+)/fd/\d+)$"
)

Kind = Literal["stdout", "replace", "in_place"]


@dataclass(frozen=True)
class Destination:
    """Where one output goes, and how it is written there."""

    option: str
    given: str
    """The path as the user wrote it (what messages show)."""
    kind: Kind
    path: Path | None = None
    """The file a replace writes (a symlink's target) or the special file written in place."""
    identity: tuple[int, int] | None = None
    """(device, inode) of what is there now, when something is."""
    char_device: bool = False

    @property
    def label(self) -> str:
        return f"{self.option} {self.given}"


def destination(option: str, given: str) -> Destination:
    """Classify an output path; raise OutputError for one that cannot be written."""
    if given == STDOUT:
        return Destination(option, given, "stdout", identity=_fd_identity(1))
    if not given:
        raise OutputError(f"{option}: give a file name (or '-' for standard output)")
    path = Path(given)
    if _through_stream_alias(option, given, path):
        return _in_place(option, given, path)
    try:
        info = path.stat()
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise OutputError(f"{option} {given}: {_reason(exc)}") from None
    if info is None:
        target = Path(os.path.realpath(path))  # a dangling symlink: its target is created
        return Destination(option, given, "replace", target)
    if stat.S_ISDIR(info.st_mode):
        raise OutputError(f"{option} {given}: is a directory; give a file name")
    if stat.S_ISREG(info.st_mode):
        target = Path(os.path.realpath(path))
        return Destination(option, given, "replace", target, (info.st_dev, info.st_ino))
    return _in_place(option, given, path, info)


def _in_place(
    option: str, given: str, path: Path, info: os.stat_result | None = None
) -> Destination:
    try:
        info = info or path.stat()
    except OSError as exc:
        raise OutputError(f"{option} {given}: {_reason(exc)}") from None
    return Destination(
        option,
        given,
        "in_place",
        path,
        (info.st_dev, info.st_ino),
        char_device=stat.S_ISCHR(info.st_mode),
    )


def _through_stream_alias(option: str, given: str, path: Path) -> bool:
    """Whether the path, or a symlink on the way to its file, names an open stream."""
    current = os.path.abspath(path)
    for _ in range(_MAX_SYMLINKS):
        if _STREAM_ALIAS.match(current):
            return True
        if not os.path.islink(current):
            return False
        link = os.readlink(current)
        current = os.path.normpath(os.path.join(os.path.dirname(current), link))
    raise OutputError(f"{option} {given}: too many levels of symbolic links")


def check_outputs(
    outputs: Mapping[str, str | None], inputs: Iterable[tuple[str, Path]] = ()
) -> list[Destination]:
    """Refuse, before anything runs, outputs that could not be written or would damage
    something: the profile or an input, a directory, a path given twice, two streams.

    ``outputs`` maps each option to its path (None: not asked for); ``inputs`` are the
    files the run reads, each with how a message names it ("the profile").
    """
    found = [destination(option, given) for option, given in outputs.items() if given]
    to_stdout = [d.option for d in found if d.kind == "stdout"]
    if len(to_stdout) > 1:
        raise OutputError(
            f"{' and '.join(to_stdout)} {'both' if len(to_stdout) == 2 else 'all'} ask for "
            "standard output ('-'); one output at most can go there, give the others "
            "file names"
        )
    read = [(role, _identity(path), _real(path)) for role, path in inputs]
    for dest in found:
        for role, identity, real in read:
            if (identity is not None and identity == dest.identity) or (
                dest.kind == "replace" and real is not None and real == dest.path
            ):
                raise OutputError(
                    f"{dest.label}: is {role}; writing the output there would overwrite it"
                )
        if dest.kind == "replace":
            assert dest.path is not None
            _check_directory(dest)
        elif dest.kind == "in_place":
            assert dest.path is not None
            if not os.access(dest.path, os.W_OK):
                raise OutputError(f"{dest.label}: not writable")
    _refuse_shared_paths(found)
    return found


def _refuse_shared_paths(found: list[Destination]) -> None:
    seen: dict[object, Destination] = {}
    for dest in found:
        # Several outputs may go to one character device (/dev/null): each write is
        # whole and harmless there. Anything else would end up holding only the last.
        if dest.char_device:
            continue
        keys: list[object] = []
        if dest.identity is not None:
            keys.append(dest.identity)
        if dest.kind == "replace":
            keys.append(dest.path)
        for key in keys:
            if key in seen:
                first = seen[key]
                raise OutputError(
                    f"{first.label} and {dest.label} name the same file; "
                    "give each output a path of its own"
                )
            seen[key] = dest


def _check_directory(dest: Destination) -> None:
    assert dest.path is not None
    parent = shown = dest.path.parent
    if not parent.is_dir():
        raise OutputError(f"{dest.label}: directory {shown} does not exist")
    # Try it: permissions, ACLs, a read-only or full filesystem all answer here.
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{dest.path.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise OutputError(
            f"{dest.label}: cannot create a file in {shown}: {_reason(exc)}"
        ) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def write_output(option: str, given: str, text: str) -> Destination:
    """Write one output by the rule for what is at the path now; raise OutputError."""
    dest = destination(option, given)
    data = text.encode("utf-8")
    try:
        if dest.kind == "stdout":
            _write_stdout(data)
        elif dest.kind == "replace":
            assert dest.path is not None
            _replace(dest.path, data)
        else:
            assert dest.path is not None
            _write_in_place(dest.path, data)
    except OSError as exc:
        kept = " (the previous file is unchanged)" if dest.kind == "replace" else ""
        raise OutputError(f"{dest.label}: not written: {_reason(exc)}{kept}") from None
    return dest


def write_atomic(path: Path, text: str, option: str = "file") -> None:
    """Write a file a reader sees whole or not at all (the profile ``init`` writes)."""
    write_output(option, str(path), text)


def _write_stdout(data: bytes) -> None:
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # a text-only stream put in place of stdout (an embedding program)
        sys.stdout.write(data.decode("utf-8"))
    else:
        buffer.write(data)
        buffer.flush()
    sys.stdout.flush()


def _replace(target: Path, data: bytes) -> None:
    try:
        before: os.stat_result | None = target.stat()
    except FileNotFoundError:
        before = None
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if before is not None:
            os.chmod(temp, stat.S_IMODE(before.st_mode))
            if (before.st_uid, before.st_gid) != (os.geteuid(), os.getegid()):
                with contextlib.suppress(OSError):  # only root may give a file away
                    os.chown(temp, before.st_uid, before.st_gid)
        else:
            os.chmod(temp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are ordinary
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_directory(target.parent)


def _write_in_place(path: Path, data: bytes) -> None:
    fd = _open_in_place(path)
    try:
        info = os.fstat(fd)
        if stat.S_ISSOCK(info.st_mode):  # pragma: no cover - handled by _open_in_place
            raise OSError(errno.ENXIO, "is a socket")
        _write_all(fd, data)
    finally:
        os.close(fd)


def _open_in_place(path: Path) -> int:
    """Open a special file for writing without creating, truncating or blocking on it."""
    if stat.S_ISSOCK(os.stat(path).st_mode):
        return _connect_socket(path)
    flags = os.O_WRONLY | os.O_APPEND | os.O_NOCTTY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    waited_until = time.monotonic() + FIFO_READER_WAIT_SECONDS
    while True:
        try:
            return os.open(path, flags)
        except OSError as exc:
            # A FIFO opened for writing with no reader: wait a while for one to come.
            if exc.errno != errno.ENXIO or time.monotonic() >= waited_until:
                if exc.errno == errno.ENXIO:
                    raise OSError(
                        errno.ENXIO,
                        f"no process read the FIFO within {FIFO_READER_WAIT_SECONDS:g}s",
                    ) from None
                raise
            time.sleep(0.05)


def _connect_socket(path: Path) -> int:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(FIFO_READER_WAIT_SECONDS)
    try:
        client.connect(str(path))
    except OSError:
        client.close()
        raise
    client.setblocking(False)
    return client.detach()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            _, ready, _ = select.select([], [fd], [], STALLED_WRITE_SECONDS)
            if not ready:
                raise OSError(
                    errno.ETIMEDOUT,
                    f"the reader took nothing for {STALLED_WRITE_SECONDS:g}s",
                ) from None
            continue
        view = view[written:]


def open_log(option: str, given: str) -> IO[str]:
    """A text stream to append a log to, by the same rules as the outputs (``--log``)."""
    dest = destination(option, given)
    try:
        if dest.kind == "stdout":
            return os.fdopen(os.dup(1), "a", encoding="utf-8")
        assert dest.path is not None
        if dest.kind == "in_place":
            fd = _open_in_place(dest.path)
            os.set_blocking(fd, True)
            return os.fdopen(fd, "a", encoding="utf-8")
        return dest.path.open("a", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"{dest.label}: {_reason(exc)}") from None


def append_text(path: Path, text: str) -> None:
    """Append to a file others also append to (the CI step summary)."""
    try:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise OutputError(f"cannot append to {path}: {_reason(exc)}") from None


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; not every filesystem can, and that is no error."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_dev, info.st_ino)


def _fd_identity(fd: int) -> tuple[int, int] | None:
    try:
        info = os.fstat(fd)
    except OSError:
        return None
    return (info.st_dev, info.st_ino)


def _real(path: Path) -> Path | None:
    try:
        return Path(os.path.realpath(path))
    except OSError:
        return None


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


class GuardedStream:
    """A text stream (the console's) whose failures end its output, not the run.

    A full disk, a closed pipe or a vanished terminal under standard output must not turn
    a finished run into an internal error: the first failure is kept (:attr:`error`),
    later writes are dropped, and the CLI names it once on standard error.
    """

    def __init__(self, stream: IO[str], name: str) -> None:
        self._stream = stream
        self.name = name
        self.error: OSError | None = None

    def write(self, text: str) -> int:
        if self.error is None:
            try:
                self._stream.write(text)
            except OSError as exc:
                self._failed(exc)
        return len(text)

    def flush(self) -> None:
        if self.error is None:
            try:
                self._stream.flush()
            except OSError as exc:
                self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        self.error = exc
        # Leave nothing for the interpreter's own flush at exit to trip over (a broken
        # pipe would print "Exception ignored" there): the stream's buffer is dropped.
        with contextlib.suppress(OSError, ValueError):
            fileno = self._stream.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fileno)
            os.close(devnull)

    @property
    def failure(self) -> str | None:
        """Why the stream stopped taking output, for a message; None while it works."""
        return None if self.error is None else f"{self.name}: not written: {_reason(self.error)}"

    def isatty(self) -> bool:
        return self.error is None and self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)
