"""The readiness profile: loading one from YAML into a plan the engine runs.

Loading reads the file and every file it ``extends``, interpolates ``${env:...}`` and
``${vars...}``, validates the document and each check's ``with:`` block against its
type's parameter model, and checks the references between checks (``needs``, waivers).
Every problem found is reported at once, each with its file, line and column.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from readycheck.errors import Problem, ProfileError
from readycheck.interpolation import Interpolator
from readycheck.profile.files import read_chain
from readycheck.profile.models import (
    CheckSpecModel,
    Defaults,
    GateModel,
    PlannedCheck,
    Profile,
    ProfileModel,
    Signoff,
    Waiver,
    WaiverModel,
)
from readycheck.profile.problems import locate, problems_from, redacted, suggest
from readycheck.registry import CheckTypeUnavailable, Registry, UnknownCheckType
from readycheck.results import Gate
from readycheck.yamlsource import YamlMap

__all__ = [
    "CheckSpecModel",
    "Defaults",
    "GateModel",
    "PlannedCheck",
    "Profile",
    "ProfileModel",
    "Signoff",
    "Waiver",
    "WaiverModel",
    "load_profile",
]


def load_profile(
    path: str | os.PathLike[str],
    *,
    registry: Registry | None = None,
    environ: Mapping[str, str] | None = None,
    variables: Mapping[str, str] | None = None,
) -> Profile:
    """Load, merge, interpolate and validate a profile; raise ProfileError on any problem.

    ``variables`` override the profile's ``vars`` (the CLI's ``--var``).
    """
    registry = registry if registry is not None else Registry()
    environ = environ if environ is not None else os.environ
    main_path = Path(path)
    raw, files = read_chain(main_path)
    digest = hashlib.sha256()
    for file_path, data in files:
        digest.update(str(file_path.name).encode() + b"\0" + data + b"\0")

    interpolator = Interpolator(environ=environ, variables={})
    raw_vars = raw.get("vars")
    if isinstance(raw_vars, YamlMap):
        interpolator.value(raw_vars, raw.locations.get("vars"), "vars")
        interpolator.variables = {**raw_vars, **(variables or {})}
    else:
        interpolator.variables = dict(variables or {})
    for key in list(raw):
        if key != "vars":
            raw[key] = interpolator.value(raw[key], raw.locations.get(key), key)
    if interpolator.problems:
        raise ProfileError(redacted(interpolator.problems, interpolator.secrets))

    try:
        model = ProfileModel.model_validate(raw)
    except ValidationError as exc:
        found = problems_from(exc, raw, ProfileModel)
        raise ProfileError(redacted(found, interpolator.secrets)) from None

    secrets = set(interpolator.secrets)
    problems: list[Problem] = []
    checks = _plan_checks(model, raw, registry, secrets, problems)
    waivers = _waivers(model, raw, problems)
    _check_needs(model, raw, problems)
    if problems:
        raise ProfileError(redacted(problems, secrets))
    return Profile(
        name=model.name or main_path.stem,
        path=main_path.resolve(),
        digest=f"sha256:{digest.hexdigest()}",
        files=tuple(file_path for file_path, _ in files),
        environment=model.environment,
        description=model.description,
        gate=Gate(
            fail_on=model.gate.fail_on,
            strict=model.gate.strict,
            fail_on_regression=model.gate.fail_on_regression,
            regression=model.gate.regression,
        ),
        signoff=model.signoff,
        checks=tuple(checks),
        waivers=tuple(waivers),
        secrets=frozenset(secrets),
    )


def _plan_checks(
    model: ProfileModel,
    raw: YamlMap,
    registry: Registry,
    secrets: set[str],
    problems: list[Problem],
) -> list[PlannedCheck]:
    planned: list[PlannedCheck] = []
    defaults = model.defaults
    for index, spec in enumerate(model.checks):
        prefix = ("checks", index)
        try:
            check_type = registry.get(spec.type)
        except (UnknownCheckType, CheckTypeUnavailable) as exc:
            problems.append(
                Problem(str(exc), locate(raw, (*prefix, "type")), f"checks[{spec.id}].type")
            )
            continue
        try:
            params = check_type.params.model_validate(spec.with_)
        except ValidationError as exc:
            problems.extend(problems_from(exc, raw, check_type.params, prefix=(*prefix, "with")))
            continue
        secrets.update(value for value in params.secret_values() if value)
        planned.append(
            PlannedCheck(
                id=spec.id,
                type=check_type,
                params=params,
                name=spec.name or spec.id,
                severity=spec.severity or defaults.severity,
                category=spec.category or check_type.category,
                tags=tuple(spec.tags),
                needs=tuple(spec.needs),
                timeout=spec.timeout
                or max(defaults.timeout, check_type.timeout or defaults.timeout),
                retries=spec.retries if spec.retries is not None else defaults.retries,
                retry_for=spec.retry_for or defaults.retry_for,
                retry_interval=spec.retry_interval or defaults.retry_interval,
                remediation=spec.remediation,
                description=spec.description,
                location=locate(raw, (*prefix, "id")),
            )
        )
    return planned


def _waivers(model: ProfileModel, raw: YamlMap, problems: list[Problem]) -> list[Waiver]:
    waivers = []
    all_ids = {spec.id for spec in model.checks}
    for index, waiver in enumerate(model.waivers):
        location = locate(raw, ("waivers", index, "check"))
        if waiver.check not in all_ids:
            problems.append(
                Problem(
                    f"waiver for unknown check {waiver.check!r}" + suggest(waiver.check, all_ids),
                    location,
                    "waivers.check",
                )
            )
            continue
        waivers.append(
            Waiver(waiver.check, waiver.reason, waiver.approved_by, waiver.until, location)
        )
    return waivers


def _check_needs(model: ProfileModel, raw: YamlMap, problems: list[Problem]) -> None:
    ids = {spec.id for spec in model.checks}
    for index, spec in enumerate(model.checks):
        for position, need in enumerate(spec.needs):
            location = locate(raw, ("checks", index, "needs", position))
            key = f"checks[{spec.id}].needs"
            if need == spec.id:
                problems.append(Problem("a check cannot need itself", location, key))
            elif need not in ids:
                message = f"needs unknown check {need!r}" + suggest(need, ids)
                problems.append(Problem(message, location, key))
    cycle = _find_cycle({spec.id: [n for n in spec.needs if n in ids] for spec in model.checks})
    if cycle:
        index = next(i for i, spec in enumerate(model.checks) if spec.id == cycle[0])
        problems.append(
            Problem(
                f"'needs' forms a cycle: {' -> '.join(cycle)}",
                locate(raw, ("checks", index, "needs")),
                f"checks[{cycle[0]}].needs",
            )
        )


def _find_cycle(graph: Mapping[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 visiting, 2 done
    for start in graph:
        if state.get(start):
            continue
        path: list[str] = []
        stack: list[tuple[str, int]] = [(start, 0)]
        while stack:
            node, index = stack.pop()
            if index == 0:
                state[node] = 1
                path.append(node)
            edges = graph.get(node, [])
            if index < len(edges):
                stack.append((node, index + 1))
                nxt = edges[index]
                if state.get(nxt) == 1:
                    return [*path[path.index(nxt) :], nxt]
                if not state.get(nxt):
                    stack.append((nxt, 0))
            else:
                state[node] = 2
                path.pop()
    return None
