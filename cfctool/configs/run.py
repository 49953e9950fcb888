"""The settings of a training run: the architecture (its families' settings), the data (its
data sets' settings), the optimisation, and `resolve` (preset, then config file, then flags)."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args

from cfctool.configs.base import (
    _as_int,
    _check_threads,
    _choice,
    _help,
    _normalise_keys,
    _positive,
    _shown,
    choices_of,
    load_config_file,
    parse_lr_scale,
)
from cfctool.configs.presets import ARCH_PRESETS, PRESETS
from cfctool.data.names import MODULES
from cfctool.errors import ConfigError
from cfctool.families import FAMILIES, arch_settings, get
from cfctool.settings import Setting

ARCHS = tuple(FAMILIES)
# the choices of a setting are its Literal type (validate() and the docs read them from there)
Optimizer = Literal["adam", "adamw", "sgd", "rmsprop"]
Device = Literal["auto", "cpu", "cuda"]
OPTIMIZERS, DEVICES = get_args(Optimizer), get_args(Device)


def _arch_config_class():
    """ArchConfig: 'name' plus every family's settings (families declare them, not this file)."""
    fields_ = [("name", str, _help("Architecture.", "cfc"))]
    for s in arch_settings().values():
        kind = {list: "list[int] | None"}.get(s.type, s.type.__name__)
        fields_.append((s.name, kind, _help(s.help, s.default)))

    def validate(self) -> None:
        family = get(self.name)
        settings = arch_settings()
        for key in family.setting_names():
            problem = settings[key].check(getattr(self, key))
            if problem:
                raise ConfigError(problem)
        if family.validate is not None:
            try:
                family.validate(dataclasses.asdict(self))
            except ValueError as exc:
                raise ConfigError(str(exc)) from None

    return dataclasses.make_dataclass(
        "ArchConfig",
        fields_,
        namespace={
            "validate": validate,
            "__doc__": "Settings that rebuild a model's module "
            "(besides the task's input/output sizes); see cfctool.families.",
        },
    )


if TYPE_CHECKING:  # the generated class as a type checker sees it: its fixed fields, the rest by name

    class ArchConfig:
        __dataclass_fields__: ClassVar[dict[str, Any]]
        name: str

        def __init__(self, **values: Any) -> None: ...
        def validate(self) -> None: ...
        def __getattr__(self, key: str) -> Any: ...

else:
    ArchConfig = _arch_config_class()


def data_modules() -> dict[str, Any]:
    """Each data set module once ({module path: module}), in the registry's order."""
    import importlib

    return {path: importlib.import_module(path) for path in dict.fromkeys(MODULES.values())}


def data_settings() -> dict[str, Setting]:
    """Every data set's settings by name (the data sets declare them, not this file)."""
    out: dict[str, Setting] = {}
    for module in data_modules().values():
        for s in module.SETTINGS:
            out.setdefault(s.name, s)
    return out


def _data_config_class():
    """DataConfig: which data set, where it lives, the settings every data set shares, and
    each data set's own settings (declared in its module, `cfctool.data.NAME.SETTINGS`)."""
    fields_ = [
        ("dataset", str, field(default="xor")),
        ("data_dir", "str | None", _help("Data directory (default: $CFCTOOL_DATA).")),
        ("max_samples", "int | None", _help("Train on at most N samples (an even, deterministic subset).")),
        ("max_test_samples", "int | None", _help("Test on at most N samples (a seeded random subset; recorded).")),
        ("val_fraction", "float", _help("Fraction of the training data held out for best-epoch selection.", 0.1)),
    ]
    for s in data_settings().values():
        fields_.append((s.name, s.type.__name__, _help(s.help, s.default)))

    def validate(self) -> None:
        _choice("dataset", self.dataset, tuple(MODULES))  # the registry as it is now
        for key in ("max_samples", "max_test_samples"):
            if getattr(self, key) is not None:
                _positive(key, getattr(self, key))
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1) (got {self.val_fraction})")
        values, settings = dataclasses.asdict(self), data_settings()
        for s in settings.values():
            problem = s.check(values[s.name])
            if problem:
                raise ConfigError(problem)
        for path, module in data_modules().items():
            served = [name for name, p in MODULES.items() if p == path]
            for key, why in getattr(module, "OWN_SETTINGS", {}).items():
                if values[key] != settings[key].default and self.dataset not in served:
                    raise ConfigError(f"{why}: it applies to {', '.join(served)}, not '{self.dataset}'")
            if hasattr(module, "validate"):
                try:
                    module.validate(values)
                except ValueError as exc:
                    raise ConfigError(str(exc)) from None

    def resolved_data_dir(self) -> Path | None:
        """`--data` wins over CFCTOOL_DATA; None when neither is set."""
        value = self.data_dir or os.environ.get("CFCTOOL_DATA")
        return Path(value).expanduser() if value else None

    return dataclasses.make_dataclass(
        "DataConfig",
        fields_,
        namespace={
            "validate": validate,
            "resolved_data_dir": resolved_data_dir,
            "__doc__": "Which data set, where it lives, and how it is generated or preprocessed; see cfctool.data.",
        },
    )


