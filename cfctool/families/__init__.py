"""Model families: one module each, one line each in FAMILIES (torch-free to import)."""

from __future__ import annotations

from cfctool.data.names import MODULES
from cfctool.errors import ConfigError
from cfctool.families import cfc, cfc_ncp, ltc, ode, reduced
from cfctool.families.base import Family
from cfctool.settings import MAX_SIZE, Setting

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        cfc.FAMILY,
        cfc.DEEP,
        cfc_ncp.FAMILY,
        ltc.FAMILY,
        ode.CONV,
        ode.RNN,
        reduced.FAMILY,
    )
}


def get(name: str) -> Family:
    if name not in FAMILIES:
        raise ConfigError(f"unknown arch '{name}'; choose one of: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def arch_settings() -> dict[str, Setting]:
    """Every family's settings by name; a name shared by families is one setting."""
    out: dict[str, Setting] = {}
    for family in FAMILIES.values():
        for s in family.settings:
            out.setdefault(s.name, s)
    return out


def record_problem(record: dict) -> str | None:
    """What is wrong with a stored record's structure, before anything is built from it: each
    section's type, the arch against its family's keys, types and bounds, the task's kinds
    and sizes (`field.path what was expected`); None when it is sound."""
    for section, kind in (
        ("arch", dict),
        ("task", dict),
        ("compression", dict),
        ("encodings", dict),
        ("metrics", dict),
        ("history", list),
    ):
        if section in record and not isinstance(record[section], kind):
            return f"{section} must be a {'list' if kind is list else 'mapping'} (got {type(record[section]).__name__})"
    for i, entry in enumerate(record.get("history") or []):
        problem = _history_problem(entry)
        if problem:
            return f"history[{i}]{problem}"
    arch = record["arch"]
    name = arch.get("name")
    if name not in FAMILIES:
        return f"arch.name {name!r} is not a known arch; this cfctool knows {', '.join(FAMILIES)}"
    family = FAMILIES[name]
    try:
        current = family.upgrade(arch) if family.upgrade else arch
    except (KeyError, TypeError, ValueError) as exc:
        return f"arch cannot be read in its current form ({exc})"
    problem = family.arch_problem(current)
    if problem:
        return problem
    task = record["task"]
    if task.get("dataset") not in MODULES:
        return f"task.dataset {task.get('dataset')!r} is not a known data set ({', '.join(MODULES)})"
    for part, kinds, size_key in (
        ("input", ("tokens", "features"), None),
        ("output", ("classification", "regression"), "size"),
    ):
        section = task.get(part)
        if not isinstance(section, dict) or section.get("kind") not in kinds:
            return f"task.{part}.kind must be one of {', '.join(kinds)}"
        key = size_key or ("vocab_size" if section["kind"] == "tokens" else "size")
        value = section.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_SIZE:
            return f"task.{part}.{key} must be a size from 1 to {MAX_SIZE:,} (got {str(value)[:40]})"
    return None


# the fields of a history entry that readers use, with the types they may have (None: absent or null)
_HISTORY_FIELDS = {
    "command": (str,),
    "argv": (list,),
    "config": (dict,),
    "seed": (int,),
    "utc": (str,),
    "wall_time_s": (int, float),
    "cfctool_version": (str,),
    "torch_version": (str,),
    "inputs": (dict,),
    "world_size": (int,),
}


def _history_problem(entry) -> str | None:
    if not isinstance(entry, dict):
        return f" must be a mapping (got {type(entry).__name__})"
    for key, kinds in _HISTORY_FIELDS.items():
        value = entry.get(key)
        if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
            return f".{key} must be {' or '.join(k.__name__ for k in kinds)} (got {type(value).__name__})"
    if isinstance(entry.get("argv"), list) and not all(isinstance(a, str) for a in entry["argv"]):
        return ".argv must be a list of strings"
    return None


def normalise(arch: dict) -> dict:
    """An arch record in the current form (format-1 records are upgraded)."""
    family = get(arch["name"])
    return family.upgrade(arch) if family.upgrade else arch
