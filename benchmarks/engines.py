"""Whole-test-set CPU inference per engine and thread count, against ncps and the LTC.

For each checkpoint (the baselines' by default), timed interleaved in one process (medians):
- `cfctool-torch`: our inference engine (`cfctool.models.inference`, folded weights);
- `cfctool-torch-nopack`: the same engine computing padded steps too (the work ncps does);
- `cfctool-torch-loop`: the training loop run under inference mode (what the folding saves);
- `ncps`: ncps.torch.CfC holding the same weights (embedding and readout are ours);
- `cfctool-onnxruntime` with `--onnx`: ONNX Runtime on the exported (unrolled) graph.
  Exporting a 200-step IMDB model takes minutes, so it is opt-in.
ncps has no masks, so on padded data its predictions can differ from ours; our engines
must agree with each other. `ltc_vs_cfc` times an LTC and our CfC loop (conservatively
the unfolded one) of the same hidden size on the same real sequences, per batch size.

    python -m benchmarks.engines --data ../shared/data --ckpt-dir runs/baselines --threads 1 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import interleaved, merge_result
from cfctool.checkpoint import load
from cfctool.engines import choose
from cfctool.errors import CfcError
from cfctool.models.inference import FoldedCfC, supports
from cfctool.ops.bench import call_in_inference_mode, onnx_session_runner, workload
from cfctool.ops.export import export_onnx

NAMES = ("imdb-cfc", "imdb-cfc-deep", "imdb-cfc-ncp", "person_activity-cfc")


def ncps_model(ckpt, model):
    """ncps.torch.CfC (or LTC) with our checkpoint's recurrent weights (`cfctool.models.ncps_layout`)."""
    from cfctool.models import ncps_layout

    ncps_layout.representable(ckpt.arch)
    ref = ncps_layout.build(ckpt.arch, model.rnn.input_size)
    ref.load_state_dict(ncps_layout.core_to_ncps(ckpt.arch, model.rnn.state_dict()), strict=True)
    ref.eval()
    per_step = model.per_step

    def run(b):
        with torch.inference_mode():
            x = model.embedding(b.x) if model.embedding is not None else b.x
            out, _ = ref(x)
            return model.head(out if per_step else out[:, -1])
    return run


def engine_runner(ckpt, model):
    """A batch runner for the engine `cfctool eval` names for the checkpoint (the folded one)."""
    return call_in_inference_mode(choose(ckpt, model).module)


def time_engines(ckpt, onnx_path, data, threads: int, repeats: int, labels, mask) -> dict:
    from cfctool.families.build import model_from_checkpoint

    torch.set_num_threads(threads)
    model = model_from_checkpoint(ckpt)
    runners = {"cfctool-torch": engine_runner(ckpt, model), "cfctool-torch-loop": call_in_inference_mode(model),
               "ncps": ncps_model(ckpt, model)}
    if supports(model) and mask is not None and not model.per_step:
        runners["cfctool-torch-nopack"] = call_in_inference_mode(FoldedCfC(model, pack=False))
    if onnx_path is not None:
        runners["cfctool-onnxruntime"] = onnx_session_runner(onnx_path, threads)
    preds = {}
    for engine, run in runners.items():
        preds[engine] = torch.cat([run(b) for b in data]).argmax(-1)

    def whole(run):
        return lambda: [run(b) for b in data]

    timings = interleaved({e: whole(r) for e, r in runners.items()}, repeats, warmup=1)

    def accuracy(p):
        from cfctool.metrics import valid_targets

        pred, y = valid_targets(p, labels, mask, ckpt.task)
        return float((pred == y).float().mean())

    ncps_s = timings["ncps"]["median_s"]
    ours = [e for e in preds if e.startswith("cfctool")]
    return {
        "threads": threads,
        "engines": {e: {**t, "accuracy": accuracy(preds[e]), "speedup_vs_ncps": ncps_s / t["median_s"]}
                    for e, t in timings.items()},
        "our_engines_identical_predictions": all(torch.equal(preds[e], preds["cfctool-torch"]) for e in ours),
    }


def ltc_vs_cfc(ckpt, batch, threads: int, size: int) -> dict:
    """Seconds per sequence of our CfC loop and an LTC of the same hidden size, on the first
    `size` sequences of a real batch. The ratio grows with the batch (the CfC's products get
    more efficient, the LTC's per-synapse work does not), so it is reported per batch size;
    an LTC of hidden 448 takes minutes for a batch of 128."""
    from cfctool.families.build import build_core, model_from_checkpoint

    torch.set_num_threads(threads)
    model = model_from_checkpoint(ckpt)
    batch = batch.take(slice(0, size))
    x = model.embedding(batch.x).detach() if model.embedding is not None else batch.x
    ltc = build_core({"name": "ltc", "hidden": ckpt.arch["hidden"], "ode_unfolds": 6}, x.shape[-1]).eval()
    out = {}
    for label, core in (("cfc", model.rnn), ("ltc", ltc)):
        samples = []
        for i in range(3 if label == "ltc" else 7):
            start = time.perf_counter()
            with torch.inference_mode():
                core(x, batch.dt, batch.mask)
            if i:
                samples.append(time.perf_counter() - start)
        out[label] = statistics.median(samples) / len(x)
    return {"hidden": ckpt.arch["hidden"], "batch": len(x), "seq_len": int(x.shape[1]), "threads": threads,
            "sec_per_sequence": out, "ltc_over_cfc": out["ltc"] / out["cfc"]}


