"""Writing outputs never damages what is at the path: regular files are replaced whole,
symlinks written through, devices, FIFOs and streams written in place; bad output paths
are refused before any check runs; a failed write leaves the previous file and is named.

No test writes to the machine's own /dev/null: a device of the same kind (1,3) is made
in the test's directory, so a regression would break only that copy.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from readycheck.errors import OutputError
from readycheck.report import files
from readycheck.report.files import check_outputs, write_output
from tests.conftest import CliResult

Run = Callable[..., CliResult]
OPTIONS = ("--report", "--json", "--junit", "--html")
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

READY = """
name: shop
checks:
  - {id: db, type: test.sleep, severity: critical, with: {summary: db answered}}
"""
NOT_READY = """
name: shop
checks:
  - {id: db, type: test.sleep, severity: critical, with: {status: FAIL, summary: refused}}
"""


def _looks_like(option: str, text: str) -> None:
    """The output of ``option`` is whole: it parses, or ends as its format ends."""
    if option == "--json":
        assert json.loads(text)["profile"]["name"] == "shop"
    elif option == "--junit":
        assert ET.fromstring(text).tag == "testsuites"
    elif option == "--html":
        assert text.rstrip().endswith("</html>")
    else:
        assert "Readiness report" in text


@pytest.fixture
def char_device(tmp_path: Path) -> Path:
    """A character device like /dev/null (1,3), made in the test's own directory."""
    if not AS_ROOT:
        pytest.skip("making a device file needs root")
    path = tmp_path / "null"
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return path


def _is_char_device(path: Path) -> bool:
    return stat.S_ISCHR(os.lstat(path).st_mode)


@contextlib.contextmanager
def _tmpfs(where: Path, *options: str) -> Iterator[Path]:
    """A small filesystem of our own (root only), unmounted afterwards whatever happens."""
    if not AS_ROOT or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(["size=256k", *options]), "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


# -- what is at the path ---------------------------------------------------------------


@pytest.mark.parametrize("option", OPTIONS)
def test_a_character_device_stays_a_device_after_each_output(
    option: str, char_device: Path, readycheck_process: Run, write_profile: Callable[..., Path]
) -> None:
    result = readycheck_process("run", write_profile(READY), option, char_device)
    assert result.exit_code == 0, result.output
    assert _is_char_device(char_device)
    assert os.major(char_device.stat().st_rdev) == 1
    assert os.minor(char_device.stat().st_rdev) == 3


def test_every_output_may_go_to_one_character_device(
    char_device: Path, readycheck_process: Run, write_profile: Callable[..., Path]
) -> None:
    args = [arg for option in OPTIONS for arg in (option, char_device)]
    result = readycheck_process("run", write_profile(NOT_READY), *args, "--log", char_device)
    assert result.exit_code == 1, result.output
    assert _is_char_device(char_device)
    assert list(char_device.parent.glob(".null.*")) == []  # no temporary file left behind


@pytest.mark.parametrize("option", OPTIONS)
def test_a_symlink_is_written_through_and_stays_a_link(
    option: str, tmp_path: Path, readycheck_process: Run, write_profile: Callable[..., Path]
) -> None:
    real = tmp_path / "store" / "output"
    real.parent.mkdir()
    real.write_text("previous run\n")
    real.chmod(0o640)
    link = tmp_path / "latest"
    link.symlink_to(real)
    result = readycheck_process("run", write_profile(READY), option, link)
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(real)
    _looks_like(option, real.read_text())
    assert stat.S_IMODE(real.stat().st_mode) == 0o640  # the target keeps its mode


def test_a_dangling_symlink_creates_its_target(
    tmp_path: Path, readycheck_process: Run, write_profile: Callable[..., Path]
) -> None:
    link = tmp_path / "results.json"
    link.symlink_to(tmp_path / "archive.json")
    result = readycheck_process("run", write_profile(READY), "--json", link)
    assert result.exit_code == 0, result.output
    assert link.is_symlink()
    _looks_like("--json", (tmp_path / "archive.json").read_text())


