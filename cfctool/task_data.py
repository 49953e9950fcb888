"""The data of a checkpoint's task: where it lives and the settings it was trained with, so
that evaluation, calibration and fine-tuning after a compression read the same rows,
preprocessed the same way, as the training did."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cfctool.configs import DataConfig
from cfctool.data.base import Dataset
from cfctool.data.registry import load_dataset
from cfctool.errors import DataError


def recorded_data_settings(ckpt) -> dict[str, Any]:
    """The data settings the checkpoint's model was trained with (its first history entry)."""
    settings = (ckpt.record.get("history") or [{}])[0].get("config") or {}
    return {k: v for k, v in (settings.get("data") or {}).items() if k in DataConfig.__dataclass_fields__}


def split_seed(ckpt) -> int:
    """The seed the checkpoint's training drew its validation hold-out with (its first history
    entry's; 0, the default, where none is recorded)."""
    seed = (ckpt.record.get("history") or [{}])[0].get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else 0


def task_dataset(ckpt, data_dir: str | Path | None, purpose: str) -> Dataset:
    """The training data of a checkpoint's task, loaded with the data settings it was trained
    with and split as its training split it (for fine-tuning after a compression: QAT,
    pruning, reduction; for --max-drop's validation hold-out). A compression's own --seed
    only shuffles: a hold-out drawn with it would hold rows the model was trained on, and a
    fine-tuning would train on the rows the budget measures. `purpose` names what needs the
    data in the error message."""
    data_settings = recorded_data_settings(ckpt)
    directory, _ = resolve_data_dir(ckpt, data_dir)
    data_settings.update(
        dataset=ckpt.task["dataset"], data_dir=str(directory) if directory else data_settings.get("data_dir")
    )
    try:
        return load_dataset(DataConfig(**data_settings), seed=split_seed(ckpt))
    except DataError as exc:
        raise DataError(f"{purpose} needs the task's data: {exc}") from None


def resolve_data_dir(ckpt, given: str | Path | None) -> tuple[Path | None, str | None]:
    """(data directory, how it was chosen) for evaluating `ckpt`: --data, then
    $CFCTOOL_DATA, then the directory recorded when the model was trained (the training
    machine's own path, used only if it exists here)."""
    chosen = DataConfig(data_dir=str(given) if given else None).resolved_data_dir()
    if chosen is not None:
        return chosen, None
    for entry in reversed(ckpt.record.get("history") or []):
        recorded = ((entry.get("config") or {}).get("data") or {}).get("data_dir")
        if recorded and Path(recorded).is_dir():
            return Path(
                recorded
            ), f"using the data directory recorded at training: {recorded} (pass --data to override)"
    return None, None
