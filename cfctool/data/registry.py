"""Loading data sets by name (the names and modules are in `cfctool.data.names`)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from cfctool.data.base import Dataset, Split, split_off_validation
from cfctool.data.names import MODULES
from cfctool.errors import DataError

TEST_SAMPLE_SEED = 0  # a capped test set is the same subset whatever the training seed


def capped_test_record(samples: int, total: int) -> dict[str, Any]:
    return {"samples": samples, "of": total, "seed": TEST_SAMPLE_SEED, "how": "seeded random subset (max_test_samples)"}


def _module(name: str):
    if name not in MODULES:
        raise DataError(f"unknown data set '{name}'; available: {', '.join(MODULES)}")
    return importlib.import_module(MODULES[name])


def preview_task(cfg) -> dict[str, Any] | None:
    """The task record a data set will have, when its module can tell without reading the
    data (`preview_task(cfg)`), so settings that do not fit it fail before any loading."""
    preview = getattr(_module(cfg.dataset), "preview_task", None)
    return preview(cfg) if preview else None


def view_converter(source: dict[str, Any], target: dict[str, Any]):
    """A function turning inputs of the `source` task into the ones a `target` task's model
    reads, when both data sets are views of the same rows in the same order (MNIST's image
    rows and its pixel sequence); None when they are not. A teacher then reads its own view
    of the student's rows (`distill --dataset`)."""
    if source["dataset"] == target["dataset"]:
        return lambda x: x
    if MODULES.get(source["dataset"]) != MODULES.get(target["dataset"]):
        return None
    convert = getattr(_module(source["dataset"]), "view_converter", None)
    return convert(source, target) if convert else None


def load_dataset(cfg, seed: int = 0) -> Dataset:
    """All splits for training; a 'val' split is held out of 'train' when the module has none."""
    dataset = _module(cfg.dataset).load(cfg)
    limit = getattr(cfg, "max_test_samples", None)
    if limit is not None and dataset.test_subset is None:  # a module may have read only the subset
        total = len(dataset.splits["test"])
        dataset.splits["test"] = dataset.splits["test"].sample(limit, TEST_SAMPLE_SEED)
        dataset.test_subset = capped_test_record(len(dataset.splits["test"]), total)
    if "val" not in dataset.splits and cfg.val_fraction > 0:
        train, val = split_off_validation(dataset.splits["train"], cfg.val_fraction, seed)
        dataset.splits["train"] = train
        if val is not None:
            dataset.splits["val"] = val
    return dataset


def recorded_data_settings(ckpt) -> dict[str, Any]:
    """The data settings the checkpoint's model was trained with (its first history entry)."""
    from cfctool.configs import DataConfig

    settings = ((ckpt.record.get("history") or [{}])[0].get("config") or {})
    return {k: v for k, v in (settings.get("data") or {}).items() if k in DataConfig.__dataclass_fields__}


def task_dataset(ckpt, data_dir: str | Path | None, seed: int, purpose: str) -> Dataset:
    """The training data of a checkpoint's task, loaded with the data settings it was trained
    with (for fine-tuning after a compression: QAT, pruning, distillation); `purpose` names
    what needs it in the error message."""
    from cfctool.configs import DataConfig

    data_settings = recorded_data_settings(ckpt)
    directory, _ = resolve_data_dir(ckpt, data_dir)
    data_settings.update(dataset=ckpt.task["dataset"],
                         data_dir=str(directory) if directory else data_settings.get("data_dir"))
    try:
        return load_dataset(DataConfig(**data_settings), seed=seed)
    except DataError as exc:
        raise DataError(f"{purpose} needs the task's data: {exc}") from None


def load_split(task: dict[str, Any], split: str, data_dir: Path | None, task_tensors=None) -> Split:
    """One split for evaluation, preprocessed exactly as the task record (and the tensors
    that travel with it, such as a vocabulary) say."""
    return _module(task["dataset"]).load_split(task, split, data_dir, task_tensors or {})


def resolve_data_dir(ckpt, given: str | Path | None) -> tuple[Path | None, str | None]:
    """(data directory, how it was chosen) for evaluating `ckpt`: --data, then
    $CFCTOOL_DATA, then the directory recorded when the model was trained (the training
    machine's own path, used only if it exists here)."""
    from cfctool.configs import DataConfig

    chosen = DataConfig(data_dir=str(given) if given else None).resolved_data_dir()
    if chosen is not None:
        return chosen, None
    for entry in reversed(ckpt.record.get("history") or []):
        recorded = ((entry.get("config") or {}).get("data") or {}).get("data_dir")
        if recorded and Path(recorded).is_dir():
            return Path(recorded), f"using the data directory recorded at training: {recorded} (pass --data to override)"
    return None, None
