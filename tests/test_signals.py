"""Signals and child processes: readycheck run as a real process, sent real signals.

Each command under test writes its process group's id to a file, and starts a child in
the background that lets go of the output (the kind a pipe alone would not catch). After
readycheck is done, no process of that group may be left (zombies aside: they are dead,
waiting for their new parent to reap them).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import RunCheck

# A command whose group outlives it unless it is killed as a group: a background sleep
# with its output sent elsewhere, then a long sleep in the foreground.
TREE = "sleep 300 >/dev/null 2>&1 & echo $$ > {group}; sleep {seconds}"
SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]


def living(pgid: int) -> list[int]:
    """The processes of group ``pgid`` that are not zombies."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def wait_until(condition: Callable[[], object], what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.02)


def assert_group_ended(group_file: Path) -> None:
    pgid = int(group_file.read_text())
    # SIGKILL was sent before readycheck exited; the kernel may take a moment to deliver it.
    wait_until(lambda: not living(pgid), f"process group {pgid} still has {living(pgid)}", 10)


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def output(self) -> str:
        return self.stdout.read_text() + self.stderr.read_text()

    def finish(self) -> int:
        return self.process.wait(timeout=60)


@pytest.fixture
def start(tmp_path: Path, subprocess_env: dict[str, str]) -> Iterator[Callable[..., Running]]:
    """Start ``readycheck run`` with arguments; its output goes to files."""
    started: list[subprocess.Popen[bytes]] = []

    def run(*args: str | Path) -> Running:
        out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "readycheck", "run", *map(str, args)],
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                env=subprocess_env,
                cwd=tmp_path,
            )
        started.append(process)
        return Running(process, out, err)

    yield run
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_a_signal_stops_the_run_writes_the_outputs_and_ends_every_process_of_the_command(
    sig: signal.Signals,
    start: Callable[..., Running],
    write_profile: Callable[..., Path],
    tmp_path: Path,
) -> None:
    group = tmp_path / "group"
    path = write_profile(
        f"""
        checks:
          - {{id: quick, type: test.sleep}}
          - id: tree
            type: command
            needs: [quick]
            timeout: 60s
            with: {{argv: "{TREE.format(group=group, seconds=200)}", shell: true}}
        """
    )
    out, report = tmp_path / "r.json", tmp_path / "r.md"
    run = start(path, "--json", out, "--report", report)
    wait_until(group.exists, "the command to start")
    run.process.send_signal(sig)
    assert run.finish() == 130, run.output()
    assert "Traceback" not in run.output()
    assert f"{sig.name}: stopping the running checks" in run.output()
    document = json.loads(out.read_text())
    assert document["verdict"] == "INTERRUPTED"
    assert {c["id"]: c["status"] for c in document["checks"]} == {"quick": "PASS", "tree": "ERROR"}
    assert "INTERRUPTED" in report.read_text()
    assert_group_ended(group)


def test_a_second_signal_ends_the_stop_at_once_leaving_no_half_file(
    start: Callable[..., Running], write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    group = tmp_path / "group"
    path = write_profile(
        f"""
        checks:
          # Ignores being cancelled: the orderly stop waits for it, a second signal does not.
          - {{id: stubborn, type: test.stubborn, timeout: 60s, with: {{seconds: 60}}}}
          - id: tree
            type: command
            timeout: 60s
            with: {{argv: "{TREE.format(group=group, seconds=200)}", shell: true}}
        """
    )
    report = tmp_path / "r.md"
    report.write_text("the previous report\n")
    run = start(path, "--json", tmp_path / "r.json", "--report", report)
    wait_until(group.exists, "the command to start")
    run.process.send_signal(signal.SIGTERM)
    wait_until(lambda: "stopping the running checks" in run.output(), "the stop to begin")
    run.process.send_signal(signal.SIGTERM)
    assert run.finish() == 130, run.output()
    assert "Traceback" not in run.output()
    assert "SIGTERM again: stopped at once" in run.output()
    # Whatever the second signal interrupted, no file is half written: the outputs were
    # skipped (the usual case: the stubborn check holds the stop for its 2 s of grace), or,
    # on a machine slow enough that the stop had reached the outputs, each is whole.
    results = tmp_path / "r.json"
    if "the outputs were not written" in run.output():
        assert not results.exists()
        assert report.read_text() == "the previous report\n"
    else:
        assert not results.exists() or json.loads(results.read_text())["verdict"]
        text = report.read_text()
        assert text == "the previous report\n" or text.rstrip().endswith("|")
    assert not list(tmp_path.glob(".r.*"))
    assert_group_ended(group)


def _stalled_fifo(path: Path) -> int:
    """A FIFO at ``path`` whose reader holds at most one page and reads nothing yet."""
    os.mkfifo(path)
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    fcntl.fcntl(reader, 1031, 4096)  # F_SETPIPE_SZ: the smallest pipe, quick to fill
    return reader


def _queued(fd: int) -> int:
    size = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, size)
    return int.from_bytes(size, sys.byteorder)


