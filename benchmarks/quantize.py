"""The seed's quantization table (the compression study) on this machine: accuracy, file ratio, CPU speed.

For each fp32 checkpoint it makes the variants with `cfctool.ops.quantize` (saved under
--out-dir), then times the whole test split in one process, 1 thread by default, all
subjects interleaved: the fp32 model on our fastest fp32 engine (folded), the fp32 model
in plain PyTorch eager (the training loop: the seed's baseline) and every variant on the
engine `cfctool eval` uses for it. Accuracy comes from the same passes. Results merge
into benchmarks/results/quantize.yaml; `python -m benchmarks.tables` renders the README.

    python -m benchmarks.quantize /work/runs/baselines/imdb-cfc-reference.st --data ../shared/data
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from benchmarks.common import machine, merge_result

VARIANTS = {  # name: QuantizeConfig settings
    "dynamic": {"scheme": "dynamic"},
    "static-nofuse": {"scheme": "static", "observer": "minmax", "fuse": False},
    "static": {"scheme": "static", "observer": "minmax"},
    "static-mse": {"scheme": "static", "observer": "mse"},
    "qat": {"scheme": "qat", "epochs": 1},
    "int4-qat": {"scheme": "qat", "bits": 4, "epochs": 1},
    "static-fold": {"scheme": "static", "observer": "minmax", "fold_embedding": True},
}
SEED = {  # the compression study: fp32 / static (unfused) / +fusing / QAT accuracy, compression, int8 speed-up (fused) vs fp32 eager
    "imdb/cfc": {"fp32": 0.861, "static": 0.860, "fused": 0.861, "qat": 0.868, "compression": 3.8, "speedup": 2.0},
    "imdb/cfc-deep": {"fp32": 0.881, "static": 0.872, "fused": 0.871, "qat": 0.876, "compression": 3.8, "speedup": 3.2},
    "imdb/cfc-ncp": {"fp32": 0.842, "static": 0.838, "fused": None, "qat": 0.839, "compression": 3.8, "speedup": 1.9},
    "person_activity/cfc": {"fp32": 0.872, "static": 0.864, "fused": 0.864, "qat": 0.865, "compression": 3.1,
                            "speedup": 1.9},
}


def run(path: Path, args) -> dict:
    from cfctool import checkpoint
    from cfctool.configs import QuantizeConfig
    from cfctool.errors import CfcError
    from cfctool.ops.bench import bench
    from cfctool.ops.quantize import quantize

    fp32 = checkpoint.load(path)
    model_key = f"{fp32.task['dataset']}/{fp32.arch['name']}"
    key = model_key + (f" (batch {args.batch_size})" if args.batch_size != 128 else "")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    variants, made = {}, {}
    for name in args.variants:
        target = out_dir / f"{path.stem}-{name}.st"
        if args.reuse and target.exists():
            variants[name] = checkpoint.load(target)
            made[name] = {"reused": str(target)}
            continue
        start = time.perf_counter()
        try:
            q = quantize(fp32, QuantizeConfig(threads=args.threads, calib=args.calib, **VARIANTS[name]),
                         data_dir=args.data, argv=sys.argv, notify=lambda m: print(f"[{name}] {m}", file=sys.stderr))
        except CfcError as exc:  # e.g. --fold-embedding on a model without an embedding
            made[name] = {"not_applicable": str(exc)}
            continue
        checkpoint.save(q, target)
        variants[name] = checkpoint.load(target)
        made[name] = {"seconds": round(time.perf_counter() - start, 1),
                      "state_mse": q.record["compression"]["quantization"].get("state_mse")}
        print(f"[{name}] {target}", file=sys.stderr)
    names = [n for n in args.variants if n in variants]
    also = [(fp32, "loop")] + [(variants[n], "auto") for n in names]
    onnx = [n for n in ("static",) if args.onnx and n in variants]  # ONNX Runtime: fp32 Scan and int8 Scan
    if args.onnx:
        also += [(fp32, "onnxruntime")] + [(variants[n], "onnxruntime") for n in onnx]
    report = bench(fp32, engine="auto", also=also, data_dir=args.data, batch_size=args.batch_size,
                   batches=args.batches, repeats=args.repeats, warmup=1, threads=args.threads,
                   notify=lambda m: print(f"[bench] {m}", file=sys.stderr))
    folded, eager = report["results"][0], report["also"][0]
    rows = {"fp32 folded": _row(folded, folded, eager), "fp32 eager": _row(eager, folded, eager)}
    for name in args.variants:
        if name not in variants:
            rows[name] = made[name]
    for name, r in zip(names, report["also"][1:]):
        rows[name] = {**_row(r, folded, eager), **made[name],
                      "quantization": {k: v for k, v in variants[name].record["compression"]["quantization"].items()
                                       if k in ("scheme", "bits", "observer", "granularity", "activation_scales",
                                                "fuse", "qat_kept_epoch")}}
    for name, r in zip(["fp32"] + onnx if args.onnx else [], report["also"][1 + len(names):]):
        rows[f"{name} onnxruntime"] = {**_row(r, folded, eager), "export": r.get("onnx")}
    # the profile times too: before the accuracy passes, which need no quiet machine
    profile = per_step_profile(fp32, variants.get("static"), args) if args.profile else None
    if args.whole_accuracy and args.batches:  # timed on a subset, accuracy from one pass over the whole split
        whole = whole_split_accuracy([("fp32 folded", fp32, "auto"), ("fp32 eager", fp32, "loop")]
                                     + [(n, variants[n], "auto") for n in names], args)
        for name, acc in whole.items():
            rows[name] = {**rows[name], "accuracy_timed_subset": rows[name]["accuracy"], **acc}
    return key, {
        **({"per_step_profile": profile} if profile else {}),
        "command": f"python -m benchmarks.quantize {' '.join(sys.argv[1:])}",
        "checkpoint": str(path), "workload": report["workload"], "threads": report["threads"],
        "repeats": report["repeats"], "machine": machine(), "what_else_ran": args.note, "rows": rows,
        "seed_reference": SEED.get(model_key),
    }


def whole_split_accuracy(subjects, args) -> dict[str, dict]:
    """name -> the accuracy over the whole test split and its sample count, each subject on its
    engine (the fp32 loop and folded engines agree to float rounding: one pass serves both)."""
    from cfctool.ops.evaluate import evaluate

    out, fp32_metrics = {}, None
    for name, ckpt, engine in subjects:
        if name == "fp32 eager" and fp32_metrics is not None:
            metrics = fp32_metrics
        else:
            metrics = evaluate(ckpt, "test", args.data, threads=args.threads, engine=engine,
                               notify=lambda m, name=name: print(f"[accuracy {name}] {m}", file=sys.stderr))
            fp32_metrics = fp32_metrics or metrics
        out[name] = {"accuracy": metrics["accuracy"], "accuracy_samples": metrics["samples"]}
    return out


def per_step_profile(fp32, static, args) -> dict:
    """Where one step's time goes: operator self time per step (torch profiler), full batch
    of `--batch-size` rows and the task's length, for the folded fp32 and int8 engines."""
    import torch

    from cfctool.engines import choose
    from cfctool.families.build import model_from_checkpoint
    from cfctool.ops.bench import workload

    torch.set_num_threads(args.threads)
    batch = workload(fp32, "test", args.data, args.batch_size, None, 1)[0][0]
    steps = batch.x.shape[1]
    out = {"batch": int(batch.x.shape[0]), "steps": steps}
    for label, ckpt in (("fp32 folded", fp32), ("int8 static", static)):
        if ckpt is None:
            continue
        engine = choose(ckpt, model_from_checkpoint(ckpt))
        engine.module(batch.x, batch.dt, batch.mask)
        with torch.profiler.profile() as prof:
            for _ in range(3):
                engine.module(batch.x, batch.dt, batch.mask)
        wall_start = time.perf_counter()
        for _ in range(3):
            engine.module(batch.x, batch.dt, batch.mask)
        wall = (time.perf_counter() - wall_start) / 3 / steps * 1e6
        ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in ops) / 3 / steps
        out[label] = {"engine": engine.name, "wall_us_per_step": round(wall, 1),
                      "operator_us_per_step": round(total, 1),
                      "top_ops_us_per_step": {e.key: round(e.self_cpu_time_total / 3 / steps, 1) for e in ops[:10]},
                      "calls_per_step": round(sum(e.count for e in ops) / 3 / steps, 1)}
    return out


