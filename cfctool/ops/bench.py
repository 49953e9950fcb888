"""`cfctool bench`: CPU inference time, throughput, memory and sizes of a checkpoint.

Times the whole evaluation split (the seed tables' "inference time") batch by batch, per
engine: `torch` (our fused loop, inference mode) or `onnxruntime` (the exported graph).
With `against`, the two checkpoints run interleaved in one process, alternating which
goes first, and the report gives ratios: on a noisy machine only those are worth quoting.
"""

from __future__ import annotations

import math
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cfctool.checkpoint import Checkpoint
from cfctool.data.base import Split
from cfctool.data.registry import load_split
from cfctool.engines import ALIASES, AUTO, Engine, choose, names
from cfctool.engines import entry as engine_entry
from cfctool.errors import ConfigError
from cfctool.families.build import family_of, model_from_checkpoint
from cfctool.metrics import paired_ratio, parameter_counts, valid_targets
from cfctool.ops.export import export_onnx, graph_inputs, require_onnx
from cfctool.runtime import check_threads, machine, resolve_device
from cfctool.runtime import threads as thread_scope
from cfctool.task_data import resolve_data_dir

# torch: the fastest exact engine for the checkpoint (ops.engines.choose); loop: the training
# loop under inference mode (plain PyTorch eager, the seed tables' baseline); onnxruntime
# `--engine`: auto (what `eval` runs: the first engine of the registry that runs the checkpoint), a
# registered engine by name, or all (auto, the loop and ONNX Runtime); `torch`, the name before the
# engines had a registry, still means auto
ALL = (AUTO, "loop", "onnxruntime")


MAX_SEQ_LEN = 100_000  # synthetic or verification inputs: far beyond any task here
MIN_PASS_S = 0.2  # a timed pass loops its workload for at least this long (small models: microseconds)
SINGLE_ROWS = 8  # sequences timed one at a time for the batch-1 figure
MAX_LOOPS = 10_000
STREAMED_BATCHES = 40  # batches timed of a --stream table unless --batches says otherwise


def macs_per_sequence(model: torch.nn.Module, seq_len: int) -> int:
    """Multiply-accumulates of one sequence in the model's defining form (the training loop;
    dense: wiring masks do not skip work). A model-size measure comparable across
    checkpoints; the folded engine executes fewer (no input product, 3 heads for 4)."""
    readouts = seq_len if model.per_step else 1
    family = family_of(model)
    core = (
        family.macs_per_sequence(model.rnn, seq_len)
        if family.macs_per_sequence
        else family.macs_per_step(model.rnn) * seq_len
    )
    return core + model.head.weight.numel() * readouts


def workload(
    ckpt: Checkpoint, split: str, data_dir, batch_size: int, seq_len: int | None, batches: int | None, notify=None
) -> tuple[list[Split], torch.Tensor | None, torch.Tensor | None]:
    """Batches to time, plus labels and mask for accuracy (None for a synthetic workload).

    `batches` takes a seeded random subset of the split (not its first rows: several test
    sets are sorted by label), so partial runs report a representative accuracy."""
    if split not in ("test", "train"):
        raise ConfigError(f"--split must be test or train (got '{split}')")
    if seq_len is not None and seq_len < 1:
        raise ConfigError(f"--seq-len must be >= 1 (got {seq_len})")
    if seq_len is not None and seq_len > MAX_SEQ_LEN:
        raise ConfigError(f"--seq-len must be from 1 to {MAX_SEQ_LEN:,} (got {seq_len:,})")
    task = ckpt.task
    if seq_len is not None:  # synthetic inputs of the task's kind, for timing only
        g = torch.Generator().manual_seed(0)
        n = batch_size * (batches or 10)
        if task["input"]["kind"] == "tokens":
            x = torch.randint(2, task["input"]["vocab_size"], (n, seq_len), generator=g)
        else:
            x = torch.randn(n, seq_len, task["input"]["size"], generator=g)
        data = Split(x=x, y=torch.zeros(n, dtype=torch.int64))
        labels = None
    else:
        directory, how = resolve_data_dir(ckpt, data_dir)
        if how and notify:
            notify(how)
        if notify and task["dataset"] != "xor":
            notify(f"loading the {task['dataset']} {split} split")
        loaded = load_split(task, split, directory, ckpt.task_tensors())
        if batches is None and not isinstance(loaded, Split):  # a table read as it goes (--stream): a bounded sample
            batches = STREAMED_BATCHES
            if notify:
                notify(f"the split is a streamed table: timing a seeded sample of {batches} batches (--batches)")
        if batches is not None:
            loaded = loaded.sample(batch_size * batches)
        assert isinstance(loaded, Split)  # a streamed table was sampled into memory above
        data, labels = loaded, loaded.y
    return list(data.batches(batch_size)), labels, data.mask


