"""`--max-drop P`: compress as far as the validation metric allows.

The budget is in the task's metric (`metrics.task_metric`) on the validation hold-out of the
training split (never the test split) against the input checkpoint, measured with the engine
`eval` would run: P points of accuracy (classification), P points of AUC x 100 (binary tasks
that report AUC, e.g. a rare outcome of your own data), or P percent more MSE (regression and
forecasting). "Accuracy" below stands for that metric.
Each method declares the knob its budget turns (its module's `AXIS`); the search keeps the
most compressed candidate within P. The axes here serve any method:

- `LargestFraction` (prune's ratio): the given value (the upper bound) first, then a grid of
  0.1 downwards (0.9, 0.8, ...) to the first value within P, then bisection between it and
  the grid point above it to a 0.01 interval; every candidate fine-tuned as asked
  (--finetune). The grid is there because accuracy is not monotone in the ratio once
  fine-tuning follows;
- `SmallestInteger` (reduce's dim): bisection over the integers up to the given value (tried first).

quantize declares its own axis in its module (bits x granularity x observer, then products
kept in float32).

Bisection assumes accuracy falls as compression grows between the points it brackets; every
candidate is recorded (setting, validation accuracy, file and weight bytes, seconds) under
`compression[section]["budget"]`, so a reader can see the curve it walked. A budget nothing
meets is an error naming what came closest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cfctool.checkpoint import Checkpoint, to_bytes
from cfctool.engines import choose
from cfctool.errors import CfcError
from cfctool.families.build import model_from_checkpoint
from cfctool.metrics import mean_interval, split_metrics, task_metric
from cfctool.ops.info import tensor_bytes
from cfctool.task_data import split_seed, task_dataset

RATIO_TOLERANCE = 0.01
Make = Callable[[dict[str, Any], Checkpoint], Checkpoint]  # a candidate at these settings, made from this model


class Budget:
    """The baseline and every candidate of one search, in the task's metric.

    With `others` (the same recipe trained with other seeds, `--max-drop-with`) every candidate
    setting is applied to each model as well and measured on that model's own validation
    hold-out, and the budget holds for the mean of the drops: one model's 1,000-row hold-out
    moves by about a point from seed to seed, more than the budgets asked of it."""

    def __init__(
        self,
        ckpt: Checkpoint,
        max_drop: float,
        data_dir,
        say: Callable[[str], None],
        others: tuple[Checkpoint, ...] = (),
    ):
        self.metric = task_metric(ckpt.task)
        self.key = f"val_{self.metric.name}"
        if self.metric.higher_is_better and max_drop >= 100:
            raise CfcError(f"--max-drop {max_drop:g}: this task's budget is in {self.metric.budget_unit}, below 100")
        self.models = (ckpt, *others)
        self.vals = [self._hold_out(model, data_dir) for model in self.models]
        self.val, self.max_drop, self.say = self.vals[0], max_drop, say
        self.started = time.perf_counter()
        self.baselines = [self.measure(model, val) for model, val in zip(self.models, self.vals)]
        self.baseline = sum(self.baselines) / len(self.baselines)
        self.trials: list[dict[str, Any]] = []
        where = (
            f"{len(self.val):,} held-out training sequences"
            if not others
            else f"{len(self.models)} seeds' models, each on its own hold-out ({sum(map(len, self.vals)):,} sequences)"
        )
        say(
            f"budget: {'mean ' if others else ''}validation {self.metric.name} {self.metric.shown(self.baseline)} "
            f"on {where}; at most {self._allowed()}"
        )

    def _hold_out(self, ckpt: Checkpoint, data_dir):
        dataset = task_dataset(ckpt, data_dir, f"--max-drop (the validation {self.metric.name})")
        if "val" not in dataset.splits:
            raise CfcError(
                f"--max-drop needs a validation hold-out of '{ckpt.task['dataset']}', and its data "
                "settings keep none (val_fraction 0)"
            )
        return dataset.splits["val"]

    def _amount(self) -> str:
        return f"{self.max_drop:g} points" if self.metric.higher_is_better else f"{self.max_drop:g}%"

    def _allowed(self) -> str:
        return self._amount() + (" lower" if self.metric.higher_is_better else " higher")

    def _change(self, drop: float) -> str:
        return f"{-drop:+.2f} points" if self.metric.higher_is_better else f"{drop:+.2f}%"

    def drop(self, trial: dict[str, Any]) -> float:
        """A candidate's drop from the baseline in the budget's unit (several models: the mean drop)."""
        return trial["drop_mean"] if "drop_mean" in trial else self.metric.drop(self.baseline, trial[self.key])

    def measure(self, ckpt: Checkpoint, val=None) -> float:
        model = model_from_checkpoint(ckpt)
        val = self.val if val is None else val
        value = split_metrics(choose(ckpt, model).module, val, ckpt.task, 256)[self.metric.name]
        if value is None:
            raise CfcError(
                f"the validation hold-out has one class only: its {self.metric.name} is undefined; "
                "keep a larger hold-out (--val-fraction when training)"
            )
        return float(value)

    def score(self, trial: dict[str, Any]) -> float:
        """A candidate's metric, larger when better (for max and sort keys)."""
        return trial[self.key] if self.metric.higher_is_better else -trial[self.key]

    def trial(self, setting: dict[str, Any], make: Make) -> tuple[Checkpoint, bool]:
        """Make the candidate at `setting` (from every model), measure it, record it; (the
        candidate made from the input checkpoint, within the budget)."""
        started = time.perf_counter()
        out: Checkpoint | None = None  # the input's candidate: the others are made only to be measured
        values = []
        for model, val in zip(self.models, self.vals):
            candidate = make(setting, model)
            values.append(self.measure(candidate, val))
            out = candidate if out is None else out
        assert out is not None
        record: dict[str, Any] = {"setting": setting, self.key: round(sum(values) / len(values), 6)}
        if len(values) > 1:
            drops = mean_interval([self.metric.drop(b, v) for b, v in zip(self.baselines, values)])
            record.update(
                {
                    f"{self.key}_each": [round(v, 6) for v in values],
                    "drop_mean": round(drops["mean"], 6),
                    "drop_sd": round(drops["sd"], 6),
                }
            )
        within = self.drop(record) <= self.max_drop + 1e-9
        self.trials.append(
            {
                **record,
                "file_bytes": len(to_bytes(out)),
                "weight_bytes": tensor_bytes(out),
                "seconds": round(time.perf_counter() - started, 2),
                "within": within,
            }
        )
        spread = f", sd {drops['sd']:.2f} over {len(values)} seeds" if len(values) > 1 else ""
        self.say(
            f"budget: {_words(setting)} -> validation {self.metric.shown(record[self.key])} "
            f"({self._change(self.drop(record))}{spread}){'' if within else ', over budget'}"
        )
        return out, within

    def best(self, trials: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return max(self.trials if trials is None else trials, key=self.score)

    def closest(self) -> CfcError:
        best = self.best()
        return CfcError(
            f"no candidate stays within {self._amount()} "
            f"of the validation {self.metric.name} {self.metric.shown(self.baseline)}: the closest, "
            f"{_words(best['setting'])}, reached {self.metric.shown(best[self.key])} "
            f"({self._change(self.drop(best))}). Allow a larger --max-drop, or fine-tune more (--finetune)"
        )

    def result(self, out: Checkpoint, section: str, chosen: dict[str, Any], search: str, **extra: Any) -> Checkpoint:
        """`out` with the search in its record and the outer command line in its history."""
        compression = dict(out.record.get("compression") or {})
        allowed = (
            {"max_drop_points": self.max_drop} if self.metric.higher_is_better else {"max_drop_percent": self.max_drop}
        )
        seeds = {}
        if len(self.models) > 1:
            seeds["models"] = [
                {
                    "source": str(model.source) if model.source else None,
                    "split_seed": split_seed(model),
                    "val_samples": len(val),
                    f"baseline_{self.key}": round(value, 6),
                }
                for model, val, value in zip(self.models, self.vals, self.baselines)
            ]
        compression[section] = {
            **compression[section],
            "budget": {
                **allowed,
                "metric": self.metric.name,
                "unit": self.metric.budget_unit,
                "search": search,
                f"baseline_{self.key}": round(self.baseline, 6),
                "val_samples": len(self.val),
                **seeds,
                "chosen": chosen,
                "candidates": self.trials,
                "seconds": round(time.perf_counter() - self.started, 2),
                **extra,
            },
        }
        history = [dict(h) for h in out.record.get("history") or []]
        history[-1]["config"] = {**history[-1]["config"], **chosen, "max_drop": self.max_drop}
        return out.derive(compression=compression, history=history)


def _words(setting: dict[str, Any]) -> str:
    return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in setting.items())