if TYPE_CHECKING:  # as ArchConfig

    class DataConfig:
        __dataclass_fields__: ClassVar[dict[str, Any]]
        dataset: str
        data_dir: str | None
        max_samples: int | None
        max_test_samples: int | None
        val_fraction: float

        def __init__(self, **values: Any) -> None: ...
        def validate(self) -> None: ...
        def resolved_data_dir(self) -> Path | None: ...
        def __getattr__(self, key: str) -> Any: ...

else:
    DataConfig = _data_config_class()


@dataclass
class TrainConfig:
    """Optimisation settings; seed and threads make a CPU run bit-for-bit repeatable."""

    epochs: int = _help("Training epochs.", 2)
    batch_size: int = _help("Training batch size.", 128)
    eval_batch_size: int = _help("Batch size of validation and test passes.", 512)
    lr: float = _help("Learning rate.", 0.005)
    lr_decay: float = _help("Learning-rate factor per epoch.", 1.0)
    lr_schedule: Literal["epoch", "step"] = _help(
        "epoch: multiply by lr_decay after every epoch; step: decay smoothly every step "
        "(lr * lr_decay ** (step / steps per epoch), Keras' ExponentialDecay).",
        "epoch",
    )
    warmup_steps: int = _help(
        "Ramp the learning rate up linearly over the first N optimiser steps (a fresh "
        "Adam's first steps are lr-sized on every weight: warm starts need this).",
        0,
    )
    lr_scale: str | None = _help(
        "Per-parameter learning-rate factors, NAME=FACTOR[,NAME=FACTOR...]; NAME is a "
        "parameter name or a glob (e.g. 'rnn.b=0.1'): for a weight the loss is far "
        "more sensitive to than the rest (Adam moves every weight by about lr a step)."
    )
    ema_decay: float | None = _help(
        "Keep an exponential moving average of the weights, with this decay per "
        "optimiser step (e.g. 0.999: an average over ~1000 steps); validation, the "
        "best-epoch choice and the saved model use the average (default: off)."
    )
    clipnorm: float | None = _help("Clip the gradient norm to this value (default: no clipping).")
    clip_scope: Literal["global", "tensor"] = _help(
        "global: clip the norm of all gradients together; tensor: each tensor's own (Keras' clipnorm).", "global"
    )
    weight_decay: float = _help(
        "Weight decay (added to the gradient for adam/sgd/rmsprop, i.e. L2 of "
        "weight_decay/2 in the loss; decoupled for adamw).",
        0.0,
    )
    weight_decay_on: Literal["all", "kernels"] = _help(
        "all: every parameter; kernels: the recurrent core's weight matrices only (not embedding, biases or readout).",
        "all",
    )
    optimizer: Optimizer = _help("adam, adamw, sgd or rmsprop (rmsprop with Keras' rho 0.9, eps 1e-7).", "adam")
    init: Literal["torch", "keras"] = _help(
        "torch: PyTorch's default biases; keras: zero biases (Keras' default).", "torch"
    )
    seed: int = _help("Seed of initialisation, shuffling and dropout.", 0)
    threads: int | None = _help("CPU threads (default: torch's choice).")
    device: Device = _help("auto, cpu or cuda.", "auto")
    max_steps: int | None = _help("Stop after N optimiser steps (quick runs).")
    state_every: float = _help(
        "Also write the training state every N minutes within an epoch (0: at epoch ends "
        "only), so an interrupted run loses at most that much; --resume continues mid-epoch "
        "to the same weights.",
        5.0,
    )
    keep_state: bool = _help(
        "Keep the training state (OUT.st.train-state) after the last epoch instead of "
        "removing it, so that --resume with more --epochs extends the finished run "
        "with its optimiser, schedule and weight average.",
        False,
    )
    amp: Literal["none", "bf16"] = _help(
        "Mixed precision of the training passes: none, or bf16 (autocast: products in bfloat16; "
        "weights, optimiser, state sums and validation stay float32). bf16 pays off on CPUs "
        "with AMX or AVX512-BF16.",
        "none",
    )

    def validate(self) -> None:
        _positive("epochs", self.epochs)
        _positive("batch_size", self.batch_size)
        _positive("eval_batch_size", self.eval_batch_size)
        _choice("optimizer", self.optimizer, choices_of(type(self), "optimizer"))
        _choice("device", self.device, choices_of(type(self), "device"))
        _choice("lr_schedule", self.lr_schedule, choices_of(type(self), "lr_schedule"))
        _choice("clip_scope", self.clip_scope, choices_of(type(self), "clip_scope"))
        _choice("weight_decay_on", self.weight_decay_on, choices_of(type(self), "weight_decay_on"))
        _choice("init", self.init, choices_of(type(self), "init"))
        _choice("amp", self.amp, choices_of(type(self), "amp"))
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0 (got {self.warmup_steps})")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0 (got {self.lr})")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"lr_decay must be in (0, 1] (got {self.lr_decay})")
        parse_lr_scale(self.lr_scale)
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in (0, 1) (got {self.ema_decay})")
        if self.clipnorm is not None and not self.clipnorm > 0:
            raise ConfigError(f"clipnorm must be > 0 (got {self.clipnorm})")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0 (got {self.weight_decay})")
        _check_threads(self.threads)
        if self.max_steps is not None:
            _positive("max_steps", self.max_steps)


