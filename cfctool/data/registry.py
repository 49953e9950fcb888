"""Data set name -> module; each module has `load(DataConfig) -> Dataset` and
`load_split(task_record, split, data_dir) -> Split`."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from cfctool.data.base import Dataset, Split, split_off_validation
from cfctool.errors import DataError

_MODULES = {
    "xor": "cfctool.data.xor",
    "imdb": "cfctool.data.imdb",
    "person_activity": "cfctool.data.person_activity",
    "mnist": "cfctool.data.mnist",
    "pmnist": "cfctool.data.mnist",
    "pixel-mnist": "cfctool.data.mnist",
    "fashion-mnist": "cfctool.data.mnist",
}


def _module(name: str):
    if name not in _MODULES:
        raise DataError(f"unknown data set '{name}'; available: {', '.join(_MODULES)}")
    return importlib.import_module(_MODULES[name])


def load_dataset(cfg, seed: int = 0) -> Dataset:
    """All splits for training; a 'val' split is held out of 'train' when the module has none."""
    dataset = _module(cfg.dataset).load(cfg)
    if "val" not in dataset.splits and cfg.val_fraction > 0:
        train, val = split_off_validation(dataset.splits["train"], cfg.val_fraction, seed)
        dataset.splits["train"] = train
        if val is not None:
            dataset.splits["val"] = val
    return dataset


def load_split(task: dict[str, Any], split: str, data_dir: Path | None, task_tensors=None) -> Split:
    """One split for evaluation, preprocessed exactly as the task record (and the tensors
    that travel with it, such as a vocabulary) say."""
    return _module(task["dataset"]).load_split(task, split, data_dir, task_tensors or {})