@dataclass(frozen=True)
class Found:
    """What an axis's search chose: the candidate, its settings, how it searched, anything more to record."""

    out: Checkpoint
    chosen: dict[str, Any]
    search: str
    extra: dict[str, Any] = field(default_factory=dict)


class Axis(Protocol):
    """The knob a method's --max-drop turns (a method module's `AXIS`)."""

    def search(self, budget: Budget, ckpt: Checkpoint, cfg: Any, make: Make) -> Found: ...


def search(
    ckpt: Checkpoint,
    cfg: Any,
    axis: Axis,
    section: str,
    make: Make,
    data_dir,
    say,
    others: tuple[Checkpoint, ...] = (),
) -> Checkpoint:
    """The most compressed candidate along `axis` within cfg.max_drop (on the mean over `others`
    too: other seeds of the recipe), its search recorded."""
    budget = Budget(ckpt, cfg.max_drop, data_dir, say, others)
    found = axis.search(budget, ckpt, cfg, make)
    return budget.result(found.out, section, found.chosen, found.search, **found.extra)


@dataclass(frozen=True)
class LargestFraction:
    """The largest value of `name` in [0, the given value] within the budget (prune: the ratio).

    Accuracy is not monotone in the ratio once fine-tuning follows (on IMDB 95% + 1 epoch beat
    50%): a coarse grid from the top down first, then bisection between the first value within
    and the grid point above it."""

    name: str
    step: float = 0.1
    tolerance: float = RATIO_TOLERANCE

    def search(self, budget: Budget, ckpt: Checkpoint, cfg: Any, make: Make) -> Found:
        top = getattr(cfg, self.name)
        n = round(1 / self.step)
        best, best_value, above = None, None, None
        for value in [top] + [g / n for g in range(n - 1, 0, -1) if g / n < top - 1e-9]:
            out, within = budget.trial({self.name: value}, make)
            if within:
                best, best_value = out, value
                break
            above = value
        if best is not None and above is not None:
            lo, hi = best_value, above
            while hi - lo > self.tolerance:
                mid = round((lo + hi) / 2, 4)
                out, within = budget.trial({self.name: mid}, make)
                if within:
                    lo, best, best_value = mid, out, mid
                else:
                    hi = mid
        if best is None:
            raise budget.closest()
        how = f"--{self.name} {top}, then a grid of {self.step:g} downwards, then bisection to {self.tolerance}"
        return Found(best, {self.name: best_value}, how)


@dataclass(frozen=True)
class SmallestInteger:
    """The smallest value of `name` in [1, the given value] within the budget, by bisection
    (reduce: the dim; the given value is tried first)."""

    name: str

    def search(self, budget: Budget, ckpt: Checkpoint, cfg: Any, make: Make) -> Found:
        hi = getattr(cfg, self.name)
        best, within = budget.trial({self.name: hi}, make)
        if not within:
            raise budget.closest()
        lo = 0  # below every value tried: not known to be within
        while hi - lo > 1:
            mid = (lo + hi) // 2
            out, within = budget.trial({self.name: mid}, make)
            if within:
                hi, best = mid, out
            else:
                lo = mid
        return Found(best, {self.name: hi}, f"bisection of the {self.name}s over [1, {getattr(cfg, self.name)}]")
