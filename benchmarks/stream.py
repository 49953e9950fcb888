"""Training on a table larger than memory (`--stream`): peak memory and rows per second.

1. Writes a long-format Parquet table of at least `--gb` gigabytes (one row per step: a
   sequence id, a time, `--features` float features, a label per sequence; uncompressed, so
   its size is its content), and a small one of the same kind.
2. Trains one epoch of a CfC on the large table with `cfctool train own --stream` under an
   address-space limit of `--limit-gb` (RLIMIT_AS, as `ulimit -v`), recording the command's
   peak RSS (wait4) and training rows per second (rows of the training split over the wall
   time of `fit`, from the checkpoint's record).
3. On the small table: the in-memory path and `--stream`, interleaved `--repeats` times,
   their peak RSS and rows/s (medians, with min and max).

    python -m benchmarks.stream --gb 5 --limit-gb 2 --repeats 3 --also "nothing"

Results: benchmarks/results/stream.yaml (rendered in docs/results/own-data.md).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT, write_results

ROWS_PER_GROUP = 1 << 18


def write_table(path: Path, gb: float, features: int, seed: int = 0) -> dict:
    """Sequences of 50 to 150 steps, written a row group at a time until the file holds `gb` GB."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    target = gb * 1e9
    tmp = path.with_suffix(".parquet.tmp")
    schema = pa.schema([("id", pa.int64()), ("t", pa.float64()), *[(f"f{i}", pa.float64()) for i in range(features)],
                        ("y", pa.int64())])
    rows, sequences, next_id = 0, 0, 0
    with pq.ParquetWriter(tmp, schema, compression="none") as writer:
        while (tmp.stat().st_size if tmp.exists() else 0) < target:
            lengths = rng.integers(50, 151, size=ROWS_PER_GROUP // 100)
            ids = np.repeat(np.arange(next_id, next_id + len(lengths)), lengths)
            starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
            steps = np.arange(len(ids)) - starts
            x = rng.normal(size=(len(ids), features))
            drift = rng.normal(size=len(lengths))  # the label: the sign of a sequence's drift in feature 0
            x[:, 0] += np.repeat(drift, lengths)
            labels = np.repeat((drift > 0).astype(np.int64), lengths)
            columns = {"id": ids, "t": steps * 0.5 + rng.uniform(0, 0.1, len(ids)), "y": labels,
                       **{f"f{i}": x[:, i] for i in range(features)}}
            writer.write_table(pa.table({name: columns[name] for name in schema.names}, schema=schema),
                               row_group_size=ROWS_PER_GROUP)
            rows += len(ids)
            sequences += len(lengths)
            next_id += len(lengths)
    os.replace(tmp, path)
    return {"path": str(path), "bytes": path.stat().st_size, "rows": rows, "sequences": sequences,
            "features": features, "row_group_rows": ROWS_PER_GROUP}


def train_once(table: Path, out: Path, stream: bool, limit_gb: float | None, threads: int, hidden: int) -> dict:
    """One `cfctool train own` epoch in a child process: its peak RSS and the training rows/s."""
    command = [sys.executable, "-m", "cfctool", "train", "own", "--data-file", str(table), "--id-column", "id",
               "--time-column", "t", "--target-column", "y", "--epochs", "1", "--hidden", str(hidden),
               "--batch-size", "128", "--threads", str(threads), "--quiet", "-o", str(out),
               *(["--stream"] if stream else [])]

    def limit():
        if limit_gb is not None:
            size = int(limit_gb * (1 << 30))
            resource.setrlimit(resource.RLIMIT_AS, (size, size))
    started = time.perf_counter()
    child = subprocess.Popen(command, preexec_fn=limit, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    err = child.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"training failed ({'--stream' if stream else 'in memory'}): {err[-2000:]}")
    from cfctool import checkpoint

    ckpt = checkpoint.load(out)
    p, m = ckpt.task["preprocessing"], ckpt.record["metrics"]
    train_rows = _train_rows(ckpt)
    return {"peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "wall_s": round(wall, 1),
            "train_seconds": m.get("train_seconds"), "train_rows": train_rows,
            "rows_per_s": round(train_rows / m["train_seconds"], 1) if m.get("train_seconds") else None,
            "test_accuracy": m.get("accuracy"), "sequences": p.get("sequences")}


def _train_rows(ckpt) -> int:
    """Rows (steps) of the training split: from the streamed record, or from the split itself."""
    stream = ckpt.task["preprocessing"].get("stream")
    if stream:
        seq = ckpt.task["preprocessing"]["sequences"]
        return int(stream["rows"] * seq["train"] / sum(seq.values()))  # the split is a uniform draw of ids
    from cfctool.data.registry import load_split

    split = load_split(ckpt.task, "train", None, ckpt.task_tensors())
    return int(split.mask.sum())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=5.0, help="the large table's size")
    parser.add_argument("--small-gb", type=float, default=0.05, help="the small table's size")
    parser.add_argument("--limit-gb", type=float, default=2.0, help="address-space limit of the large run")
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", default="runs/stream-bench", help="where the tables and checkpoints go")
    parser.add_argument("--also", default="", help="what else ran on the machine (recorded)")
    args = parser.parse_args(argv)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    large, small = work / "large.parquet", work / "small.parquet"
    tables = {}
    for path, gb in ((small, args.small_gb), (large, args.gb)):
        if not path.exists() or path.stat().st_size < gb * 1e9:
            print(f"writing {path} ({gb:g} GB)", file=sys.stderr, flush=True)
            tables[path.stem] = write_table(path, gb, args.features)
        else:
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(path).metadata
            tables[path.stem] = {"path": str(path), "bytes": path.stat().st_size, "rows": meta.num_rows,
                                 "features": args.features}
    print("small table: in memory and --stream, interleaved", file=sys.stderr, flush=True)
    runs: dict[str, list] = {"in_memory": [], "stream": []}
    for _ in range(args.repeats):
        for name, streamed in (("in_memory", False), ("stream", True)):
            runs[name].append(train_once(small, work / f"small-{name}.st", streamed, None, args.threads, args.hidden))
    summary = {name: {"rows_per_s": {"median": statistics.median(r["rows_per_s"] for r in rs),
                                     "min": min(r["rows_per_s"] for r in rs), "max": max(r["rows_per_s"] for r in rs)},
                      "peak_rss_mb": {"median": statistics.median(r["peak_rss_mb"] for r in rs),
                                      "max": max(r["peak_rss_mb"] for r in rs)},
                      "runs": rs} for name, rs in runs.items()}
    summary["stream_over_in_memory_rows_per_s"] = round(summary["stream"]["rows_per_s"]["median"]
                                                        / summary["in_memory"]["rows_per_s"]["median"], 3)
    print(f"large table: --stream under a {args.limit_gb:g} GB address-space limit", file=sys.stderr, flush=True)
    large_run = train_once(large, work / "large-stream.st", True, args.limit_gb, args.threads, args.hidden)
    from cfctool.runtime import machine

    doc = {"benchmark": "training on a table larger than memory (--stream)", "machine": machine(),
           "threads": args.threads, "what_else_ran": args.also or "not stated",
           "command": "python -m benchmarks.stream " + " ".join(sys.argv[1:] if argv is None else argv),
           "model": f"cfc, hidden {args.hidden}, batch 128, one epoch", "tables": tables,
           "large": {"address_space_limit_gb": args.limit_gb, **large_run}, "small": summary}
    print(write_results("stream", doc))
    print(json.dumps({"large_peak_rss_mb": large_run["peak_rss_mb"], "large_rows_per_s": large_run["rows_per_s"]}))


if __name__ == "__main__":
    main()