def call_in_inference_mode(module: torch.nn.Module) -> Callable[[Split], torch.Tensor]:
    """A batch runner for any model-shaped module (x, dt, mask) on the CPU."""

    def run(b: Split) -> torch.Tensor:
        with torch.inference_mode():
            return module(b.x, b.dt, b.mask)

    return run


def _torch_runner(
    ckpt: Checkpoint, model: torch.nn.Module, device: torch.device | None = None, name: str | None = None
):
    """(runner, Engine): the engine `engines.choose` names for the checkpoint (or the one called `name`)."""
    if device is not None and device.type != "cpu":
        model = model.to(device)
    engine = choose(ckpt, model, name)
    return _runner(engine.module, device), engine


def _runner(module: torch.nn.Module, device: torch.device | None) -> Callable[[Split], torch.Tensor]:
    """A batch runner for `module` on `device`; on a GPU each batch includes the copies and
    a synchronise."""
    if device is None or device.type == "cpu":
        return call_in_inference_mode(module)

    def run_on_device(b: Split) -> torch.Tensor:
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        with torch.inference_mode():
            out = module(move(b.x), move(b.dt), move(b.mask)).cpu()
        torch.cuda.synchronize(device)
        return out

    return run_on_device


def onnx_session_runner(onnx_path: str | Path, threads: int | None) -> Callable[[Split], torch.Tensor]:
    """Run an exported graph with ONNX Runtime on the CPU, `threads` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(b: Split) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {k: v.numpy() for k, v in graph_inputs(b, names).items()})[0])

    return run


def _onnx_runner(ckpt: Checkpoint, example: Split, threads: int | None) -> tuple[Callable, dict]:
    require_onnx()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        info = export_onnx(ckpt, Path(tmp) / "model.onnx", example)
        info["export_s"] = round(time.perf_counter() - start, 2)
        return onnx_session_runner(Path(tmp) / "model.onnx", threads), info


def _accuracy(outputs: list[torch.Tensor], labels, mask, task: dict) -> float | None:
    if labels is None:
        return None
    logits, labels = valid_targets(torch.cat(outputs), labels, mask, task)
    return float((logits.argmax(-1) == labels).float().mean())


class _Subject:
    """One checkpoint on one engine: its runner and its timings."""

    def __init__(self, ckpt: Checkpoint, engine: str, batches: list[Split], threads: int | None, device: torch.device):
        self.ckpt = ckpt
        self.model = model_from_checkpoint(ckpt)
        self.export: dict | None = None
        if engine == AUTO or engine_entry(engine).in_process:
            self.run, self.engine = _torch_runner(ckpt, self.model, device, None if engine == AUTO else engine)
        else:  # an exported graph (onnxruntime, the one such engine)
            self.run, self.export = _onnx_runner(ckpt, batches[0], threads)
            if self.export["graph"] == "scan-int8":
                note: str | None = "the int8 engine's step: MatMulInteger (int8 x int8 -> int32) in the Scan body"
            else:
                note = (
                    "a float graph of the decoded weights: simulated, not integer or sparse kernels"
                    if ckpt.encodings
                    else None
                )
            self.engine = Engine(engine, self.model, note, engine_entry(engine))
        self.counts = parameter_counts(self.model)
        self.totals: list[float] = []
        self.latencies: list[float] = []
        self.outputs: list[torch.Tensor] = []
        # generated C times its own steps (one sequence at a time): seconds and steps per pass
        self.native = self.engine.entry is not None and self.engine.entry.one_sequence
        self.step_times: list[float] = []
        self.loops = 1  # passes over the workload per timed pass (set by `calibrate`)
        self.single_loops = 1  # the same for the batch-1 pass
        self.single_times: list[float] = []  # seconds per step at batch 1, one entry per repeat

    def calibrate(self, batches: list[Split], singles: list[Split]) -> None:
        """How many times the workload (and the batch-1 rows) must run for a timed pass of at
        least MIN_PASS_S. The first, cold run (allocations, caches) only counts when it is long
        on its own; otherwise the count is grown until a whole warm looped run has lasted
        MIN_PASS_S: a count scaled from one cold run gave passes shorter than promised."""
        self.n_singles = len(singles)
        for work, attr in ((batches, "loops"), (singles, "single_loops")):
            if attr == "single_loops" and self.native:
                continue
            loops, took = 1, self._time(work, 1)  # the cold run
            if took < 5 * MIN_PASS_S:  # longer, and its warm-up is noise: no loop
                took = self._time(work, loops)
                while took < MIN_PASS_S and loops < MAX_LOOPS:
                    # aim a little past the bound so that the next try usually ends the search
                    loops = min(MAX_LOOPS, max(2 * loops, math.ceil(1.2 * loops * MIN_PASS_S / max(took, 1e-9))))
                    took = self._time(work, loops)
            setattr(self, attr, loops)

    def _time(self, work: list[Split], loops: int) -> float:
        start = time.perf_counter()
        for _ in range(loops):
            for b in work:
                self.run(b)
        return time.perf_counter() - start

    def timed_singles(self, singles: list[Split]) -> None:
        """One batch-1 pass: each row alone, timed around each call, looped like `timed_pass`.
        (The C engine runs one sequence at a time anyway and times its steps in C: its
        figure comes from the main passes.)"""
        if self.native:
            return
        seconds, steps = 0.0, 0
        for _ in range(self.single_loops):
            for b in singles:
                start = time.perf_counter()
                self.run(b)
                seconds += time.perf_counter() - start
                steps += int(b.mask.sum()) if b.mask is not None else int(b.x.shape[1])
        self.single_times.append(seconds / max(steps, 1))

    def timed_pass(self, batches: list[Split], keep: bool) -> None:
        """One timed pass: the workload `loops` times over (so that a pass lasts at least
        MIN_PASS_S, beyond the timer's and the scheduler's noise), recorded per workload."""
        total, outputs, native_s, steps = 0.0, [], 0.0, 0
        for loop in range(self.loops):
            for b in batches:
                start = time.perf_counter()
                out = self.run(b)
                elapsed = time.perf_counter() - start
                total += elapsed
                self.latencies.append(elapsed)
                if loop == 0:
                    outputs.append(out)
                if self.native:
                    native_s += self.engine.module.last_seconds
                    steps += self.engine.module.last_steps
        self.totals.append(total / self.loops)
        if self.native and steps:
            self.step_times.append(native_s / steps)
            self.steps_per_pass = steps
        if keep:
            self.outputs = outputs

    def _per_step(self) -> dict[str, Any]:
        times = self.step_times if self.native else self.single_times
        return {
            "median": 1e6 * statistics.median(times),
            "min": 1e6 * min(times),
            "max": 1e6 * max(times),
            "batch": 1,
            "timed": "in C, every sequence of the workload"
            if self.native
            else f"around each call, {self.n_singles} sequences",
        }

    def report(self, n_items: int, seq_len: int, labels, mask) -> dict[str, Any]:
        med = statistics.median(self.totals)
        out = {
            **self.engine.describe(),
            "source": self.ckpt.source,
            "split_seconds": {"median": med, "min": min(self.totals), "max": max(self.totals)},
            "batch_latency_ms": {
                "median": 1e3 * statistics.median(self.latencies),
                "min": 1e3 * min(self.latencies),
                "max": 1e3 * max(self.latencies),
            },
            "items_per_s": n_items / med,
            "loops_per_pass": self.loops,
            # every engine, one key: microseconds per step of one sequence at a time (the edge case)
            "us_per_step": self._per_step(),
            **self.counts,
            "macs_per_sequence": macs_per_sequence(self.model, seq_len),
            "accuracy": _accuracy(self.outputs, labels, mask, self.ckpt.task),
        }
        if self.ckpt.source and Path(self.ckpt.source).is_file():
            out["file_bytes"] = Path(self.ckpt.source).stat().st_size
        if self.export:
            out["onnx"] = self.export
        if self.step_times:
            module = self.engine.module
            out["c"] = {
                "steps_per_pass": self.steps_per_pass,
                "compiler": " ".join(module.command),
                **module.source.sizes(),
            }
        return out


def bench(
    ckpt: Checkpoint,
    *,
    engine: str = AUTO,
    against: Checkpoint | None = None,
    split: str = "test",
    data_dir=None,
    batch_size: int = 128,
    seq_len: int | None = None,
    batches: int | None = None,
    repeats: int = 5,
    warmup: int = 1,
    threads: int | None = None,
    device: str = "cpu",
    notify=None,
    also: list[tuple[Checkpoint, str]] | None = None,
) -> dict[str, Any]:
    """Time the checkpoint (and `against`, interleaved) on the split; `notify(message)`
    receives progress lines (the library prints nothing itself). `also`: more
    (checkpoint, engine) pairs of the same task timed in the same interleaved passes,
    reported under 'also' with their ratios to `against` (or to the checkpoint)."""
    say = notify or (lambda message: None)
    engine = ALIASES.get(engine, engine)
    choices = (AUTO, *names())
    engines = ALL if engine == "all" else (engine,)
    if any(e not in choices for e in engines):
        raise ConfigError(f"engine must be one of {', '.join(choices)} or all (got '{engine}')")
    # bounds far beyond any sensible run: a typo (1e9) is a usage error, not hours of timing
    for name, value, low, high in (
        ("repeats", repeats, 1, 1000),
        ("warmup", warmup, 0, 1000),
        ("batch_size", batch_size, 1, 1 << 20),
        ("seq_len", seq_len, 1, MAX_SEQ_LEN),
        ("batches", batches, 1, 100_000),
    ):
        if value is not None and value < low:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= {low} (got {value})")
        if value is not None and value > high:
            raise ConfigError(f"--{name.replace('_', '-')} must be from {low} to {high:,} (got {value:,})")

    check_threads(threads)
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"--device must be cpu or cuda (got '{device}')")
    where = resolve_device(device)
    exported = [e for e in engines if e != AUTO and not engine_entry(e).in_process]
    if where.type != "cpu" and exported:
        raise ConfigError(f"the {exported[0]} engine is timed on the CPU only; use --engine auto with --device cuda")
    for other in [against, *(c for c, _ in (also or []))]:
        if other is not None and other.task.get("dataset") != ckpt.task.get("dataset"):
            raise ConfigError(
                f"--against must be a model of the same task ({ckpt.task['dataset']}), not {other.task.get('dataset')}"
            )
    also = [(c, ALIASES.get(e, e)) for c, e in (also or [])]
    if any(e not in choices for _, e in also):
        raise ConfigError(f"engine must be one of {', '.join(choices)}")
    with thread_scope(threads):
        data, labels, mask = workload(ckpt, split, data_dir, batch_size, seq_len, batches, notify=say)
        n_items = sum(len(b) for b in data)
        length = int(data[0].x.shape[1])
        if exported:
            say(f"exporting to ONNX for the {exported[0]} engine")
        subjects = [_Subject(ckpt, e, data, threads, where) for e in engines]
        base = [_Subject(against, e, data, threads, where) for e in engines] if against is not None else []
        extra = [_Subject(c, e, data, threads, where) for c, e in (also or [])]
        everyone = subjects + base + extra
        for _ in range(warmup):
            for s in everyone:
                s.timed_pass(data[:1], keep=False)
        singles = [b.take(slice(i, i + 1)) for b in data for i in range(len(b))][:SINGLE_ROWS]
        for s in everyone:
            s.calibrate(data, singles)
            s.totals, s.latencies = [], []
        for r in range(repeats):
            say(f"timed pass {r + 1}/{repeats} over {n_items} items ({', '.join(s.engine.name for s in everyone)})")
            order = everyone if r % 2 == 0 else everyone[::-1]
            for s in order:
                s.timed_pass(data, keep=(r == 0))
                s.timed_singles(singles)
    report: dict[str, Any] = {
        "split": None if seq_len is not None else split,
        "workload": {
            "items": n_items,
            "batch_size": batch_size,
            "seq_len": length,
            "batches": len(data),
            "synthetic": seq_len is not None,
            **(
                {"subset": "seeded random subset of the split (--batches)"}
                if batches is not None and seq_len is None
                else {}
            ),
        },
        "threads": threads or torch.get_num_threads(),
        "repeats": repeats,
        "device": str(where),
        "machine": machine(),
        "results": [s.report(n_items, length, labels, mask) for s in subjects],
    }
    if base:
        report["against"] = [s.report(n_items, length, labels, mask) for s in base]
        report["ratios"] = [
            _ratios(a, b, m.totals, o.totals)
            for a, b, m, o in zip(report["results"], report["against"], subjects, base)
        ]
    if extra:
        reference, timed = (report["against"][0], base[0]) if base else (report["results"][0], subjects[0])
        report["also"] = [s.report(n_items, length, labels, mask) for s in extra]
        report["also_ratios"] = [_ratios(a, reference, s.totals, timed.totals) for a, s in zip(report["also"], extra)]
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return report


def _ratios(model: dict, base: dict, model_times: list[float], base_times: list[float]) -> dict[str, Any]:
    """Sizes as model / base; the speed-up from the paired passes, with its interval and verdict."""
    paired = paired_ratio(base_times, model_times)
    out = {
        "engine": model["engine"],
        "against_engine": base["engine"],
        "speedup": paired["speedup"],
        "speedup_interval": paired["interval"],
        "interval_coverage": paired["coverage"],
        "verdict": paired["verdict"],
        "params_ratio": model["params"] / base["params"],
        "nonzero_ratio": model["nonzero_params"] / max(base["nonzero_params"], 1),
        "macs_ratio": model["macs_per_sequence"] / base["macs_per_sequence"],
    }
    if "file_bytes" in model and "file_bytes" in base:
        out["size_ratio"] = model["file_bytes"] / base["file_bytes"]
    if model["accuracy"] is not None and base["accuracy"] is not None:
        out["accuracy_delta"] = model["accuracy"] - base["accuracy"]
    return out