def _row(r: dict, folded: dict, eager: dict) -> dict:
    med = r["split_seconds"]["median"]
    return {"engine": r["engine"], "accuracy": r["accuracy"], "file_bytes": r.get("file_bytes"),
            "split_seconds": r["split_seconds"], "speedup_vs_folded_fp32": folded["split_seconds"]["median"] / med,
            "speedup_vs_eager_fp32": eager["split_seconds"]["median"] / med,
            "file_ratio": (folded["file_bytes"] / r["file_bytes"]) if r.get("file_bytes") else None,
            **({"engine_note": r["engine_note"]} if r.get("engine_note") else {})}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--data", default=os.environ.get("CFCTOOL_DATA", "../shared/data"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calib", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=None, help="time a seeded subset of N batches (stated)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--whole-accuracy", action="store_true",
                        help="with --batches: accuracy from one more pass over the whole test split")
    parser.add_argument("--out-dir", default="runs/quantize")
    parser.add_argument("--reuse", action="store_true", help="reuse variants already in --out-dir")
    parser.add_argument("--note", default="nothing else", help="what else ran on the machine meanwhile")
    parser.add_argument("--profile", action="store_true", help="also record a per-step operator profile")
    parser.add_argument("--onnx", action="store_true",
                        help="also time ONNX Runtime: the fp32 Scan graph and the static int8 one (MatMulInteger)")
    args = parser.parse_args(argv)
    for path in args.checkpoints:
        key, entry = run(path, args)
        print(merge_result("quantize", "runs", key, entry, {"benchmark": "quantization (the compression study) on this machine"}))


if __name__ == "__main__":
    main()
