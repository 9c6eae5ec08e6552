"""The command line: parse, call, choose reporters, exit.

Exit codes: 0 ready (or ready with waivers), 1 not ready, 2 usage or profile error
(nothing was run), 3 ready but no output asked for could be written, 130 interrupted.
Only typer is imported at start-up; each command imports what it needs, so
``--version`` and ``--help`` stay fast.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, Optional

import typer

from readycheck import __version__

if TYPE_CHECKING:
    import asyncio
    from typing import TextIO

    from readycheck.engine import Engine, RunOptions
    from readycheck.interrupts import Interrupts
    from readycheck.profile import Profile
    from readycheck.redact import Redactor
    from readycheck.report.console import ConsoleReporter
    from readycheck.report.publish import Targets
    from readycheck.results import RunResult
    from readycheck.watch import Watch

EXIT_USAGE = 2
EXIT_OUTPUT_FAILED = 3
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="readycheck",
    help="A deployment-readiness gate: run a readiness profile, report, and exit nonzero "
    "when the service is not ready.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"readycheck {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """readycheck: execute your production-readiness checklist."""


ProfileArg = Annotated[
    Path,
    typer.Argument(metavar="PROFILE", help="The readiness profile (YAML).", show_default=False),
]
DebugOpt = Annotated[
    bool, typer.Option("--debug", help="Show tracebacks and debug logs (secrets still masked).")
]
VarOpt = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer reads the annotation at run time
    typer.Option("--var", metavar="NAME=VALUE", help="Override a profile variable. Repeatable."),
]


ReportOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--report", metavar="FILE", help="Write the Markdown sign-off report here ('-': stdout)."
    ),
]
JsonOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--json", metavar="FILE", help="Write the results as JSON here ('-': stdout)."),
]
JunitOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--junit", metavar="FILE", help="Write JUnit XML here ('-': stdout)."),
]
HtmlOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--html",
        metavar="FILE",
        help="Write the report as one self-contained HTML file here ('-': stdout).",
    ),
]
TemplateOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--template", metavar="FILE", help="A Jinja template for --report instead of the built-in."
    ),
]
BaselineOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--baseline", metavar="FILE", help="An earlier run's --json file: show what changed since."
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the verdict line.")]
NoAnnotationsOpt = Annotated[
    bool,
    typer.Option(
        "--no-ci-annotations",
        help="In GitHub Actions, do not emit ::error/::warning annotations.",
    ),
]


# -- shell completion (readycheck --install-completion) ------------------------------------


def _complete_check_types(incomplete: str) -> list[str]:
    from readycheck import completion

    return completion.check_types(incomplete)


def _complete_stacks(incomplete: str) -> list[str]:
    from readycheck import completion

    return completion.matching(STACKS, incomplete)


def _complete_selection(ctx: typer.Context, incomplete: str) -> list[str]:
    """Check ids and tag:NAME from the profile already on the command line."""
    from readycheck import completion

    # Completing an option's value, click stops parsing at that option: the profile before
    # it is then left among the context's unparsed arguments.
    profile = ctx.params.get("profile") or next(iter(ctx.args), None)
    return completion.selection(Path(profile) if profile else None, incomplete)


@app.command()
def run(
    profile: ProfileArg,
    report: ReportOpt = None,
    json_out: JsonOpt = None,
    junit: JunitOpt = None,
    html: HtmlOpt = None,
    template: TemplateOpt = None,
    baseline: BaselineOpt = None,
    only: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(
            "--only",
            metavar="ID",
            autocompletion=_complete_selection,
            help="Run only this check id, or tag:NAME. Repeatable.",
        ),
    ] = None,
    skip: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(
            "--skip",
            metavar="ID",
            autocompletion=_complete_selection,
            help="Skip this check id, or tag:NAME. Repeatable.",
        ),
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option("--concurrency", metavar="N", min=1, max=256, help="Checks run at once."),
    ] = 8,
    deadline: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--deadline", metavar="DURATION", help="Time limit for the whole run, e.g. 5m."
        ),
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="WARN blocks too.")] = False,
    require_all: Annotated[
        bool,
        typer.Option(
            "--require-all",
            help="A check that could block and did not run (--skip, --only) blocks too.",
        ),
    ] = False,
    quiet: QuietOpt = False,
    variables: VarOpt = None,
    log_file: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--log", metavar="FILE", help="Write a debug log (secrets masked) to this file."
        ),
    ] = None,
    no_ci_annotations: NoAnnotationsOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Run the profile's checks and exit 0 (ready), 1 (not ready), 2 (profile error),
    3 (ready, but no output could be written) or 130 (interrupted)."""
    with _errors_reported(debug) as redactor, _interruptible() as signals:
        from readycheck.engine import RunOptions
        from readycheck.errors import UsageError
        from readycheck.report.publish import Targets
        from readycheck.units import Duration

        loaded = _load(profile, variables, redactor)
        targets = Targets(report=report, json=json_out, junit=junit, html=html, template=template)
        inputs = list(loaded.inputs())
        if baseline is not None:
            inputs.append(("the --baseline file", baseline))
        targets.check(inputs, log=log_file)
        _setup_logging(debug, log_file, redactor)
        previous = _load_baseline(baseline)
        try:
            limit = Duration.parse(deadline) if deadline else None
        except ValueError as exc:
            raise UsageError(f"--deadline: {exc}") from None
        options = RunOptions(
            concurrency=concurrency,
            deadline=limit,
            only=tuple(only or ()),
            skip=tuple(skip or ()),
            strict=strict,
            require_all=require_all,
            debug=debug,
        )
        stream = _console_stream(targets)
        result, reporter, abandoned = _execute(loaded, options, redactor, stream, quiet=quiet)
        result = _recorded(result, redactor)
        result = _compared(result, previous, baseline)
        code = _publish(result, targets, reporter, redactor, annotate=not no_ci_annotations)
        _exit(signals.exit_code(code), abandoned=abandoned)


