"""How and where a run was started, for the record: the command line (secrets masked),
the host and user, and the CI run when there is one."""

from __future__ import annotations

import getpass
import shlex
import socket
from collections.abc import Mapping, Sequence

from readycheck.redact import Redactor, looks_secret
from readycheck.results import Invocation

# The CI systems people gate deploys in: the variable that says "this is one", its name,
# and how its run's page is spelled from its variables.
_CI: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "GITHUB_ACTIONS",
        "GitHub Actions",
        ("{GITHUB_SERVER_URL}/{GITHUB_REPOSITORY}/actions/runs/{GITHUB_RUN_ID}",),
    ),
    ("GITLAB_CI", "GitLab CI", ("{CI_JOB_URL}", "{CI_PIPELINE_URL}")),
    ("BUILDKITE", "Buildkite", ("{BUILDKITE_BUILD_URL}",)),
    ("CIRCLECI", "CircleCI", ("{CIRCLE_BUILD_URL}",)),
    ("JENKINS_URL", "Jenkins", ("{BUILD_URL}",)),
    (
        "TF_BUILD",
        "Azure Pipelines",
        ("{SYSTEM_COLLECTIONURI}{SYSTEM_TEAMPROJECT}/_build/results?buildId={BUILD_BUILDID}",),
    ),
    ("CI", "CI", ()),
)


def invocation(argv: Sequence[str], environ: Mapping[str, str], redactor: Redactor) -> Invocation:
    """The record of this invocation; ``argv`` without the program name."""
    ci, url = _ci(environ)
    return Invocation(
        command=redactor.redact(shlex.join(["readycheck", *_masked(argv)])),
        host=_host(),
        user=_user(),
        ci=ci,
        ci_url=redactor.redact(url) if url else None,
    )


def _masked(argv: Sequence[str]) -> list[str]:
    """``--var DB_PASSWORD=…`` shows the name, never the value."""
    shown: list[str] = []
    after_var = False
    for arg in argv:
        if after_var or arg.startswith("--var="):
            prefix = "--var=" if arg.startswith("--var=") else ""
            name, sep, _ = arg.removeprefix(prefix).partition("=")
            if sep and looks_secret(name):
                arg = f"{prefix}{name}=***"
        shown.append(arg)
        after_var = arg == "--var"
    return shown


def _ci(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    for flag, name, templates in _CI:
        if environ.get(flag, "").lower() in ("", "0", "false"):
            continue
        for template in templates:
            try:
                url = template.format_map(_Strict(environ))
            except KeyError:
                continue
            return name, url
        return name, None
    return None, None


class _Strict(dict[str, str]):
    """Variables for a URL template; a missing or empty one makes the template unusable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        super().__init__(environ)

    def __missing__(self, key: str) -> str:
        raise KeyError(key)

    def __getitem__(self, key: str) -> str:
        value = super().__getitem__(key)
        if not value:
            raise KeyError(key)
        return value


def _host() -> str | None:
    try:
        return socket.gethostname() or None
    except OSError:
        return None


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None