@dataclass
class RunConfig:
    """The resolved settings of one training run, as stored in a checkpoint's history."""

    arch: ArchConfig = field(default_factory=ArchConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str = "default"

    def validate(self) -> None:
        self.arch.validate()
        self.data.validate()
        self.train.validate()

    def to_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "arch": dataclasses.asdict(self.arch),
            "data": dataclasses.asdict(self.data),
            "train": dataclasses.asdict(self.train),
        }


# Presets per (data set, preset name); an arch-specific entry refines the data set entry.
# "default" is what `cfctool train DATASET --arch ARCH` uses; other names via --preset.


def owner_of(key: str) -> str:
    """Which section ('arch', 'data', 'train') a flat setting key belongs to."""
    for section, cls in (("arch", ArchConfig), ("data", DataConfig), ("train", TrainConfig)):
        if key in {f.name for f in fields(cls)}:
            return section
    raise ConfigError(f"unknown setting {_shown(key)}; valid settings are: {', '.join(all_keys())}")


def all_keys() -> list[str]:
    return sorted(f.name for cls in (ArchConfig, DataConfig, TrainConfig) for f in fields(cls))


def preset_names(dataset: str) -> list[str]:
    return sorted(name for (ds, name) in PRESETS if ds == dataset) or ["default"]


