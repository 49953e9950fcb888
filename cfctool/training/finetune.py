"""Fine-tuning a compressed checkpoint (after pruning or reduction) through `fit()`."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from cfctool.configs import TrainConfig
from cfctool.data.base import Dataset, Split
from cfctool.families.build import model_from_checkpoint
from cfctool.training.fit import Constraint, ProgressFn, fit, frozen_names


def finetune_checkpoint(
    ckpt,
    dataset: Dataset,
    cfg,
    *,
    constraints: Iterable[Constraint] = (),
    freeze: Iterable[str] = (),
    progress: ProgressFn | None = None,
):
    """Fine-tune a compressed checkpoint (pruning, reduction): `cfg.finetune` epochs of Adam
    at `cfg.lr` (with its batch_size, seed, threads); the starting point competes as epoch 0
    on validation. Returns (the new checkpoint, what was kept)."""
    model = model_from_checkpoint(ckpt)
    train_cfg = TrainConfig(
        epochs=cfg.finetune, lr=cfg.lr, batch_size=cfg.batch_size, seed=cfg.seed, optimizer="adam", threads=cfg.threads
    )
    if not constraints and _readout_only(model, freeze):
        # the frozen part's outputs never change: computed once, the epochs train the readout on them
        readout = _Readout(model.head)
        features = Dataset(
            task=dataset.task,
            splits={
                name: _readout_features(model, dataset.splits[name])
                for name in ("train", "val")
                if name in dataset.splits
            },
        )
        result = fit(readout, features, train_cfg, progress=progress, start_is_candidate=True)
    else:
        result = fit(
            model,
            dataset,
            train_cfg,
            constraints=constraints,
            freeze=freeze,
            progress=progress,
            start_is_candidate=True,
        )
    tensors = {**ckpt.tensors, **{k: v.detach().cpu() for k, v in model.state_dict().items()}}
    return ckpt.derive(tensors=tensors), {
        "kept_epoch": result.best_epoch,
        "epochs": cfg.finetune,
        "lr": cfg.lr,
        "history": result.history,
    }


class _Readout(nn.Module):
    """A sequence model's readout alone, reading features computed once (`_readout_features`):
    fine-tuning when only the readout trains (the seed's MOR protocol) then costs one pass of
    the frozen model instead of one per epoch, with the same batches and optimiser steps."""

    per_step = False

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, x: torch.Tensor, dt: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        return self.head(x)


def _readout_only(model: nn.Module, freeze: Iterable[str]) -> bool:
    """Everything but the readout frozen, one output per sequence, nothing random before it."""
    trainable = {n for n, _ in model.named_parameters()} - frozen_names(model, freeze)
    return (
        bool(trainable)
        and all(n.startswith("head.") for n in trainable)
        and not model.per_step
        and not any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules())
    )


@torch.no_grad()
def _readout_features(model: nn.Module, split: Split, batch_size: int = 256) -> Split:
    """What the readout reads for every row of a split: the model with its head removed (the
    loop, evaluation mode)."""
    head, was_training = model.head, model.training
    model.head = nn.Identity()
    model.eval()
    try:
        feats = [model(b.x, b.dt, b.mask) for b in split.batches(batch_size)]
    finally:
        model.head = head
        model.train(was_training)
    return Split(torch.cat(feats), split.y)
