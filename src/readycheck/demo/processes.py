"""Server processes readycheck owns for a while: private temp dirs, free ports, start,
wait, stop.

Used by ``readycheck demo`` (its PostgreSQL and Redis) and by the test suite's server
fixtures, which start the same servers. Every server started here:

- runs in a session of its own, so a Ctrl-C in the terminal reaches readycheck (or pytest)
  alone, which then stops the server in its own time, after what still uses it;
- is sent ``parent_death_signal`` by the kernel if the Python process dies without running
  its finalizers (SIGKILL, OOM killer), so no server outlives its owner (Linux only);
- writes its output to a log file in its temp dir, whose tail goes into every start-up error;
- lives in a temp dir named ``readycheck-<kind>-<pid>-*``; dirs left behind by a process
  that was killed are swept the next time a server starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from readycheck.errors import ReadycheckError

TEMP_PREFIX = "readycheck-"
# kind is lowercase words joined by "-" (demo, demo-pg, test-redis), then the owner's pid.
_TEMP_NAME = re.compile(rf"^{re.escape(TEMP_PREFIX)}[a-z]+(?:-[a-z]+)*-(?P<pid>\d+)-")
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class ServerStartError(ReadycheckError):
    """A server could not be started; the message names the command and has its log tail."""


@dataclass(frozen=True)
class Account:
    """The system account a server runs as when readycheck runs as root."""

    name: str
    uid: int
    gid: int


def unprivileged_account() -> Account | None:
    """The account to drop to when running as root, or None when we already are unprivileged.

    initdb and postgres refuse to run as root. Debian's postgresql package creates a
    ``postgres`` account; ``nobody`` exists everywhere else. Creating an account of our own
    (as pgserver does with useradd) would change the machine, so we do not.
    """
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return Account(name=name, uid=entry.pw_uid, gid=entry.pw_gid)
    raise ServerStartError(
        "running as root, and neither a 'postgres' nor a 'nobody' account exists to run "
        "the server as; create one (useradd --system postgres) or run as another user"
    )


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now; the caller retries if another process wins it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def private_temp_dir(kind: str, account: Account | None) -> Path:
    """A new temp dir ``readycheck-<kind>-<pid>-*``, owned by ``account`` when there is one."""
    base = Path(tempfile.gettempdir())
    if account is not None and not reachable_by(base, account):
        # $TMPDIR under /root, say: the server account could not enter it.
        base = Path("/tmp")
    _remove_stale_temp_dirs(base)
    path = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{kind}-{os.getpid()}-", dir=base))
    if account is not None:
        os.chown(path, account.uid, account.gid)
    return path


def _remove_stale_temp_dirs(base: Path) -> None:
    for entry in base.glob(f"{TEMP_PREFIX}*"):
        match = _TEMP_NAME.match(entry.name)
        if match and entry.is_dir() and not _process_exists(int(match["pid"])):
            shutil.rmtree(entry, ignore_errors=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    # A killed process can linger as a zombie until its new parent reaps it.
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def reachable_by(path: Path, account: Account) -> bool:
    """Whether ``account`` may traverse every directory from / down to ``path``."""
    for directory in [path, *path.parents]:
        mode = directory.stat()
        if mode.st_uid == account.uid:
            bit = stat.S_IXUSR
        elif mode.st_gid == account.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not mode.st_mode & bit:
            return False
    return True


def _child_setup(parent_death_signal: signal.Signals) -> Callable[[], None] | None:
    """A preexec_fn that asks the kernel to signal the child when this process dies."""
    if not sys.platform.startswith("linux"):
        return None
    # Looked up before fork: the child should only make the call.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def set_parent_death_signal() -> None:
        # subprocess changes uid/gid before calling us, and a credential change clears the
        # setting, so it must be made here rather than inherited.
        prctl(_PR_SET_PDEATHSIG, int(parent_death_signal), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), parent_death_signal)

    return set_parent_death_signal


def _tail(path: Path, lines: int = 40, *, offset: int = 0) -> str:
    try:
        with path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def run_tool(
    argv: Sequence[str | Path],
    *,
    log_path: Path,
    account: Account | None,
    env: Mapping[str, str],
    timeout: float = 60.0,
) -> None:
    """Run a one-shot command (initdb) as ``account``; raise with its output if it fails."""
    command = [str(arg) for arg in argv]
    with log_path.open("ab") as log:
        log.write(f"$ {' '.join(command)}\n".encode())
        log.flush()
        try:
            completed = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env),
                timeout=timeout,
                check=False,
                user=None if account is None else account.uid,
                group=None if account is None else account.gid,
                extra_groups=None if account is None else [],
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServerStartError(
                f"{command[0]} failed: {exc}\n--- {log_path} ---\n{_tail(log_path)}"
            ) from exc
    if completed.returncode != 0:
        raise ServerStartError(
            f"{' '.join(command)} exited with code {completed.returncode}"
            f"\n--- {log_path} ---\n{_tail(log_path)}"
        )


class ServerProcess:
    """A long-running server process, its log, and how to stop it."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        *,
        name: str,
        log_path: Path,
        log_offset: int,
        stop_signal: int,
    ) -> None:
        self.popen = popen
        self.name = name
        self.log_path = log_path
        self._log_offset = log_offset  # where this process's output starts in a shared log
        self._stop_signal = stop_signal

    @classmethod
    def start(
        cls,
        argv: Sequence[str | Path],
        *,
        name: str,
        log_path: Path,
        account: Account | None,
        env: Mapping[str, str],
        stop_signal: signal.Signals = signal.SIGTERM,
        parent_death_signal: signal.Signals = signal.SIGKILL,
        cwd: Path | None = None,
        pass_fds: Sequence[int] = (),
    ) -> ServerProcess:
        command = [str(arg) for arg in argv]
        with log_path.open("ab") as log:
            log.write(f"$ {' '.join(command)}\n".encode())
            log.flush()
            log_offset = log.tell()
            popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=cwd,
                pass_fds=pass_fds,
                start_new_session=True,
                preexec_fn=_child_setup(parent_death_signal),
                user=None if account is None else account.uid,
                group=None if account is None else account.gid,
                extra_groups=None if account is None else [],
            )
        return cls(
            popen, name=name, log_path=log_path, log_offset=log_offset, stop_signal=stop_signal
        )

    def is_running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines this process wrote (not earlier attempts sharing the log)."""
        return _tail(self.log_path, lines, offset=self._log_offset)

    def wait_until_ready(self, probe: Callable[[], bool], *, timeout: float) -> None:
        """Poll ``probe`` until it returns True; raise with the log tail on exit or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            code = self.popen.poll()
            if code is not None:
                raise ServerStartError(
                    f"{self.name} exited with code {code} while starting"
                    f"\n--- {self.log_path} ---\n{self.log_tail()}"
                )
            if probe():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise ServerStartError(
                    f"{self.name} did not accept connections within {timeout:g} s"
                    f"\n--- {self.log_path} ---\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to shut down; kill it if it has not within ``timeout`` seconds."""
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(self._stop_signal)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout)


def start_on_free_port(
    launch: Callable[[int], ServerProcess],
    ready: Callable[[int], bool],
    *,
    host: str,
    timeout: float,
    attempts: int = 3,
) -> tuple[int, ServerProcess]:
    """Start a server on a free port and wait until ``ready(port)``.

    Another process can take the port between our probe and the server's bind; then the
    server exits with "Address already in use" and we try another port.
    """
    for _attempt in range(attempts):
        port = free_tcp_port(host)
        process = launch(port)
        try:
            process.wait_until_ready(functools.partial(ready, port), timeout=timeout)
        except ServerStartError:
            if "Address already in use" in process.log_tail():
                continue
            raise
        except BaseException:
            # Ctrl-C while waiting: the caller never gets the process, so stop it here.
            process.stop()
            raise
        return port, process
    raise ServerStartError(
        f"{process.name} found no free port in {attempts} tries\n{process.log_tail()}"
    )