def resolve(
    dataset: str,
    arch: str,
    *,
    preset: str = "default",
    file_values: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Merge defaults < arch defaults < preset < config file < command-line options."""
    family = get(arch)
    if (dataset, preset) not in PRESETS and preset != "default":
        raise ConfigError(
            f"no preset '{preset}' for data set '{dataset}'; available: {', '.join(preset_names(dataset))}"
        )
    file_values = _normalise_keys(file_values or {})
    for key, given in (("arch", arch), ("dataset", dataset), ("preset", preset)):
        if key in file_values:  # a stored run config names them: they must be the command line's
            found = file_values.pop(key)
            if found != given:
                raise ConfigError(
                    f"the config file is for {key} '{found}', not '{given}'; give --{key} {found}"
                    if key != "dataset"
                    else f"the config file is for data set '{found}', not "
                    f"'{given}'; give it as the data set: cfctool train {found}"
                )
    user = {**file_values, **_normalise_keys(overrides or {})}
    layers: list[Mapping[str, Any]] = [
        family.defaults,
        PRESETS.get((dataset, preset), {}),
        ARCH_PRESETS.get((dataset, preset, arch), {}),
        user,
    ]
    sections: dict[str, dict[str, Any]] = {"arch": {"name": arch}, "data": {"dataset": dataset}, "train": {}}
    for layer in layers:
        for key, value in layer.items():
            if key in ("arch", "name", "dataset"):
                raise ConfigError(f"'{key}' cannot be set in a config file or preset; give it on the command line")
            sections[owner_of(key)][key] = value
    for key in user:  # presets may set keys for every arch of a data set; the user may not
        if owner_of(key) == "arch" and key not in family.setting_names():
            raise ConfigError(
                f"setting '{key}' does not apply to arch '{arch}' (its settings: "
                f"{', '.join(sorted(family.setting_names()))})"
            )
    try:
        run = RunConfig(
            arch=ArchConfig(**sections["arch"]),
            data=DataConfig(**sections["data"]),
            train=TrainConfig(**sections["train"]),
            preset=preset,
        )
    except TypeError as exc:  # pragma: no cover - owner_of() already rejects unknown keys
        raise ConfigError(str(exc)) from exc
    _coerce_types(run)
    run.validate()
    return run


# the format of a stored config (history entries, --print-config): its `kind` (the command)
# and this `version` come first, so a file of settings says what it is for

DESCRIPTION_SUFFIXES = (".yaml", ".yml")
DATA_SUFFIXES = (".npz", ".safetensors", ".csv", ".parquet")
DESCRIPTION_PATHS = ("data_file", "test_file", "val_file", "labels_file")  # relative to the description's folder


def dataset_argument(given: str) -> tuple[str, dict[str, Any]]:
    """What a DATASET argument names: (data set, its settings). A built-in name; a data-set
    description (.yaml: data settings only, e.g. `data_file: stays.csv`, `target: regression`;
    its file paths relative to itself, so the folder travels); or your own data file or
    folder of arrays (the `own` data set with that --data-file)."""
    if given in MODULES:
        return given, {}
    path = Path(given)
    if path.suffix.lower() in DESCRIPTION_SUFFIXES:
        values = {k.replace("-", "_"): v for k, v in load_config_file(path, kind="data").items()}
        for key in values:
            if owner_of(key) != "data":
                raise ConfigError(
                    f"{path}: a data-set description holds data settings only; '{key}' is "
                    f"{'an' if owner_of(key) == 'arch' else 'a'} {owner_of(key)} setting: give it as a "
                    "flag or in --config"
                )
        if values.pop("dataset", "own") != "own":
            raise ConfigError(f"{path}: a description is of your own data (dataset: own)")
        for key in DESCRIPTION_PATHS:
            if isinstance(values.get(key), str) and not Path(values[key]).is_absolute():
                values[key] = str(path.parent / values[key])
        if not values.get("data_file"):
            raise ConfigError(f"{path}: the description names no data_file")
        return "own", values
    if path.suffix.lower() in (*DATA_SUFFIXES, ".npy") or path.is_dir():
        return "own", {"data_file": given}
    raise ConfigError(
        f"unknown data set {_shown(given)}: give one of {', '.join(MODULES)}, a data-set description "
        f"(.yaml), or your own data file ({', '.join(DATA_SUFFIXES)}) or folder of .npy arrays"
    )


def _coerce_types(run: RunConfig) -> None:
    """Config files give ints where floats are meant and vice versa; accept, but check kinds."""
    for section in (run.arch, run.data, run.train):
        for f in fields(section):
            value = getattr(section, f.name)
            if value is None:
                continue
            kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
            try:
                if kind.startswith("list"):
                    items = (
                        value.split(",") if isinstance(value, str) else value if isinstance(value, list) else [value]
                    )
                    setattr(section, f.name, [_as_int(v) for v in items])
                elif kind.startswith("float"):
                    if isinstance(value, bool) or not math.isfinite(float(value)):
                        raise ValueError
                    setattr(section, f.name, float(value))
                elif kind.startswith("int") and not isinstance(value, bool):
                    if isinstance(value, float) and not value.is_integer():
                        raise ValueError
                    setattr(section, f.name, int(value))
                elif kind.startswith("bool") and not isinstance(value, bool):
                    raise ValueError
            except (TypeError, ValueError):
                raise ConfigError(
                    f"setting '{f.name}' must be of type {kind}"
                    + (", finite" if kind.startswith("float") else "")
                    + f" (got {_shown(value)})"
                ) from None
