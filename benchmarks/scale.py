"""IMDB CfC training throughput at 1 and 2 data-parallel processes on this machine
(torchrun, gloo, one thread each), recorded in benchmarks/results/scale.yaml.

Each measurement is a torchrun of this script in worker mode: it resolves the IMDB CfC
default settings (global batch 128), loads the data, and times `fit()`'s optimiser steps
(rank 0's clock between step `--warmup` and the last; every step ends in the gradient
all-reduce, so rank 0 sees the global pace). Process counts are interleaved over
`--repeats` rounds and the medians kept. Nothing else should run meanwhile: with 2 cores,
a 2-process run needs both.

On CPU the embedding's gradient is all-reduced sparse (the rows the batch used);
`--dense-too` also measures each multi-process count with the dense all-reduce of the whole
table (the rows "N, dense embedding gradients"), in the same interleaved rounds.

    python -m benchmarks.scale --data ../shared/data --steps 40 --repeats 3 --dense-too
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, machine, write_results


def worker(args) -> None:
    import torch

    from cfctool.configs import resolve
    from cfctool.data.registry import load_dataset
    from cfctool.families.build import arch_record, build_model
    from cfctool.runtime import is_main, seed_everything, world_size
    from cfctool.training.fit import fit

    torch.set_num_threads(1)
    if args.dense:
        import cfctool.training.fit as fit_module

        fit_module.SPARSE_EMBEDDING_GRADIENTS = False
    run = resolve(args.dataset, "cfc", overrides={"data_dir": args.data, "max_steps": args.steps, "threads": 1,
                                           "batch_size": args.batch_size, "val_fraction": 0.02})
    dataset = load_dataset(run.data, seed=0)
    seed_everything(0)
    model = build_model(arch_record(run.arch, dataset.task), dataset.task)
    stamps: list[float] = []
    fit(model, dataset, run.train, progress=lambda p: stamps.append(time.perf_counter()) if p.phase == "step" else None)
    if is_main():
        timed = stamps[args.warmup - 1:]
        steps = len(timed) - 1
        Path(args.worker).write_text(json.dumps({
            "processes": world_size(), "steps_timed": steps, "seconds": timed[-1] - timed[0],
            "samples_per_s": steps * args.batch_size / (timed[-1] - timed[0])}))


DENSE = ", dense embedding gradients"


def measure(label: int | str, args) -> dict:
    """One torchrun at `label` processes (an int; "N, dense embedding gradients": N with the dense all-reduce)."""
    nproc = label if isinstance(label, int) else int(label.split(",")[0])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
               "-m", "benchmarks.scale", "--worker", str(out), "--dataset", args.dataset, "--data", args.data, "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--batch-size", str(args.batch_size)] + (["--dense"] if isinstance(label, str) else [])
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path})
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="imdb", help="imdb (the measurement) or xor (a smoke run)")
    parser.add_argument("--data", default=os.environ.get("CFCTOOL_DATA", "../shared/data"))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the timing")
    parser.add_argument("--batch-size", type=int, default=128, help="the global batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--processes", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--note", default="nothing else")
    parser.add_argument("--dense-too", action="store_true",
                        help="also measure every multi-process count with dense embedding gradients")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--dense", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    labels: list[int | str] = list(args.processes)
    if args.dense_too:
        labels += [f"{n}{DENSE}" for n in args.processes if n > 1]
    runs: dict[int | str, list[dict]] = {label: [] for label in labels}
    for r in range(args.repeats):
        for label in (labels if r % 2 == 0 else labels[::-1]):
            runs[label].append(measure(label, args))
            print(f"[scale] round {r + 1}: {label} process(es) {runs[label][-1]['samples_per_s']:.1f} samples/s",
                  file=sys.stderr)
    rates = {label: statistics.median(x["samples_per_s"] for x in v) for label, v in runs.items()}
    base = rates[labels[0]]
    doc = {"benchmark": f"{args.dataset} CfC data-parallel training throughput (torchrun, gloo)",
           "command": f"python -m benchmarks.scale {' '.join(sys.argv[1:])}",
           "model": f"{args.dataset} cfc, default preset"
                    + (" (hidden 192, backbone 2 x 64, embedding 192, seq_len 200)" if args.dataset == "imdb" else ""),
           "global_batch": args.batch_size, "threads_per_process": 1, "steps": args.steps, "warmup": args.warmup,
           "repeats": args.repeats, "what_else_ran": args.note, "machine": machine(),
           "embedding_gradients": "all-reduced sparse (the rows each batch used) unless the row says dense",
           "samples_per_s": {n: round(v, 2) for n, v in rates.items()},
           "speedup": {n: round(v / base, 3) for n, v in rates.items()},
           "runs": {n: v for n, v in runs.items()}}
    print(write_results("scale", doc))


if __name__ == "__main__":
    main()