@app.command()
def watch(
    profile: ProfileArg,
    for_: Annotated[
        str,
        typer.Option(
            "--for", metavar="DURATION", help="How long to watch, e.g. 5m (the rollback window)."
        ),
    ],
    every: Annotated[
        str, typer.Option("--every", metavar="DURATION", help="How often a round starts.")
    ] = "30s",
    fail_after: Annotated[
        int,
        typer.Option(
            "--fail-after",
            metavar="N",
            min=1,
            max=1000,
            help="Rounds in a row a blocking failure must hold to recommend a rollback.",
        ),
    ] = 2,
    report: ReportOpt = None,
    json_out: JsonOpt = None,
    junit: JunitOpt = None,
    html: HtmlOpt = None,
    template: TemplateOpt = None,
    only: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(
            "--only",
            metavar="ID",
            autocompletion=_complete_selection,
            help="Watch only this check id, or tag:NAME. Repeatable.",
        ),
    ] = None,
    skip: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(
            "--skip",
            metavar="ID",
            autocompletion=_complete_selection,
            help="Leave out this check id, or tag:NAME. Repeatable.",
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", metavar="N", min=1, max=256, help="Checks at once.")
    ] = 8,
    strict: Annotated[bool, typer.Option("--strict", help="WARN blocks too.")] = False,
    quiet: QuietOpt = False,
    variables: VarOpt = None,
    no_ci_annotations: NoAnnotationsOpt = False,
    debug: DebugOpt = False,
) -> None:
    """After a deploy: run the checks every --every for --for; exit 1 with "rollback
    recommended" once a blocking failure holds for --fail-after rounds in a row."""
    with _errors_reported(debug) as redactor, _interruptible() as signals:
        from readycheck.engine import RunOptions
        from readycheck.errors import UsageError
        from readycheck.report.console import ConsoleReporter
        from readycheck.report.publish import Targets
        from readycheck.report.rounds import RoundLines
        from readycheck.units import Duration, counted
        from readycheck.watch import Watch, WatchOptions

        try:
            window, period = Duration.parse(for_), Duration.parse(every)
        except ValueError as exc:
            raise UsageError(f"--for/--every: {exc}") from None
        if period.seconds <= 0 or window.seconds <= 0:
            raise UsageError("--for and --every must be longer than 0s")
        loaded = _load(profile, variables, redactor)
        targets = Targets(report=report, json=json_out, junit=junit, html=html, template=template)
        targets.check(list(loaded.inputs()))
        _setup_logging(debug, None, redactor)
        stream = _console_stream(targets)
        options = RunOptions(
            concurrency=concurrency,
            only=tuple(only or ()),
            skip=tuple(skip or ()),
            strict=strict,
            debug=debug,
        )
        from readycheck.engine import select

        select(loaded, options.only, options.skip)  # a selector naming nothing: exit 2 now
        reporter = ConsoleReporter(stream, total=len(loaded.checks), quiet=quiet, redactor=redactor)
        rounds = RoundLines(stream, fail_after, redactor, console=reporter.console)
        watcher = Watch(
            loaded,
            options,
            WatchOptions(duration=window, every=period, fail_after=fail_after),
            rounds=None if quiet else rounds,
            redactor=redactor,
        )
        if not quiet:
            stream.write(
                f"watching {loaded.name} for {window}, a round every {period} "
                f"({watcher.planned} rounds); a rollback is recommended once a blocking "
                f"failure holds for {counted(fail_after, 'round')} in a row\n"
            )
        with contextlib.nullcontext() if quiet else rounds.live_table():
            result = _run_engine(watcher, reporter)
        result = _recorded(result, redactor)
        code = _publish(result, targets, reporter, redactor, annotate=not no_ci_annotations)
        if result.rollback:
            _print_error(result.rollback, redactor)
        _exit(signals.exit_code(code), abandoned=watcher.abandoned)


