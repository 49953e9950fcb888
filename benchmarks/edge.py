"""The edge engine: one stream at a time (batch 1) and a Cortex-M4.

Latency (`--model NAME=CKPT`): the time per step of the generated C (timed in C around the
compiled loop) against the folded engines and ncps with the same weights, each running the
same test sequences one at a time, in interleaved passes (medians). A quantized checkpoint
is also run as float C of its decoded weights, so int8 and fp32 compare in C. Accuracy: the
C engine over the whole test split against the engine `eval` uses.

Footprint (`--m4 NAME=CKPT`): the exported C compiled for a Cortex-M4 (`arm-none-eabi-gcc
-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -Os`), sized by
`arm-none-eabi-size`: flash = text + data, RAM = data + bss + the state + the model's stack
arrays; which parts it fits. A token model's table is the folded one (a float row per token) or,
with `--token-table embedding`, its embedding rows (int8 where quantized) projected per step;
`--sparse` chooses how the products are stored (auto: only the non-zeros of a sparse one).

    python -m benchmarks.edge --model imdb-cfc=runs/imdb/cfc.st --threads 1 --data ../shared/data
    python -m benchmarks.edge --m4 pa-cfc=runs/baselines/person_activity-cfc.st
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import merge_result

HEADER = {"benchmark": "the edge engine: batch-1 latency per step and the Cortex-M4 footprint"}
M4_FLAGS = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-Os", "-std=c99")
PARTS = {"256 KB flash / 64 KB RAM": (256 * 1024, 64 * 1024), "1 MB flash / 256 KB RAM": (1024 * 1024, 256 * 1024)}


def _sequences(ckpt, data_dir, count: int):
    from cfctool.data.registry import load_split
    from cfctool.task_data import resolve_data_dir

    directory, _ = resolve_data_dir(ckpt, data_dir)
    split = load_split(ckpt.task, "test", directory, ckpt.task_tensors())
    return split, split.sample(min(count, len(split)))


def _one_at_a_time(module):
    """A pass over the sample, one sequence per call (batch 1): (seconds, valid steps). Generated
    C counts its own clock around the compiled loop (Python's call costs left out)."""
    import torch

    native = hasattr(module, "last_steps")

    def run(sample) -> tuple[float, int]:
        steps, timed = 0, 0.0
        start = time.perf_counter()
        with torch.inference_mode():
            for i in range(len(sample.x)):
                mask = None if sample.mask is None else sample.mask[i:i + 1]
                module(sample.x[i:i + 1], None if sample.dt is None else sample.dt[i:i + 1], mask)
                steps += sample.x.shape[1] if mask is None else int(mask.sum())
                timed += module.last_seconds if native else 0.0
        return (timed if native else time.perf_counter() - start), steps
    return run


def latency(name: str, path: str, args) -> dict:
    import torch

    from benchmarks.engines import ncps_model
    from cfctool import checkpoint
    from cfctool.engines import c_engine, choose, integer_settings
    from cfctool.engines.c_source import generate
    from cfctool.engines.native import CEngine
    from cfctool.families.build import model_from_checkpoint
    from cfctool.metrics import paired_ratio, split_metrics
    from cfctool.runtime import machine

    torch.set_num_threads(args.threads)
    ckpt = checkpoint.load(path)
    model = model_from_checkpoint(ckpt)
    auto = choose(ckpt, model)
    c = choose(ckpt, model, "c")
    integer = integer_settings(ckpt, model) is not None
    engines = {f"c ({'int8' if integer else 'fp32'})": c.module, auto.name: auto.module}
    if integer:  # the same model in float C: int8 against fp32 where both are compiled
        engines["c (fp32, decoded)"] = c_engine(ckpt, model, None)
    dense = None
    if any(p.form == "sparse" for p in c.module.source.products) or c.module.source.token_table == "embedding":
        # the same weights with every product dense and the folded token table: what sparse buys
        dense = CEngine(generate(ckpt, model, c.module.source.name, dt_input=False,
                                 integer=integer_settings(ckpt, model), sparse="never", token_table="folded"))
        engines[f"c ({'int8' if integer else 'fp32'}, dense)"] = dense
    split, sample = _sequences(ckpt, args.data, args.sequences)
    runners = {k: _one_at_a_time(m) for k, m in engines.items()}
    if ckpt.arch["name"] in ("cfc", "cfc-deep", "cfc-ncp") and not args.no_ncps:
        ref = ncps_model(ckpt, model)

        def run_ncps(s):
            steps, start = 0, time.perf_counter()
            for i in range(len(s.x)):  # ncps reads padding: its steps are the whole length
                ref(s.take(slice(i, i + 1)))
                steps += s.x.shape[1]
            return time.perf_counter() - start, steps
        runners["ncps"] = run_ncps
    per_step: dict[str, list[float]] = {k: [] for k in runners}
    for k, run in runners.items():  # warm-up
        run(sample.take(slice(0, min(2, len(sample)))))
    for _ in range(args.repeats):
        for k, run in runners.items():
            seconds, steps = run(sample)
            per_step[k].append(1e6 * seconds / steps)
    medians = {k: statistics.median(v) for k, v in per_step.items()}
    first = next(iter(engines))
    # C against each: the median of the per-pass ratios (pass i of every engine ran in the same
    # round) with its distribution-free interval and verdict, as `bench --against` reports it
    paired = {k: paired_ratio(per_step[k], per_step[first]) for k in per_step if k != first}
    entry = {"checkpoint": path, "arch": ckpt.arch["name"], "dataset": ckpt.task["dataset"],
             "sequences": len(sample), "threads": args.threads, "repeats": args.repeats,
             "us_per_step": {k: {"median": round(v, 3), "min": round(min(per_step[k]), 3),
                                 "max": round(max(per_step[k]), 3)} for k, v in medians.items()},
             "c_speedup": {k: round(p["speedup"], 2) for k, p in paired.items()},
             "c_speedup_interval": {k: {"interval": [round(x, 2) for x in p["interval"]], "coverage": p["coverage"],
                                        "verdict": p["verdict"]} for k, p in paired.items()},
             "sizes": c.module.source.sizes(), "compiler": " ".join(c.module.command),
             "products": [p.describe() for p in c.module.source.products],
             "token_table": c.module.source.token_table,
             **({"dense_sizes": dense.src.sizes(),
                 "flash_vs_dense": round(c.module.source.flash_bytes / dense.src.flash_bytes, 4)} if dense else {}),
             "machine": machine(), "what_else_ran": args.note,
             "command": f"python -m benchmarks.edge {' '.join(sys.argv[1:])}"}
    if not args.no_accuracy:  # the whole split through C against the engine eval runs
        for label, module in ((first, c.module), (auto.name, auto.module)):
            entry.setdefault("accuracy", {})[label] = split_metrics(module, split, ckpt.task, 256)["accuracy"]
        entry["test_samples"] = len(split)
        entry["predictions_differing"] = _differing(c.module, auto.module, split)
        if dense is not None:
            entry["predictions_differing_dense"] = _differing(dense, auto.module, split)
    return entry


def _differing(module, reference, split, batch: int = 256) -> int:
    """Test predictions (valid steps of per-step tasks) where `module` and `reference` disagree."""
    import torch

    differ = 0
    with torch.inference_mode():
        for b in split.batches(batch):
            got, want = module(b.x, b.dt, b.mask).argmax(-1), reference(b.x, b.dt, b.mask).argmax(-1)
            ne = got != want
            differ += int(ne[b.mask].sum() if ne.dim() == 2 and b.mask is not None else ne.sum())
    return differ


def footprint(name: str, path: str, args) -> dict:
    """The model alone, compiled for a Cortex-M4: flash and RAM from arm-none-eabi-size."""
    from cfctool import checkpoint
    from cfctool.engines import integer_settings
    from cfctool.engines.c_source import generate
    from cfctool.families.build import model_from_checkpoint
    from cfctool.runtime import machine

    cc = os.environ.get("ARM_CC", "arm-none-eabi-gcc")
    size = os.environ.get("ARM_SIZE", "arm-none-eabi-size")
    if shutil.which(cc) is None or shutil.which(size) is None:
        raise SystemExit(f"{cc} and {size} are needed (Debian: apt-get install gcc-arm-none-eabi "
                         "libnewlib-arm-none-eabi)")
    ckpt = checkpoint.load(path)
    model = model_from_checkpoint(ckpt)
    src = generate(ckpt, model, name, dt_input=args.dt_input, integer=integer_settings(ckpt, model),
                   token_table=args.token_table, row_align=args.row_align, sparse=args.sparse)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / f"{src.name}.h").write_text(src.header)
        (tmp / f"{src.name}.c").write_text(src.source)
        subprocess.run([cc, *M4_FLAGS, "-c", "-o", str(tmp / "m.o"), str(tmp / f"{src.name}.c")], check=True,
                       capture_output=True, text=True)
        text, data, bss = (int(v) for v in subprocess.run([size, str(tmp / "m.o")], check=True, capture_output=True,
                                                          text=True).stdout.splitlines()[1].split()[:3])
    flash, ram = text + data, data + bss + src.state_bytes + src.scratch_bytes
    return {"checkpoint": path, "arch": ckpt.arch["name"], "dataset": ckpt.task["dataset"],
            "encoding": "int8" if integer_settings(ckpt, model) else "fp32",
            "dt": "read per step" if args.dt_input else "folded (dt = 1)",
            "token_table": src.token_table,
            "row_align": args.row_align if integer_settings(ckpt, model) else None,
            "sparse_products": sum(p.form == "sparse" for p in src.products), "products": len(src.products),
            "text": text, "data": data, "bss": bss,
            "flash_bytes": flash, "ram_bytes": ram, "weights_bytes": src.flash_bytes, "state_bytes": src.state_bytes,
            "scratch_bytes": src.scratch_bytes, "fits": {part: flash <= f and ram <= r for part, (f, r) in PARTS.items()},
            "compiler": f"{cc} {' '.join(M4_FLAGS)}", "machine": machine(),
            "command": f"python -m benchmarks.edge {' '.join(sys.argv[1:])}"}


