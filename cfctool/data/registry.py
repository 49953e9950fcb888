"""Loading data sets by name (the names and modules are in `cfctool.data.names`)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from cfctool.data.base import Dataset, SplitSource, split_off_validation
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


def input_kind(cfg) -> str | None:
    """'tokens' or 'features': what a data set's task reads, when its module can tell without
    reading the data (its preview, else its INPUT_KIND); None when it cannot."""
    module = _module(cfg.dataset)
    preview = preview_task(cfg)
    return preview["input"]["kind"] if preview is not None else getattr(module, "INPUT_KIND", None)


def tensor_spec(name: str) -> tuple[tuple[str, tuple, str, str], ...]:
    """What a built-in data set's splits hold, as its module declares it: (tensor, shape,
    dtype, meaning) with N rows and T steps; a tensor not listed is absent (dt: 1 per step;
    mask: every step valid)."""
    spec = _module(name).TENSORS
    return spec[name] if isinstance(spec, dict) else spec


def tensor_tables() -> str:
    """Markdown: every built-in data set's tensors (the data guide's generated section)."""
    from cfctool.data.names import MODULES

    parts = []
    for name in MODULES:
        rows = "\n".join(
            f"| `{t}` | ({', '.join(map(str, shape))}{',' if len(shape) == 1 else ''}) | {dtype} | {meaning} |"
            for t, shape, dtype, meaning in tensor_spec(name)
        )
        absent = [t for t in ("dt", "mask") if t not in {row[0] for row in tensor_spec(name)}]
        note = "".join(
            {"dt": " No `dt`: every step is 1.", "mask": " No `mask`: every step is valid."}[t] for t in absent
        )
        parts.append(
            f"### `{name}`\n\n{_module(name).STEPS}.{note}\n\n| tensor | shape | dtype | meaning |\n"
            f"|---|---|---|---|\n{rows}\n"
        )
    return "\n".join(parts)


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


def load_split(task: dict[str, Any], split: str, data_dir: Path | None, task_tensors=None) -> SplitSource:
    """One split for evaluation, preprocessed exactly as the task record (and the tensors
    that travel with it, such as a vocabulary) say."""
    return _module(task["dataset"]).load_split(task, split, data_dir, task_tensors or {})
