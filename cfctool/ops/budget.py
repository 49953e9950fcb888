"""`--max-drop P`: compress as far as the validation metric allows.

The budget is in the task's metric (`metrics.task_metric`) on the validation hold-out of the
training split (never the test split) against the input checkpoint, measured with the engine
`eval` would run: P points of accuracy (classification), P points of AUC x 100 (binary tasks
that report AUC, e.g. a rare outcome of your own data), or P percent more MSE (regression and
forecasting). "Accuracy" below stands for that metric.
Each method searches its own knob and keeps the most compressed candidate within P:

- prune: the largest ratio: --ratio (the upper bound) first, then a grid of 0.1 downwards
  (0.9, 0.8, ...) to the first ratio within P, then bisection between it and the grid point
  above it to a 0.01 interval; every candidate fine-tuned as asked (--finetune). The grid is
  there because accuracy is not monotone in the ratio once fine-tuning follows;
- reduce: the smallest --dim, by bisection over the integers up to --dim (tried first);
- quantize: every observer x granularity candidate of int4, then (when none of those is
  within P) of int8; the fewest weight bytes within P (ties: the higher accuracy). When none is,
  the best int8 candidate keeps products in float32 (`--keep-float`), the most sensitive
  first (the state error with that product alone quantized), one more at a time.

Bisection assumes accuracy falls as compression grows between the points it brackets; every candidate is recorded (setting, validation accuracy, file and weight bytes, seconds)
under `compression[section]["budget"]`, so a reader can see the curve it walked. A budget
nothing meets is an error naming what came closest.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any

from cfctool.checkpoint import Checkpoint, to_bytes
from cfctool.errors import CfcError
from cfctool.ops.info import tensor_bytes

RATIO_TOLERANCE = 0.01


class Budget:
    """The baseline and every candidate of one search, in the task's metric."""

    def __init__(self, ckpt: Checkpoint, max_drop: float, data_dir, seed: int, say: Callable[[str], None]):
        from cfctool.metrics import task_metric
        from cfctool.task_data import task_dataset

        self.metric = task_metric(ckpt.task)
        self.key = f"val_{self.metric.name}"
        if self.metric.higher_is_better and max_drop >= 100:
            raise CfcError(f"--max-drop {max_drop:g}: this task's budget is in {self.metric.budget_unit}, below 100")
        dataset = task_dataset(ckpt, data_dir, seed, f"--max-drop (the validation {self.metric.name})")
        if "val" not in dataset.splits:
            raise CfcError(
                f"--max-drop needs a validation hold-out of '{ckpt.task['dataset']}', and its data "
                "settings keep none (val_fraction 0)"
            )
        self.val, self.max_drop, self.say = dataset.splits["val"], max_drop, say
        self.started = time.perf_counter()
        self.baseline = self.measure(ckpt)
        self.trials: list[dict[str, Any]] = []
        say(
            f"budget: validation {self.metric.name} {self.metric.shown(self.baseline)} on {len(self.val):,} held-out "
            f"training sequences; at most {self._allowed()}"
        )

    def _amount(self) -> str:
        return f"{self.max_drop:g} points" if self.metric.higher_is_better else f"{self.max_drop:g}%"

    def _allowed(self) -> str:
        return self._amount() + (" lower" if self.metric.higher_is_better else " higher")

    def _change(self, value: float) -> str:
        drop = self.metric.drop(self.baseline, value)
        return f"{-drop:+.2f} points" if self.metric.higher_is_better else f"{drop:+.2f}%"

    def measure(self, ckpt: Checkpoint) -> float:
        from cfctool.engines import choose
        from cfctool.families.build import model_from_checkpoint
        from cfctool.metrics import split_metrics

        model = model_from_checkpoint(ckpt)
        value = split_metrics(choose(ckpt, model).module, self.val, ckpt.task, 256)[self.metric.name]
        if value is None:
            raise CfcError(
                f"the validation hold-out has one class only: its {self.metric.name} is undefined; "
                "keep a larger hold-out (--val-fraction when training)"
            )
        return float(value)

    def score(self, trial: dict[str, Any]) -> float:
        """A candidate's metric, larger when better (for max and sort keys)."""
        return trial[self.key] if self.metric.higher_is_better else -trial[self.key]

    def trial(self, setting: dict[str, Any], make: Callable[[], Checkpoint]) -> tuple[Checkpoint, bool]:
        """Make one candidate, measure it, record it; (candidate, within the budget)."""
        started = time.perf_counter()
        out = make()
        value = self.measure(out)
        within = self.metric.drop(self.baseline, value) <= self.max_drop + 1e-9
        self.trials.append(
            {
                "setting": setting,
                self.key: round(value, 6),
                "file_bytes": len(to_bytes(out)),
                "weight_bytes": tensor_bytes(out),
                "seconds": round(time.perf_counter() - started, 2),
                "within": within,
            }
        )
        self.say(
            f"budget: {_words(setting)} -> validation {self.metric.shown(value)} "
            f"({self._change(value)}){'' if within else ', over budget'}"
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
            f"({self._change(best[self.key])}). Allow a larger --max-drop, or fine-tune more (--finetune)"
        )

    def result(self, out: Checkpoint, section: str, chosen: dict[str, Any], search: str, **extra: Any) -> Checkpoint:
        """`out` with the search in its record and the outer command line in its history."""
        compression = dict(out.record.get("compression") or {})
        allowed = (
            {"max_drop_points": self.max_drop} if self.metric.higher_is_better else {"max_drop_percent": self.max_drop}
        )
        compression[section] = {
            **compression[section],
            "budget": {
                **allowed,
                "metric": self.metric.name,
                "unit": self.metric.budget_unit,
                "search": search,
                f"baseline_{self.key}": round(self.baseline, 6),
                "val_samples": len(self.val),
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


def search_ratio(ckpt: Checkpoint, cfg, op, section: str, *, data_dir, argv, notify, progress) -> Checkpoint:
    """prune --max-drop: the largest ratio in [0, cfg.ratio] within the budget."""
    budget = Budget(ckpt, cfg.max_drop, data_dir, cfg.seed, notify or (lambda _: None))

    def make(ratio: float):
        return lambda: op(
            ckpt,
            dataclasses.replace(cfg, ratio=ratio, max_drop=None),
            data_dir=data_dir,
            argv=argv,
            notify=None,
            progress=progress,
        )

    # accuracy is not monotone in the ratio once fine-tuning follows (on IMDB 95% + 1 epoch beat 50%):
    # a coarse grid from the top down first, then bisection between the first ratio within and the
    # grid point above it
    best, best_ratio, above = None, None, None
    for ratio in [cfg.ratio] + [g / 10 for g in range(9, 0, -1) if g / 10 < cfg.ratio - 1e-9]:
        out, within = budget.trial({"ratio": ratio}, make(ratio))
        if within:
            best, best_ratio = out, ratio
            break
        above = ratio
    if best is not None and above is not None:
        lo, hi = best_ratio, above
        while hi - lo > RATIO_TOLERANCE:
            mid = round((lo + hi) / 2, 4)
            out, within = budget.trial({"ratio": mid}, make(mid))
            if within:
                lo, best, best_ratio = mid, out, mid
            else:
                hi = mid
    if best is None:
        raise budget.closest()
    return budget.result(
        best,
        section,
        {"ratio": best_ratio},
        f"--ratio {cfg.ratio}, then a grid of 0.1 downwards, then bisection to {RATIO_TOLERANCE}",
    )


def search_dim(ckpt: Checkpoint, cfg, op, section: str, *, data_dir, argv, notify, progress) -> Checkpoint:
    """reduce --max-drop: the smallest dim in [1, cfg.dim] within the budget."""
    budget = Budget(ckpt, cfg.max_drop, data_dir, cfg.seed, notify or (lambda _: None))

    def make(dim: int):
        return lambda: op(
            ckpt,
            dataclasses.replace(cfg, dim=dim, max_drop=None),
            data_dir=data_dir,
            argv=argv,
            notify=None,
            progress=progress,
        )

    hi = cfg.dim
    best, within = budget.trial({"dim": hi}, make(hi))
    if not within:
        raise budget.closest()
    lo = 0  # below every dim tried: not known to be within
    while hi - lo > 1:
        mid = (lo + hi) // 2
        out, within = budget.trial({"dim": mid}, make(mid))
        if within:
            hi, best = mid, out
        else:
            lo = mid
    return budget.result(best, section, {"dim": hi}, f"bisection of the dims over [1, {cfg.dim}]")


def search_quantization(
    ckpt: Checkpoint, cfg, op, section: str, *, units: list[str], data_dir, argv, notify, progress
) -> Checkpoint:
    """quantize --max-drop: the smallest file among bits x observer x granularity within the budget."""
    from cfctool.configs import QuantizeConfig, choices_of

    budget = Budget(ckpt, cfg.max_drop, data_dir, cfg.seed, notify or (lambda _: None))
    found: list[tuple[int, float, dict, Checkpoint]] = []
    for bits in (4, 8):
        for granularity in choices_of(QuantizeConfig, "granularity"):
            observers = choices_of(QuantizeConfig, "observer") if cfg.scheme != "dynamic" else (cfg.observer,)
            for observer in observers:
                setting = {"bits": bits, "granularity": granularity, "observer": observer}
                inner = dataclasses.replace(cfg, **setting, max_drop=None)
                out, within = budget.trial(
                    setting,
                    functools.partial(op, ckpt, inner, data_dir=data_dir, argv=argv, notify=None, progress=progress),
                )
                if within:
                    trial = budget.trials[-1]
                    found.append((trial["weight_bytes"], -budget.score(trial), setting, out))
        if found:  # int4 within the budget: no int8 file is smaller
            break
    if found:
        _, _, setting, best = min(found, key=lambda f: (f[0], f[1]))
        return budget.result(
            best,
            section,
            setting,
            f"int4, then int8, x granularity x observer "
            f"({len(budget.trials)} candidates), the fewest weight bytes (ties: the higher accuracy)",
        )
    return _float_fallback(ckpt, cfg, op, section, budget, units, data_dir=data_dir, argv=argv, progress=progress)


def _float_fallback(
    ckpt: Checkpoint, cfg, op, section: str, budget: Budget, units: list[str], *, data_dir, argv, progress
) -> Checkpoint:
    """No integer candidate within the budget: the best int8 one with products kept in float32,
    most sensitive first (the state error of that product alone quantized), one more at a time."""
    best = budget.best([t for t in budget.trials if t["setting"]["bits"] == 8])["setting"]
    if len(units) < 2:
        raise budget.closest()
    sensitivity = {}
    for unit in units:  # that product alone quantized: its share of the state error
        alone = op(
            ckpt,
            dataclasses.replace(cfg, **best, keep_float=",".join(u for u in units if u != unit), max_drop=None),
            data_dir=data_dir,
            argv=argv,
            notify=None,
            progress=progress,
        )
        sensitivity[unit] = alone.record["compression"]["quantization"]["state_mse"]["mean"]
    order = sorted(units, key=lambda u: sensitivity[u], reverse=True)
    budget.say(
        "budget: no integer candidate within; keeping products in float32, most sensitive first: "
        + ", ".join(f"{u} ({sensitivity[u]:.3g})" for u in order)
    )
    for n in range(1, len(order)):
        setting = {**best, "keep_float": ",".join(order[:n])}
        inner = dataclasses.replace(cfg, **setting, max_drop=None)
        out, within = budget.trial(
            setting, functools.partial(op, ckpt, inner, data_dir=data_dir, argv=argv, notify=None, progress=progress)
        )
        if within:
            return budget.result(
                out,
                section,
                setting,
                "no integer candidate within: the best int8 one with products kept in float32, most sensitive first",
                sensitivity=sensitivity,
            )
    raise budget.closest()
