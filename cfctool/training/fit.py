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
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils import parametrize

from cfctool.configs import TrainConfig, parse_lr_scale
from cfctool.data.base import Dataset, Split
from cfctool.data.stream import StreamSplit
from cfctool.engines import fastest
from cfctool.errors import ConfigError, TrainingError
from cfctool.metrics import selection_score, split_metrics, task_loss
from cfctool.training import distributed
from cfctool.training.averaging import WeightAverage
from cfctool.training.state import read_state, require_state, write_state


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


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    """`params`: parameters or param groups (a group may set its own weight_decay)."""
    kinds = {
        "adam": lambda: torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
        "adamw": lambda: torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
        "sgd": lambda: torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay),
        # Keras' RMSprop defaults (rho 0.9, eps 1e-7): the reference recipes were tuned with them
        "rmsprop": lambda: torch.optim.RMSprop(params, lr=cfg.lr, alpha=0.9, eps=1e-7, weight_decay=cfg.weight_decay),
    }
    return kinds[cfg.optimizer]()


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """The trainable parameters grouped by weight decay (weight_decay_on=kernels: the
    recurrent core's weight matrices decay, the rest not) and by learning-rate factor
    (`lr_scale`: a group with its own lr, which the schedules scale like the rest)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    scales = parse_lr_scale(getattr(cfg, "lr_scale", None))
    unmatched = [pattern for pattern in scales if not any(fnmatchcase(n, pattern) for n, _ in named)]
    if unmatched:
        raise ConfigError(
            f"lr_scale names {', '.join(unmatched)}, which match no trainable parameter; "
            f"the parameters are: {', '.join(n for n, _ in named)}"
        )
    kernels_only = getattr(cfg, "weight_decay_on", "all") == "kernels"
    groups: dict[tuple[bool, float], list[torch.Tensor]] = {}
    for n, p in named:
        decays = not kernels_only or (n.startswith("rnn.") and p.dim() >= 2)
        # the last pattern that matches wins, as in a config file read top to bottom
        factor = next((f for pattern, f in reversed(scales.items()) if fnmatchcase(n, pattern)), 1.0)
        groups.setdefault((decays, factor), []).append(p)
    # decaying groups first: the order (and so the optimiser's state indices) of older runs
    ordered = sorted(groups.items(), key=lambda item: not item[0][0])
    return [
        {"params": ps, **({} if decays else {"weight_decay": 0.0}), **({} if f == 1.0 else {"lr": cfg.lr * f})}
        for (decays, f), ps in ordered
    ]


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
    shapes = [
        f"{k} {tuple(got[k].shape)} vs {tuple(v.shape)}"
        for k, v in want.items()
        if k in got and got[k].shape != v.shape
    ]
    if missing or extra or shapes:
        problem = (
            f"shapes differ ({'; '.join(shapes[:3])})"
            if shapes
            else f"tensors differ (missing {missing[:3]}, unexpected {extra[:3]})"
        )
        raise ConfigError(
            f"{what} does not fit the model of these settings ({init.arch['name']} {init.arch} in "
            f"the file): {problem}; give that checkpoint's settings (e.g. --arch, --hidden)"
        )
    model.load_state_dict(got)


def frozen_names(model: nn.Module, freeze: Iterable[str]) -> set[str]:
    names = [n for n, _ in model.named_parameters()]
    out: set[str] = set()
    for prefix in freeze:
        hit = {n for n in names if n == prefix or n.startswith(prefix + ".")}
        if not hit:
            raise ConfigError(
                f"nothing to freeze under '{prefix}'; parameter names start with: "
                f"{', '.join(sorted({n.split('.')[0] for n in names}))}"
            )
        out |= hit
    return out


def fit(
    model: nn.Module,
    dataset: Dataset,
    cfg: TrainConfig,
    *,
    loss: LossFn | None = None,
    freeze: Iterable[str] = (),
    constraints: Iterable[Constraint] = (),
    fake_quant: dict[str, Callable] | None = None,
    progress: ProgressFn | None = None,
    state_path: str | Path | None = None,
    resume: bool = False,
    identity: dict[str, Any] | None = None,
    device: torch.device | str = "cpu",
    start_is_candidate: bool = False,
) -> FitResult:
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
    run = _Run(model, dataset, cfg, loss, progress, device, state_path, identity)
    run.prepare(freeze, constraints, fake_quant)
    if resume:
        run.restore()
    run.start_averaging()
    if start_is_candidate and not resume and run.val_split is not None:
        run.start_as_candidate()
    run.train_epochs()
    return run.finish()


def _schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """(stepped after every optimiser step?, the scheduler): exponential decay per epoch or
    spread over its steps (`lr_schedule`), with an optional linear warm-up."""
    per_step = getattr(cfg, "lr_schedule", "epoch") == "step"
    warmup = getattr(cfg, "warmup_steps", 0)
    if warmup:  # it counts optimiser steps
        return True, _Warmup(optimizer, cfg.lr_decay, steps_per_epoch, per_step, warmup)
    return per_step, torch.optim.lr_scheduler.ExponentialLR(
        optimizer, gamma=cfg.lr_decay ** (1.0 / steps_per_epoch) if per_step else cfg.lr_decay
    )


class _Run:
    """One call of `fit()`: the model, its optimiser and schedule, the run's counters and
    the best weights so far. The operations happen in the order a resumed run must repeat
    bit for bit (the shuffle and dropout generators are drawn from in the same order)."""

    def __init__(
        self,
        model,
        dataset: Dataset,
        cfg: TrainConfig,
        loss: LossFn | None,
        progress: ProgressFn | None,
        device,
        state_path,
        identity,
    ):
        self.world = distributed.join(device)  # None unless started by torchrun
        # rank 0 reports; every rank computes the same validation
        self.progress = progress if self.world is None or self.world.main else None
        self.started, self.earlier = time.perf_counter(), 0.0
        self.model, self.dataset, self.cfg, self.device, self.task = model, dataset, cfg, device, dataset.task
        self.loss_fn = loss or (lambda out, b: task_loss(out, b.y, b.mask, self.task))
        self.state_path = Path(state_path) if state_path is not None else None
        self.identity = identity
        self.saved: dict[str, Any] | None = None
        self.average: WeightAverage | None = None
        self.in_progress: dict[str, Any] | None = None
        self.last_write = time.perf_counter()

    def prepare(self, freeze: Iterable[str], constraints: Iterable[Constraint], fake_quant) -> None:
        model, cfg = self.model, self.cfg
        model.to(self.device)
        frozen = frozen_names(model, freeze)
        for name, p in model.named_parameters():
            p.requires_grad_(name not in frozen)
        self.constraints = list(constraints)
        # with fake quantization the loop itself is evaluated: it is what quantizes activations
        self.fake_quant = bool(fake_quant)
        _apply_fake_quant(model, fake_quant or {})
        self.trainable = [p for n, p in model.named_parameters() if p.requires_grad]
        if not self.trainable:
            raise ConfigError("every parameter is frozen; nothing to train")
        self.optimizer = make_optimizer(param_groups(model, cfg), cfg)
        self.train_split, self.val_split = self.dataset.splits["train"], self.dataset.splits.get("val")
        steps_per_epoch = math.ceil(len(self.train_split) / cfg.batch_size)
        self.per_step, self.scheduler = _schedule(self.optimizer, cfg, steps_per_epoch)
        self.per_tensor_clip = getattr(cfg, "clip_scope", "global") == "tensor"
        for c in self.constraints:
            c.apply(model)
        self.shuffle = torch.Generator().manual_seed(cfg.seed)
        self.total_steps = steps_per_epoch * cfg.epochs
        if cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        self.best_score, self.best_state, self.best_epoch, self.step, self.epochs_done = -math.inf, None, 0, 0, 0
        self.history: list[dict[str, Any]] = []
        self.start_epoch = 1

    def restore(self) -> None:
        """Continue from the training state: weights, optimiser, schedule, generators, counters."""
        assert self.state_path is not None  # a run that resumes has a state file
        require_state(self.state_path)
        saved = self.saved = read_state(self.state_path, self.identity)
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["rng_torch"])
        self.shuffle.set_state(saved["rng_shuffle"])
        self.best_state = saved["best"]
        self.best_score, self.best_epoch = saved["best_score"], saved["best_epoch"]
        self.step, self.epochs_done, self.history = saved["step"], saved["epoch"], saved["history"]
        self.start_epoch = saved["epoch"] + 1
        self.earlier = saved["elapsed_s"]
        self.in_progress = saved.get("partial")  # an epoch the state was written in the middle of

    def start_averaging(self) -> None:
        if self.cfg.ema_decay is None:
            return
        shadow = self.saved["ema"] if self.saved is not None else None
        if self.saved is not None and shadow is None:
            raise ConfigError(f"--resume: the training state at {self.state_path} holds no weight average")
        self.average = WeightAverage(
            self.model, self.cfg.ema_decay, self.saved["ema_updates"] if self.saved is not None else 0, shadow
        )

    def averaged(self):
        return self.average.applied(self.model) if self.average is not None else contextlib.nullcontext()

    def evaluated(self) -> nn.Module:
        return self.model if self.fake_quant else _engine(self.model)

    def validate(self) -> dict[str, float] | None:
        if self.val_split is None:
            return None
        return split_metrics(self.evaluated(), self.val_split, self.task, self.cfg.eval_batch_size, self.device)

    def start_as_candidate(self) -> None:
        """The starting weights compete as epoch 0."""
        val = self.validate()
        assert val is not None  # called only when there is a validation split
        self.best_score, self.best_epoch = selection_score(val), 0
        self.best_state = copy.deepcopy(self.model.state_dict())
        self.history.append({"epoch": 0, **{f"val_{k}": v for k, v in val.items() if k != "samples"}})

    def train_epochs(self) -> None:
        self.autocast = _autocast(getattr(self.cfg, "amp", "none"), self.device)
        out = self.task["output"]
        self.sequence_labels = out["kind"] == "classification" and not out.get("per_step")
        self.forward = self.model if self.world is None else _data_parallel(self.model, self.device, self.world)
        stopped = self.step >= self.total_steps
        for epoch in range(self.start_epoch, self.cfg.epochs + 1):
            if stopped:
                break
            stopped, tally = self.train_epoch(epoch)
            if tally[2] == 0:
                break
            self.end_epoch(epoch, tally)

    def train_epoch(self, epoch: int) -> tuple[bool, list]:
        """One pass over a fresh shuffle (or the rest of one a resumed state was written in):
        (the step budget ran out?, [loss sum, correct, samples])."""
        self.model.train()
        if isinstance(self.train_split, StreamSplit):  # a split read from disk as it goes
            return self.train_streamed_epoch(epoch)
        at_start, order, first, tally = self.shuffled(epoch)
        for start in range(first, len(order), self.cfg.batch_size):
            if self.step >= self.total_steps:
                return True, tally
            picked = order[start : start + self.cfg.batch_size]
            if self.world is not None and len(picked) < self.world.size:
                break  # a last global batch too small to share: skipped by every rank alike
            self.train_step(epoch, self.draw(picked), len(picked), tally)
            self.save_in_progress(epoch, start + self.cfg.batch_size, tally, at_start)
        return False, tally

    def train_streamed_epoch(self, epoch: int) -> tuple[bool, list]:
        """An epoch of a streamed split: its batches come in an order drawn from one seed taken
        from the shuffle generator; a run resumed mid-epoch draws the same seed and skips the
        batches it had done. Under torchrun each rank reads its own share and all stop at the
        first step some rank has no batch for (a collective per step keeps them in step)."""
        partial, self.in_progress = self.in_progress, None
        if partial is not None and partial["epoch"] != epoch:
            partial = None
        if partial is not None:
            self.shuffle.set_state(partial["shuffle_at_start"])
        at_start = self.shuffle.get_state()
        seed = int(torch.randint(2**62, (1,), generator=self.shuffle))
        first, tally = (partial["next"], list(partial["tally"])) if partial is not None else (0, [0.0, 0, 0])
        local = max(1, self.cfg.batch_size // (self.world.size if self.world is not None else 1))
        split = self.train_split
        assert isinstance(split, StreamSplit)  # train_epoch sends only streamed splits here
        batches = split.epoch(local, seed, self.world)
        done = 0
        while True:
            batch = next(batches, None)
            if (
                self.world is not None
                and distributed.all_sum([0.0 if batch is None else 1.0], self.world)[0] < self.world.size
            ):
                break  # a rank has run out: every rank stops here
            if batch is None:
                break
            done += 1
            if done <= first:
                continue
            if self.step >= self.total_steps:
                return True, tally
            global_samples = len(batch) * (self.world.size if self.world is not None else 1)
            self.train_step(epoch, _to(batch, self.device), global_samples, tally)
            self.save_in_progress(epoch, done, tally, at_start)
        return False, tally

    def shuffled(self, epoch: int):
        """(the shuffle generator's state before the order was drawn, the order, the first
        batch's index, the tally so far): the same order again when resuming mid-epoch."""
        partial, self.in_progress = self.in_progress, None
        if partial is not None and partial["epoch"] == epoch:
            now = self.shuffle.get_state()  # the augmentation draws continue from here
            self.shuffle.set_state(partial["shuffle_at_start"])
            order = torch.randperm(len(self.train_split), generator=self.shuffle)
            self.shuffle.set_state(now)
            return partial["shuffle_at_start"], order, partial["next"], list(partial["tally"])
        at_start = self.shuffle.get_state()
        return at_start, torch.randperm(len(self.train_split), generator=self.shuffle), 0, [0.0, 0, 0]

    def save_in_progress(self, epoch: int, next_start: int, tally: list, at_start: torch.Tensor) -> None:
        """The training state in the middle of an epoch, every `state_every` minutes."""
        every = 60.0 * (getattr(self.cfg, "state_every", 0) or 0)
        if (
            not every
            or self.state_path is None
            or (self.world is not None and not self.world.main)
            or time.perf_counter() - self.last_write < every
        ):
            return
        self.write(epoch - 1, {"epoch": epoch, "next": next_start, "tally": list(tally), "shuffle_at_start": at_start})

    def write(self, finished_epoch: int, partial: dict | None = None) -> None:
        assert self.state_path is not None  # written only when the run has a state file
        write_state(
            self.state_path,
            self.model,
            self.optimizer,
            self.scheduler,
            self.shuffle,
            self.best_state,
            self.best_score,
            self.best_epoch,
            self.step,
            finished_epoch,
            self.history,
            self.identity,
            self.earlier + time.perf_counter() - self.started,
            self.average,
            partial,
        )
        self.last_write = time.perf_counter()

    def draw(self, picked: torch.Tensor) -> Split:
        """This rank's share of the global batch `picked`, augmented when the data set is."""
        world, split = self.world, self.train_split
        assert isinstance(split, Split)  # streamed splits draw their own batches
        if self.dataset.augment is None:
            batch = split.take(distributed.share(picked, world))
        else:  # drawn for the global batch, so every rank's generator stays in step with the others'
            batch = self.dataset.augment(split.take(picked), self.shuffle)
            batch = batch.take(distributed.share(torch.arange(len(picked)), world))
        return _to(batch, self.device)

    def train_step(self, epoch: int, batch: Split, global_samples: int, tally: list) -> None:
        cfg, world = self.cfg, self.world
        with self.autocast():
            out = self.forward(batch.x, batch.dt, batch.mask)
            value = self.loss_fn(out, batch)
        local_loss = value.item()
        if not math.isfinite(local_loss):
            raise TrainingError(
                f"loss became {local_loss} at epoch {epoch}, step {self.step + 1}"
                + (f" on rank {world.rank}" if world is not None else "")
                + "; training diverged. "
                "Lower --lr, set --clipnorm, or check the input data for NaN/inf"
            )
        self.optimizer.zero_grad(set_to_none=True)
        if world is not None:  # DDP averages gradients over ranks: weight by this rank's share
            value = value * _share_weight(batch, self.task, world, global_samples)
        value.backward()
        _densify(self.trainable)  # (a model made data-parallel once keeps its sparse embedding)
        if cfg.clipnorm is not None:
            if self.per_tensor_clip:
                for p in self.trainable:
                    torch.nn.utils.clip_grad_norm_(p, cfg.clipnorm)
            else:
                torch.nn.utils.clip_grad_norm_(self.trainable, cfg.clipnorm)
        self.optimizer.step()
        self.after_step()
        n = batch.y.shape[0]
        tally[0] += local_loss * n
        tally[2] += n
        if self.sequence_labels:
            tally[1] += (out.argmax(-1) == batch.y).sum().item()
        if self.progress:
            self.progress(
                Progress(
                    "step",
                    epoch,
                    cfg.epochs,
                    self.step,
                    self.total_steps,
                    tally[0] / tally[2],
                    tally[1] / tally[2] if self.sequence_labels else None,
                )
            )

    def after_step(self) -> None:
        """The schedule, the constraints and the weight average follow every optimiser step."""
        if self.per_step:
            self.scheduler.step()
        for c in self.constraints:
            c.apply(self.model)
        if self.average is not None:
            self.average.update(self.model)
        self.step += 1

    def end_epoch(self, epoch: int, tally: list) -> None:
        """Validation, the best epoch so far, the history, the training state, the report."""
        run_loss, _, run_count = tally
        if self.world is not None:  # the history holds the global epoch loss
            run_loss, run_count = distributed.all_sum([run_loss, float(run_count)], self.world)
        self.epochs_done = epoch
        if not self.per_step:
            self.scheduler.step()
        if any(not torch.isfinite(p).all() for p in self.model.parameters()):
            raise TrainingError(f"weights became NaN/inf in epoch {epoch}; lower --lr or set --clipnorm")
        with self.averaged():
            val = self.validate()
            score = selection_score(val) if val else epoch
            if score > self.best_score:
                self.best_score, self.best_epoch = score, epoch
                self.best_state = copy.deepcopy(self.model.state_dict())
        entry = {"epoch": epoch, "train_loss": run_loss / run_count}
        if val:
            entry.update({f"val_{k}": v for k, v in val.items() if k != "samples"})
        self.history.append(entry)
        if self.state_path is not None and (self.world is None or self.world.main):
            self.write(epoch)
        if self.progress:
            self.progress(
                Progress("epoch", epoch, self.cfg.epochs, self.step, self.total_steps, run_loss / run_count, None, val)
            )

    def finish(self) -> FitResult:
        """The best weights back in the model, fake quantization removed, the state file gone."""
        model = self.model
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
        _remove_fake_quant(model)
        for p in model.parameters():
            p.requires_grad_(True)
        if (
            self.state_path is not None
            and self.state_path.exists()
            and (self.world is None or self.world.main)
            and not getattr(self.cfg, "keep_state", False)
        ):
            self.state_path.unlink()
        return FitResult(
            model=model,
            history=self.history,
            best_epoch=self.best_epoch,
            epochs_run=self.epochs_done,
            steps=self.step,
            resumed_from_epoch=self.start_epoch - 1,
            earlier_seconds=self.earlier,
        )


class _Warmup(torch.optim.lr_scheduler.LRScheduler):
    """The decay of `lr_schedule` times a linear ramp over the first `warmup` optimiser
    steps; stepped after every optimiser step (`last_epoch` counts them)."""

    def __init__(self, optimizer, decay: float, steps_per_epoch: int, per_step: bool, warmup: int):
        self.decay, self.steps_per_epoch, self.per_step, self.warmup = decay, steps_per_epoch, per_step, warmup
        super().__init__(optimizer)

    def get_lr(self):
        n = self.last_epoch
        epochs = n / self.steps_per_epoch if self.per_step else n // self.steps_per_epoch
        factor = self.decay**epochs * min(1.0, (n + 1) / self.warmup)
        return [base * factor for base in self.base_lrs]


def _autocast(amp: str, device) -> Callable[[], Any]:
    """The training passes' precision context: bf16 autocast leaves the parameters, their
    gradients and everything outside products (sums, the loss) in float32."""
    if amp == "none":
        return contextlib.nullcontext
    return lambda: torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


# data-parallel on CPU, an embedding's gradient travels sparse (benchmarks.scale --dense-too
# measures the dense all-reduce against it)
SPARSE_EMBEDDING_GRADIENTS = True


def _data_parallel(model: nn.Module, device, world) -> nn.Module:
    cuda = torch.device(device).type == "cuda"
    if not cuda and SPARSE_EMBEDDING_GRADIENTS:  # gloo all-reduces a sparse gradient: the rows a batch used
        for module in model.modules():
            # (not through a fake quantization: a parametrized weight's gradient passes through it dense)
            if isinstance(module, nn.Embedding) and not parametrize.is_parametrized(module, "weight"):
                module.sparse = True
    return DistributedDataParallel(model, device_ids=[world.local_rank] if cuda else None)


def _densify(params: list[nn.Parameter]) -> None:
    """Sparse gradients (a data-parallel embedding's, once all-reduced) made dense: clipping and
    the optimisers (RMSprop, Adam) take dense ones, and the step is the dense one."""
    for p in params:
        if p.grad is not None and p.grad.is_sparse:
            p.grad = p.grad.coalesce().to_dense()


def _share_weight(batch: Split, task: dict, world, global_samples: int) -> float:
    """world size x this rank's share of the global batch's loss terms (samples, or valid
    steps for per-step tasks), so that DDP's mean of the weighted local mean losses is the
    global mean loss. Only per-step counts need a collective; sample counts are known."""
    if not task["output"].get("per_step"):
        return world.size * batch.y.shape[0] / global_samples
    terms = float(batch.mask.sum()) if batch.mask is not None else float(batch.y.numel())
    total = distributed.all_sum([terms], world)[0]
    return world.size * terms / max(total, 1.0)


def _to(b: Split, device) -> Split:
    move = lambda t: None if t is None else t.to(device)  # noqa: E731
    return Split(
        b.x.to(device), b.y.to(device), move(b.dt), move(b.mask), {k: v.to(device) for k, v in b.extra.items()}
    )


def _engine(model: nn.Module) -> nn.Module:
    """The fastest exact inference form of the model as it is now (rebuilt per call)."""
    if not hasattr(model, "family"):  # not a family's model (the readout alone): it runs as it is
        return model.eval()
    return fastest(model).module


def _apply_fake_quant(model: nn.Module, fns: dict[str, Callable]) -> None:
    params = dict(model.named_parameters())
    for name, fn in fns.items():
        if name not in params:
            raise ConfigError(f"fake quantization names a parameter the model does not have: '{name}'")
        owner, _, leaf = name.rpartition(".")
        parametrize.register_parametrization(model.get_submodule(owner), leaf, _StraightThrough(fn))


def _remove_fake_quant(model: nn.Module) -> None:
    for module in list(model.modules()):
        if parametrize.is_parametrized(module):
            for leaf in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, leaf, leave_parametrized=False)
