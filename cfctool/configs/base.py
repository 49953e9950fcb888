"""What every command's settings share: the field helper whose help text becomes the flag's,
settings from a config file and flags (typed, unknown keys caught), stored configs, checks."""

from __future__ import annotations

import math
import types
from collections.abc import Mapping
from dataclasses import field, fields
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from cfctool.errors import ConfigError
from cfctool.families import get
from cfctool.settings import MAX_THREADS


def _help(
    text: str, default: Any = None, flags: str | None = None, metavar: str | None = None, repeat: bool = False, **kw
):
    """A dataclass field whose one-line help feeds `--help` (the flags are derived from these;
    `flags` overrides the derived declaration, e.g. '--global/--local'; `metavar` names the
    value; `repeat`: a list setting whose flag is given once per value)."""
    metadata: dict[str, Any] = {"help": text, "flags": flags, "metavar": metavar, "repeat": repeat}
    metadata = {k: v for k, v in metadata.items() if v}
    if "default_factory" in kw:
        return field(metadata=metadata, **kw)
    return field(default=default, metadata=metadata, **kw)


MAX_DROP_WITH_LIMIT = 32  # models a budget measures every candidate on (each is one more search)


def max_drop_with_setting():
    """The --max-drop-with setting every method with a budget shares."""
    return _help(
        "With --max-drop: the same recipe trained with other seeds (a checkpoint; repeat the flag). "
        "Every candidate is made from each as well and measured on its own validation hold-out; "
        "the budget holds for the mean drop (each value and the sd are recorded).",
        metavar="CKPT",
        repeat=True,
        default_factory=list,
    )


def _check_max_drop(cfg) -> None:
    if cfg.max_drop is not None and not 0 <= cfg.max_drop < 1000:
        raise ConfigError(
            f"--max-drop is the most of the task's validation metric to lose: points of accuracy (or of "
            f"AUC x 100), or percent more MSE; in [0, 1000) (got {cfg.max_drop})"
        )
    others = getattr(cfg, "max_drop_with", None) or []
    if not isinstance(others, list) or not all(isinstance(p, str) for p in others):
        raise ConfigError(f"--max-drop-with is a list of checkpoint paths (got {_shown(others)})")
    if others and cfg.max_drop is None:
        raise ConfigError("--max-drop-with names the other seeds a --max-drop search measures on: give --max-drop too")
    if len(others) > MAX_DROP_WITH_LIMIT or len(set(others)) != len(others):
        raise ConfigError(
            f"--max-drop-with takes up to {MAX_DROP_WITH_LIMIT} different checkpoints (got {len(others)}, "
            f"{len(set(others))} different)"
        )


CONFIG_VERSION = 1
_SECTIONS = ("arch", "data", "train")


