"""`cfctool train`: fit a model to a data set from resolved settings, return a Checkpoint.

Deterministic on CPU for a given seed and thread count: initialisation, shuffling and
dropout all draw from generators seeded here. The weights kept are those of the epoch
with the best validation score (the last epoch when there is no validation split).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from cfctool.checkpoint import TASK_TENSOR_PREFIX, Checkpoint, history_entry, new_record
from cfctool.configs import RunConfig
from cfctool.errors import TrainingError


@dataclass
class Progress:
    """One progress report: after every optimiser step (phase 'step') and epoch ('epoch')."""

    phase: str
    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    accuracy: float | None = None
    val: dict[str, float] | None = None


ProgressFn = Callable[[Progress], None]


def make_optimizer(params, cfg) -> torch.optim.Optimizer:
    kinds = {
        "adam": lambda: torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
        "adamw": lambda: torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
        "sgd": lambda: torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay),
        "rmsprop": lambda: torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
    }
    return kinds[cfg.optimizer]()


def train(run: RunConfig, *, progress: ProgressFn | None = None, argv: list[str] | None = None) -> Checkpoint:
    from cfctool.data.registry import load_dataset
    from cfctool.models.registry import arch_record, build_model
    from cfctool.ops.evaluate import split_metrics, task_loss
    from cfctool.ops.runtime import resolve_device, seed_everything, threads

    run.validate()
    cfg = run.train
    started = time.perf_counter()
    with threads(cfg.threads):
        device = resolve_device(cfg.device)
        dataset = load_dataset(run.data, seed=cfg.seed)
        task = dataset.task
        arch = arch_record(run.arch, task)
        seed_everything(cfg.seed)
        model = build_model(arch, task).to(device)
        optimizer = make_optimizer(model.parameters(), cfg)
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_decay)
        train_split, val_split = dataset.splits["train"], dataset.splits.get("val")
        shuffle = torch.Generator().manual_seed(cfg.seed)
        steps_per_epoch = math.ceil(len(train_split) / cfg.batch_size)
        total_steps = steps_per_epoch * cfg.epochs
        if cfg.max_steps is not None:
            total_steps = min(total_steps, cfg.max_steps)
        best_score, best_state, best_epoch, step, epochs_done = -math.inf, None, 0, 0, 0
        classification = task["output"]["kind"] == "classification"
        history: list[dict[str, Any]] = []
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            order = torch.randperm(len(train_split), generator=shuffle)
            run_loss, run_correct, run_count = 0.0, 0, 0
            for start in range(0, len(order), cfg.batch_size):
                if step >= total_steps:
                    break
                batch = train_split.take(order[start : start + cfg.batch_size])
                x, y = batch.x.to(device), batch.y.to(device)
                dt = None if batch.dt is None else batch.dt.to(device)
                mask = None if batch.mask is None else batch.mask.to(device)
                logits = model(x, dt, mask)
                loss = task_loss(logits, y, mask, task)
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"loss became {loss.item()} at epoch {epoch}, step {step + 1}; training diverged. "
                        "Lower --lr, set --clipnorm, or check the input data for NaN/inf"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clipnorm is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clipnorm)
                optimizer.step()
                step += 1
                n = y.shape[0]
                run_loss += loss.item() * n
                run_count += n
                if classification and not task["output"].get("per_step"):
                    run_correct += (logits.argmax(-1) == y).sum().item()
                if progress:
                    acc = run_correct / run_count if classification and not task["output"].get("per_step") else None
                    progress(Progress("step", epoch, cfg.epochs, step, total_steps, run_loss / run_count, acc))
            if run_count == 0:
                break
            epochs_done = epoch
            scheduler.step()
            val = split_metrics(model, val_split, task, cfg.eval_batch_size, device) if val_split else None
            score = (val.get("accuracy", -val["loss"]) if val else epoch)
            if score > best_score:
                best_score, best_epoch = score, epoch
                best_state = copy.deepcopy(model.state_dict())
            if any(not torch.isfinite(p).all() for p in model.parameters()):
                raise TrainingError(f"weights became NaN/inf in epoch {epoch}; lower --lr or set --clipnorm")
            entry = {"epoch": epoch, "train_loss": run_loss / run_count}
            if val:
                entry.update({f"val_{k}": v for k, v in val.items() if k != "samples"})
            history.append(entry)
            if progress:
                progress(Progress("epoch", epoch, cfg.epochs, step, total_steps, run_loss / run_count, None, val))
        if best_state is not None:
            model.load_state_dict(best_state)
        test = split_metrics(model, dataset.splits["test"], task, cfg.eval_batch_size, device)
    wall = time.perf_counter() - started

    tensors = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tensors.update({TASK_TENSOR_PREFIX + k: v for k, v in dataset.task_tensors.items()})
    metrics = {"split": "test", **test, "best_epoch": best_epoch, "epochs_run": epochs_done, "steps": step,
               "device": str(device), "train_seconds": round(wall, 2), "epochs": history}
    record = new_record(arch, task)
    record["metrics"] = metrics
    ckpt = Checkpoint(tensors=tensors, record=record)
    return ckpt.with_history(
        history_entry("train", argv, run.to_dict(), inputs=dataset.files, seed=cfg.seed, wall_time_s=wall)
    )