@app.command("report")
def report_command(
    results: Annotated[
        Path,
        typer.Argument(metavar="RESULTS", help="A results file written by `run --json`."),
    ],
    report: ReportOpt = None,
    json_out: JsonOpt = None,
    junit: JunitOpt = None,
    html: HtmlOpt = None,
    template: TemplateOpt = None,
    baseline: BaselineOpt = None,
    show: Annotated[
        bool,
        typer.Option(
            "--show",
            help="Print the checks and the verdict as `run` did (the default when no output "
            "is asked for).",
        ),
    ] = False,
    quiet: QuietOpt = False,
    no_ci_annotations: NoAnnotationsOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Render the outputs again from a saved results file, running nothing. Exits 0 when
    every output was written (whatever the saved verdict), 3 when one could not be."""
    with _errors_reported(debug) as redactor, _interruptible() as signals:
        from readycheck.baseline import load_results
        from readycheck.report import console as console_report
        from readycheck.report.publish import Targets

        saved = load_results(results, "results")
        targets = Targets(report=report, json=json_out, junit=junit, html=html, template=template)
        inputs = [("the results file being read", results)]
        if baseline is not None:
            inputs.append(("the --baseline file", baseline))
        targets.check(inputs)
        saved = _compared(saved, _load_baseline(baseline), baseline)
        stream = _console_stream(targets)
        reporter = console_report.ConsoleReporter(
            stream,
            total=len(saved.checks),
            quiet=quiet,
            show_summary=show or not targets.asked,
            redactor=redactor,
        )
        signals.writing()
        _exit(
            signals.exit_code(
                _publish(
                    saved,
                    targets,
                    reporter,
                    redactor,
                    annotate=not no_ci_annotations,
                    rerender=True,
                )
            )
        )


@app.command()
def validate(
    profile: ProfileArg,
    variables: VarOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Load the profile and check every parameter; run nothing."""
    with _errors_reported(debug) as redactor:
        loaded = _load(profile, variables, redactor, validating=True)
        # Plain text, not Rich: validate runs in editors and pre-commit hooks, and the
        # console library alone would cost a third of its start-up.
        rows = [("id", "type", "severity", "timeout", "needs")]
        rows += [
            (c.id, c.type.name, c.severity.value, str(c.timeout), ", ".join(c.needs))
            for c in loaded.checks
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            typer.echo(
                "  ".join(
                    cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                ).rstrip()
            )
        types = sorted({check.type.name for check in loaded.checks})
        waivers = f", {len(loaded.waivers)} waivers" if loaded.waivers else ""
        typer.echo(
            f"OK {profile}: {len(loaded.checks)} checks ({', '.join(types) or 'none'}){waivers}; "
            f"gate fails on {loaded.gate.fail_on.value} or above"
        )


@app.command()
def attest(
    profile: ProfileArg,
    check_id: Annotated[
        str, typer.Argument(metavar="ID", help="The id of a `manual` check of the profile.")
    ],
    by: Annotated[
        str, typer.Option("--by", metavar="NAME", help="Who confirms it (name or role).")
    ],
    note: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--note", metavar="TEXT", help="What was done, where it is recorded."),
    ] = None,
    release: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--release",
            metavar="RELEASE",
            help="The release it holds for (default: the profile's signoff.release).",
        ),
    ] = None,
    variables: VarOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Record that a person confirmed a manual item, for this profile and release."""
    with _errors_reported(debug) as redactor:
        from datetime import UTC, datetime

        from readycheck import attestations
        from readycheck.checks.manual import ManualParams
        from readycheck.errors import UsageError

        loaded = _load(profile, variables, redactor)
        manual = [c for c in loaded.checks if isinstance(c.params, ManualParams)]
        chosen = next((c for c in manual if c.id == check_id), None)
        if chosen is None:
            listed = ", ".join(c.id for c in manual) or "the profile has none"
            what = (
                "is not a manual item"
                if any(c.id == check_id for c in loaded.checks)
                else ("is not a check of the profile")
            )
            raise UsageError(f"{check_id!r} {what} (manual items: {listed})")
        assert isinstance(chosen.params, ManualParams)
        if chosen.params.attesters and by not in chosen.params.attesters:
            raise UsageError(
                f"{check_id} may be attested by {', '.join(chosen.params.attesters)}, not {by!r}"
            )
        path = loaded.base_dir / chosen.params.file
        recorded = attestations.attest(
            path,
            check=chosen.id,
            by=by,
            note=note,
            digest=loaded.digest,
            release=release
            if release is not None
            else (loaded.signoff.release if loaded.signoff else None),
            now=datetime.now(UTC).replace(microsecond=0),
        )
        typer.echo(
            redactor.redact(
                f"attested {chosen.id} by {recorded.by} for "
                f"{recorded.release or 'this profile'} in {path}: {chosen.params.question}"
            )
        )


STACKS = ("fastapi-postgres", "django-postgres", "generic-http")


@app.command()
def init(
    path: Annotated[
        Path,
        typer.Argument(metavar="PATH", help="Where to write the profile.", show_default=True),
    ] = Path("readycheck.yaml"),
    stack: Annotated[
        str,
        typer.Option(
            "--stack",
            metavar="NAME",
            autocompletion=_complete_stacks,
            help=f"The kind of service: {', '.join(STACKS)}.",
            show_default=True,
        ),
    ] = "generic-http",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter profile for a kind of service."""
    with _errors_reported(False):
        from importlib import resources

        from readycheck.errors import UsageError
        from readycheck.report.files import write_atomic

        if stack not in STACKS:
            import difflib

            close = [name for name in STACKS if name.startswith(stack)]
            close = close or difflib.get_close_matches(stack, STACKS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"--stack {stack!r} is not one of {', '.join(STACKS)}{hint}")
        if path.is_dir():
            raise UsageError(f"{path} is a directory; give the profile's file name")
        if path.exists() and not force:
            raise UsageError(f"{path} exists; pass --force to overwrite it")
        if not path.parent.is_dir():
            raise UsageError(f"directory {path.parent} does not exist")
        text = (resources.files("readycheck") / "starters" / f"{stack}.yaml").read_text()
        write_atomic(path, text, option="init")
        typer.echo(f"wrote {path} ({stack}). Next:")
        typer.echo(f"  readycheck schema > {path.parent / 'readycheck.schema.json'}")
        typer.echo(f"  readycheck validate {path}")
        typer.echo(f"  readycheck run {path} --report readiness.md")