def python_overhead(ckpt, batch) -> dict:
    """How much of our engine's time is Python and dispatch rather than operator work.

    At the batch size timed, the profiler's operator self-times against the wall time (the
    profiler's own cost makes the overhead an upper bound); at batch 1, the time per step,
    which is mostly fixed cost. A compiled loop could remove at most the difference."""
    from torch.profiler import ProfilerActivity, profile

    from cfctool.families.build import model_from_checkpoint

    torch.set_num_threads(1)
    run = engine_runner(ckpt, model_from_checkpoint(ckpt))
    run(batch)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        run(batch)
        wall = time.perf_counter() - start
    op_s = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key.startswith("aten::")) / 1e6
    one = batch.take(slice(0, 1))
    samples = []
    for _ in range(7):
        start = time.perf_counter()
        run(one)
        samples.append(time.perf_counter() - start)
    steps = int(one.mask.sum()) if one.mask is not None else int(one.x.shape[1])
    return {"threads": 1, "batch": len(batch), "operator_share_of_wall": round(op_s / wall, 3),
            "batch1_us_per_step": round(1e6 * statistics.median(samples) / steps, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--ckpt-dir", default="runs/baselines")
    parser.add_argument("--only", nargs="+", default=list(NAMES))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=None, help="time only the first N batches (recorded)")
    parser.add_argument("--onnx", action="store_true", help="also export and time ONNX Runtime (slow export)")
    parser.add_argument("--ltc-batches", type=int, nargs="*", default=[32, 128],
                        help="batch sizes for the LTC vs CfC timing (section 'ltc')")
    parser.add_argument("--ltc-only", action="store_true", help="only the LTC vs CfC timing")
    args = parser.parse_args(argv)
    for name in args.only:
        path = Path(args.ckpt_dir) / f"{name}.st"
        if not path.exists():
            print(f"skip {name}: {path} not found (run benchmarks/baselines.py first)", file=sys.stderr)
            continue
        ckpt = load(path)
        data, labels, mask = workload(ckpt, "test", args.data, args.batch_size, None, args.batches)
        ltc = [ltc_vs_cfc(ckpt, data[0], args.threads[0], n) for n in args.ltc_batches if n <= len(data[0])]
        if ltc:  # none asked for (`--ltc-batches` alone): an earlier measurement stays
            print(merge_result("engines", "ltc", name, ltc, HEADER))
            print(f"{name}: LTC/CfC per sequence "
                  + ", ".join(f"{r['ltc_over_cfc']:.0f}x at batch {r['batch']}" for r in ltc), file=sys.stderr)
        if args.ltc_only:
            continue
        entry = {"checkpoint": str(path), "items": sum(len(b) for b in data), "batches": len(data),
                 "valid_step_fraction": None if mask is None else round(float(mask.float().mean()), 4),
                 "command": "python -m benchmarks.engines " + " ".join(sys.argv[1:])}
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = None
            if args.onnx:
                start = time.perf_counter()
                try:
                    onnx_info = export_onnx(ckpt, Path(tmp) / "model.onnx", data[0])
                    onnx_info["export_s"] = round(time.perf_counter() - start, 1)
                    onnx_path = onnx_info.pop("path")
                    entry["onnx_export"] = onnx_info
                except CfcError as exc:  # recorded, not fatal: the other engines still count
                    entry["onnx_export_failed"] = str(exc)
                    print(f"{name}: ONNX export failed: {exc}", file=sys.stderr)
            entry["runs"] = [time_engines(ckpt, onnx_path, data, n, args.repeats, labels, mask)
                             for n in args.threads]
        entry["python_overhead"] = python_overhead(ckpt, data[0])
        best = max(entry["runs"][0]["engines"].items(), key=lambda kv: kv[1]["speedup_vs_ncps"])
        print(f"{name}: best at {args.threads[0]} thread(s) {best[0]} {best[1]['speedup_vs_ncps']:.2f}x vs ncps",
              file=sys.stderr)
        save(name, entry, args)  # after each checkpoint: a later failure loses nothing


HEADER = {"benchmark": "whole-test-set CPU inference per engine", "device": "cpu"}


def save(name: str, entry: dict, args) -> None:
    entry["repeats"] = args.repeats
    print(merge_result("engines", "results", name, entry, HEADER))


if __name__ == "__main__":
    main()
