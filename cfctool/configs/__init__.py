"""Typed settings for every command, one module per owner, and the presets that give their defaults.

No torch here: the CLI imports this package to build `--help` and to validate options
before any heavy import. Settings are flat keys (``hidden``, ``lr``, ``bits``...), each
owned by exactly one dataclass, so a YAML config file is a flat mapping and an unknown key
is caught in one place.

- `base`: the field helper (its help text is the flag's), config files, stored configs, checks;
- `run`: a training run (`ArchConfig`, `DataConfig`, `TrainConfig`, `RunConfig`, `resolve`);
- `quantize`, `prune`, `reduce`, `distill`: each compression command's settings;
- `commands`: the settings of eval, bench, export, info, report and import;
- `presets`: the presets, read from the data files in `cfctool/presets/`.
"""

from cfctool.configs.base import choices_of, from_settings, load_config_file, parse_lr_scale, stored
from cfctool.configs.distill import DistillConfig
from cfctool.configs.prune import PruneConfig
from cfctool.configs.quantize import QuantizeConfig
from cfctool.configs.reduce import ReduceConfig
from cfctool.configs.run import (
    ARCHS,
    ArchConfig,
    DataConfig,
    RunConfig,
    TrainConfig,
    all_keys,
    dataset_argument,
    owner_of,
    resolve,
)

__all__ = [
    "ARCHS",
    "ArchConfig",
    "DataConfig",
    "DistillConfig",
    "PruneConfig",
    "QuantizeConfig",
    "ReduceConfig",
    "RunConfig",
    "TrainConfig",
    "all_keys",
    "choices_of",
    "dataset_argument",
    "from_settings",
    "load_config_file",
    "owner_of",
    "parse_lr_scale",
    "resolve",
    "stored",
]