@app.command("checks")
def list_checks() -> None:
    """List the installed check types, one line each."""
    with _errors_reported(False):
        from rich.table import Table
        from rich.text import Text

        from readycheck.registry import Registry

        registry = Registry()
        console = _console()
        table = Table(box=None, pad_edge=False, header_style="bold")
        table.add_column("type", no_wrap=True)
        table.add_column("category", no_wrap=True)
        table.add_column("what it checks")
        table.add_column("from", style="dim")
        for check_type in registry.all():
            provider = "" if check_type.provider.startswith("readycheck ") else check_type.provider
            table.add_row(
                Text(check_type.name),
                Text(check_type.category),
                Text(check_type.description),
                Text(provider),
            )
        console.print(table)
        for name, problem in registry.problems().items():
            _console(stderr=True).print(Text(f"unavailable: {name}: {problem}", style="yellow"))


@app.command()
def explain(
    check_type: Annotated[
        str,
        typer.Argument(
            metavar="TYPE",
            autocompletion=_complete_check_types,
            help="A check type, e.g. command (`readycheck checks` lists them).",
        ),
    ],
) -> None:
    """Show one check type's parameters: name, type, default and meaning."""
    with _errors_reported(False):
        from rich.table import Table
        from rich.text import Text

        from readycheck.errors import UsageError
        from readycheck.reference import nested_models, param_rows
        from readycheck.registry import CheckTypeUnavailable, Registry, UnknownCheckType

        try:
            found = Registry().get(check_type)
        except (UnknownCheckType, CheckTypeUnavailable) as exc:
            raise UsageError(str(exc)) from None
        console = _console()
        title = Text.assemble((found.name, "bold"), f"  (category {found.category}")
        if found.exclusive:
            title.append("; runs alone, after the other checks")
        if found.timeout is not None:
            title.append(f"; default timeout {found.timeout}")
        title.append(f"; from {found.provider})" if found.provider else ")")
        console.print(title)
        doc = " ".join(found.doc.split()) if found.doc else ""
        if doc:
            console.print(Text(doc))
        for model in [found.params, *nested_models(found.params)]:
            console.print()
            heading = "Parameters (under with:)" if model is found.params else model.__name__
            table = Table(title=heading, title_justify="left", header_style="bold", expand=False)
            for column in ("name", "type", "default", "meaning"):
                table.add_column(column, overflow="fold")
            for row in param_rows(model):
                table.add_row(
                    Text(row.name, style="bold" if row.required else ""),
                    Text(row.type),
                    Text(
                        "required" if row.required else row.default,
                        style="yellow" if row.required else "dim",
                    ),
                    Text(row.description),
                )
            console.print(table)


