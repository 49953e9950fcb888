"""Settings of `cfctool prune`."""

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

PruneScope = Literal["all", "backbone", "heads", "embedding", "recurrent"]
PRUNE_SCOPES = get_args(PruneScope)


@dataclass
class PruneConfig:
    """Settings of `cfctool prune` (the flags are derived from these)."""

    ratio: float | None = _help("Fraction to remove: of the selected weights (unstructured) or units (--structured).")
    global_threshold: bool = _help(
        "--global: one threshold across every selected tensor (or unit group); --local: the same ratio in each.",
        True,
        flags="--global/--local",
    )
    structured: bool = _help(
        "Remove whole units (backbone units, hidden units, embedding dimensions): a "
        "physically smaller model of the same family.",
        False,
    )
    scope: PruneScope = _help(
        "What is pruned: all (every weight matrix, embedding included; structured: backbone and "
        "hidden units), backbone, heads (structured: hidden units), embedding, recurrent "
        "(the state columns of the first product; unstructured only).",
        "all",
    )
    criterion: Literal["l1", "l2", "random"] = _help(
        "Score: l1 or l2 norm (the same order for single weights) or random (seeded).", "l1"
    )
    finetune: int = _help("Epochs of fine-tuning after pruning (pruned weights held at exactly zero).", 0)
    lr: float = _help(
        "Fine-tuning learning rate (Adam); the pruned starting point is kept unless an epoch beats it on validation.",
        2e-4,
    )
    batch_size: int = _help("Fine-tuning batch size.", 128)
    storage: Literal["dense", "sparse"] = _help(
        "dense, or sparse: pruned tensors stored as non-zero values plus a bitmask or "
        "indices (whichever is smaller), so the file shrinks with the ratio.",
        "dense",
    )
    seed: int = _help("Seed of random scores and of fine-tuning.", 0)
    threads: int | None = _help("CPU threads (default: torch's choice).")
    max_drop: float | None = _help(
        "Budget: the most of the validation metric to lose (points of accuracy, or of AUC x 100 for a task that reports AUC; percent more MSE for regression); the largest ratio "
        "within it: --ratio (the upper bound), a grid of 0.1 down, bisection to 0.01."
    )
    max_drop_with: list[str] = max_drop_with_setting()

    def validate(self) -> None:
        _check_max_drop(self)
        if self.ratio is None:
            raise ConfigError("--ratio is required (the fraction to remove, e.g. --ratio 0.9)")
        if not 0 <= self.ratio < 1:
            raise ConfigError(
                f"--ratio must be in [0, 1): the fraction removed (got {self.ratio}; 1 would remove everything)"
            )
        _choice("scope", self.scope, choices_of(type(self), "scope"))
        _choice("criterion", self.criterion, choices_of(type(self), "criterion"))
        _choice("storage", self.storage, choices_of(type(self), "storage"))
        if self.structured and self.scope == "recurrent":
            raise ConfigError(
                "--structured --scope recurrent: a hidden unit goes with its head rows, its recurrent "
                "column and its readout column; use --scope heads"
            )
        if self.finetune < 0:
            raise ConfigError(f"finetune must be >= 0 epochs (got {self.finetune})")
        _positive("batch_size", self.batch_size)
        _check_lr_threads(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
