"""The seed's pruning sweep (the compression study) on this machine: accuracy, size-aware score, bytes, speed.

For each fp32 checkpoint, method and ratio it prunes with `cfctool.ops.prune` (without and,
with --finetune N, after N epochs of fine-tuning), evaluates the test split on the engine
`cfctool eval` uses, and records accuracy, the seed's normalised accuracy
(accuracy^2 / ln(non-zero parameters)), non-zero parameters, the file bytes with dense and
(unstructured) sparse storage, and for structured pruning the whole-test-set CPU speed-up
over the unpruned model on the same engine (interleaved, medians). Every cell is merged
into benchmarks/results/prune.yaml as soon as it is measured, and cells already there are
skipped, so an interrupted sweep continues where it stopped. `--plot` draws accuracy vs
ratio per method (needs matplotlib: pip install 'cfctool[plot]').

    python -m benchmarks.prune /work/runs/baselines/person_activity-cfc.st --finetune 10 --data ../shared/data
    python -m benchmarks.prune /work/runs/baselines/imdb-cfc-reference.st --finetune 1 --lr 1e-3
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from benchmarks.common import machine, measure, merge_result, panels, results_dir, save_figure, speedup

METHODS = {  # name: PruneConfig settings (the seed: global over everything, local on the backbone)
    "unstructured-global": {"structured": False, "scope": "all", "global_threshold": True},
    "unstructured-backbone": {"structured": False, "scope": "backbone", "global_threshold": False},
    "structured-global": {"structured": True, "scope": "all", "global_threshold": True},
    "structured-local": {"structured": True, "scope": "all", "global_threshold": False},
    "structured-backbone": {"structured": True, "scope": "backbone", "global_threshold": False},
}
RATIOS = (0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
SEED = "the compression study: global unstructured kept the accuracy up to 95% after retraining (Person Activity); " \
       "backbone-only to 98%; structured global poor on IMDB; 10 retraining epochs"


def _done(key: str) -> dict:
    import yaml

    path = results_dir() / "prune.yaml"
    doc = (yaml.safe_load(path.read_text()) if path.exists() else None) or {}
    return ((doc.get("runs") or {}).get(key) or {}).get("cells") or {}


def run(path: Path, args) -> None:
    from cfctool import checkpoint
    from cfctool.configs import PruneConfig
    from cfctool.errors import CfcError
    from cfctool.ops.prune import prune, store_sparse

    fp32 = checkpoint.load(path)
    key = f"{fp32.task['dataset']}/{fp32.arch['name']}"
    cells = dict(_done(key))
    base = cells.get("unpruned") or measure(fp32, args.data, args.batch_size)
    cells["unpruned"] = base
    header = {"checkpoint": str(path), "command": f"python -m benchmarks.prune {' '.join(sys.argv[1:])}",
              "finetune_epochs": args.finetune, "finetune_lr": args.lr, "threads": args.threads,
              "machine": machine(), "what_else_ran": args.note, "seed_reference": SEED}

    def save_cell(name: str, cell: dict) -> None:
        cells[name] = cell
        merge_result("prune", "runs", key, {**header, "cells": cells}, {"benchmark": "pruning (the compression study)"})

    for method in args.methods:
        for ratio in args.ratios:
            for ft in ([0, args.finetune] if args.finetune else [0]):
                name = f"{method}@{ratio}" + (f"+ft{ft}" if ft else "")
                if name in cells:
                    continue
                cfg = PruneConfig(ratio=ratio, finetune=ft, lr=args.lr, threads=args.threads, **METHODS[method])
                start = time.perf_counter()
                try:
                    pruned = prune(fp32, cfg, data_dir=args.data,
                                   notify=lambda m: print(f"[{name}] {m}", file=sys.stderr))
                except CfcError as exc:
                    save_cell(name, {"not_applicable": str(exc)})
                    continue
                cell = {"seconds": round(time.perf_counter() - start, 1), **measure(pruned, args.data, args.batch_size)}
                if not cfg.structured:
                    sparse = store_sparse(pruned, pruned.record["compression"]["pruning"]["tensors"])
                    cell["file_bytes_sparse"] = len(checkpoint.to_bytes(sparse))
                    cell["file_ratio_sparse"] = base["file_bytes"] / cell["file_bytes_sparse"]
                elif args.speed_batches:
                    cell.update(speedup(fp32, pruned, args.data, args.speed_batches, args.repeats, args.threads))
                    units = pruned.record["compression"]["pruning"]["units"]
                    cell["units"] = {g: f"{u['before']}->{u['after']}" for g, u in units.items()}
                cell["accuracy_change"] = cell["accuracy"] - base["accuracy"]
                if ft:
                    cell["finetune_kept_epoch"] = pruned.record["compression"]["pruning"]["finetune_result"]["kept_epoch"]
                save_cell(name, cell)
                print(f"[{name}] accuracy {cell['accuracy']:.4f} ({cell['accuracy_change']:+.4f})", file=sys.stderr)


def plot(out: Path) -> Path:
    """Accuracy vs ratio per method, without and with fine-tuning, one panel per model."""
    import yaml

    runs = yaml.safe_load((results_dir() / "prune.yaml").read_text())["runs"]
    fig, axes = panels(len(runs))
    for ax, (key, run_) in zip(axes, runs.items()):
        cells = run_["cells"]
        for i, method in enumerate(METHODS):
            for ft, style in ((False, "--"), (True, "-")):
                pts = sorted((float(n.split("@")[1].split("+")[0]), c["accuracy"]) for n, c in cells.items()
                             if n.startswith(method + "@") and ("+ft" in n) == ft and "accuracy" in c)
                if pts:
                    ax.plot(*zip(*pts), style, marker="o", ms=3, color=f"C{i}",
                            label=f"{method}{' + fine-tune' if ft else ' (no fine-tuning)'}")
        ax.axhline(cells["unpruned"]["accuracy"], color="grey", lw=0.8)
        ax.set(title=key, xlabel="pruning ratio", ylabel="test accuracy")
        ax.legend(fontsize=6)
    return save_figure(fig, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="*", type=Path)
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--ratios", nargs="+", type=float, default=list(RATIOS))
    parser.add_argument("--finetune", type=int, default=0, help="fine-tuning epochs (also measured without)")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--data", default=os.environ.get("CFCTOOL_DATA", "../shared/data"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=512, help="evaluation batch size")
    parser.add_argument("--speed-batches", type=int, default=40,
                        help="structured: time a seeded subset of N batches of 128 (0: no timing)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--note", default="nothing else", help="what else ran on the machine meanwhile")
    parser.add_argument("--plot", action="store_true", help="write benchmarks/results/prune.png")
    args = parser.parse_args(argv)
    for path in args.checkpoints:
        run(path, args)
    if args.plot:
        print(plot(results_dir() / "prune.png"))


if __name__ == "__main__":
    main()