@app.command()
def schema() -> None:
    """Print the JSON Schema of a profile (for editor completion)."""
    with _errors_reported(False):
        import json

        from readycheck.reference import profile_schema
        from readycheck.registry import Registry

        sys.stdout.write(json.dumps(profile_schema(Registry()), indent=2) + "\n")


@app.command()
def demo(
    fix: Annotated[
        bool,
        typer.Option(
            "--fix", help="Apply the pending migration and use a strong secret: ends READY."
        ),
    ] = False,
    directory: Annotated[
        Path,
        typer.Option(
            "--dir",
            metavar="DIR",
            help="Where to write the outputs: a new directory, or one an earlier demo wrote.",
        ),
    ] = Path("readycheck-demo"),
    debug: DebugOpt = False,
) -> None:
    """Start a throwaway PostgreSQL, Redis and sample service on 127.0.0.1, run
    profiles/demo.yaml against them, and write readiness-report.md, results.json and
    junit.xml into a directory of their own. Ends NOT_READY (exit 1) on purpose; with
    --fix, READY (exit 0)."""
    with _errors_reported(debug) as redactor, _interruptible() as signals:
        from readycheck import demo as showcase

        created = showcase.claim(directory)
        try:
            code, abandoned = _demo(fix, directory, redactor, debug)
        finally:
            if created:
                showcase.release(directory)  # removed if the demo ended before writing
        advice = showcase.next_step(fix, code, directory)
        if advice:
            _echo_fitted(advice)
        _exit(signals.exit_code(code), abandoned=abandoned)


def _demo(fix: bool, directory: Path, redactor: Redactor, debug: bool) -> tuple[int, bool]:
    """The demo's run, its outputs written into ``directory``: the exit code, and whether
    a check had to be abandoned."""
    from readycheck import demo as showcase
    from readycheck.engine import RunOptions
    from readycheck.report.publish import Targets

    def into(name: str) -> str:
        return str(directory / name)

    targets = Targets(
        report=into(showcase.REPORT), json=into(showcase.RESULTS), junit=into(showcase.JUNIT)
    )
    targets.check()
    _echo_fitted(showcase.announcement(fix, directory))
    with showcase.running(fix=fix) as session:
        loaded = session.fit(_load(session.profile, None, redactor))
        for note in session.notes:
            _echo_fitted(note)
        if fix:
            showcase.attest_rehearsal(loaded)
        _setup_logging(debug, None, redactor)
        options = RunOptions(debug=debug)
        result, reporter, abandoned = _execute(loaded, options, redactor, _console_stream(targets))
        result = _recorded(result, redactor)
        session.shield()
        code = _publish(result, targets, reporter, redactor, annotate=False)
    return code, abandoned


# -- plumbing ------------------------------------------------------------------------------


def _echo_fitted(text: str) -> None:
    """``text`` on standard output, wrapped at spaces to the width the run's table takes."""
    from rich.console import Console
    from rich.text import Text

    from readycheck.report.console.summary import wrap

    for line in wrap(Text(text), Console(file=sys.stdout).width):
        typer.echo(line.plain)


