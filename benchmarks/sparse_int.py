"""Pruning and quantization multiplied: a trained model pruned (fine-tuned, stored sparse),
then quantized, against the same model quantized dense. Records the recurrent weights'
stored bytes (indices and scales counted), the file bytes, the codecs chosen and the test
accuracy on the engine `eval` runs.

    python -m benchmarks.sparse_int runs/imdb/cfc.st --data ../shared/data --threads 1 --ratio 0.95

Results: benchmarks/results/sparse-int.yaml (one entry per checkpoint x pruning setting).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.common import merge_result

HEADER = {"benchmark": "prune -> quantize: stored bytes of the recurrent weights and accuracy"}


def recurrent_bytes(ckpt) -> int:
    """Stored bytes of the recurrent core's weight matrices (every part of an encoded one)."""
    total = 0
    for name, t in ckpt.tensors.items():
        if name.startswith("rnn.") and name.endswith(".weight"):
            parts = ckpt.parts.get(name)
            total += sum(p.numel() * p.element_size() for p in parts.values()) if parts else t.numel() * t.element_size()
    return total


def measure(path: Path, args, scope: str) -> dict:
    import torch

    from cfctool import checkpoint
    from cfctool.configs import PruneConfig, QuantizeConfig
    from cfctool.ops.evaluate import evaluate
    from cfctool.ops.prune import prune
    from cfctool.ops.quantize import quantize

    torch.set_num_threads(args.threads)
    base = checkpoint.load(path)
    quant = QuantizeConfig(scheme="static", threads=args.threads)
    started = time.perf_counter()
    dense = quantize(base, quant, data_dir=args.data)
    pruned = prune(base, PruneConfig(ratio=args.ratio, finetune=args.finetune, lr=args.lr, storage="sparse",
                                     threads=args.threads,
                                     global_threshold=scope == "global"), data_dir=args.data)
    sparse = quantize(pruned, quant, data_dir=args.data)
    out = {}
    for label, ckpt in (("fp32", base), ("dense int8", dense), ("pruned fp32", pruned), ("pruned int8", sparse)):
        report = evaluate(ckpt, data_dir=args.data, threads=args.threads, max_samples=args.max_samples)
        out[label] = {"accuracy": report.get("accuracy"), "engine": report["engine"],
                      "file_bytes": len(checkpoint.to_bytes(ckpt)), "recurrent_weight_bytes": recurrent_bytes(ckpt),
                      "codecs": sorted({f"{s['codec']}/{s.get('layout', '-')}" for s in ckpt.encodings.values()})}
    out["recurrent_ratio_to_dense_int8"] = round(out["pruned int8"]["recurrent_weight_bytes"]
                                                 / out["dense int8"]["recurrent_weight_bytes"], 4)
    out["file_ratio_to_dense_int8"] = round(out["pruned int8"]["file_bytes"] / out["dense int8"]["file_bytes"], 4)
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--data", default=None)
    parser.add_argument("--ratio", type=float, default=0.95)
    parser.add_argument("--scope", choices=("global", "local", "both"), default="both",
                        help="global: one threshold over every weight; local: the ratio of each layer")
    parser.add_argument("--finetune", type=int, default=1)
    parser.add_argument("--lr", type=float, default=2e-4, help="fine-tuning learning rate (prune's default)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-samples", type=int, default=None, help="test rows evaluated (default: all)")
    parser.add_argument("--also", default="", help="what else ran on the machine (recorded)")
    args = parser.parse_args(argv)
    import sys

    scopes = ("global", "local") if args.scope == "both" else (args.scope,)
    for path in args.checkpoints:
        for scope in scopes:
            entry = {**measure(path, args, scope), "ratio": args.ratio, "scope": scope, "finetune": args.finetune,
                     "threads": args.threads, "what_else_ran": args.also or "not stated",
                     "command": "python -m benchmarks.sparse_int " + " ".join(sys.argv[1:] if argv is None else
                                                                             map(str, argv))}
            print(merge_result("sparse-int", "results", f"{path.stem}-{scope}{args.ratio:g}", entry, HEADER))


if __name__ == "__main__":
    main()