@pytest.mark.parametrize("option", OPTIONS)
def test_a_fifo_is_written_in_place_for_its_reader(
    option: str, tmp_path: Path, readycheck_process: Run, write_profile: Callable[..., Path]
) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def read() -> None:
        with fifo.open("rb") as reader:  # blocks until readycheck opens it for writing
            received.append(reader.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    result = readycheck_process("run", write_profile(READY), option, fifo)
    reader.join(timeout=30)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    _looks_like(option, received[0].decode())


def test_a_fifo_nobody_reads_fails_that_output_without_hanging(
    tmp_path: Path,
    cli: Run,
    write_profile: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(files, "FIFO_READER_WAIT_SECONDS", 0.3)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    report = tmp_path / "readiness.md"
    result = cli("run", write_profile(NOT_READY), "--junit", fifo, "--report", report)
    assert result.exit_code == 1, result.output  # the verdict's code: the report was written
    assert "--junit" in result.stderr and "no process read the FIFO" in result.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert report.exists()


def test_dev_stdout_appends_to_the_file_stdout_is_redirected_to(
    tmp_path: Path, subprocess_env: dict[str, str], write_profile: Callable[..., Path]
) -> None:
    redirected = tmp_path / "ci-step.log"
    redirected.write_text("earlier step output\n")
    inode = redirected.stat().st_ino
    with redirected.open("a") as stdout:
        completed = _run_onto(
            stdout, subprocess_env, write_profile(READY), "--junit", "/dev/stdout"
        )
    assert completed.returncode == 0, completed.stderr
    assert redirected.stat().st_ino == inode  # the same file, never replaced
    text = redirected.read_text()
    assert text.startswith("earlier step output\n")
    _looks_like("--junit", text.removeprefix("earlier step output\n"))
    assert "READY" in completed.stderr  # the console moved out of the stream's way


def _run_onto(
    stdout: IO[str], env: dict[str, str], profile: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """`readycheck run` as a subprocess whose standard output is ``stdout``."""
    return subprocess.run(
        [sys.executable, "-m", "readycheck", "run", str(profile), *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.mark.parametrize("option", OPTIONS)
def test_dash_is_stdout_for_each_output_and_the_console_moves_to_stderr(
    option: str, readycheck_process: Run, write_profile: Callable[..., Path]
) -> None:
    result = readycheck_process("run", write_profile(READY), option, "-")
    assert result.exit_code == 0, result.output
    _looks_like(option, result.stdout)
    assert "READY" in result.stderr


def test_a_regular_file_is_replaced_whole_keeping_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    target.write_text("old")
    target.chmod(0o604)
    write_output("--report", str(target), "new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o604
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_a_new_file_gets_the_ordinary_mode_not_the_temp_files(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        write_output("--json", str(tmp_path / "new.json"), "{}")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o644


_WRITER = """
import sys
from readycheck.report.files import write_output
path, mark = sys.argv[1], sys.argv[2]
for _ in range(150):
    write_output("--json", path, mark * 200_000 + "\\n")
"""


def test_two_processes_writing_one_path_leave_one_complete_file(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    target.write_text("a" * 200_000 + "\n")
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(target), mark]) for mark in "ab"
    ]
    seen = 0
    while any(writer.poll() is None for writer in writers):
        text = target.read_text()
        assert text in ("a" * 200_000 + "\n", "b" * 200_000 + "\n")
        seen += 1
    assert [writer.wait(timeout=60) for writer in writers] == [0, 0]
    assert target.read_text() in ("a" * 200_000 + "\n", "b" * 200_000 + "\n")
    assert seen > 0
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


# -- refused before any check runs -----------------------------------------------------

# A check that leaves a mark when it runs: a refused run must leave none.
MARKING = """
name: shop
checks:
  - id: marker
    type: command
    with: {{argv: [touch, {marker}]}}
"""


@pytest.fixture
def marking_profile(tmp_path: Path, write_profile: Callable[..., Path]) -> Path:
    return write_profile(MARKING.format(marker=tmp_path / "ran"))


def _refused(result: CliResult, tmp_path: Path, *phrases: str) -> None:
    assert result.exit_code == 2, result.output
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr
    assert not (tmp_path / "ran").exists(), "a check ran although an output was refused"


@pytest.mark.parametrize("option", OPTIONS)
def test_the_profile_itself_is_refused_as_an_output_and_left_intact(
    option: str, tmp_path: Path, cli: Run, marking_profile: Path
) -> None:
    before = marking_profile.read_bytes()
    _refused(cli("run", marking_profile, option, marking_profile), tmp_path, "is the profile")
    assert marking_profile.read_bytes() == before


def test_a_symlink_to_the_profile_is_refused_too(
    tmp_path: Path, cli: Run, marking_profile: Path
) -> None:
    link = tmp_path / "readiness.md"
    link.symlink_to(marking_profile)
    before = marking_profile.read_bytes()
    _refused(cli("run", marking_profile, "--report", link), tmp_path, "is the profile")
    assert marking_profile.read_bytes() == before


def test_a_file_the_profile_extends_or_reads_is_refused(
    tmp_path: Path, cli: Run, write_profile: Callable[..., Path]
) -> None:
    base = write_profile("checks: []\n", name="base.yaml")
    dotenv = tmp_path / "app.env"
    dotenv.write_text("DEBUG=false\n")
    profile = write_profile(
        f"""
        extends: base.yaml
        checks:
          - id: marker
            type: command
            with: {{argv: [touch, {tmp_path / "ran"}]}}
          - id: settings
            type: config.env
            with: {{source: {{dotenv: app.env}}, rules: [{{name: DEBUG, equals: "false"}}]}}
        """
    )
    _refused(cli("run", profile, "--json", base), tmp_path, "a file the profile extends")
    _refused(cli("run", profile, "--junit", dotenv), tmp_path, "a file check 'settings' reads")
    assert dotenv.read_text() == "DEBUG=false\n"


@pytest.mark.parametrize(
    ("read_by", "name", "content", "written_by"),
    [
        ("--template", "signoff.md.j2", "{{ result.verdict }}\n", "--report"),
        ("--baseline", "previous.json", "{}", "--json"),
    ],
)
def test_the_template_and_the_baseline_are_refused_as_outputs(
    read_by: str,
    name: str,
    content: str,
    written_by: str,
    tmp_path: Path,
    cli: Run,
    marking_profile: Path,
) -> None:
    path = tmp_path / name
    path.write_text(content)
    result = cli("run", marking_profile, read_by, path, written_by, path)
    _refused(result, tmp_path, f"the {read_by} file")
    assert path.read_text() == content


def test_two_outputs_on_one_path_are_refused(
    tmp_path: Path, cli: Run, marking_profile: Path
) -> None:
    same = tmp_path / "out"
    _refused(
        cli("run", marking_profile, "--json", same, "--junit", same),
        tmp_path,
        "--json",
        "--junit",
        "name the same file",
    )
    link = tmp_path / "link"
    link.symlink_to(same)
    _refused(cli("run", marking_profile, "--report", same, "--html", link), tmp_path, "same file")
    _refused(cli("run", marking_profile, "--report", same, "--log", same), tmp_path, "same file")


def test_only_one_output_may_take_stdout(tmp_path: Path, cli: Run, marking_profile: Path) -> None:
    _refused(
        cli("run", marking_profile, "--json", "-", "--report", "-"),
        tmp_path,
        "--json and --report both ask for standard output",
    )


@pytest.mark.parametrize(
    ("target", "phrase"),
    [
        ("missing/dir/report.md", "does not exist"),
        (".", "is a directory"),
    ],
)
def test_a_missing_directory_or_a_directory_is_refused(
    target: str, phrase: str, tmp_path: Path, cli: Run, marking_profile: Path
) -> None:
    _refused(cli("run", marking_profile, "--report", tmp_path / target), tmp_path, phrase)


def test_a_directory_that_takes_no_new_file_is_refused(
    tmp_path: Path, cli: Run, marking_profile: Path
) -> None:
    if AS_ROOT:
        context: contextlib.AbstractContextManager[Path] = _tmpfs(tmp_path / "ro", "ro")
    else:
        readonly = tmp_path / "ro"
        readonly.mkdir()
        readonly.chmod(0o555)
        context = contextlib.nullcontext(readonly)
    with context as readonly:
        _refused(
            cli("run", marking_profile, "--junit", readonly / "junit.xml"),
            tmp_path,
            "cannot create a file in",
        )


# -- failures midway -------------------------------------------------------------------


def test_a_full_disk_keeps_the_previous_file_and_names_the_output(
    tmp_path: Path, cli: Run, write_profile: Callable[..., Path]
) -> None:
    with _tmpfs(tmp_path / "small") as small:
        report = small / "readiness.md"
        report.write_text("the report of the previous deploy\n")
        with contextlib.suppress(OSError), (small / "filler").open("wb") as filler:
            while True:  # fill the filesystem to its last byte
                filler.write(b"\0" * 4096)
                filler.flush()
        results = tmp_path / "results.json"
        result = cli("run", write_profile(NOT_READY), "--report", report, "--json", results)
        assert result.exit_code == 1, result.output  # the verdict stands: the JSON was written
        assert "--report" in result.stderr and "No space left on device" in result.stderr
        assert report.read_text() == "the report of the previous deploy\n"
        assert sorted(p.name for p in small.iterdir()) == ["filler", "readiness.md"]
        assert json.loads(results.read_text())["verdict"] == "NOT_READY"

        only = cli("run", write_profile(READY), "--report", report)
        assert only.exit_code == 3, only.output  # READY, but the one record asked for is lost
        assert "left no record" in only.stderr
        assert report.read_text() == "the report of the previous deploy\n"


def test_a_full_stdout_is_named_and_the_exit_code_says_no_record(
    tmp_path: Path, subprocess_env: dict[str, str], write_profile: Callable[..., Path]
) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    for extra in ([], ["--json", "-"]):
        with open("/dev/full", "w") as full:
            completed = _run_onto(full, subprocess_env, write_profile(READY), *extra)
        assert completed.returncode == 3, completed.stderr
        assert "No space left on device" in completed.stderr
        assert "internal error" not in completed.stderr
        assert "Traceback" not in completed.stderr and "Exception ignored" not in completed.stderr


def test_a_closed_pipe_on_stdout_ends_quietly_with_the_verdict(
    subprocess_env: dict[str, str], write_profile: Callable[..., Path]
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "readycheck", "run", write_profile(NOT_READY)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env,
    )
    assert process.stdout is not None
    process.stdout.close()  # the reader went away before the first line
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    assert b"Traceback" not in stderr and b"internal error" not in stderr


def test_write_output_refuses_a_directory_and_reports_the_reason(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="is a directory"):
        write_output("--json", str(tmp_path), "{}")
    with pytest.raises(OutputError, match="does not exist"):
        check_outputs({"--json": str(tmp_path / "nowhere" / "x.json")})


def test_report_rerendering_exits_3_when_an_output_cannot_be_written(
    tmp_path: Path, cli: Run, write_profile: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "results.json"
    assert cli("run", write_profile(READY), "--json", results).exit_code == 0
    _refused(cli("report", results, "--json", results), tmp_path, "the results file being read")
    monkeypatch.setattr(files, "FIFO_READER_WAIT_SECONDS", 0.2)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    result = cli("report", results, "--report", fifo)
    assert result.exit_code == 3, result.output
    assert "no process read the FIFO" in result.stderr
