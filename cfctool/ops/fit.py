"""`fit()`: the one training loop under train, fine-tuning, QAT and distillation.

It trains a given model (fresh or loaded) on a data set with a loss (the task loss by
default), optionally with frozen parameters, constraints applied after every optimiser
step (pruning masks stay exactly zero through Adam, momentum and weight decay),
straight-through fake quantization, and a training state written after every epoch so
that `resume=True` continues an interrupted run to the same weights, bit for bit.

Deterministic on CPU for a given seed and thread count: shuffling has its own seeded
generator and dropout draws from torch's generator, both saved in the training state.
The weights kept are those of the epoch with the best validation score (the last epoch
when there is no validation split); with `ema_decay`, the weights' moving average is what
is validated and kept.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import torch
from torch import nn

from cfctool.data.base import Dataset, Split
from cfctool.errors import CfcError, CheckpointError, ConfigError, TrainingError


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
# (model outputs, batch) -> scalar loss; the default is the task loss
LossFn = Callable[[torch.Tensor, Split], torch.Tensor]


class Constraint(Protocol):
    def apply(self, model: nn.Module) -> None: ...


class MaskConstraint:
    """Keeps the named parameters at zero where their 0/1 mask is 0 (pruning masks)."""

    def __init__(self, masks: dict[str, torch.Tensor]):
        self.masks = {k: v.bool() for k, v in masks.items()}

    def apply(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        missing = sorted(set(self.masks) - set(params))
        if missing:
            raise ConfigError(f"mask constraint names parameters the model does not have: {missing[:5]}")
        with torch.no_grad():
            for name, keep in self.masks.items():
                params[name].masked_fill_(~keep.to(params[name].device), 0.0)


class _StraightThrough(nn.Module):
    """Forward: fn(w); backward: identity (the straight-through estimator)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w + (self.fn(w) - w).detach()


@dataclass
class FitResult:
    model: nn.Module
    history: list[dict[str, Any]]
    best_epoch: int
    epochs_run: int
    steps: int
    resumed_from_epoch: int = 0
    earlier_seconds: float = 0.0  # time spent by the runs this one resumed (from the training state)
    extra: dict[str, Any] = field(default_factory=dict)


def make_optimizer(params, cfg) -> torch.optim.Optimizer:
    """`params`: parameters or param groups (a group may set its own weight_decay)."""
    kinds = {
        "adam": lambda: torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
        "adamw": lambda: torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
        "sgd": lambda: torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay),
        # Keras' RMSprop defaults (rho 0.9, eps 1e-7): the reference recipes were tuned with them
        "rmsprop": lambda: torch.optim.RMSprop(params, lr=cfg.lr, alpha=0.9, eps=1e-7, weight_decay=cfg.weight_decay),
    }
    return kinds[cfg.optimizer]()


def param_groups(model: nn.Module, cfg) -> list[dict[str, Any]]:
    """The trainable parameters grouped by weight decay (weight_decay_on=kernels: the
    recurrent core's weight matrices decay, the rest not) and by learning-rate factor
    (`lr_scale`: a group with its own lr, which the schedules scale like the rest)."""
    from fnmatch import fnmatchcase

    from cfctool.configs import parse_lr_scale

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    scales = parse_lr_scale(getattr(cfg, "lr_scale", None))
    unmatched = [pattern for pattern in scales if not any(fnmatchcase(n, pattern) for n, _ in named)]
    if unmatched:
        raise ConfigError(f"lr_scale names {', '.join(unmatched)}, which match no trainable parameter; "
                          f"the parameters are: {', '.join(n for n, _ in named)}")
    kernels_only = getattr(cfg, "weight_decay_on", "all") == "kernels"
    groups: dict[tuple[bool, float], list[torch.Tensor]] = {}
    for n, p in named:
        decays = not kernels_only or (n.startswith("rnn.") and p.dim() >= 2)
        # the last pattern that matches wins, as in a config file read top to bottom
        factor = next((f for pattern, f in reversed(scales.items()) if fnmatchcase(n, pattern)), 1.0)
        groups.setdefault((decays, factor), []).append(p)
    # decaying groups first: the order (and so the optimiser's state indices) of older runs
    ordered = sorted(groups.items(), key=lambda item: not item[0][0])
    return [{"params": ps, **({} if decays else {"weight_decay": 0.0}), **({} if f == 1.0 else {"lr": cfg.lr * f})}
            for (decays, f), ps in ordered]


