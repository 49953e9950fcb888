"""The presets: named settings per data set (and per architecture), read from the data files
in `cfctool/presets/` (one per data set, `NAME.yaml`), so a recipe is a file, not code.

A file holds `presets:`, a mapping of preset name to
- `settings`: flat settings (any train, model or data setting),
- `archs` (optional): {architecture: settings added over them for that architecture},
- `extends` (optional): another preset of the file whose settings come first,
- `description`: one line of what it is (the presets table of the training guide).

`tests/test_configs.py` resolves every preset for every architecture it names, so a key or a
value the config classes do not take fails there, not in a user's run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cfctool.errors import ConfigError
from cfctool.files import TEXT_LIMIT, read_bounded, strict_yaml

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"
_KEYS = {"description", "settings", "archs", "extends"}


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{where} must be a mapping of names to values")
    return value


def _settings(name: str, entries: dict[str, Any], path: Path, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A preset's settings with those it extends first."""
    if name in seen:
        raise ConfigError(f"{path}: preset '{name}' extends itself ({' -> '.join((*seen, name))})")
    if name not in entries:
        raise ConfigError(f"{path}: preset '{seen[-1]}' extends '{name}', which the file does not define")
    entry = entries[name]
    base = _settings(entry["extends"], entries, path, (*seen, name)) if "extends" in entry else {}
    return {**base, **_mapping(entry.get("settings") or {}, f"{path}: {name}.settings")}


def read(path: Path) -> tuple[dict[tuple[str, str], dict[str, Any]], dict[tuple[str, str, str], dict[str, Any]]]:
    """(presets, per-architecture presets) of one data set's file."""
    dataset = path.stem
    doc = _mapping(strict_yaml(read_bounded(path, TEXT_LIMIT, "preset file", ConfigError).decode()), str(path))
    entries = _mapping(doc.get("presets"), f"{path}: presets")
    presets, archs = {}, {}
    for name, entry in entries.items():
        unknown = set(_mapping(entry, f"{path}: {name}")) - _KEYS
        if unknown:
            raise ConfigError(
                f"{path}: preset '{name}' has {', '.join(sorted(unknown))}; a preset has {', '.join(sorted(_KEYS))}"
            )
        presets[(dataset, name)] = _settings(name, entries, path)
        for arch, values in _mapping(entry.get("archs") or {}, f"{path}: {name}.archs").items():
            archs[(dataset, name, arch)] = dict(_mapping(values, f"{path}: {name}.archs.{arch}"))
    return presets, archs


def read_all(folder: Path = PRESET_DIR):
    presets: dict[tuple[str, str], dict[str, Any]] = {}
    archs: dict[tuple[str, str, str], dict[str, Any]] = {}
    for path in sorted(folder.glob("*.yaml")):
        found, found_archs = read(path)
        presets.update(found)
        archs.update(found_archs)
    return presets, archs


def descriptions(folder: Path = PRESET_DIR) -> dict[tuple[str, str], str]:
    """{(data set, preset): its one-line description}."""
    out = {}
    for path in sorted(folder.glob("*.yaml")):
        doc = _mapping(strict_yaml(read_bounded(path, TEXT_LIMIT, "preset file", ConfigError).decode()), str(path))
        for name, entry in _mapping(doc.get("presets"), f"{path}: presets").items():
            out[(path.stem, name)] = str(_mapping(entry, f"{path}: {name}").get("description", ""))
    return out


PRESETS, ARCH_PRESETS = read_all()