def _pairs(values: list[str]) -> list[tuple[str, str]]:
    out = []
    for v in values:
        name, _, path = v.partition("=")
        if not path:
            raise SystemExit(f"expected NAME=CHECKPOINT, got '{v}'")
        out.append((name, path))
    return out


def main(argv: list[str] | None = None) -> None:
    from cfctool.configs.base import literal_choices
    from cfctool.configs.commands import ExportConfig

    TOKEN_TABLES = literal_choices(ExportConfig)["token_table"]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], metavar="NAME=CKPT", help="time one stream")
    parser.add_argument("--m4", action="append", default=[], metavar="NAME=CKPT", help="size for a Cortex-M4")
    parser.add_argument("--data", default=os.environ.get("CFCTOOL_DATA"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sequences", type=int, default=64, help="test sequences per pass (a seeded sample)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dt-input", action="store_true", help="--m4: generate the step that reads dt")
    parser.add_argument("--token-table", default="auto", choices=TOKEN_TABLES,
                        help="--m4, token models: the folded table (a lookup), the embedding rows (small), or auto "
                             "(the rows where the embedding is at least half zeros)")
    parser.add_argument("--sparse", default="auto", choices=("auto", "never", "always"),
                        help="--m4: how each weight product is stored and run (only its non-zeros, or dense)")
    parser.add_argument("--row-align", type=int, default=4,
                        help="--m4: the integer rows' padding in bytes (4: the M4's 32-bit words)")
    parser.add_argument("--no-ncps", action="store_true")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the whole-split accuracy")
    parser.add_argument("--note", default="nothing else", help="what else ran on the machine meanwhile")
    args = parser.parse_args(argv)
    if not args.model and not args.m4:
        parser.error("give --model NAME=CKPT and/or --m4 NAME=CKPT")
    for name, path in _pairs(args.model):
        print(merge_result("edge", "latency", name, latency(name, path, args), HEADER))
    for name, path in _pairs(args.m4):
        print(merge_result("edge", "m4", name, footprint(name, path, args), HEADER))


if __name__ == "__main__":
    main()
