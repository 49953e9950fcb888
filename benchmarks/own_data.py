"""The CfC paper's PhysioNet 2012 and Walker2d benchmarks as a user's own data: the example
pipeline `examples/own-data/Makefile` run end to end (the user's conversion, then train,
eval, quantize, prune with fine-tuning, export C), every cfctool command's wall time and peak
resident memory recorded, and the test metrics set beside the papers'.

    python -m benchmarks.own_data --data ../shared/data --epochs 40 --threads 1 --also "nothing"

Results: benchmarks/results/own-data.yaml, rendered into docs/results/own-data.md by
`python -m benchmarks.tables`. Each cfctool command runs under `measure` (below): a child
process whose peak RSS is read with wait4, so every number is that command's own.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT, write_results

MAKEFILE = ROOT / "examples" / "own-data" / "Makefile"
# what each benchmark's pipeline leaves in OUT: the evaluations and the C header
FILES = {name: {"fp32": f"{name}.eval.json", "int8": f"{name}-int8.eval.json", "pruned": f"{name}-pruned.eval.json",
                "header": f"{name}-c/{name}.h"} for name in ("physionet", "walker2d")}
METRICS = {"physionet": ("auc", "accuracy"), "walker2d": ("mse_units", "mae_units", "mse")}
PROTOCOL = {
    "physionet": "set-a and set-b pooled (8,000 stays), a seeded 80/20 split by stay (--split-seed 0), the narrow "
                 "id/time/variable/value table with an observed flag per variable, in-hospital death; test AUC",
    "walker2d": "rollouts shuffled with the papers' seed, 15% for testing; sampled 1 to 4 frames apart (seeded), "
                "dt in frames; windows of 64 steps, 16 apart; the target of each step the frame after it (17 "
                "numbers); test MSE in the data's units (--target-scale none, as the papers train)",
}


def measure(log: Path, argv: list[str]) -> int:
    """Run `python -m cfctool ARGV`, passing its output through; append its wall time and peak
    RSS to `log` (one JSON line, under a lock: make runs two at a time)."""
    import fcntl

    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "cfctool", *argv])
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    line = json.dumps({"argv": argv, "wall_s": round(time.perf_counter() - started, 2),
                       "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "rc": child.returncode})
    with open(log, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(line + "\n")
    return child.returncode


def _flash(header: Path) -> int | None:
    found = re.search(r"#define \w+_FLASH_BYTES (\d+)", header.read_text()) if header.is_file() else None
    return int(found.group(1)) if found else None


def _step(commands: list[dict], name: str, verb: str) -> dict | None:
    """Wall time and peak RSS of the `verb` command that wrote this benchmark's output (-o)."""
    for c in commands:
        argv = c["argv"]
        if argv[0] == verb and "-o" in argv and Path(argv[argv.index("-o") + 1]).name.startswith(name):
            return {k: c[k] for k in ("wall_s", "peak_rss_mb")}
    return None


def collect(out: Path, commands: list[dict]) -> dict:
    runs = {}
    for name, files in FILES.items():
        evals = {}
        for variant in ("fp32", "int8", "pruned"):
            path = out / files[variant]
            if path.is_file():
                doc = json.loads(path.read_text())
                evals[variant] = {k: doc[k] for k in (*METRICS[name], "samples", "file_bytes", "engine") if k in doc}
        runs[name] = {"protocol": PROTOCOL[name], "test": evals, "c_flash_bytes": _flash(out / files["header"]),
                      "commands": {verb: _step(commands, name, verb) for verb in ("train", "quantize", "prune",
                                                                                  "export")}}
        train = next((c["argv"] for c in commands if c["argv"][0] == "train" and "-o" in c["argv"]
                      and Path(c["argv"][c["argv"].index("-o") + 1]).name == f"{name}.st"), None)
        if train:
            runs[name]["train_command"] = "cfctool " + " ".join(Path(a).name if "/" in a else a for a in train)
    return runs


def main(argv: list[str] | None = None) -> None:
    if argv is None and len(sys.argv) > 2 and sys.argv[1] == "measure":  # python -m benchmarks.own_data measure LOG -- ...
        raise SystemExit(measure(Path(sys.argv[2]), sys.argv[4:]))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("CFCTOOL_DATA"), help="the shared data folder")
    parser.add_argument("--out", default="runs/own-data-bench", help="the pipeline's working folder")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2, help="make -j: the two benchmarks side by side")
    parser.add_argument("--also", default="", help="what else ran on the machine (recorded)")
    parser.add_argument("--make-args", nargs="*", default=[], help="more VAR=VALUE for the Makefile (quick checks)")
    args = parser.parse_args(argv)
    if not args.data:
        raise SystemExit("give --data DIR (the folder with physionet2012/ and walker2d/) or set CFCTOOL_DATA")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "commands.jsonl"
    log.unlink(missing_ok=True)
    measured = f"{sys.executable} -m benchmarks.own_data measure {log} --"
    command = ["make", "-f", str(MAKEFILE), f"-j{args.jobs}", f"DATA={Path(args.data).resolve()}", f"OUT={out}",
               f"EPOCHS={args.epochs}", f"THREADS={args.threads}", f"CFCTOOL={measured}", f"PYTHON={sys.executable}",
               *args.make_args]
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    commands = [json.loads(line) for line in log.read_text().splitlines()]
    from cfctool.runtime import machine

    doc = {"benchmark": "PhysioNet 2012 and Walker2d as your own data (examples/own-data/Makefile)",
           "machine": machine(), "threads": args.threads, "what_else_ran": args.also or "not stated",
           "epochs": args.epochs, "jobs": args.jobs, "wall_s": round(time.perf_counter() - started, 1),
           "command": "python -m benchmarks.own_data " + " ".join(sys.argv[1:] if argv is None else argv),
           "runs": collect(out, commands), "commands": commands}
    print(write_results("own-data", doc))


if __name__ == "__main__":
    main()
