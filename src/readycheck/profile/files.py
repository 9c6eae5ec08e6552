"""Reading a profile and the files it ``extends``, merged into one document.

``extends`` is relative to the file that says it; checks merge by ``id`` and waivers by
``check`` (later wins, a changed check type replaces the check whole), maps merge key by
key; a cycle is refused.
"""

from __future__ import annotations

from pathlib import Path

from readycheck.errors import Location, Problem, ProfileError
from readycheck.yamlsource import YamlList, YamlMap, load_yaml, read_profile_text


def read_chain(path: Path) -> tuple[YamlMap, list[tuple[Path, bytes]]]:
    """The merged document, and every file read (path and bytes) in the order read."""
    files: list[tuple[Path, bytes]] = []
    return _load_chain(path, files, stack=()), files


def _read(path: Path) -> bytes:
    shown = str(path)
    if not path.exists():
        raise ProfileError(Problem(f"profile {shown} does not exist"))
    if path.is_dir():
        raise ProfileError(Problem(f"profile {shown} is a directory, not a file"))
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ProfileError(Problem(f"profile {shown} cannot be read: {exc.strerror}")) from None


def _load_chain(
    path: Path,
    files: list[tuple[Path, bytes]],
    stack: tuple[Path, ...],
    via: Location | None = None,
) -> YamlMap:
    resolved = path.resolve()
    if resolved in stack:
        cycle = " -> ".join(str(p.name) for p in (*stack, resolved))
        raise ProfileError(Problem(f"'extends' forms a cycle: {cycle}", via, "extends"))
    data = _read(path)
    files.append((path, data))
    shown = str(path)
    document = load_yaml(read_profile_text(shown, data), shown)
    if document is None:
        raise ProfileError(
            Problem("the profile is empty: it needs at least 'checks:'", Location(shown, 1, 1))
        )
    if not isinstance(document, YamlMap):
        kind = "a list" if isinstance(document, list) else f"a {type(document).__name__}"
        raise ProfileError(
            Problem(
                f"the top level of a profile must be a mapping of keys (version, name, checks, "
                f"...), not {kind}",
                getattr(document, "location", Location(shown, 1, 1)),
            )
        )
    _refuse_duplicate_ids(document)
    extends = document.pop("extends", None)
    extends_location = document.locations.pop("extends", document.location)
    if extends is None:
        return document
    parents = extends if isinstance(extends, list) else [extends]
    merged: YamlMap | None = None
    for parent in parents:
        if not isinstance(parent, str) or not parent.strip():
            raise ProfileError(
                Problem(
                    "'extends' takes a file name or a list of them", extends_location, "extends"
                )
            )
        parent_path = path.parent / parent
        if not parent_path.exists():
            raise ProfileError(
                Problem(
                    f"extended profile {parent} does not exist (looked for {parent_path})",
                    extends_location,
                    "extends",
                )
            )
        base = _load_chain(parent_path, files, (*stack, resolved), extends_location)
        merged = base if merged is None else _merge(merged, base)
    assert merged is not None
    return _merge(merged, document)


def _refuse_duplicate_ids(document: YamlMap) -> None:
    checks = document.get("checks")
    if not isinstance(checks, YamlList):
        return
    seen: dict[str, Location] = {}
    for index, check in enumerate(checks):
        if isinstance(check, YamlMap) and isinstance(check.get("id"), str):
            check_id = check["id"]
            where = check.locations.get("id", checks.locations[index])
            if check_id in seen:
                raise ProfileError(
                    Problem(
                        f"duplicate check id {check_id!r} (first defined at line "
                        f"{seen[check_id].line})",
                        where,
                        f"checks[{check_id}].id",
                    )
                )
            seen[check_id] = where


def _merge(base: YamlMap, child: YamlMap) -> YamlMap:
    """Child over base: checks and waivers merge by id, maps merge key by key."""
    merged = _copy_map(base)
    for key, value in child.items():
        location = child.locations[key]
        if (
            key == "checks"
            and isinstance(value, YamlList)
            and isinstance(merged.get(key), YamlList)
        ):
            merged[key] = _merge_by(merged[key], value, "id")
        elif (
            key == "waivers"
            and isinstance(value, YamlList)
            and isinstance(merged.get(key), YamlList)
        ):
            merged[key] = _merge_by(merged[key], value, "check")
        elif isinstance(value, YamlMap) and isinstance(merged.get(key), YamlMap):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
        merged.locations[key] = location
    return merged


def _merge_by(base: YamlList, child: YamlList, key: str) -> YamlList:
    """Items with the same ``key`` merge (the child's keys win; a changed check type
    replaces the item whole); new items are appended in order."""
    result = YamlList(base)
    result.location = child.location
    result.locations = list(base.locations)
    index_of = {
        item[key]: i for i, item in enumerate(result) if isinstance(item, YamlMap) and key in item
    }
    for item, location in zip(child, child.locations, strict=True):
        if isinstance(item, YamlMap) and item.get(key) in index_of:
            i = index_of[item[key]]
            previous = result[i]
            same_type = previous.get("type") == item.get("type") or "type" not in item
            result[i] = _merge(previous, item) if same_type else item
            result.locations[i] = location
        else:
            if isinstance(item, YamlMap) and key in item:
                index_of[item[key]] = len(result)
            result.append(item)
            result.locations.append(location)
    return result


def _copy_map(source: YamlMap) -> YamlMap:
    copy = YamlMap(source)
    copy.location = source.location
    copy.locations = dict(source.locations)
    return copy
