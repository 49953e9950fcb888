"""One training run from resolved settings, shared by `train` and `distill`: the device and
threads, the data, the model built and seeded, a warm start, `fit()`, the test on the
fastest exact engine, and the metrics every trained checkpoint records."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cfctool.configs import RunConfig
from cfctool.data.base import Dataset
from cfctool.engines import fastest
from cfctool.families.build import arch_record, build_model
from cfctool.metrics import split_metrics
from cfctool.runtime import resolve_device, seed_everything, threads
from cfctool.training.fit import FitResult, LossFn, ProgressFn, fit, keras_init, warm_start
from cfctool.training.state import require_state


@dataclass
class Trained:
    model: nn.Module
    dataset: Dataset
    arch: dict[str, Any]
    result: FitResult
    metrics: dict[str, Any]  # the test split's metrics and the run's facts (device, epochs, seconds, ...)
    wall_s: float  # this invocation's seconds (resumed runs' earlier time is in metrics.train_seconds)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.model.state_dict().items()}


def run_training(
    run: RunConfig,
    load: Callable[[], Dataset],
    *,
    identity: dict[str, Any],
    init=None,
    init_label: str = "",
    before_fit: Callable[[nn.Module, Dataset], None] | None = None,
    loss: LossFn | None = None,
    progress: ProgressFn | None = None,
    state_path: str | Path | None = None,
    resume: bool = False,
    start_is_candidate: bool = False,
    notify: Callable[[str], None] | None = None,
) -> Trained:
    """Train the model of `run` on the data `load()` returns (checked there by the caller).
    `init` (a checkpoint) warm-starts it; `before_fit(model, dataset)` runs once the model
    is built and warm-started (distillation caches the teacher's outputs there). `notify`
    hears what happens outside the epochs (loading the data, the test pass)."""
    cfg = run.train
    say = notify or (lambda message: None)
    started = time.perf_counter()
    with threads(cfg.threads):
        device = resolve_device(cfg.device)
        if resume:
            require_state(state_path)
        say(f"loading {run.data.dataset}")
        dataset = load()
        say(f"{run.data.dataset}: " + ", ".join(f"{len(split):,} {name}" for name, split in dataset.splits.items()))
        task = dataset.task
        arch = arch_record(run.arch, task)
        seed_everything(cfg.seed)
        model = build_model(arch, task)
        if cfg.init == "keras":
            keras_init(model)
        if init is not None:
            warm_start(model, init, init_label)
        if before_fit is not None:
            before_fit(model, dataset)
        result = fit(
            model,
            dataset,
            cfg,
            loss=loss,
            progress=progress,
            state_path=state_path,
            resume=resume,
            identity=identity,
            device=device,
            start_is_candidate=start_is_candidate,
        )
        chosen = fastest(model)
        engine_name, engine = chosen.name, chosen.module
        say(f"testing the kept weights on {len(dataset.splits['test']):,} rows ({engine_name} engine)")
        test = split_metrics(engine, dataset.splits["test"], task, cfg.eval_batch_size, device)
    wall = time.perf_counter() - started
    metrics = {
        "split": "test",
        **test,
        "engine": engine_name,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "steps": result.steps,
        "device": str(device),
        "train_seconds": round(wall + result.earlier_seconds, 2),
        "epochs": result.history,
    }
    if result.resumed_from_epoch:  # train_seconds includes the interrupted runs' time (from the training state)
        metrics["resumed_after_epoch"] = result.resumed_from_epoch
        metrics["this_run_seconds"] = round(wall, 2)
    if dataset.test_subset:
        metrics["test_subset"] = dataset.test_subset
    return Trained(model, dataset, arch, result, metrics, wall)
