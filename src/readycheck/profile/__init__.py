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
from datetime import date
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from readycheck.errors import Problem, ProfileError
from readycheck.gate import CheckRule
from readycheck.interpolation import Interpolator
from readycheck.params import PROFILE_DIR
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
from readycheck.results import Status
from readycheck.yamlsource import YamlList, YamlMap

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

_M = TypeVar("_M", bound=BaseModel)


def load_profile(
    path: str | os.PathLike[str],
    *,
    registry: Registry | None = None,
    environ: Mapping[str, str] | None = None,
    variables: Mapping[str, str] | None = None,
    expired_waivers_on: date | None = None,
) -> Profile:
    """Load, merge, interpolate and validate a profile; raise ProfileError on any problem.

    Every problem is reported at once: a value that cannot be interpolated, a key a
    model refuses, a check type or parameter that is wrong, a reference that leads
    nowhere. ``variables`` override the profile's ``vars`` (the CLI's ``--var``), and
    one naming no variable is a problem. ``expired_waivers_on``: a waiver expired on
    that day is a problem too (``validate``; a run records it as expired instead).
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
    declared = dict(raw_vars) if isinstance(raw_vars, YamlMap) else {}
    interpolator.variables = {**declared, **(variables or {})}
    for key in list(raw):
        if key != "vars":
            raw[key] = interpolator.value(raw[key], raw.locations.get(key), key)
    problems = list(interpolator.problems)
    problems.extend(_unknown_overrides(variables or {}, declared))

    model, specs, waiver_specs = _validate(raw, problems)
    secrets = set(interpolator.secrets)
    checks = _plan_checks(
        specs, model.defaults, raw, registry, secrets, problems, main_path.resolve().parent
    )
    ids = _check_ids(raw)
    waivers = _waivers(waiver_specs, ids, raw, problems, expired_waivers_on)
    _check_needs(specs, ids, raw, problems)
    if problems:
        raise ProfileError(redacted(_first_per_place(problems), secrets))
    return Profile(
        name=model.name or main_path.stem,
        path=main_path.resolve(),
        digest=f"sha256:{digest.hexdigest()}",
        files=tuple(file_path for file_path, _ in files),
        environment=model.environment,
        description=model.description,
        gate=model.gate.gate(),
        signoff=model.signoff,
        checks=tuple(checks),
        waivers=tuple(waivers),
        secrets=frozenset(secrets),
    )


Indexed = list[tuple[int, _M]]


def _validate(
    raw: YamlMap, problems: list[Problem]
) -> tuple[ProfileModel, Indexed[CheckSpecModel], Indexed[WaiverModel]]:
    """The document's models, each check and waiver validated on its own so that one
    bad entry does not hide the problems of the others; entries with problems are left
    out (their problems recorded), each kept with its index in the document."""
    specs = _each(raw, "checks", CheckSpecModel, problems)
    waivers = _each(raw, "waivers", WaiverModel, problems)
    rest = YamlMap({k: v for k, v in raw.items() if k not in ("checks", "waivers")})
    rest.locations = raw.locations
    try:
        model = ProfileModel.model_validate(rest)
    except ValidationError as exc:
        problems.extend(problems_from(exc, raw, ProfileModel))
        refused = {item["loc"][0] for item in exc.errors() if item["loc"]}
        for key in refused:
            rest.pop(str(key), None)
        try:
            model = ProfileModel.model_validate(rest)
        except ValidationError:  # nothing more can be checked without the document
            raise ProfileError(redacted(_first_per_place(problems), set())) from None
    return model, specs, waivers


def _each(raw: YamlMap, key: str, model: type[_M], problems: list[Problem]) -> Indexed[_M]:
    items = raw.get(key)
    if items is None:
        return []
    if not isinstance(items, YamlList):
        problems.append(Problem(f"{key} must be a list", raw.locations.get(key), key))
        return []
    valid: Indexed[_M] = []
    for index, item in enumerate(items):
        try:
            valid.append((index, model.model_validate(item)))
        except ValidationError as exc:
            problems.extend(problems_from(exc, raw, model, prefix=(key, index)))
    return valid


def _check_ids(raw: YamlMap) -> set[str]:
    """Every check id the document names, valid entries or not (for references)."""
    items = raw.get("checks")
    if not isinstance(items, YamlList):
        return set()
    return {
        item["id"]
        for item in items
        if isinstance(item, YamlMap) and isinstance(item.get("id"), str)
    }


def _unknown_overrides(
    overrides: Mapping[str, str], declared: Mapping[str, object]
) -> list[Problem]:
    problems = []
    for name in overrides:
        if name not in declared:
            known = ", ".join(sorted(declared)) or "the profile declares none under vars:"
            problems.append(
                Problem(
                    f"names no variable of the profile{suggest(name, declared)} "
                    f"(variables: {known})",
                    key=f"--var {name}",
                )
            )
    return problems


def _first_per_place(problems: list[Problem]) -> list[Problem]:
    """One problem per place: a value that could not be interpolated is left empty, and
    what a model then says of the empty value would only repeat the first problem."""
    seen: set[object] = set()
    kept = []
    for problem in problems:
        place = problem.location or problem.key
        if place is not None and place in seen:
            continue
        if place is not None:
            seen.add(place)
        kept.append(problem)
    return kept


def _plan_checks(
    specs: Indexed[CheckSpecModel],
    defaults: Defaults,
    raw: YamlMap,
    registry: Registry,
    secrets: set[str],
    problems: list[Problem],
    profile_dir: Path,
) -> list[PlannedCheck]:
    planned: list[PlannedCheck] = []
    for index, spec in specs:
        prefix = ("checks", index)
        try:
            check_type = registry.get(spec.type)
        except (UnknownCheckType, CheckTypeUnavailable) as exc:
            problems.append(
                Problem(str(exc), locate(raw, (*prefix, "type")), f"checks[{spec.id}].type")
            )
            continue
        try:
            params = check_type.params.model_validate(
                spec.with_, context={PROFILE_DIR: profile_dir}
            )
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
                rule=_rule(spec, raw, prefix, problems),
            )
        )
    return planned


def _rule(
    spec: CheckSpecModel, raw: YamlMap, prefix: tuple[str | int, ...], problems: list[Problem]
) -> CheckRule:
    if spec.blocks is False and spec.blocks_on:
        problems.append(
            Problem(
                "blocks: false says the check never blocks; drop it or blocks_on",
                locate(raw, (*prefix, "blocks_on")),
                f"checks[{spec.id}].blocks_on",
            )
        )
    statuses = {"fail": Status.FAIL, "error": Status.ERROR, "warn": Status.WARN}
    return CheckRule(
        blocks=spec.blocks,
        blocks_on=frozenset(statuses[name] for name in spec.blocks_on)
        if spec.blocks_on is not None
        else None,
    )


def _waivers(
    specs: Indexed[WaiverModel],
    ids: set[str],
    raw: YamlMap,
    problems: list[Problem],
    expired_on: date | None,
) -> list[Waiver]:
    waivers = []
    for index, waiver in specs:
        location = locate(raw, ("waivers", index, "check"))
        if waiver.check not in ids:
            problems.append(
                Problem(
                    f"waiver for unknown check {waiver.check!r}" + suggest(waiver.check, ids),
                    location,
                    "waivers.check",
                )
            )
            continue
        if expired_on is not None and expired_on > waiver.until:
            problems.append(
                Problem(
                    f"the waiver of {waiver.check!r} expired on {waiver.until.isoformat()}: "
                    "a run will not apply it; renew it (a new until:, approved again) or "
                    "remove it",
                    locate(raw, ("waivers", index, "until")),
                    f"waivers[{waiver.check}].until",
                )
            )
        waivers.append(
            Waiver(waiver.check, waiver.reason, waiver.approved_by, waiver.until, location)
        )
    return waivers


def _check_needs(
    specs: Indexed[CheckSpecModel], ids: set[str], raw: YamlMap, problems: list[Problem]
) -> None:
    for index, spec in specs:
        for position, need in enumerate(spec.needs):
            location = locate(raw, ("checks", index, "needs", position))
            key = f"checks[{spec.id}].needs"
            if need == spec.id:
                problems.append(Problem("a check cannot need itself", location, key))
            elif need not in ids:
                message = f"needs unknown check {need!r}" + suggest(need, ids)
                problems.append(Problem(message, location, key))
    cycle = _find_cycle({spec.id: [n for n in spec.needs if n in ids] for _, spec in specs})
    if cycle:
        index = next(i for i, spec in specs if spec.id == cycle[0])
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
