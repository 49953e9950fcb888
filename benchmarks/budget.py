"""Compress to an accuracy budget (`--max-drop`) on a trained model: the setting each search
finds, its test accuracy, size and speed-up against the original, and the search's wall time.

    python -m benchmarks.budget runs/imdb/cfc.st --max-drop 0.5 --threads 1 --data ../shared/data
    python -m benchmarks.budget s0/cfc.st --with s1/cfc.st s2/cfc.st --methods reduce quantize ...

`--with`: other seeds of the recipe (`--max-drop-with`): each search holds the budget on the
mean over the seeds' models, each on its own hold-out; the entry is named `...-seeds3` and
keeps the test accuracy of every seed's model at the setting found (mean and sd), beside
what the first model alone chose when that search is on record.

Three searches (each its own command's `--max-drop`): prune (global unstructured, upper bound
--prune-ratio, --finetune 1, sparse storage), reduce (qdeim with the lstsq rebuild, upper bound the hidden size
- 1) and quantize (static; int4, then int8, x observer x granularity). The budget is on the
validation hold-out of the training split; the test split is read once per result, here.
Speed: the test batches through the engine `eval` runs for each model, interleaved repeats,
medians, as a ratio to the original.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from benchmarks.common import interleaved, merge_result

HEADER = {"benchmark": "compression to an accuracy budget (--max-drop) on the validation hold-out"}


def configs(ckpt, args):
    from cfctool.configs import PruneConfig, QuantizeConfig, ReduceConfig

    common = {"threads": args.threads, "max_drop": args.max_drop, "max_drop_with": [str(p) for p in args.with_]}
    return {
        "prune": PruneConfig(ratio=args.prune_ratio, finetune=1, storage="sparse", **common),
        "reduce": ReduceConfig(method="qdeim", interpolation="lstsq", dim=int(ckpt.arch["hidden"]) - 1, **common),
        "quantize": QuantizeConfig(scheme="static", **common),
    }


def run(path: Path, method: str, args) -> dict:
    import torch

    from cfctool import checkpoint
    from cfctool.engines import choose
    from cfctool.families.build import model_from_checkpoint
    from cfctool.ops.bench import workload
    from cfctool.ops.evaluate import evaluate
    from cfctool.ops.methods import METHODS
    from cfctool.runtime import machine

    torch.set_num_threads(args.threads)
    base = checkpoint.load(path)
    cfg = configs(base, args)[method]
    started = time.perf_counter()
    out = METHODS[method].op(base, cfg, data_dir=args.data, argv=None,
                             notify=lambda m: print(f"[{method}] {m}", file=sys.stderr, flush=True))
    wall = time.perf_counter() - started
    target = Path(args.out_dir) / f"{path.stem}-{method}-drop{args.max_drop:g}{_seeds(args)}.st"
    target.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save(out, target)
    out = checkpoint.load(target)
    section = METHODS[method].section
    search = out.record["compression"][section]["budget"]
    acc = {k: evaluate(c, "test", args.data, threads=args.threads)["accuracy"] for k, c in (("original", base),
                                                                                           ("compressed", out))}
    seeds = {}
    if args.with_:  # every seed's model at the setting found, on the test split
        from dataclasses import replace

        tests, originals = [acc["compressed"]], [acc["original"]]
        for other in args.with_:
            model = checkpoint.load(other)
            same = METHODS[method].op(model, replace(cfg, **search["chosen"], max_drop=None, max_drop_with=[]),
                                      data_dir=args.data, argv=None)
            originals.append(evaluate(model, "test", args.data, threads=args.threads)["accuracy"])
            tests.append(evaluate(same, "test", args.data, threads=args.threads)["accuracy"])
        chosen = chosen_trial(search)
        seeds = {"seeds": {"checkpoints": [str(path)] + [str(o) for o in args.with_],
                           "val_accuracy_each": {"original": [m["baseline_val_accuracy"] for m in search["models"]],
                                                 "compressed": chosen["val_accuracy_each"]},
                           "test_accuracy_each": {"original": originals, "compressed": tests},
                           "drop_mean": chosen["drop_mean"], "drop_sd": chosen["drop_sd"]}}
    batches, _, _ = workload(base, "test", args.data, args.batch_size, None, args.batches)
    runners = {}
    for key, c in (("original", base), ("compressed", out)):
        module = choose(c, model_from_checkpoint(c)).module

        def go(module=module):
            with torch.inference_mode():
                for b in batches:
                    module(b.x, b.dt, b.mask)
        runners[key] = go
    times = interleaved(runners, args.repeats, warmup=1)
    return {
        "checkpoint": str(path), "output": str(target), "max_drop_points": args.max_drop,
        "found": search["chosen"], "candidates": len(search["candidates"]), "search": search["search"],
        "search_seconds": round(wall, 1),
        "val_accuracy": {"original": search["baseline_val_accuracy"],
                         "compressed": chosen_trial(search)["val_accuracy"]},
        "test_accuracy": acc, "test_drop_points": round(100 * (acc["original"] - acc["compressed"]), 2),
        "file_bytes": {"original": path.stat().st_size, "compressed": target.stat().st_size},
        "engine": {k: choose(c, model_from_checkpoint(c)).name for k, c in (("original", base), ("compressed", out))},
        "speedup": round(times["original"]["median_s"] / times["compressed"]["median_s"], 2),
        "timing": {"batches": len(batches), "batch_size": args.batch_size, "repeats": args.repeats,
                   "median_s": {k: round(v["median_s"], 4) for k, v in times.items()}},
        **seeds,
        "threads": args.threads, "what_else_ran": args.note, "machine": machine(),
        "command": f"python -m benchmarks.budget {' '.join(sys.argv[1:])}",
    }


def chosen_trial(search: dict) -> dict:
    """The candidate the search chose (the last one tried at that setting)."""
    return next(t for t in reversed(search["candidates"]) if t["setting"] == search["chosen"])


def _seeds(args) -> str:
    return f"-seeds{len(args.with_) + 1}" if args.with_ else ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--methods", nargs="+", choices=("prune", "reduce", "quantize"),
                        default=["prune", "reduce", "quantize"])
    parser.add_argument("--max-drop", type=float, default=0.5)
    parser.add_argument("--with", dest="with_", nargs="+", type=Path, default=[],
                        help="other seeds of the recipe: the budget on the mean over all (--max-drop-with)")
    parser.add_argument("--prune-ratio", type=float, default=0.95, help="prune: the ratio's upper bound")
    parser.add_argument("--data", default=os.environ.get("CFCTOOL_DATA"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=20, help="timed test batches (a seeded sample)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out-dir", default="runs/budget")
    parser.add_argument("--note", default="nothing else", help="what else ran on the machine meanwhile")
    args = parser.parse_args(argv)
    for method in args.methods:
        entry = run(args.checkpoint, method, args)
        print(merge_result("budget", "runs", f"{args.checkpoint.stem}-{method}{_seeds(args)}", entry, HEADER))


if __name__ == "__main__":
    main()
