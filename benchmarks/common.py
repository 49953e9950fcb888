"""Shared by the benchmark scripts: interleaved timing, machine facts, YAML results.

Every results file records what produced it (`provenance`: the git commit, `-dirty` when
the tree had uncommitted changes, and the cfctool version) beside the machine. Results go
to benchmarks/results/, or to $CFCTOOL_BENCH_RESULTS (the smoke tests write there).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable

import cfctool
from cfctool.runtime import machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def results_dir() -> Path:
    return Path(os.environ.get("CFCTOOL_BENCH_RESULTS") or RESULTS)


def provenance() -> dict:
    """The commit and version that produced a result ('unknown' outside a git checkout)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        # the results files themselves do not count: a script writing several entries would
        # otherwise stamp every entry after the first as -dirty
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)benchmarks/results"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        commit += "-dirty" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {"commit": commit, "cfctool_version": cfctool.__version__}


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, dict]:
    """Run each function in turn, `repeats` rounds, so machine noise hits all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t), "repeats": len(t)}
            for name, t in times.items()}


def merge_result(name: str, section: str, key: str, entry: dict, header: dict,
                 combine: Callable[[dict, dict], dict] | None = None) -> Path:
    """Set doc[section][key] = entry in results/NAME.yaml, keeping the other entries.

    Under a file lock, so entries measured by parallel processes all survive; `combine(old,
    new)` merges within one entry too (parallel processes filling the same entry's cells).
    """
    import fcntl

    import yaml

    results = results_dir()
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{name}.yaml"
    with open(results / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        doc = (yaml.safe_load(path.read_text()) if path.exists() else None) or {**header, section: {}}
        doc["machine"] = machine()
        old = doc.setdefault(section, {}).get(key)
        doc[section][key] = combine(old, entry) if combine is not None and old else entry
        return write_results(name, doc)


def _plain_dumper():
    import yaml

    class PlainDumper(yaml.SafeDumper):
        """No anchors and aliases: a shared dict is written out wherever it appears."""

        def ignore_aliases(self, data):
            return True

    return PlainDumper


def write_results(name: str, doc: dict) -> Path:
    """results/NAME.yaml, atomically, stamped with the provenance of this run."""
    import yaml

    results = results_dir()
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{name}.yaml"
    doc = {**doc, "provenance": provenance()}
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.dump(doc, Dumper=_plain_dumper(), sort_keys=False))
    os.replace(tmp, path)
    return path


def measure(ckpt, data_dir, batch_size: int, threads: int | None = None) -> dict:
    """Test-split accuracy (top-3 where it applies), the seed's normalised accuracy, sizes and
    the engine `cfctool eval` used, plus the file bytes: one compressed model's table cell."""
    from cfctool import checkpoint
    from cfctool.ops.evaluate import evaluate

    report = evaluate(ckpt, data_dir=data_dir, batch_size=batch_size, threads=threads)
    out = {k: report[k] for k in ("accuracy", "top3_accuracy", "normalised_accuracy", "params", "nonzero_params",
                                   "sparsity", "engine") if k in report}
    out["file_bytes"] = len(checkpoint.to_bytes(ckpt))
    return out


def speedup(base, other, data_dir, batches: int | None, repeats: int, threads: int) -> dict:
    """CPU speed-up of `other` over `base` on the test split, both on their fastest exact
    engine, timed in the same interleaved passes (medians); `batches`: a seeded subset of that
    many batches of 128, None for the whole split."""
    from cfctool.ops.bench import bench

    timing = bench(base, engine="auto", also=[(other, "auto")], data_dir=data_dir, batch_size=128,
                   batches=batches, repeats=repeats, warmup=1, threads=threads)
    mine, theirs = timing["also"][0], timing["results"][0]
    return {"speedup": theirs["split_seconds"]["median"] / mine["split_seconds"]["median"],
            "test_seconds": mine["split_seconds"]["median"], "base_test_seconds": theirs["split_seconds"]["median"],
            "macs_per_input": mine.get("macs_per_sequence"), "base_macs_per_input": theirs.get("macs_per_sequence"),
            "speed_engine": mine.get("engine"), "speed_workload": timing["workload"]}


def progress_lines(name: str, every_s: float = 60.0):
    """A fit() progress callback for long background runs: one plain line per epoch and at
    most one a minute in between (logs stay readable; the trainings run unattended)."""
    import sys

    last = [time.monotonic()]

    def report(p) -> None:
        if p.phase == "epoch" or time.monotonic() - last[0] > every_s:
            last[0] = time.monotonic()
            val = f" val_acc {p.val['accuracy']:.4f}" if p.val and "accuracy" in p.val else ""
            print(f"[{name}] epoch {p.epoch}/{p.epochs} step {p.step}/{p.steps} loss {p.loss:.4f}{val}",
                  file=sys.stderr, flush=True)

    return report


def panels(n: int):
    """(figure, axes) for n side-by-side panels; a clear exit when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("the plot needs matplotlib: pip install 'cfctool[plot]'") from None
    fig, axes = plt.subplots(1, n, figsize=(6 * n, 4.2), squeeze=False)
    return fig, axes[0]


def save_figure(fig, out: Path) -> Path:
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    return out
