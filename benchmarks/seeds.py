"""Several seeds of one recipe: every run's test accuracy, and per recipe their mean ± sd with n
and a 95% interval, into benchmarks/results/seeds.yaml (the replication page's multi-seed rows).

    python -m benchmarks.seeds runs/seeds/*.st --note "what else ran"

Checkpoints are grouped as `cfctool report` groups them (`cfctool.checkpoint.recipe_of`: the
same history but for seeds and where they ran); a group is named by its task, architecture and
preset (`imdb-cfc-default`; two recipes of one name get their digest after it). Each run keeps its test accuracy (its record's: the whole test
split at the best validation epoch), that epoch's validation accuracy, its training time and
threads. The spread of validation accuracies between seeds is set beside the binomial
standard error of the hold-out, which says how well one validation split can rank recipes.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from benchmarks.common import machine, write_results


def run_entry(path: Path, ckpt) -> dict:
    first = ckpt.record["history"][0]
    metrics = ckpt.record.get("metrics") or {}
    epochs = metrics.get("epochs") or []
    best = next((e for e in epochs if e.get("epoch") == metrics.get("best_epoch")), None)
    config = first.get("config") or {}
    return {
        "checkpoint": str(path),
        "seed": first.get("seed"),
        "test_accuracy": metrics.get("accuracy"),
        "best_epoch": metrics.get("best_epoch"),
        "epochs_run": metrics.get("epochs_run"),
        "val_accuracy": best.get("val_accuracy") if best else None,
        "val_samples": _val_samples(config),
        "train_seconds": metrics.get("train_seconds"),
        "threads": (config.get("train") or {}).get("threads"),
    }


def _val_samples(config: dict) -> int | None:
    """The hold-out's size, where the record implies it: IMDB's 25,000 training reviews, unsubsampled."""
    data = config.get("data") or {}
    whole = data.get("dataset") == "imdb" and data.get("max_samples") is None
    return round(25000 * data["val_fraction"]) if whole and data.get("val_fraction") else None


def group_name(ckpt) -> str:
    config = ckpt.record["history"][0].get("config") or {}
    return f"{ckpt.task['dataset']}-{ckpt.arch['name']}-{config.get('preset') or 'custom'}"


def summary(runs: list[dict]) -> dict:
    from cfctool.metrics import mean_interval

    tests = mean_interval([r["test_accuracy"] for r in runs])
    vals = [r["val_accuracy"] for r in runs if r["val_accuracy"] is not None]
    out = {"n": tests["n"], "test_accuracy": {k: _r(v) for k, v in tests.items()}}
    if vals:
        out["val_accuracy"] = {k: _r(v) for k, v in mean_interval(vals).items()}
        n_val = runs[0]["val_samples"]
        if n_val:  # the binomial standard error of one hold-out at this accuracy
            p = out["val_accuracy"]["mean"]
            out["val_standard_error"] = _r(math.sqrt(p * (1 - p) / n_val))
    return out


def _r(x):
    return x if isinstance(x, int) or x != x else round(x, 6)


def main(argv: list[str] | None = None) -> None:
    from cfctool import checkpoint

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--note", default="nothing else", help="what ran beside the trainings")
    args = parser.parse_args(argv)
    by_recipe: dict[str, dict] = {}
    for path in sorted(args.checkpoints):
        ckpt = checkpoint.load(path)
        recipe, _ = checkpoint.recipe_of(ckpt.record)
        group = by_recipe.setdefault(recipe, {"name": group_name(ckpt), "recipe": recipe, "runs": []})
        group["runs"].append(run_entry(path, ckpt))
    names = [g["name"] for g in by_recipe.values()]
    groups = {(g.pop("name") if names.count(g["name"]) == 1 else f"{g.pop('name')}-{g['recipe'][:6]}"): g
              for g in by_recipe.values()}  # two recipes of one name: told apart by their digests
    for group in groups.values():
        group["runs"].sort(key=lambda r: r["seed"])
        group.update(summary(group["runs"]))
    doc = {"benchmark": "several seeds of one recipe: test accuracy mean ± sd, n, 95% interval",
           "command": f"python -m benchmarks.seeds {' '.join(sys.argv[1:])}",
           "what_else_ran": args.note, "machine": machine(), "groups": groups}
    print(write_results("seeds", doc))


if __name__ == "__main__":
    main()