def _drain(fd: int) -> bytes:
    data = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(0.02)
            continue
        if not chunk:
            return data
        data += chunk


def _writing_outputs(tmp_path: Path, write_profile: Callable[..., Path]) -> tuple[Path, int]:
    """A profile of enough checks that its JSON outgrows the FIFO it is written to."""
    checks = "\n".join(f"  - {{id: check-{i}, type: test.sleep}}" for i in range(60))
    path = write_profile(f"checks:\n{checks}\n")
    return path, _stalled_fifo(tmp_path / "results.fifo")


def test_a_signal_while_the_outputs_are_written_lets_them_finish_then_exits_130(
    start: Callable[..., Running], write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    path, reader = _writing_outputs(tmp_path, write_profile)
    report = tmp_path / "r.md"
    run = start(path, "--json", tmp_path / "results.fifo", "--report", report)
    try:
        wait_until(lambda: _queued(reader) >= 4096, "the JSON to fill the FIFO")
        run.process.send_signal(signal.SIGTERM)
        wait_until(lambda: "finishing the outputs" in run.output(), "the signal to be taken")
        document = json.loads(_drain(reader))
    finally:
        os.close(reader)
    assert run.finish() == 130, run.output()
    assert "Traceback" not in run.output()
    assert document["verdict"] == "READY"
    assert "READY" in report.read_text()


def test_a_second_signal_while_the_outputs_are_written_skips_the_rest_and_exits_130(
    start: Callable[..., Running], write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    path, reader = _writing_outputs(tmp_path, write_profile)
    report = tmp_path / "r.md"
    report.write_text("the previous report\n")
    run = start(path, "--json", tmp_path / "results.fifo", "--report", report)
    try:
        wait_until(lambda: _queued(reader) >= 4096, "the JSON to fill the FIFO")
        run.process.send_signal(signal.SIGTERM)
        wait_until(lambda: "finishing the outputs" in run.output(), "the signal to be taken")
        run.process.send_signal(signal.SIGHUP)
        assert run.finish() == 130, run.output()
    finally:
        os.close(reader)
    assert "Traceback" not in run.output()
    assert "SIGHUP again: stopped at once; the outputs not written yet were skipped" in (
        run.output()
    )
    assert report.read_text() == "the previous report\n"
    assert not list(tmp_path.glob(".r.*"))


def test_a_signal_while_the_profile_loads_exits_130(
    start: Callable[..., Running], tmp_path: Path
) -> None:
    # A FIFO as the profile: readycheck waits in reading it until the test writes.
    profile = tmp_path / "profile.yaml"
    os.mkfifo(profile)
    run = start(profile)
    writer = None

    def reading() -> bool:
        nonlocal writer
        try:
            writer = os.open(profile, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: nobody has it open for reading yet
            return False
        return True

    try:
        wait_until(reading, "readycheck to open the profile")
        run.process.send_signal(signal.SIGHUP)
        assert run.finish() == 130, run.output()
    finally:
        if writer is not None:
            os.close(writer)
    assert "SIGHUP: interrupted before any check ran" in run.output()
    assert "Traceback" not in run.output()


# -- a command's processes, without signals ----------------------------------------------


def test_a_command_that_exits_leaves_no_child_in_the_background(
    run_check: RunCheck, tmp_path: Path
) -> None:
    group = tmp_path / "group"
    result = run_check("command", {"argv": TREE.format(group=group, seconds=0), "shell": True})
    assert result.result.status.value == "PASS", result.shown
    assert_group_ended(group)


@pytest.mark.parametrize(
    ("command_timeout", "check_timeout"),
    [({"timeout": "1s"}, "10s"), ({}, "1s")],
    ids=["the command's timeout", "the check's timeout"],
)
def test_a_command_ended_at_a_timeout_takes_its_background_children_along(
    run_check: RunCheck, tmp_path: Path, command_timeout: dict[str, str], check_timeout: str
) -> None:
    group = tmp_path / "group"
    params = {"argv": TREE.format(group=group, seconds=200), "shell": True, **command_timeout}
    result = run_check("command", params, timeout=check_timeout)
    assert result.result.status.value in ("FAIL", "ERROR")
    assert_group_ended(group)