def keras_init(model: nn.Module) -> None:
    """Zero biases (Keras' default); kernels keep their Glorot-uniform init."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.zero_()


def warm_start(model: nn.Module, init, what: str) -> None:
    """`model`'s weights from the checkpoint `init` (train --init-from, distill --init);
    every tensor and shape must match the model built from the given settings."""
    want = model.state_dict()
    got = init.model_tensors()
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    shapes = [f"{k} {tuple(got[k].shape)} vs {tuple(v.shape)}" for k, v in want.items()
              if k in got and got[k].shape != v.shape]
    if missing or extra or shapes:
        problem = (f"shapes differ ({'; '.join(shapes[:3])})" if shapes else
                   f"tensors differ (missing {missing[:3]}, unexpected {extra[:3]})")
        raise ConfigError(f"{what} does not fit the model of these settings ({init.arch['name']} {init.arch} in "
                          f"the file): {problem}; give that checkpoint's settings (e.g. --arch, --hidden)")
    model.load_state_dict(got)


def _frozen_names(model: nn.Module, freeze: Iterable[str]) -> set[str]:
    names = [n for n, _ in model.named_parameters()]
    out: set[str] = set()
    for prefix in freeze:
        hit = {n for n in names if n == prefix or n.startswith(prefix + ".")}
        if not hit:
            raise ConfigError(f"nothing to freeze under '{prefix}'; parameter names start with: "
                              f"{', '.join(sorted({n.split('.')[0] for n in names}))}")
        out |= hit
    return out


def fit(model: nn.Module, dataset: Dataset, cfg, *, loss: LossFn | None = None, freeze: Iterable[str] = (),
        constraints: Iterable[Constraint] = (), fake_quant: dict[str, Callable] | None = None,
        progress: ProgressFn | None = None, state_path: str | Path | None = None, resume: bool = False,
        identity: dict[str, Any] | None = None, device: torch.device | str = "cpu",
        start_is_candidate: bool = False) -> FitResult:
    """Train `model` in place per `cfg` (a TrainConfig) and return it with its history.

    - `freeze`: parameter-name prefixes left untouched (not given to the optimiser).
    - `constraints`: applied after every optimiser step and once before the first.
    - `fake_quant`: {parameter name: fn}; the forward pass sees fn(w), gradients pass
      straight through to w. Removed again before returning (w keeps the float values).
    - `start_is_candidate`: the starting weights compete in best-epoch selection (as epoch
      0), so fine-tuning a trained model never returns something worse on validation.
    - `state_path`: where the training state is written after every epoch (atomically);
      removed when training ends. `resume=True` continues from it; `identity` (e.g. the
      run's settings) must then equal the one it was written with.
    """
    from cfctool.ops import distributed
    from cfctool.ops.evaluate import split_metrics, task_loss

    import time

    world = distributed.join(device)  # None unless started by torchrun
    if world is not None and not world.main:
        progress = None  # rank 0 reports; every rank computes the same validation
    started = time.perf_counter()
    earlier = 0.0
    task = dataset.task
    loss_fn = loss or (lambda out, b: task_loss(out, b.y, b.mask, task))
    model.to(device)
    frozen = _frozen_names(model, freeze)
    for name, p in model.named_parameters():
        p.requires_grad_(name not in frozen)
    constraints = list(constraints)
    _apply_fake_quant(model, fake_quant or {})
    trainable = [p for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ConfigError("every parameter is frozen; nothing to train")
    optimizer = make_optimizer(param_groups(model, cfg), cfg)
    train_split, val_split = dataset.splits["train"], dataset.splits.get("val")
    steps_per_epoch = math.ceil(len(train_split) / cfg.batch_size)
    per_step = getattr(cfg, "lr_schedule", "epoch") == "step"
    warmup = getattr(cfg, "warmup_steps", 0)
    if warmup:
        scheduler = _Warmup(optimizer, cfg.lr_decay, steps_per_epoch, per_step, warmup)
        per_step = True  # it counts optimiser steps
    else:
        scheduler = torch.optim.lr_scheduler.ExponentialLR(
            optimizer, gamma=cfg.lr_decay ** (1.0 / steps_per_epoch) if per_step else cfg.lr_decay)
    per_tensor_clip = getattr(cfg, "clip_scope", "global") == "tensor"
    for c in constraints:
        c.apply(model)

    shuffle = torch.Generator().manual_seed(cfg.seed)
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    best_score, best_state, best_epoch, step, epochs_done = -math.inf, None, 0, 0, 0
    history: list[dict[str, Any]] = []
    start_epoch = 1
    state_path = Path(state_path) if state_path is not None else None
    if resume:
        if state_path is None or not state_path.is_file():
            raise ConfigError(f"--resume: no training state at {state_path}; run without --resume to start afresh")
        saved = _read_state(state_path, identity)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["rng_torch"])
        shuffle.set_state(saved["rng_shuffle"])
        best_state = saved["best"]
        best_score, best_epoch = saved["best_score"], saved["best_epoch"]
        step, epochs_done, history = saved["step"], saved["epoch"], saved["history"]
        start_epoch = saved["epoch"] + 1
        earlier = saved["elapsed_s"]
    average = None
    if getattr(cfg, "ema_decay", None) is not None:
        shadow = saved["ema"] if resume else None
        if resume and shadow is None:
            raise ConfigError(f"--resume: the training state at {state_path} holds no weight average")
        average = WeightAverage(model, cfg.ema_decay, saved["ema_updates"] if resume else 0, shadow)
    averaged = average.applied if average is not None else contextlib.nullcontext
    # with fake quantization the loop itself is evaluated: it is what quantizes activations
    evaluated = (lambda: model) if fake_quant else (lambda: _engine(model))  # noqa: E731
    if start_is_candidate and not resume and val_split is not None:
        val = split_metrics(evaluated(), val_split, task, cfg.eval_batch_size, device)
        best_score, best_epoch = val.get("accuracy", -val["loss"]), 0
        best_state = copy.deepcopy(model.state_dict())
        history.append({"epoch": 0, **{f"val_{k}": v for k, v in val.items() if k != "samples"}})
    autocast = _autocast(getattr(cfg, "amp", "none"), device)
    classification = task["output"]["kind"] == "classification"
    sequence_labels = classification and not task["output"].get("per_step")
    forward = model if world is None else _data_parallel(model, device, world)
    stopped = step >= total_steps
    for epoch in range(start_epoch, cfg.epochs + 1):
        if stopped:
            break
        model.train()
        order = torch.randperm(len(train_split), generator=shuffle)
        run_loss, run_correct, run_count = 0.0, 0, 0
        for start in range(0, len(order), cfg.batch_size):
            if step >= total_steps:
                stopped = True
                break
            picked = order[start : start + cfg.batch_size]
            if world is not None and len(picked) < world.size:
                break  # a last global batch too small to share: skipped by every rank alike
            if dataset.augment is None:
                batch = train_split.take(distributed.share(picked, world))
            else:  # drawn for the global batch, so every rank's generator stays in step with the others'
                batch = dataset.augment(train_split.take(picked), shuffle)
                batch = batch.take(distributed.share(torch.arange(len(picked)), world))
            batch = _to(batch, device)
            with autocast():
                out = forward(batch.x, batch.dt, batch.mask)
                value = loss_fn(out, batch)
            local_loss = value.item()
            if not math.isfinite(local_loss):
                raise TrainingError(
                    f"loss became {local_loss} at epoch {epoch}, step {step + 1}"
                    + (f" on rank {world.rank}" if world is not None else "") + "; training diverged. "
                    "Lower --lr, set --clipnorm, or check the input data for NaN/inf"
                )
            optimizer.zero_grad(set_to_none=True)
            if world is not None:  # DDP averages gradients over ranks: weight by this rank's share
                value = value * _share_weight(batch, task, world, len(picked))
            value.backward()
            if cfg.clipnorm is not None:
                if per_tensor_clip:
                    for p in trainable:
                        torch.nn.utils.clip_grad_norm_(p, cfg.clipnorm)
                else:
                    torch.nn.utils.clip_grad_norm_(trainable, cfg.clipnorm)
            optimizer.step()
            if per_step:
                scheduler.step()
            for c in constraints:
                c.apply(model)
            if average is not None:
                average.update(model)
            step += 1
            n = batch.y.shape[0]
            run_loss += local_loss * n
            run_count += n
            if sequence_labels:
                run_correct += (out.argmax(-1) == batch.y).sum().item()
            if progress:
                progress(Progress("step", epoch, cfg.epochs, step, total_steps, run_loss / run_count,
                                  run_correct / run_count if sequence_labels else None))
        if run_count == 0:
            break
        if world is not None:  # the history holds the global epoch loss
            run_loss, run_count = distributed.all_sum([run_loss, float(run_count)], world)
        epochs_done = epoch
        if not per_step:
            scheduler.step()
        if any(not torch.isfinite(p).all() for p in model.parameters()):
            raise TrainingError(f"weights became NaN/inf in epoch {epoch}; lower --lr or set --clipnorm")
        with averaged(model):
            val = split_metrics(evaluated(), val_split, task, cfg.eval_batch_size, device) if val_split else None
            score = val.get("accuracy", -val["loss"]) if val else epoch
            if score > best_score:
                best_score, best_epoch = score, epoch
                best_state = copy.deepcopy(model.state_dict())
        entry = {"epoch": epoch, "train_loss": run_loss / run_count}
        if val:
            entry.update({f"val_{k}": v for k, v in val.items() if k != "samples"})
        history.append(entry)
        if state_path is not None and (world is None or world.main):
            _write_state(state_path, model, optimizer, scheduler, shuffle, best_state, best_score, best_epoch,
                         step, epoch, history, identity, earlier + time.perf_counter() - started, average)
        if progress:
            progress(Progress("epoch", epoch, cfg.epochs, step, total_steps, run_loss / run_count, None, val))
    if best_state is not None:
        model.load_state_dict(best_state)
    _remove_fake_quant(model)
    for p in model.parameters():
        p.requires_grad_(True)
    if state_path is not None and state_path.exists() and (world is None or world.main) \
            and not getattr(cfg, "keep_state", False):
        state_path.unlink()
    return FitResult(model=model, history=history, best_epoch=best_epoch, epochs_run=epochs_done, steps=step,
                     resumed_from_epoch=start_epoch - 1, earlier_seconds=earlier)


class WeightAverage:
    """An exponential moving average of the weights (Polyak averaging). Adam's iterates
    rattle around a minimum at a distance set by the learning rate; their average sits
    nearer it, which is what a long recurrence (a 784-step ODE-RNN) needs to leave a plateau
    without lowering the lr. The decay ramps up as min(decay, (1 + n) / (10 + n)) so the
    first steps do not leave the average stuck at the starting weights."""

    def __init__(self, model: nn.Module, decay: float, updates: int = 0,
                 shadow: dict[str, torch.Tensor] | None = None):
        self.decay, self.updates = decay, updates
        current = model.state_dict()
        if shadow is None:
            shadow = {k: v for k, v in current.items() if v.is_floating_point()}
        self.shadow = {k: v.detach().to(current[k].device, copy=True) for k, v in shadow.items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        keep = min(self.decay, (1 + self.updates) / (10 + self.updates))
        current = model.state_dict()
        for k, avg in self.shadow.items():
            avg.lerp_(current[k].to(avg.dtype), 1.0 - keep)

    @contextlib.contextmanager
    def applied(self, model: nn.Module):
        """The model holds the averaged weights inside the block, its own ones again after."""
        current = model.state_dict()  # shares storage with the parameters: copy_ writes them
        backup = {k: current[k].clone() for k in self.shadow}
        with torch.no_grad():
            for k, avg in self.shadow.items():
                current[k].copy_(avg)
        try:
            yield model
        finally:
            with torch.no_grad():
                for k, saved in backup.items():
                    current[k].copy_(saved)


class _Warmup(torch.optim.lr_scheduler.LRScheduler):
    """The decay of `lr_schedule` times a linear ramp over the first `warmup` optimiser
    steps; stepped after every optimiser step (`last_epoch` counts them)."""

    def __init__(self, optimizer, decay: float, steps_per_epoch: int, per_step: bool, warmup: int):
        self.decay, self.steps_per_epoch, self.per_step, self.warmup = decay, steps_per_epoch, per_step, warmup
        super().__init__(optimizer)

    def get_lr(self):
        n = self.last_epoch
        epochs = n / self.steps_per_epoch if self.per_step else n // self.steps_per_epoch
        factor = self.decay ** epochs * min(1.0, (n + 1) / self.warmup)
        return [base * factor for base in self.base_lrs]


def _autocast(amp: str, device) -> Callable[[], Any]:
    """The training passes' precision context: bf16 autocast leaves the parameters, their
    gradients and everything outside products (sums, the loss) in float32."""
    if amp == "none":
        return contextlib.nullcontext
    return lambda: torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def finetune_checkpoint(ckpt, dataset: Dataset, cfg, *, constraints: Iterable[Constraint] = (),
                        freeze: Iterable[str] = (), progress: ProgressFn | None = None):
    """Fine-tune a compressed checkpoint (pruning, reduction): `cfg.finetune` epochs of Adam
    at `cfg.lr` (with its batch_size, seed, threads); the starting point competes as epoch 0
    on validation. Returns (the new checkpoint, what was kept)."""
    from cfctool.configs import TrainConfig
    from cfctool.models.registry import model_from_checkpoint

    model = model_from_checkpoint(ckpt)
    train_cfg = TrainConfig(epochs=cfg.finetune, lr=cfg.lr, batch_size=cfg.batch_size, seed=cfg.seed,
                            optimizer="adam", threads=cfg.threads)
    if not constraints and _readout_only(model, freeze):
        # the frozen part's outputs never change: computed once, the epochs train the readout on them
        readout = _Readout(model.head)
        features = Dataset(task=dataset.task, splits={name: _readout_features(model, dataset.splits[name])
                                                      for name in ("train", "val") if name in dataset.splits})
        result = fit(readout, features, train_cfg, progress=progress, start_is_candidate=True)
    else:
        result = fit(model, dataset, train_cfg, constraints=constraints, freeze=freeze, progress=progress,
                     start_is_candidate=True)
    tensors = {**ckpt.tensors, **{k: v.detach().cpu() for k, v in model.state_dict().items()}}
    return ckpt.derive(tensors=tensors), {"kept_epoch": result.best_epoch, "epochs": cfg.finetune, "lr": cfg.lr,
                                          "history": result.history}


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
    trainable = {n for n, _ in model.named_parameters()} - _frozen_names(model, freeze)
    return (bool(trainable) and all(n.startswith("head.") for n in trainable) and not model.per_step
            and not any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules()))


@torch.no_grad()
def _readout_features(model: nn.Module, split: Split, batch_size: int = 256) -> Split:
    """What the readout reads for every row of a split: the model with its head removed (the
    loop, evaluation mode)."""
    head, was_training = model.head, model.training
    model.head = nn.Identity()
    model.eval()
    try:
        feats = [model(b.x, b.dt, b.mask) for b in
                 (split.take(slice(i, i + batch_size)) for i in range(0, len(split), batch_size))]
    finally:
        model.head = head
        model.train(was_training)
    return Split(torch.cat(feats), split.y)


def _data_parallel(model: nn.Module, device, world) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    cuda = torch.device(device).type == "cuda"
    return DistributedDataParallel(model, device_ids=[world.local_rank] if cuda else None)


def _share_weight(batch: Split, task: dict, world, global_samples: int) -> float:
    """world size x this rank's share of the global batch's loss terms (samples, or valid
    steps for per-step tasks), so that DDP's mean of the weighted local mean losses is the
    global mean loss. Only per-step counts need a collective; sample counts are known."""
    from cfctool.ops import distributed

    if not task["output"].get("per_step"):
        return world.size * batch.y.shape[0] / global_samples
    terms = float(batch.mask.sum()) if batch.mask is not None else float(batch.y.numel())
    total = distributed.all_sum([terms], world)[0]
    return world.size * terms / max(total, 1.0)


def _to(b: Split, device) -> Split:
    move = lambda t: None if t is None else t.to(device)  # noqa: E731
    return Split(b.x.to(device), b.y.to(device), move(b.dt), move(b.mask),
                 {k: v.to(device) for k, v in b.extra.items()})


def _engine(model: nn.Module) -> nn.Module:
    """The fastest exact inference form of the model as it is now (rebuilt per call)."""
    from cfctool.models.registry import family_of

    return model.eval() if isinstance(model, _Readout) else family_of(model).engine(model)[1]


def _apply_fake_quant(model: nn.Module, fns: dict[str, Callable]) -> None:
    from torch.nn.utils import parametrize

    params = dict(model.named_parameters())
    for name, fn in fns.items():
        if name not in params:
            raise ConfigError(f"fake quantization names a parameter the model does not have: '{name}'")
        owner, _, leaf = name.rpartition(".")
        parametrize.register_parametrization(model.get_submodule(owner), leaf, _StraightThrough(fn))


def _remove_fake_quant(model: nn.Module) -> None:
    from torch.nn.utils import parametrize

    for module in list(model.modules()):
        if parametrize.is_parametrized(module):
            for leaf in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, leaf, leave_parametrized=False)


# ----------------------------------------------------------------------------- training state

_STATE_FORMAT = "cfctool.train-state"


def state_path_for(output: str | Path) -> Path:
    """Where a run writing `output` keeps its training state: beside it."""
    output = Path(output)
    return output.with_name(output.name + ".train-state")


def _write_state(path: Path, model, optimizer, scheduler, shuffle, best_state, best_score, best_epoch, step, epoch,
                 history, identity, elapsed_s: float, average: WeightAverage | None = None) -> None:
    """Weights, optimiser, scheduler, RNG states and bookkeeping as one safetensors file
    (tensors + JSON metadata: no pickles), written atomically."""
    from cfctool.checkpoint import atomic_write, safetensors_bytes

    tensors = {f"model.{k}": v.detach().cpu() for k, v in model.state_dict().items()}
    if best_state is not None:
        tensors.update({f"best.{k}": v.detach().cpu() for k, v in best_state.items()})
    opt = optimizer.state_dict()
    opt_scalars: dict[str, dict[str, Any]] = {}
    for idx, st in opt["state"].items():
        for key, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{idx}.{key}"] = value.detach().cpu()
            else:
                opt_scalars.setdefault(str(idx), {})[key] = value
    if average is not None:
        tensors.update({f"ema.{k}": v.detach().cpu() for k, v in average.shadow.items()})
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.shuffle"] = shuffle.get_state()
    meta = {"epoch": epoch, "step": step, "best_score": best_score if math.isfinite(best_score) else None,
            "best_epoch": best_epoch, "history": history, "param_groups": opt["param_groups"],
            "opt_scalars": opt_scalars, "opt_indices": sorted(opt["state"]), "scheduler": scheduler.state_dict(),
            "identity": identity, "has_best": best_state is not None, "elapsed_s": round(elapsed_s, 3),
            "ema_updates": None if average is None else average.updates}
    atomic_write(path, safetensors_bytes(tensors, {_STATE_FORMAT: "1", "state": json.dumps(meta, sort_keys=True)}))


def state_summary(path: str | Path) -> dict[str, Any] | None:
    """What a training state says about its run (no tensors): epochs done, steps, seconds,
    validation per epoch, the current learning rates and the settings; None when the file
    is not a training state. A long run can be followed, or a stopped one reported, before
    it has written a checkpoint."""
    from cfctool.checkpoint import _read_header

    if not Path(path).is_file():
        return None
    try:
        meta = _read_header(Path(path).read_bytes(), str(path)).get("__metadata__") or {}
    except CheckpointError:  # not safetensors, or truncated: the checkpoint reader says which
        return None
    if _STATE_FORMAT not in meta:
        return None
    state = json.loads(meta["state"])
    settings = state["identity"] or {}
    return {"source": str(path), "epochs_done": state["epoch"], "steps": state["step"],
            "train_seconds": state.get("elapsed_s"), "best_epoch": state["best_epoch"],
            "weight_average": state.get("ema_updates") is not None,
            "lr_now": [g["lr"] for g in state["param_groups"]], "epochs": state["history"],
            "changed_settings": _beyond_preset(settings), "settings": settings}


def _beyond_preset(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings that differ from the data set's default preset for the arch (what a
    reader wants of a run: what was chosen), or all of them when that preset is unknown."""
    from cfctool.configs import resolve

    try:
        run = resolve(settings["dataset"], settings["name"], preset=settings.get("preset", "default"))
    except (CfcError, KeyError):
        return dict(settings)
    preset = {k: v for section in ("arch", "data", "train") for k, v in run.to_dict()[section].items()}
    return {k: v for k, v in settings.items() if k not in preset or preset[k] != v}


def _read_state(path: Path, identity) -> dict[str, Any]:
    from safetensors.torch import load

    from cfctool.checkpoint import _read_header

    data = path.read_bytes()
    meta_raw = (_read_header(data, str(path)).get("__metadata__") or {})
    if _STATE_FORMAT not in meta_raw:
        raise CheckpointError(f"{path}: not a cfctool training state; delete it or run without --resume")
    meta = json.loads(meta_raw["state"])
    if meta["identity"] != identity:
        changed = sorted(k for k in set(meta["identity"] or {}) | set(identity or {})
                         if (meta["identity"] or {}).get(k) != (identity or {}).get(k))
        raise ConfigError(f"--resume: the training state at {path} was written with other settings "
                          f"({', '.join(changed[:6])} differ); resume with the same settings, or delete it to start afresh")
    tensors = load(data)
    state: dict[int, dict[str, Any]] = {int(i): {} for i in meta["opt_indices"]}
    for key, t in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            state[int(idx)][name] = t
    for idx, scalars in meta["opt_scalars"].items():
        state[int(idx)].update(scalars)
    pick = lambda prefix: {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}  # noqa: E731
    return {"model": pick("model."), "best": pick("best.") if meta["has_best"] else None,
            "optimizer": {"state": state, "param_groups": meta["param_groups"]}, "scheduler": meta["scheduler"],
            "rng_torch": tensors["rng.torch"], "rng_shuffle": tensors["rng.shuffle"],
            "best_score": -math.inf if meta["best_score"] is None else meta["best_score"],
            "best_epoch": meta["best_epoch"], "step": meta["step"], "epoch": meta["epoch"], "history": meta["history"],
            "elapsed_s": float(meta.get("elapsed_s", 0.0)),
            "ema": pick("ema.") if meta.get("ema_updates") is not None else None,
            "ema_updates": meta.get("ema_updates") or 0}
