"""The seed's model-order-reduction tables (the MOR paper, Tables II and III) on this machine,
plus the CfC reduction (no published counterpart) against structured pruning at equal size.

For each fp32 checkpoint, method and reduced size it runs `cfctool.ops.reduce` (without and,
with --finetune N, after N epochs of fine-tuning: the layers after the ODE block for Neural
ODEs, the seed's protocol; everything for CfC), evaluates top-1/top-3 on the test split, and
times the whole test split against the original in the same interleaved passes (medians;
each on its fastest exact engine). A cell is `METHOD@K` (m = K points, the seed's setting) or
`METHOD@K:M`; METHOD may end in `/lstsq` (the least-squares rebuild of the nonlinearity from
its values at the points instead of DEIM's U (P^T U)^-1). For CfC, `prune@K` is structured
pruning of the hidden units to the same K (`--structured --local --scope heads`). Cells are
merged into benchmarks/results/reduce.yaml as they finish and skipped when already there.
`--plot` draws accuracy vs speed-up (the seed's Figures 4, 6) and the singular-value decay
(Figures 3, 5).

    python -m benchmarks.reduce /work/runs/baselines/mnist-conv-ode.st --dims 50 100 250 500 --finetune 3
    python -m benchmarks.reduce /work/runs/baselines/mnist-conv-ode.st --cells pod-deim/lstsq@50:120 --finetune 3
    python -m benchmarks.reduce /work/runs/baselines/imdb-cfc-reference.st --dims 96 \\
        --methods pod-deim qdeim pod-deim/lstsq qdeim/lstsq apoz prune --finetune 1 --lr 5e-4 --speed-batches 40
    python -m benchmarks.reduce /work/runs/baselines/mnist-conv-ode.st --retime --note "nothing else (paused)"
    python -m benchmarks.reduce --plot
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from benchmarks.common import machine, measure, merge_result, panels, results_dir, save_figure, speedup

ODE_METHODS = ("pod-deim", "qdeim", "odeim", "pod", "svd", "apoz")
SEED = {"mnist/conv-ode": "the MOR paper, Table II: POD-DEIM 91.9% top-1 at 4x (original 97.9%)",
        "pmnist/ode-rnn": "the MOR paper, Table III: SVD 125 94.5% at 1.8x (original 96.2%)"}
CFC_SEED = "no published counterpart; against structured pruning of the hidden units to the same size (prune@K)"


def _done(key: str) -> dict:
    import yaml

    path = results_dir() / "reduce.yaml"
    doc = (yaml.safe_load(path.read_text()) if path.exists() else None) or {}
    return (doc.get("runs") or {}).get(key) or {}


def _same_model(done: dict, key: str, path: Path, digest: str) -> None:
    """The entry already there must be this model's (by its digest, or by its path where an
    older entry recorded none): cells of two models in one table would read as one study."""
    recorded = done.get("checkpoint_sha256")
    if done and (recorded != digest if recorded else done.get("checkpoint") != str(path)):
        raise SystemExit(f"error: {key} in reduce.yaml holds {done.get('checkpoint')}, not {path}: "
                         "name this one with --key, or give --replace to measure it in that entry's place")


def _cells_kept(old: dict, new: dict) -> dict:
    """Cells and spectra that another process (same model, run in parallel) saved meanwhile
    survive; this process's own cells win (a retime's note goes: new cells are not retimed)."""
    kept = {k: v for k, v in old.items() if k != "timing"}
    return {**kept, **new, "cells": {**(old.get("cells") or {}), **new["cells"]},
            "singular_values": {**(old.get("singular_values") or {}), **new["singular_values"]}}


def parse_cell(cell: str) -> tuple[str, str, int, int | None]:
    """'qdeim/lstsq@50:120' -> ('qdeim', 'lstsq', 50, 120)."""
    method, _, size = cell.partition("@")
    method, _, interpolation = method.partition("/")
    k, _, m = size.partition(":")
    return method, interpolation or "deim", int(k), int(m) if m else None


def make(fp32, cell: str, ft: int, args):
    """The reduced (or, for `prune@K`, structurally pruned) checkpoint of one cell."""
    from cfctool.configs import PruneConfig, ReduceConfig
    from cfctool.ops.prune import prune
    from cfctool.ops.reduce import reduce

    method, interpolation, k, m = parse_cell(cell)
    say = lambda msg: print(f"[{cell}{'+ft' + str(ft) if ft else ''}] {msg}", file=sys.stderr)
    if method == "prune":
        ratio = 1 - k / fp32.arch["hidden"]
        cfg = PruneConfig(ratio=ratio, structured=True, scope="heads", global_threshold=False, finetune=ft,
                          lr=args.lr, threads=args.threads)
        return prune(fp32, cfg, data_dir=args.data, notify=say)
    cfg = ReduceConfig(method=method, dim=k, points=m, interpolation=interpolation, snapshots=args.snapshots,
                       every=args.every, finetune=ft, lr=args.lr, threads=args.threads,
                       finetune_scope="after" if fp32.arch["name"] in ("conv-ode", "ode-rnn") else "all")
    return reduce(fp32, cfg, data_dir=args.data, notify=say)


def run(path: Path, args) -> None:
    from cfctool import checkpoint
    from cfctool.errors import CfcError

    fp32 = checkpoint.load(path)
    key = args.key or f"{fp32.task['dataset']}/{fp32.arch['name']}"
    done = {} if args.replace else _done(key)
    _same_model(done, key, path, fp32.sha256)
    cells = dict(done.get("cells") or {})
    spectra = dict(done.get("singular_values") or {})
    if "original" not in cells:
        cells["original"] = measure(fp32, args.data, args.batch_size, args.threads)
    header = {"checkpoint": str(path), "checkpoint_sha256": fp32.sha256, "command": f"python -m benchmarks.reduce {' '.join(sys.argv[1:])}",
              "finetune_epochs": args.finetune, "finetune_lr": args.lr, "snapshots": args.snapshots,
              "every": args.every, "threads": args.threads, "repeats": args.repeats,
              "speed_batches": args.speed_batches or "whole test split", "machine": machine(),
              "what_else_ran": args.note, "seed_reference": SEED.get(f"{fp32.task['dataset']}/{fp32.arch['name']}", CFC_SEED)}

    fresh = [args.replace]  # the first save replaces the entry; later ones merge with parallel processes

    def save() -> None:
        merge_result("reduce", "runs", key, {**header, "singular_values": spectra, "cells": cells},
                     {"benchmark": "model-order reduction (the MOR paper)"}, combine=None if fresh[0] else _cells_kept)
        fresh[0] = False

    save()

    todo = list(args.cells) + [f"{m}@{k}" for m in args.methods for k in args.dims]
    for cell in todo:
        for ft in ([0, args.finetune] if args.finetune else [0]):
            name = cell + (f"+ft{ft}" if ft else "")
            if name in cells:
                continue
            start = time.perf_counter()
            try:
                out = make(fp32, cell, ft, args)
            except CfcError as exc:  # e.g. a method that does not apply: recorded, the sweep goes on
                cells[name] = {"not_applicable": str(exc)}
                save()
                continue
            row = {"build_seconds": round(time.perf_counter() - start, 1),
                   **measure(out, args.data, args.batch_size, args.threads)}
            row.update(speedup(fp32, out, args.data, args.speed_batches or None, args.repeats, args.threads))
            row["accuracy_change"] = row["accuracy"] - cells["original"]["accuracy"]
            detail = (out.record.get("compression") or {}).get("reduction") or {}
            for what in ("singular_values_state", "singular_values_nonlinearity", "singular_values_A",
                         "singular_values_heads"):
                if what in detail and what not in spectra:
                    spectra[what] = [float(f"{v:.6g}") for v in detail[what]]
            if isinstance(detail.get("points"), list):  # DEIM-family: the points chosen (else the setting)
                row["points"] = len(detail["points"])
            cells[name] = row
            save()
            print(f"[{name}] top-1 {row['accuracy']:.4f} ({row['accuracy_change']:+.4f}), "
                  f"speed-up {row['speedup']:.2f}x", file=sys.stderr)


def retime(path: Path, args) -> None:
    """Time every cell of one model again in a single interleaved bench run (quiet machine):
    each reduced model is rebuilt without fine-tuning (fine-tuning changes weights, not
    shapes, so its cell gets the same time)."""
    from cfctool import checkpoint
    from cfctool.ops.bench import bench

    fp32 = checkpoint.load(path)
    key = args.key or f"{fp32.task['dataset']}/{fp32.arch['name']}"
    done = _done(key)
    _same_model(done, key, path, fp32.sha256)
    cells = dict(done.get("cells") or {})
    names = [n for n, c in cells.items() if n != "original" and "+ft" not in n and "accuracy" in c]
    models = [make(fp32, n, 0, args) for n in names]
    timing = bench(fp32, engine="auto", also=[(m, "auto") for m in models], data_dir=args.data, batch_size=128,
                   batches=args.speed_batches or None, repeats=args.repeats, warmup=1, threads=args.threads)
    base = timing["results"][0]["split_seconds"]["median"]
    for name, mine in zip(names, timing["also"]):
        seconds = mine["split_seconds"]["median"]
        for cell in [name] + [n for n in cells if n.startswith(name + "+ft")]:
            cells[cell].update(speedup=base / seconds, test_seconds=seconds, base_test_seconds=base,
                               speed_workload=timing["workload"], speed_engine=mine.get("engine"))
    here = machine()  # the cells' first measurements may have run on another CPU
    entry = {**done, "cells": cells, "timing_machine": here,
             "timing": f"retimed together in one interleaved run on {here['cpu']}: "
             f"`python -m benchmarks.reduce {' '.join(sys.argv[1:])}`; also running: {args.note}"}
    merge_result("reduce", "runs", key, entry, {"benchmark": "model-order reduction (the MOR paper)"})
    print(f"[{key}] retimed {len(names)} cells against {base:.2f} s", file=sys.stderr)


def plot(out: Path) -> list[Path]:
    """Accuracy vs speed-up per method (before/after fine-tuning), and the singular values."""
    import yaml

    runs = yaml.safe_load((results_dir() / "reduce.yaml").read_text())["runs"]
    fig, axes = panels(len(runs))
    for ax, (key, run_) in zip(axes, runs.items()):
        cells = run_["cells"]
        methods = sorted({n.split("@")[0] for n in cells if "@" in n})
        for i, method in enumerate(methods):
            for ft, marker in ((False, "o"), (True, "^")):
                pts = sorted((c["speedup"], c["accuracy"]) for n, c in cells.items()
                             if n.split("@")[0] == method and ("+ft" in n) == ft and "speedup" in c)
                if pts:
                    ax.plot(*zip(*pts), "-" if ft else "--", marker=marker, ms=4, color=f"C{i % 10}",
                            label=f"{method}{' + fine-tune' if ft else ''}")
        ax.axhline(cells["original"]["accuracy"], color="grey", lw=0.8)
        ax.axvline(1.0, color="grey", lw=0.5)
        ax.set(title=key, xlabel="CPU speed-up over the original (whole test split)", ylabel="test top-1")
        ax.legend(fontsize=6)
    first = save_figure(fig, out)
    with_spectra = {k: r["singular_values"] for k, r in runs.items() if r.get("singular_values")}
    fig, axes = panels(max(len(with_spectra), 1))
    for ax, (key, spectra) in zip(axes, with_spectra.items()):
        for what, values in spectra.items():
            top = values[0] or 1.0
            ax.semilogy(range(1, len(values) + 1), [max(v / top, 1e-12) for v in values], label=what)
        ax.set(title=key, xlabel="index", ylabel="singular value / largest")
        ax.legend(fontsize=7)
    return [first, save_figure(fig, out.with_name(out.stem + "-singular-values.png"))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="*", type=Path)
    parser.add_argument("--methods", nargs="+", default=[], help=f"ODE: {', '.join(ODE_METHODS)} (each may end "
                        "in /lstsq); CfC: pod-deim, qdeim, apoz, svd (the stacked heads), prune")
    parser.add_argument("--dims", nargs="+", type=int, default=[])
    parser.add_argument("--cells", nargs="+", default=[], help="extra cells METHOD@K[:M]")
    parser.add_argument("--finetune", type=int, default=0, help="fine-tuning epochs (also measured without)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--snapshots", type=int, default=2000)
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--data", default=os.environ.get("CFCTOOL_DATA", "../shared/data"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=500, help="evaluation batch size")
    parser.add_argument("--speed-batches", type=int, default=0,
                        help="time a seeded subset of N batches of 128 (0: the whole test split)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--note", default="nothing else", help="what else ran on the machine meanwhile")
    parser.add_argument("--plot", action="store_true", help="write benchmarks/results/reduce*.png")
    parser.add_argument("--key", help="the run's name in reduce.yaml (default DATASET/ARCH): another model of "
                        "the same data set and architecture gets its own")
    parser.add_argument("--retime", action="store_true",
                        help="time the cells already measured again, all in one interleaved run")
    parser.add_argument("--replace", action="store_true",
                        help="measure into the entry of --key (or DATASET/ARCH) from scratch, dropping the cells "
                        "another checkpoint left there")
    args = parser.parse_args(argv)
    if args.checkpoints and not (args.methods and args.dims) and not args.cells and not args.retime:
        parser.error("give --methods and --dims, or --cells (or --retime)")
    for path in args.checkpoints:
        (retime if args.retime else run)(path, args)
    if args.plot:
        print("\n".join(str(p) for p in plot(results_dir() / "reduce.png")))


if __name__ == "__main__":
    main()