class _errors_reported:
    """Turn readycheck's errors into a message and exit 2; no traceback without --debug."""

    def __init__(self, debug: bool) -> None:
        self.debug = debug
        from readycheck.redact import Redactor

        self.redactor = Redactor()

    def __enter__(self) -> Redactor:
        return self.redactor

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None or isinstance(exc, typer.Exit | SystemExit):
            return
        from readycheck.errors import ProfileError, ReadycheckError

        if isinstance(exc, KeyboardInterrupt):
            from readycheck.interrupts import Interrupted

            _print_error(str(exc) or "interrupted", self.redactor)
            # Stopped at once: a check's thread may still be running; do not wait for it.
            _exit(EXIT_INTERRUPTED, abandoned=isinstance(exc, Interrupted))
        if self.debug:
            import traceback

            _print_error("".join(traceback.format_exception(exc)).rstrip(), self.redactor)
        if isinstance(exc, ProfileError):
            count = len(exc.problems)
            heading = "profile error" if count == 1 else f"{count} profile errors"
            lines = [f"  {problem}" for problem in exc.problems]
            _print_error(f"{heading}:\n" + "\n".join(lines), self.redactor)
        elif isinstance(exc, ReadycheckError):
            _print_error(str(exc), self.redactor)
        else:
            _print_error(
                f"readycheck internal error: {type(exc).__name__}: {exc}\n"
                "Run with --debug for the traceback, and please report it.",
                self.redactor,
            )
        _exit(EXIT_USAGE)


def _print_error(message: str, redactor: Redactor) -> None:
    try:
        sys.stderr.write(f"error: {redactor.redact(message)}\n")
        sys.stderr.flush()
    except OSError:  # standard error itself is gone: the exit code still tells
        pass


def _load(
    profile: Path,
    variables: list[str] | None,
    redactor: Redactor,
    *,
    validating: bool = False,
) -> Profile:
    """Load the profile (``validating``: an expired waiver is a problem too)."""
    from datetime import UTC, datetime

    from readycheck.errors import UsageError
    from readycheck.profile import load_profile

    overrides: dict[str, str] = {}
    for item in variables or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--var {item!r}: write NAME=VALUE")
        overrides[name.strip()] = value
    today = datetime.now(UTC).date() if validating else None
    loaded = load_profile(profile, variables=overrides, expired_waivers_on=today)
    redactor.add(*loaded.secrets)
    return loaded


def _setup_logging(debug: bool, log_file: Path | None, redactor: Redactor) -> None:
    import logging

    from readycheck.redact import RedactingFilter

    logger = logging.getLogger("readycheck")
    logger.setLevel(logging.DEBUG if (debug or log_file) else logging.WARNING)
    logger.propagate = False
    # An earlier invocation in this process (readycheck used as a library, the tests) left
    # handlers whose redactor knows other secrets and whose stream may be closed: a closed
    # stream makes logging print the failed record, unredacted. Replace them.
    for stale in [h for h in logger.handlers if getattr(h, "readycheck", False)]:
        logger.removeHandler(stale)
        stale.close()
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    handlers[0].setLevel(logging.DEBUG if debug else logging.WARNING)
    if log_file is not None:
        from readycheck.report.files import open_log

        handlers.append(logging.StreamHandler(open_log("--log", str(log_file))))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(RedactingFilter(redactor))
        handler.readycheck = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


def _console(stderr: bool = False) -> rich_console.Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def _execute(
    loaded: Profile,
    options: RunOptions,
    redactor: Redactor,
    stream: TextIO,
    *,
    quiet: bool = False,
) -> tuple[RunResult, ConsoleReporter, bool]:
    """Run the checks with progress on ``stream``: the result, the reporter that showed
    it, and whether a check had to be abandoned."""
    from readycheck.engine import Engine
    from readycheck.report.console import ConsoleReporter

    reporter = ConsoleReporter(
        stream, total=len(loaded.checks), title=loaded.name, quiet=quiet, redactor=redactor
    )
    engine = Engine(loaded, options, observer=reporter, redactor=redactor)
    with reporter:
        result = _run_engine(engine, reporter)
    return result, reporter, bool(engine.abandoned)


