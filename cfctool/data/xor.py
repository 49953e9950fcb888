"""Bit-stream XOR (CfC / ODE-LSTM papers): the parity of a stream of bits, needing no files.

Dense encoding: one step per bit, dt = 1. Event encoding: runs of equal bits collapse into
one event whose dt is the run length, so the model must read time to count - the
irregular-sampling variant. Streams have random lengths in [min_bits, bits]; shorter ones
are padded at the end and masked. Every split is generated from its own seed derived from
the task's data seed, so `eval` regenerates exactly the test set the model was trained for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cfctool.data.base import Dataset, Split, SplitSource
from cfctool.settings import Setting

if TYPE_CHECKING:  # torch and numpy load inside the functions: `cfctool --help` reads this module's settings
    import numpy as np

DATA_SEED = 20220  # fixed: the test set does not change with the training seed
_SPLIT_OFFSET = {"train": 0, "test": 1, "val": 2}


# its settings (flags and config keys); every data set declares its own, as families do
SETTINGS = (
    Setting("bits", int, 10, "xor: longest stream (bits).", low=1),
    Setting("min_bits", int, 1, "xor: shortest stream (bits).", low=1),
    Setting(
        "encoding",
        str,
        "dense",
        "xor: dense (a step per bit) or event (a step per run, dt = run length).",
        ("dense", "event"),
    ),
    Setting("train_size", int, 20000, "xor: training streams generated.", low=1),
    Setting("test_size", int, 2000, "xor: test streams generated.", low=1),
)


# the tensors of a split, as models read them (docs/guide/data.md is generated from these and
# a test holds them to what load_split returns): (name, shape, dtype, meaning); T = --bits
TENSORS = (
    ("x", ("N", "T", 1), "float32", "each bit as -1/+1 (dense), or each run's bit (event encoding); 0 after the end"),
    ("dt", ("N", "T"), "float32", "1 per step (dense), or each run's length in bits (event encoding)"),
    ("mask", ("N", "T"), "bool", "the stream's steps (lengths from --min-bits to --bits; runs in event encoding)"),
    ("y", ("N",), "int64", "the parity of the stream's ones: 0 or 1"),
)
STEPS = "T = --bits (steps per stream)"


def validate(values: dict[str, Any]) -> None:
    if not 1 <= values["min_bits"] <= values["bits"]:
        raise ValueError(f"min_bits must be in [1, bits={values['bits']}] (got {values['min_bits']})")


def task_record(cfg) -> dict[str, Any]:
    return {
        "dataset": "xor",
        "input": {"kind": "features", "size": 1},
        "output": {"kind": "classification", "size": 2, "per_step": False},
        "preprocessing": {
            "bits": cfg.bits,
            "min_bits": cfg.min_bits,
            "encoding": cfg.encoding,
            "data_seed": DATA_SEED,
            "sizes": {"train": cfg.train_size, "test": cfg.test_size, "val": max(cfg.test_size // 2, 1)},
        },
    }


def preview_task(cfg) -> dict[str, Any]:
    return task_record(cfg)  # generated data: the settings alone say what the task is


def load(cfg) -> Dataset:
    task = task_record(cfg)
    train_size = cfg.train_size if cfg.max_samples is None else min(cfg.train_size, cfg.max_samples)
    splits: dict[str, SplitSource] = {"train": generate(task, "train", train_size)}
    if cfg.val_fraction > 0:
        splits["val"] = generate(task, "val")
    splits["test"] = generate(task, "test")
    return Dataset(task=task, splits=splits)


def load_split(task: dict[str, Any], split: str, data_dir=None, task_tensors=None) -> Split:
    return generate(task, split)


def generate(task: dict[str, Any], split: str, n: int | None = None) -> Split:
    import numpy as np
    import torch

    p = task["preprocessing"]
    n = p["sizes"][split] if n is None else n
    rng = np.random.default_rng(p["data_seed"] + _SPLIT_OFFSET[split])
    bits, min_bits = p["bits"], p["min_bits"]
    lengths = rng.integers(min_bits, bits + 1, size=n)
    streams = rng.integers(0, 2, size=(n, bits))
    valid = np.arange(bits)[None, :] < lengths[:, None]
    streams = streams * valid
    y = streams.sum(1) % 2
    if p["encoding"] == "dense":
        x, dt, mask = 2.0 * streams - 1.0, np.ones((n, bits)), valid
    else:
        x, dt, mask = _run_length(streams, lengths)
    return Split(
        x=torch.tensor(x * mask, dtype=torch.float32).unsqueeze(-1),
        y=torch.tensor(y, dtype=torch.int64),
        dt=torch.tensor(dt, dtype=torch.float32),
        mask=torch.tensor(mask, dtype=torch.bool),
    )


def _run_length(streams: np.ndarray, lengths: np.ndarray):
    import numpy as np

    n, bits = streams.shape
    x, dt, mask = np.zeros((n, bits)), np.ones((n, bits)), np.zeros((n, bits), dtype=bool)
    for i in range(n):
        stream = streams[i, : lengths[i]]
        starts = np.flatnonzero(np.r_[True, stream[1:] != stream[:-1]])
        runs = np.diff(np.r_[starts, len(stream)])
        k = len(starts)
        x[i, :k] = 2.0 * stream[starts] - 1.0
        dt[i, :k] = runs
        mask[i, :k] = True
    return x, dt, mask
