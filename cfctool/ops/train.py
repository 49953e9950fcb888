"""`cfctool train`: build a model from resolved settings, `fit()` it, test it, return a Checkpoint.

Deterministic on CPU for a given seed and thread count (see `cfctool.training.fit`). With an
output path, the training state is written beside it after every epoch and `resume=True`
continues an interrupted run to the same weights.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cfctool import checkpoint as ckpt_io
from cfctool.checkpoint import TASK_TENSOR_PREFIX, Checkpoint, history_entry, new_record
from cfctool.configs import RunConfig
from cfctool.data.base import Dataset
from cfctool.data.registry import load_dataset
from cfctool.errors import ConfigError
from cfctool.families.build import check_run
from cfctool.training.fit import ProgressFn
from cfctool.training.session import run_training
from cfctool.training.state import state_path_for

# settings that may differ between an interrupted run and its resumption
RESUMABLE_CHANGES = (
    "epochs",
    "max_steps",
    "threads",
    "device",
    "data_dir",
    "eval_batch_size",
    "keep_state",
    "state_every",
)


def run_identity(run: RunConfig) -> dict[str, Any]:
    """The settings a resumed run must share with the run that wrote the training state."""
    flat = {k: v for section in ("arch", "data", "train") for k, v in run.to_dict()[section].items()}
    return {k: v for k, v in sorted(flat.items()) if k not in RESUMABLE_CHANGES}


def train(
    run: RunConfig,
    *,
    progress: ProgressFn | None = None,
    argv: list[str] | None = None,
    output: str | Path | None = None,
    resume: bool = False,
    init_from: str | None = None,
    notify: Callable[[str], None] | None = None,
) -> Checkpoint:
    """Train per `run`. `output` (the checkpoint path the caller will write) places the
    per-epoch training state beside it; `resume` continues from that state. `init_from`
    (a checkpoint path) warm-starts: its weights, a fresh optimiser and schedule, and its
    weights compete as epoch 0, so more training never returns a worse model on validation;
    the result's history starts with that checkpoint's. `notify(message)` hears the steps
    outside the epochs (loading the data, testing)."""
    run.validate()
    init = ckpt_io.load(init_from) if init_from else None  # a bad path fails before the data are read
    check_run(run)  # an arch that does not fit the task, or cannot be built, fails before the data are read
    cfg = run.train
    identity = run_identity(run)
    if init is not None:
        assert init_from is not None  # init is loaded from it
        identity["init_from_sha256"] = ckpt_io.file_sha256(init_from)

    def load() -> Dataset:
        dataset = load_dataset(run.data, seed=cfg.seed)
        if init is not None and init.task.get("dataset") != dataset.task.get("dataset"):
            raise ConfigError(
                f"--init-from {init_from} was trained on '{init.task.get('dataset')}', "
                f"not '{dataset.task.get('dataset')}'; warm-start from a checkpoint of this data set"
            )
        return dataset

    state = state_path_for(output) if output is not None and str(output) != "-" else None
    trained = run_training(
        run,
        load,
        identity=identity,
        init=init,
        init_label=f"--init-from {init_from}",
        progress=progress,
        state_path=state,
        resume=resume,
        start_is_candidate=init is not None,
        notify=notify,
    )
    dataset, metrics, wall = trained.dataset, trained.metrics, trained.wall_s
    tensors = trained.tensors()
    tensors.update({TASK_TENSOR_PREFIX + k: v for k, v in dataset.task_tensors.items()})
    record = new_record(trained.arch, dataset.task)
    if init is not None:  # what the warm start had behind it, so totals can be stated
        metrics["init_from"] = warm_start_record(init, str(init_from), identity["init_from_sha256"])
        record["history"] = list(init.record.get("history") or [])
    record["metrics"] = metrics
    ckpt = Checkpoint(tensors=tensors, record=record)
    config = run.to_dict()
    used = run.data.resolved_data_dir()  # recorded so that eval/bench can find the data again
    config["data"]["data_dir"] = str(used.resolve()) if used is not None and used.is_dir() else None
    return ckpt.with_history(
        history_entry(
            "train",
            argv,
            config,
            inputs=[*dataset.files, *([init_from] if init_from else [])],
            seed=cfg.seed,
            wall_time_s=wall,
        )
    )


def warm_start_record(init: Checkpoint, path: str | Path, sha256: str | None) -> dict[str, Any]:
    """What a warm start had behind it (`metrics.init_from`), so totals can be stated."""
    earlier = init.record.get("metrics") or {}
    return {
        "path": str(path),
        "sha256": sha256,
        **{k: earlier.get(k) for k in ("accuracy", "epochs_run", "train_seconds")},
        **lineage_totals(earlier),
    }


def lineage_totals(metrics: dict[str, Any]) -> dict[str, Any]:
    """Epochs and training seconds of a checkpoint's whole warm-start chain (its own plus
    those of every run it started from), so a budget stated from the last run is complete."""
    parent = metrics.get("init_from") or {}
    epochs, seconds = metrics.get("epochs_run"), metrics.get("train_seconds")
    if epochs is None or seconds is None:
        return {}
    return {
        "epochs_in_all": epochs + parent.get("epochs_in_all", parent.get("epochs_run") or 0),
        "train_seconds_in_all": round(
            seconds + parent.get("train_seconds_in_all", parent.get("train_seconds") or 0), 2
        ),
    }
