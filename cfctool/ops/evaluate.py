"""`cfctool eval`: accuracy, loss and size of a checkpoint on one split of its task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cfctool.checkpoint import Checkpoint
from cfctool.data.base import Split
from cfctool.errors import DataError


def valid_targets(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None,
                  task: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(predictions, targets) flattened to the valid steps for per-step tasks; unchanged otherwise."""
    if not task["output"].get("per_step"):
        return logits, y
    if mask is None:
        return logits.flatten(0, 1), y.flatten(0, 1)
    return logits[mask], y[mask]


def task_loss(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None, task: dict) -> torch.Tensor:
    """Mean loss over valid targets: cross-entropy for classes, MSE for regression."""
    out = task["output"]
    logits, y = valid_targets(logits, y, mask, task)
    if out["kind"] == "classification":
        return F.cross_entropy(logits, y)
    return F.mse_loss(logits, y.to(logits.dtype))


@torch.no_grad()
def split_metrics(model: torch.nn.Module, split: Split, task: dict, batch_size: int = 512,
                  device: torch.device | str = "cpu", on_batch=None) -> dict[str, float]:
    """Loss and accuracy (top-1, and top-3 with >= 3 classes) over a whole split.
    `on_batch(done, total)` is called after every batch (progress)."""
    was_training = model.training
    model.eval()
    out = task["output"]
    total_loss, count, correct1, correct3 = 0.0, 0, 0, 0
    for start in range(0, len(split), batch_size):
        if on_batch is not None:
            on_batch(start, len(split))
        b = split.take(slice(start, start + batch_size))
        x, y = b.x.to(device), b.y.to(device)
        dt = None if b.dt is None else b.dt.to(device)
        mask = None if b.mask is None else b.mask.to(device)
        logits, y = valid_targets(model(x, dt, mask), y, mask, task)
        n = y.shape[0]
        if out["kind"] == "classification":
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct1 += (logits.argmax(-1) == y).sum().item()
            if out["size"] >= 3:
                correct3 += (logits.topk(3, -1).indices == y.unsqueeze(-1)).any(-1).sum().item()
        else:
            total_loss += F.mse_loss(logits, y.to(logits.dtype), reduction="sum").item() / max(logits[0].numel(), 1)
        count += n
    model.train(was_training)
    if count == 0:
        raise DataError("the evaluation split is empty; nothing to evaluate")
    metrics = {"loss": total_loss / count, "samples": count}
    if out["kind"] == "classification":
        metrics["accuracy"] = correct1 / count
        if out["size"] >= 3:
            metrics["top3_accuracy"] = correct3 / count
    return metrics


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """Trainable parameters, those non-zero where they act (wiring masks applied), and the core's."""
    from cfctool.models.registry import family_of

    return family_of(model).counts(model)


def size_aware(report: dict[str, Any], ckpt: Checkpoint) -> dict[str, Any]:
    """Weight sparsity (overall and per tensor) and the seed's size-aware score
    `normalised_accuracy = accuracy^2 / ln(non-zero parameters)` (SEEDS.md B)."""
    import math

    from cfctool.ops.prune import sparsity

    s = sparsity(ckpt.tensors)
    out: dict[str, Any] = {"sparsity": s["overall"]}
    if "accuracy" in report and report.get("nonzero_params", 0) > 1:
        out["normalised_accuracy"] = report["accuracy"] ** 2 / math.log(report["nonzero_params"])
    if s["overall"] > 0:
        out["sparsity_per_tensor"] = s["per_tensor"]
    return out


SPLITS = ("test", "val", "train")


def evaluate(ckpt: Checkpoint, split: str = "test", data_dir: str | Path | None = None,
             batch_size: int = 512, threads: int | None = None, max_samples: int | None = None,
             notify=None) -> dict[str, Any]:
    """Metrics of `ckpt` on a split, computed by the engine the report names.

    `max_samples` evaluates a seeded random subset (reported); `notify(message)` receives
    progress lines (the library prints nothing itself).
    """
    import time

    from cfctool.data.registry import load_split, resolve_data_dir
    from cfctool.errors import ConfigError
    from cfctool.models.registry import model_from_checkpoint
    from cfctool.ops.engines import choose
    from cfctool.ops.runtime import check_threads
    from cfctool.ops.runtime import threads as thread_scope

    if split not in SPLITS:
        raise ConfigError(f"--split must be one of {', '.join(SPLITS)} (got '{split}')")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1 (got {batch_size})")
    if max_samples is not None and max_samples < 1:
        raise ConfigError(f"--max-samples must be >= 1 (got {max_samples})")
    check_threads(threads)
    say = notify or (lambda message: None)
    with thread_scope(threads):
        model = model_from_checkpoint(ckpt)
        directory, how = resolve_data_dir(ckpt, data_dir)
        if how:
            say(how)
        started = time.monotonic()
        if ckpt.task["dataset"] != "xor":
            say(f"loading the {ckpt.task['dataset']} {split} split")
        data = load_split(ckpt.task, split, directory, ckpt.task_tensors())
        total = len(data)
        if max_samples is not None:
            data = data.sample(max_samples)
        engine = choose(ckpt, model)
        last = [time.monotonic()]

        def on_batch(done: int, n: int) -> None:
            if time.monotonic() - last[0] >= 5:
                last[0] = time.monotonic()
                say(f"{done}/{n} samples evaluated ({engine.name} engine)")

        say(f"evaluating {len(data)} samples on the {engine.name} engine")
        report: dict[str, Any] = {"split": split, **split_metrics(engine.module, data, ckpt.task, batch_size,
                                                                   on_batch=on_batch)}
        report.update(engine.describe())
        if len(data) < total:
            report["subset"] = {"samples": len(data), "of": total, "how": "seeded random subset (--max-samples)"}
        report["seconds"] = round(time.monotonic() - started, 2)
    report.update(parameter_counts(model))
    report.update(size_aware(report, ckpt))
    if ckpt.source and Path(ckpt.source).is_file():
        report["file_bytes"] = Path(ckpt.source).stat().st_size
    return report