def stored(kind: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """A config as it is stored: its kind and version, then its settings."""
    return {"kind": kind, "version": CONFIG_VERSION, **values}


def load_config_file(path: str | Path, kind: str = "train") -> dict[str, Any]:
    """The settings of a YAML file for the command `kind`: a flat mapping of setting: value,
    or a stored config (a history entry's `config`, `train --print-config`), whose kind must
    be this command's; unknown keys are reported by resolve() / from_settings()."""
    import yaml

    from cfctool.files import TEXT_LIMIT, read_bounded, strict_yaml

    path = Path(path)
    try:
        values = strict_yaml(read_bounded(path, TEXT_LIMIT, "config file", ConfigError).decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except yaml.YAMLError as exc:  # (the message is bounded: it quotes a line, never a value)
        raise ConfigError(f"config file {path} is not valid YAML: {str(exc)[:600]}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} nests too deeply to be a settings file") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must be a mapping of setting: value (got {type(values).__name__})")
    values = dict(values)
    found = values.pop("kind", kind)
    if found != kind:
        found = str(found)[:40]
        raise ConfigError(
            f"config file {path} holds {found} settings, not {kind} settings"
            + (f"; give it to `cfctool {found}`" if found.isidentifier() else "")
        )
    version = values.pop("version", CONFIG_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= CONFIG_VERSION:
        raise ConfigError(
            f"config file {path} has format version {_shown(version)}; this cfctool reads versions 1 to "
            f"{CONFIG_VERSION} (a newer cfctool wrote it: upgrade)"
        )
    if kind in ("train", "distill") and any(isinstance(values.get(s), dict) for s in _SECTIONS):
        values = _flatten(values, path)
    return values


def _flatten(values: dict[str, Any], path: Path) -> dict[str, Any]:
    """A stored run config's sections as one flat mapping. What the command line chooses (the
    data set, the arch, the preset) is kept under its own name for resolve() to compare."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if key == "arch" and isinstance(value, dict):
            # the flat arch section holds every family's keys: its own family's are the run's
            own = get(value["name"]).setting_names() if "name" in value else set(value)
            flat.update({k: v for k, v in value.items() if k in own})
            if "name" in value:
                flat["arch"] = value["name"]
        elif key in _SECTIONS and isinstance(value, dict):
            flat.update(value)
        elif key == "distill" and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat


def from_settings(cls, file_values: Mapping[str, Any] | None, flags: Mapping[str, Any]):
    """A command's config dataclass from its defaults < a config file < the flags given
    (None: not given); unknown keys in the file are an error naming the valid ones."""
    names = {f.name for f in fields(cls)}
    file_values = _normalise_keys(file_values or {})
    unknown = sorted(set(file_values) - names)
    if unknown:
        shown = ", ".join(_shown(k)[1:-1] if isinstance(k, str) else _shown(k) for k in unknown[:8])
        raise ConfigError(
            f"unknown setting(s) {shown}{' ...' if len(unknown) > 8 else ''} in the config file; "
            "valid settings are: "
            f"{', '.join(sorted(names))}"
        )
    values = {**file_values, **{k: v for k, v in flags.items() if k in names and v is not None}}
    hints = get_type_hints(cls)
    return cls(**{name: _typed(name, hints.get(name), value) for name, value in values.items()})


def _shown(value: Any) -> str:
    """A value for an error message: its repr, bounded (a config value may be enormous)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _typed(name: str, hint: Any, value: Any) -> Any:
    """`value` as the setting's declared type (a file's 1 where 1.0 is meant), or a usage
    error saying what the setting takes; floats must be finite."""
    if value is None:
        return None
    origin = get_origin(hint)
    if origin is Literal:
        if value not in get_args(hint):
            raise ConfigError(
                f"setting '{name}' must be one of {', '.join(map(str, get_args(hint)))} (got {_shown(value)})"
            )
        return value
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        return _typed(name, args[0], value) if len(args) == 1 else value
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is float:
        if not number or not math.isfinite(value):
            raise ConfigError(f"setting '{name}' must be a finite number (got {_shown(value)})")
        return float(value)
    if hint is int:
        if not number or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"setting '{name}' must be an integer (got {_shown(value)})")
        return int(value)
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"setting '{name}' must be true or false (got {_shown(value)})")
    if hint is str and not isinstance(value, str):
        raise ConfigError(f"setting '{name}' must be text (got {_shown(value)})")
    if origin is list and isinstance(value, (list, tuple)):  # (a list given as text is its setting's to parse)
        return [_typed(name, get_args(hint)[0], v) for v in value]
    return value


def _normalise_keys(values: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        if not isinstance(key, str):
            raise ConfigError(f"setting names must be strings (got {_shown(key)})")
        out[key.replace("-", "_")] = value
    return out


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, str):
        value = value.strip()
    f = float(value)
    if not f.is_integer():
        raise ValueError
    return int(f)


def parse_lr_scale(text: str | None) -> dict[str, float]:
    """'rnn.b=0.1,head.*=2' -> {'rnn.b': 0.1, 'head.*': 2.0}; a clear error for anything else."""
    scales: dict[str, float] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, eq, value = item.partition("=")
        try:
            factor = float(value) if eq else math.nan
        except ValueError:
            factor = math.nan
        if not name.strip() or not factor > 0 or math.isinf(factor):
            raise ConfigError(
                f"lr_scale: '{item.strip()}' is not NAME=FACTOR with a factor > 0 (e.g. --lr-scale rnn.b=0.1)"
            )
        scales[name.strip()] = factor
    return scales


def literal_choices(cls) -> dict[str, tuple[Any, ...]]:
    """{field: its choices} for the fields typed by a `Literal` (or an optional one): the one
    place choices are written, read by validation and by `--help`."""
    out = {}
    for name, hint in get_type_hints(cls).items():
        args = (
            [a for a in get_args(hint) if a is not type(None)]
            if get_origin(hint) in (Union, types.UnionType)
            else [hint]
        )
        if len(args) == 1 and get_origin(args[0]) is Literal:
            out[name] = get_args(args[0])
    return out


def check_literals(cfg: Any) -> None:
    """Every Literal-typed setting is one of its choices (None where the field may be None)."""
    for name, choices in literal_choices(type(cfg)).items():
        value = getattr(cfg, name)
        if value is not None and value not in choices:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} must be one of {', '.join(map(str, choices))} (got '{value}')")


def choices_of(cls, name: str) -> tuple[str, ...]:
    """The allowed values of a setting, from its Literal type."""
    return get_args(get_type_hints(cls)[name])


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)} (got '{value}')")


def _check_lr_threads(cfg) -> None:
    """The fine-tuning settings every compression command shares."""
    if not cfg.lr > 0:
        raise ConfigError(f"lr must be > 0 (got {cfg.lr})")
    _check_threads(cfg.threads)


def _check_threads(threads: int | None) -> None:
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise ConfigError(f"threads must be from 1 to {MAX_THREADS} (got {threads:,})")


def _positive(name: str, value: int) -> None:
    if value is None or value <= 0:
        raise ConfigError(f"{name} must be a positive number (got {value})")
