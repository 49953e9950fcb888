"""`cfctool eval`: accuracy, loss and size of a checkpoint on one split of its task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cfctool.checkpoint import Checkpoint, check_finite
from cfctool.data.registry import load_split
from cfctool.engines import ALIASES, AUTO, choose
from cfctool.errors import ConfigError
from cfctool.families.build import model_from_checkpoint
from cfctool.metrics import parameter_counts, size_aware, split_metrics
from cfctool.runtime import check_threads
from cfctool.runtime import threads as thread_scope
from cfctool.task_data import resolve_data_dir

SPLITS = ("test", "val", "train")


def evaluate(
    ckpt: Checkpoint,
    split: str = "test",
    data_dir: str | Path | None = None,
    batch_size: int = 512,
    threads: int | None = None,
    max_samples: int | None = None,
    notify=None,
    engine: str = AUTO,
) -> dict[str, Any]:
    """Metrics of `ckpt` on a split, computed by the engine the report names (`engine`: auto,
    the fastest exact one, or one by name, e.g. `c`).

    `max_samples` evaluates a seeded random subset (reported); `notify(message)` receives
    progress lines (the library prints nothing itself).
    """
    import time

    if split not in SPLITS:
        raise ConfigError(f"--split must be one of {', '.join(SPLITS)} (got '{split}')")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1 (got {batch_size})")
    if max_samples is not None and max_samples < 1:
        raise ConfigError(f"--max-samples must be >= 1 (got {max_samples})")
    check_threads(threads)
    check_finite(ckpt)
    say = notify or (lambda message: None)
    with thread_scope(threads):
        model = model_from_checkpoint(ckpt)
        directory, how = resolve_data_dir(ckpt, data_dir)
        if how:
            say(how)
        started = time.monotonic()
        if ckpt.task["dataset"] != "xor":
            say(f"loading the {ckpt.task['dataset']} {split} split")
        data = load_split(ckpt.task, split, directory, ckpt.task_tensors())
        total = len(data)
        if max_samples is not None:
            data = data.sample(max_samples)
        name = ALIASES.get(engine, engine)
        chosen = choose(ckpt, model, None if name == AUTO else name)
        last = [time.monotonic()]

        def on_batch(done: int, n: int) -> None:
            if time.monotonic() - last[0] >= 5:
                last[0] = time.monotonic()
                say(f"{done}/{n} samples evaluated ({chosen.name} engine)")

        say(f"evaluating {len(data)} samples on the {chosen.name} engine")
        report: dict[str, Any] = {
            "split": split,
            **split_metrics(chosen.module, data, ckpt.task, batch_size, on_batch=on_batch),
        }
        report.update(chosen.describe())
        if len(data) < total:
            report["subset"] = {"samples": len(data), "of": total, "how": "seeded random subset (--max-samples)"}
        report["seconds"] = round(time.monotonic() - started, 2)
    report.update(parameter_counts(model))
    report.update(size_aware(report, ckpt))
    if ckpt.source and Path(ckpt.source).is_file():
        report["file_bytes"] = Path(ckpt.source).stat().st_size
    return report
