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


Presets = dict[tuple[str, str], dict[str, Any]]
ArchPresets = dict[tuple[str, str, str], dict[str, Any]]
Descriptions = dict[tuple[str, str], str]


def _parse(path: Path) -> tuple[Presets, ArchPresets, Descriptions]:
    """(presets, per-architecture presets, one-line descriptions) of one data set's file."""
    dataset = path.stem
    doc = _mapping(strict_yaml(read_bounded(path, TEXT_LIMIT, "preset file", ConfigError).decode()), str(path))
    entries = _mapping(doc.get("presets"), f"{path}: presets")
    presets: Presets = {}
    archs: ArchPresets = {}
    said: Descriptions = {}
    for name, entry in entries.items():
        unknown = set(_mapping(entry, f"{path}: {name}")) - _KEYS
        if unknown:
            raise ConfigError(
                f"{path}: preset '{name}' has {', '.join(sorted(unknown))}; a preset has {', '.join(sorted(_KEYS))}"
            )
        presets[(dataset, name)] = _settings(name, entries, path)
        said[(dataset, name)] = str(entry.get("description", ""))
        for arch, values in _mapping(entry.get("archs") or {}, f"{path}: {name}.archs").items():
            archs[(dataset, name, arch)] = dict(_mapping(values, f"{path}: {name}.archs.{arch}"))
    return presets, archs, said


def _load(folder: Path) -> tuple[Presets, ArchPresets, Descriptions]:
    presets: Presets = {}
    archs: ArchPresets = {}
    said: Descriptions = {}
    for path in sorted(folder.glob("*.yaml")):
        found, found_archs, found_said = _parse(path)
        presets.update(found)
        archs.update(found_archs)
        said.update(found_said)
    return presets, archs, said


def read(path: Path) -> tuple[Presets, ArchPresets]:
    """(presets, per-architecture presets) of one data set's file."""
    return _parse(path)[:2]


def read_all(folder: Path = PRESET_DIR) -> tuple[Presets, ArchPresets]:
    return _load(folder)[:2]


PRESETS, ARCH_PRESETS, DESCRIPTIONS = _load(PRESET_DIR)  # the files are read once
