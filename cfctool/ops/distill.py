"""`cfctool distill`: knowledge distillation from any teacher checkpoint into a smaller student.

The student (any family, its settings from the train flags over the data set's preset)
trains through `fit()` on the teacher's task and data, or on another view of the same rows
(`dataset`: a pixel-MNIST ODE-RNN from an MNIST conv-ODE teacher, which reads each row as its
image), with

    loss = alpha * CE(student, labels) + (1 - alpha) * KD(student, teacher)

KD is T^2 * KL(softmax(teacher / T) || softmax(student / T)) (`kl`) or the mean squared
difference of the logits (`mse`; the only choice for regression). The teacher runs frozen
in inference mode on its fastest exact engine (the one `eval` names, integer for a
quantized teacher), once over the training split: its logits are cached with the rows
(so the student's inputs are not augmented: a teacher's `shift` is dropped; the student's
own dropout does not change them). The student's record names the teacher by path and
sha256; `init` starts the student from another checkpoint (prune -> distill), whose shapes
must match the student settings.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cfctool import checkpoint as ckpt_io
from cfctool.checkpoint import TASK_TENSOR_PREFIX, Checkpoint, file_sha256, history_entry, new_record
from cfctool.configs import DataConfig, DistillConfig, resolve
from cfctool.data.base import Dataset, Split
from cfctool.data.registry import load_dataset, preview_task, view_converter
from cfctool.engines import choose
from cfctool.errors import CfcError, ConfigError, DataError
from cfctool.families.build import check_run, model_from_checkpoint
from cfctool.metrics import parameter_counts, task_loss, valid_targets
from cfctool.ops.train import run_identity, warm_start_record
from cfctool.task_data import recorded_data_settings, resolve_data_dir
from cfctool.training.session import run_training
from cfctool.training.state import state_path_for

TEACHER = "teacher_logits"


def validate(teacher: Checkpoint, cfg: DistillConfig, dataset: str | None = None) -> None:
    cfg.validate()
    if dataset is not None:
        teacher_view(teacher, dataset)
    if teacher.task["output"]["kind"] != "classification" and cfg.kd_loss == "kl" and cfg.alpha < 1:
        raise ConfigError("--kd-loss kl needs class outputs; this teacher's task is a regression: use --kd-loss mse")


def teacher_view(teacher: Checkpoint, dataset: str):
    """The function that turns the inputs of `dataset` (the student's) into the teacher's
    view of the same rows; None for the teacher's own data set, an error when the data sets
    do not share their rows."""
    if dataset == teacher.task["dataset"]:
        return None
    task = preview_task(DataConfig(dataset=dataset))
    convert = view_converter(task, teacher.task) if task is not None else None
    if task is None or convert is None or task["output"] != teacher.task["output"]:
        raise CfcError(
            f"the teacher was trained on '{teacher.task['dataset']}', not '{dataset}', and the two do not "
            "share their rows: a student learns the teacher's task; distill a teacher of that data set "
            "or of another view of the same rows (e.g. an mnist teacher for a pmnist student)"
        )
    return convert


def student_run(
    teacher: Checkpoint,
    cfg: DistillConfig,
    overrides: dict[str, Any],
    dataset: str | None = None,
    file_values: dict[str, Any] | None = None,
):
    """The student's resolved settings: the data set's preset for the student arch, a config
    file's settings, the user's flags over them; on the teacher's own data set its recorded
    data settings too."""
    name = dataset or teacher.task["dataset"]
    data = recorded_data_settings(teacher) if name == teacher.task["dataset"] else {}
    data.pop("dataset", None)
    # the teacher's outputs are cached once per training row: a shifted image would not match them
    data.pop("shift", None)
    user = {k: v for k, v in overrides.items() if v is not None}
    assert cfg.student is not None  # DistillConfig.validate
    return resolve(name, cfg.student, preset=cfg.preset, file_values=file_values, overrides={**data, **user})


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str, temperature: float) -> torch.Tensor:
    """Mean distillation loss over rows (student and teacher logits of the same shape)."""
    if kind == "mse":
        return F.mse_loss(student, teacher)
    t = temperature
    return (
        F.kl_div(F.log_softmax(student / t, -1), F.log_softmax(teacher / t, -1), log_target=True, reduction="batchmean")
        * t
        * t
    )


def distillation_loss(task: dict, alpha: float, kind: str, temperature: float):
    """(student outputs, batch) -> alpha * task loss + (1 - alpha) * KD on the valid targets."""

    def loss(out: torch.Tensor, batch) -> torch.Tensor:
        value = task_loss(out, batch.y, batch.mask, task) if alpha > 0 else out.new_zeros(())
        if alpha < 1:
            s, _ = valid_targets(out, batch.y, batch.mask, task)
            t, _ = valid_targets(batch.extra[TEACHER], batch.y, batch.mask, task)
            value = alpha * value + (1 - alpha) * kd_loss(s, t, kind, temperature)
        return value

    return loss


def teacher_logits(engine: torch.nn.Module, split, view=None) -> torch.Tensor:
    """The teacher's logits for every row of the student's split, each read in the teacher's
    own view of it (`teacher_view`), row for row."""
    return teacher_outputs(engine, split if view is None else Split(view(split.x), split.y))


@torch.inference_mode()
def teacher_outputs(engine: torch.nn.Module, split, batch_size: int = 512) -> torch.Tensor:
    """The teacher's logits for every row of a split (its engine, inference mode)."""
    outs = []
    for b in split.batches(batch_size):
        outs.append(engine(b.x, b.dt, b.mask).float())
    return torch.cat(outs)


def distill(
    teacher: Checkpoint,
    cfg: DistillConfig,
    overrides: dict[str, Any] | None = None,
    *,
    data_dir=None,
    dataset_name: str | None = None,
    argv: list[str] | None = None,
    notify=None,
    progress=None,
    output: str | Path | None = None,
    resume: bool = False,
    file_values: dict[str, Any] | None = None,
) -> Checkpoint:
    """A student checkpoint trained on the teacher's task with the distillation loss."""
    validate(teacher, cfg)
    view = teacher_view(teacher, dataset_name or teacher.task["dataset"])  # the --dataset check, once
    own_data = view is None
    say = notify or (lambda message: None)
    run = student_run(teacher, cfg, overrides or {}, dataset_name, file_values)
    run.validate()
    check_run(run)
    train_cfg = run.train
    init = ckpt_io.load(cfg.init_checkpoint) if cfg.init_checkpoint else None
    t_model = model_from_checkpoint(teacher)
    t_engine = choose(teacher, t_model)

    def load() -> Dataset:
        directory, _ = resolve_data_dir(teacher, data_dir)
        data_cfg = dataclasses.replace(run.data, data_dir=str(directory) if directory else run.data.data_dir)
        try:
            dataset = load_dataset(data_cfg, seed=train_cfg.seed)
        except DataError as exc:
            raise DataError(f"distillation needs the task's data: {exc}") from None
        task = dataset.task
        if (own_data and task["input"] != teacher.task["input"]) or task["output"] != teacher.task["output"]:
            raise CfcError(
                "the data loaded for the student do not match the teacher's task record "
                f"(inputs {task['input']} vs {teacher.task['input']}); check --data"
            )
        return dataset

    def teacher_targets(student, dataset: Dataset) -> None:
        if cfg.alpha < 1:
            train = dataset.splits["train"]
            if not isinstance(train, Split):  # a table read as it goes (--stream): no rows to attach logits to
                raise CfcError(
                    "distill keeps the teacher's logits for every training row in memory, so it does not "
                    "take a --stream table: distill on a table that fits in memory, or use --alpha 1 (the "
                    "labels only)"
                )
            say(f"teacher logits on {len(train):,} training rows ({t_engine.name} engine)")
            train.extra[TEACHER] = teacher_logits(t_engine.module, train, view)

    state = state_path_for(output) if output is not None and str(output) != "-" else None
    identity = {
        **run_identity(run),
        **{f"distill.{k}": v for k, v in cfg.to_dict().items()},
        "teacher_sha256": _sha(teacher),
    }
    trained = run_training(
        run,
        load,
        identity=identity,
        init=init,
        init_label=f"--init {cfg.init_checkpoint}",
        before_fit=teacher_targets,
        progress=progress,
        state_path=state,
        resume=resume,
        notify=say,
        # the loss reads the task's outputs, which load() checked are the teacher's
        loss=distillation_loss(teacher.task, cfg.alpha, cfg.kd_loss, cfg.temperature),
    )
    dataset, task, wall = trained.dataset, trained.dataset.task, trained.wall_s
    tensors = trained.tensors()
    tensors.update(
        {TASK_TENSOR_PREFIX + k: v for k, v in (teacher.task_tensors() if own_data else dataset.task_tensors).items()}
    )
    record = new_record(trained.arch, task)
    # the lineage: the init's steps (train -> prune ...) or else the teacher's (of the same
    # data set: its first entry's data settings are the student's), then this one
    lineage = init if init is not None else teacher if own_data else None
    record["history"] = list((lineage.record.get("history") if lineage else None) or [])
    t_counts = parameter_counts(t_model)
    record["compression"] = {
        "distillation": {
            "teacher": {
                "path": teacher.source,
                "sha256": _sha(teacher),
                "arch": teacher.arch["name"],
                "dataset": teacher.task["dataset"],
                "engine": t_engine.name,
                **t_counts,
                "accuracy": (teacher.record.get("metrics") or {}).get("accuracy"),
            },
            "alpha": cfg.alpha,
            "temperature": cfg.temperature,
            "kd_loss": cfg.kd_loss,
            "init": cfg.init_checkpoint,
            "teacher_logits": "cached once over the training split" if cfg.alpha < 1 else "not used (alpha 1)",
        }
    }
    record["metrics"] = trained.metrics
    if init is not None:
        assert cfg.init_checkpoint is not None  # init is read from it
        record["metrics"]["init_from"] = warm_start_record(init, cfg.init_checkpoint, _sha(init))
    config = {**run.to_dict(), "distill": cfg.to_dict()}
    inputs = [p for p in (teacher.source, cfg.init_checkpoint) if p]
    return Checkpoint(tensors=tensors, record=record).with_history(
        history_entry("distill", argv, config, inputs=inputs, seed=train_cfg.seed, wall_time_s=wall)
    )


def _sha(ckpt: Checkpoint) -> str | None:
    return file_sha256(ckpt.source) if ckpt.source and Path(ckpt.source).is_file() else None
