"""Losses, accuracy, parameter counts and sparsity: what training, evaluation, pruning and
the reports all measure, computed in one place so that every number means the same."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from cfctool.checkpoint import Checkpoint
from cfctool.data.base import Split
from cfctool.errors import DataError
from cfctool.families import get
from cfctool.families.build import family_of


def valid_targets(
    logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None, task: dict
) -> tuple[torch.Tensor, torch.Tensor]:
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
def split_metrics(
    model: torch.nn.Module,
    split: Split,
    task: dict,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
    on_batch=None,
) -> dict[str, float]:
    """Loss and accuracy (top-1, and top-3 with >= 3 classes) over a whole split.
    `on_batch(done, total)` is called after every batch (progress)."""
    was_training = model.training
    model.eval()
    out = task["output"]
    total_loss, count, correct1, correct3 = 0.0, 0, 0, 0
    ranked = "auc" in out.get("metrics", ())  # binary tasks that ask for it: the positive class's scores
    scores, truths = [], []
    squared = absolute = None  # regression: per-output sums of squared and absolute errors
    for done, b in zip(range(0, len(split), batch_size), split.batches(batch_size)):
        if on_batch is not None:
            on_batch(done, len(split))
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
            if ranked:
                scores.append((logits[:, 1] - logits[:, 0]).float().cpu())
                truths.append(y.cpu())
        else:
            err = (logits - y.to(logits.dtype)).double().reshape(n, -1)
            squared = err.square().sum(0) + (0 if squared is None else squared)
            absolute = err.abs().sum(0) + (0 if absolute is None else absolute)
        count += n
    model.train(was_training)
    if count == 0:
        raise DataError("the evaluation split is empty; nothing to evaluate")
    if out["kind"] == "regression":
        assert squared is not None and absolute is not None  # set by every batch
        total_loss = float(squared.mean())
    metrics: dict[str, Any] = {"loss": total_loss / count, "samples": count}
    if out["kind"] == "regression":
        assert squared is not None and absolute is not None
        metrics.update(regression_errors(squared / count, absolute / count, out.get("scale")))
    if out["kind"] == "classification":
        metrics["accuracy"] = correct1 / count
        if out["size"] >= 3:
            metrics["top3_accuracy"] = correct3 / count
        if ranked:
            metrics["auc"] = auc(torch.cat(scores), torch.cat(truths))
    return metrics


def regression_errors(squared: torch.Tensor, absolute: torch.Tensor, scale: list[float] | None) -> dict[str, float]:
    """MSE and MAE (means over the outputs of per-output means) in the standardised units the
    model is trained in, and, where the task records its scale (your own data: the target's
    std, or each feature's for a forecast), in the data's own units."""
    errors = {"mse": float(squared.mean()), "mae": float(absolute.mean())}
    if scale:
        s = torch.tensor(scale, dtype=torch.float64)
        errors.update(mse_units=float((squared * s.square()).mean()), mae_units=float((absolute * s).mean()))
    return errors


@dataclass(frozen=True)
class TaskMetric:
    """The number a task is judged by: what `eval` and `report` lead with, what picks the best
    epoch, and what `--max-drop` budgets."""

    name: str  # a key of split_metrics' result
    higher_is_better: bool
    budget_unit: str  # what --max-drop P means

    def drop(self, baseline: float, value: float) -> float:
        """How much worse `value` is than `baseline`, in `budget_unit`: points for accuracy and
        AUC (x 100), percent of the baseline for an error (MSE)."""
        if self.higher_is_better:
            return 100 * (baseline - value)
        return 100 * (value - baseline) / max(baseline, 1e-12)

    def shown(self, value: float) -> str:
        return shown(self.name, value)


def shown(metric: str, value: float) -> str:
    """A metric's value as every report writes it: accuracy in percent, the others as they are."""
    return f"{100 * value:.2f}%" if metric == "accuracy" else f"{value:.4f}"


def task_metric(task: dict[str, Any]) -> TaskMetric:
    out = task["output"]
    if out["kind"] == "regression":
        return TaskMetric("mse", False, "percent of the validation MSE")
    if "auc" in out.get("metrics", ()):
        return TaskMetric("auc", True, "points of validation AUC (x 100)")
    return TaskMetric("accuracy", True, "points of validation accuracy")


def median_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(low, high, coverage): the distribution-free interval for the median from order
    statistics, the narrowest [x_(k), x_(n+1-k)] whose coverage (binomial, p = 1/2) is at least
    `level`, else the widest, [min, max], with the coverage it has (5 values: 94%)."""
    xs = sorted(values)
    n = len(xs)
    chosen = 1
    for k in range(1, n // 2 + 1):
        tail = sum(math.comb(n, i) for i in range(k)) / 2**n  # P(fewer than k values below the median)
        if 1 - 2 * tail >= level:
            chosen = k
        else:
            break
    tail = sum(math.comb(n, i) for i in range(chosen)) / 2**n
    return xs[chosen - 1], xs[n - chosen], 1 - 2 * tail


# Student's t, 97.5th percentile, by degrees of freedom (a two-sided 95% interval); between
# the rows the smaller df is taken, which widens the interval a little, never narrows it
_T975 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    12: 2.179,
    15: 2.131,
    20: 2.086,
    25: 2.060,
    30: 2.042,
    40: 2.021,
    60: 2.000,
    120: 1.980,
}


def mean_interval(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation and the 95% t-interval of the mean of independent runs
    (seeds): what a paper's "mean ± sd of n runs" is compared with. One value: no spread."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"n": n, "mean": mean, "sd": float("nan"), "low": float("nan"), "high": float("nan")}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    t = _T975[max(df for df in _T975 if df <= n - 1)]
    half = t * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "low": mean - half, "high": mean + half}


# a speed-up is called faster or slower only from an interval this sure (5 or more passes):
# with 3, [min, max] covers the median 75% of the time, and equal commands came out "slower"
VERDICT_COVERAGE = 0.9


def paired_ratio(base: list[float], model: list[float], level: float = 0.95) -> dict[str, Any]:
    """The speed-up of `model` over `base` from paired, interleaved timings (pass i of each
    ran back to back): the median of the per-pass ratios base/model with its interval, and a
    verdict: 'no measurable difference' when the interval holds 1 or covers the median less
    than VERDICT_COVERAGE of the time (too few passes to tell)."""
    ratios = [b / m for b, m in zip(base, model)]
    low, high, coverage = median_interval(ratios, level)
    verdict = (
        "no measurable difference"
        if low <= 1.0 <= high or coverage < VERDICT_COVERAGE
        else "faster"
        if low > 1.0
        else "slower"
    )
    return {
        "speedup": statistics.median(ratios),
        "interval": [low, high],
        "coverage": round(coverage, 3),
        "passes": len(ratios),
        "verdict": verdict,
    }


def selection_score(metrics: dict[str, Any]) -> float:
    """What picks the best epoch: AUC where the task reports it (a rare outcome makes accuracy
    blind: 86% by always saying 'no'), else accuracy, else the negated loss."""
    if metrics.get("auc") is not None:
        return metrics["auc"]
    return metrics.get("accuracy", -metrics["loss"])


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float | None:
    """Area under the ROC curve of `scores` for the labels 1 against 0: the chance that a
    random positive scores above a random negative (ties count half), by ranks (Mann-Whitney);
    None when a class is absent."""
    labels = labels.bool()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = scores.double().argsort()
    sorted_scores = scores.double()[order]
    ranks = torch.empty_like(sorted_scores)
    i, n = 0, len(sorted_scores)
    while i < n:  # ties share their average rank
        j = i
        while j + 1 < n and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[i : j + 1] = (i + j) / 2 + 1
        i = j + 1
    rank_of = torch.empty_like(ranks)
    rank_of[order] = ranks
    return float((rank_of[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """Trainable parameters, those non-zero where they act (wiring masks applied), and the core's."""
    return family_of(model).counts(model)


def size_aware(report: dict[str, Any], ckpt: Checkpoint) -> dict[str, Any]:
    """Weight sparsity (overall and per tensor) and the seed's size-aware score
    `normalised_accuracy = accuracy^2 / ln(non-zero parameters)` (the compression study)."""
    s = sparsity(ckpt)
    out: dict[str, Any] = {"sparsity": s["overall"]}
    if "accuracy" in report and report.get("nonzero_params", 0) > 1:
        out["normalised_accuracy"] = report["accuracy"] ** 2 / math.log(report["nonzero_params"])
    if s["overall"] > 0:
        out["sparsity_per_tensor"] = s["per_tensor"]
    return out


def wiring_mask(tensors: dict[str, torch.Tensor], name: str) -> torch.Tensor | None:
    """The NCP wiring mask a head weight is multiplied by, if any."""
    parts = name.split(".")
    if len(parts) == 5 and parts[0] == "rnn" and parts[3] in ("ff1", "ff2"):
        return tensors.get(f"rnn.cells.{parts[2]}.sparsity_mask")
    return None


def sparsity(ckpt: Checkpoint) -> dict[str, Any]:
    """Zeros per weight matrix (the family's `weights`, embedding included) and overall;
    entries a wiring mask removes count as zeros."""
    tensors, weights = ckpt.tensors, get(ckpt.arch["name"]).weights
    per, zeros, total = {}, 0, 0
    for name, t in sorted(tensors.items()):
        if name.startswith("task.") or t.dim() < 2 or name.split(".")[-1] not in weights:
            continue
        wiring = wiring_mask(tensors, name)
        effective = t if wiring is None else t * wiring
        z = int((effective == 0).sum())
        per[name] = round(z / t.numel(), 6)
        zeros, total = zeros + z, total + t.numel()
    return {"overall": round(zeros / max(total, 1), 6), "per_tensor": per}