def _run_engine(engine: Engine | Watch, reporter: ConsoleReporter) -> RunResult:
    """Run on a loop of our own: a signal stops the run (interrupts.py says how), and
    shutting the loop down never waits on a check that will not stop."""
    import asyncio
    import contextlib

    from readycheck import interrupts

    loop = asyncio.new_event_loop()

    def on_stop(name: str) -> None:
        engine.interrupt()
        with contextlib.suppress(OSError):  # a hang-up takes the terminal with it
            reporter.message(f"\n{name}: stopping the running checks (again to exit at once)")

    try:
        with interrupts.current().running(loop, on_stop):
            return loop.run_until_complete(engine.run())
    finally:
        _close_loop(loop)


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    import asyncio

    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def _recorded(result: RunResult, redactor: Redactor) -> RunResult:
    """The result with where and how it was made: the git commit, the command line."""
    from readycheck.gitinfo import current_commit
    from readycheck.invocation import invocation

    return result.model_copy(
        update={
            "git": current_commit(),
            "invocation": invocation(sys.argv[1:], os.environ, redactor),
        }
    )


def _load_baseline(path: Path | None) -> RunResult | None:
    if path is None:
        return None
    from readycheck.baseline import load_results

    return load_results(path, "--baseline")


def _compared(result: RunResult, previous: RunResult | None, path: Path | None) -> RunResult:
    if previous is None or path is None:
        return result
    from readycheck import baseline

    comparison = baseline.compare(result, previous, path=str(path))
    return baseline.apply(result, comparison)


def _console_stream(targets: Targets) -> TextIO:
    """Standard output, or standard error when an output takes standard output; guarded,
    so that a stream that fails (full disk, closed pipe) ends the console, not the run."""
    from typing import cast

    from readycheck.report.files import GuardedStream

    if targets.to_stdout():
        return cast("TextIO", GuardedStream(sys.stderr, "standard error"))
    return cast("TextIO", GuardedStream(sys.stdout, "standard output"))


def _publish(
    result: RunResult,
    targets: Targets,
    reporter: ConsoleReporter,
    redactor: Redactor,
    *,
    annotate: bool,
    rerender: bool = False,
) -> int:
    """Write the outputs, show the summary, feed the CI; the exit code to end with.

    A failed output is named with the system's reason and the others are still written.
    The verdict's exit code stands, except that a READY run which could not write a
    single one of the outputs asked for exits 3: it left no record to sign or to read.
    Re-rendering (``rerender``) has no verdict of its own: 3 when any output failed.
    """
    from readycheck.errors import OutputError
    from readycheck.report import github

    published = targets.write(result, redactor)
    problems = list(published.failed)
    if github.enabled(os.environ):
        from readycheck.report import markdown

        try:
            github.emit(
                result,
                markdown.render(result, redactor=redactor),
                environ=os.environ,
                redactor=redactor,
                annotate=annotate,
                write=lambda line: reporter.stream.write(line + "\n"),
            )
        except OutputError as exc:
            problems.append(str(exc))
    for message in problems:
        _print_error(message, redactor)
    reporter.summary(result, published.files())  # the verdict line last
    console = getattr(reporter.stream, "failure", None)
    if console:
        _print_error(f"the console's {console}", redactor)
    if rerender:
        return EXIT_OUTPUT_FAILED if published.failed else 0
    # Without outputs asked for, the console is the record the run was asked to leave.
    no_record = published.nothing_recorded or (not targets.asked and bool(console))
    if no_record and result.exit_code == 0:
        _print_error(
            f"the run was {result.verdict.value}, but it left no record of it: "
            f"exit {EXIT_OUTPUT_FAILED}",
            redactor,
        )
        return EXIT_OUTPUT_FAILED
    return result.exit_code


def _exit(code: int, *, abandoned: bool = False) -> NoReturn:
    """Exit with ``code``. When a check was abandoned (it ignored cancellation), its thread
    or task may never end: leave without waiting for it."""
    if abandoned:
        from readycheck import children

        children.end_all()  # os._exit skips the exit handlers that would
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)
    raise typer.Exit(code)


def _interruptible() -> Interrupts:
    from readycheck.interrupts import Interrupts

    return Interrupts()


def main() -> NoReturn:
    from readycheck import interrupts

    interrupts.take_over_process()
    try:
        # The same name however it is started (`python -m readycheck` too): usage lines
        # and shell completion (the _READYCHECK_COMPLETE variable) go by it.
        app(prog_name="readycheck")
    except SystemExit as done:
        interrupts.leave(done.code)
    interrupts.leave(0)


if TYPE_CHECKING:
    from rich import console as rich_console
