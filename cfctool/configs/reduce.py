"""Settings of `cfctool reduce`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, get_args

from cfctool.configs.base import (
    _check_lr_threads,
    _check_max_drop,
    _choice,
    _help,
    _positive,
    choices_of,
    max_drop_with_setting,
)
from cfctool.errors import ConfigError

ReduceMethod = Literal["pod-deim", "qdeim", "odeim", "pod", "svd", "apoz"]
REDUCE_METHODS = get_args(ReduceMethod)


@dataclass
class ReduceConfig:
    """Settings of `cfctool reduce` (the flags are derived from these)."""

    method: ReduceMethod = _help(
        "pod-deim, qdeim, odeim (oversampled), pod (Galerkin, no interpolation), svd (rank-K ODE "
        "matrix, or the CfC's stacked heads) or apoz (drop the units least active at the last step).",
        "pod-deim",
    )
    dim: int | None = _help("K: the reduced state size (POD basis), the SVD rank, or the units kept (apoz).")
    points: int | None = _help("DEIM interpolation points m (default: K).")
    oversample: int = _help("odeim: extra interpolation points beyond m.", 1)
    interpolation: Literal["deim", "lstsq"] = _help(
        "How values at the points rebuild the rest: deim (U (P^T U)^+, the seed's) or "
        "lstsq (the least-squares fit over the snapshots: G_:P G_PP^+).",
        "deim",
    )
    snapshots: int = _help("Training inputs whose states (and nonlinearity values) make the snapshots.", 2000)
    every: int = _help("Take every S-th step of each input as a snapshot.", 2)
    finetune: int = _help("Epochs of fine-tuning after the reduction.", 0)
    finetune_scope: Literal["after", "all"] = _help(
        "after (the layers after the ODE block: the seed's protocol) or all.", "after"
    )
    lr: float = _help("Fine-tuning learning rate (Adam); the reduced start is kept unless an epoch beats it.", 1e-3)
    batch_size: int = _help("Fine-tuning batch size.", 128)
    seed: int = _help("Seed of the snapshot sample and of fine-tuning.", 0)
    threads: int | None = _help("CPU threads (default: torch's choice).")
    max_drop: float | None = _help(
        "Budget: the most of the validation metric to lose (points of accuracy, or of AUC x 100 for a task that reports AUC; percent more MSE for regression); bisects the dims for "
        "the smallest within it, --dim its upper bound."
    )
    max_drop_with: list[str] = max_drop_with_setting()

    def validate(self) -> None:
        _check_max_drop(self)
        _choice("method", self.method, choices_of(type(self), "method"))
        if self.dim is None:
            raise ConfigError("--dim is required (the reduced size K)")
        if self.dim < 1:
            raise ConfigError(f"--dim must be >= 1 (got {self.dim})")
        if self.points is not None and self.points < 1:
            raise ConfigError(f"--points must be >= 1 (got {self.points})")
        for key in ("snapshots", "every", "batch_size"):
            _positive(key, getattr(self, key))
        if self.oversample < 0 or self.finetune < 0:
            raise ConfigError("--oversample and --finetune must be >= 0")
        _choice("finetune_scope", self.finetune_scope, choices_of(type(self), "finetune_scope"))
        _choice("interpolation", self.interpolation, choices_of(type(self), "interpolation"))
        _check_lr_threads(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
