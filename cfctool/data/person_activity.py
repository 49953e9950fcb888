"""UCI "Localization Data for Person Activity" (Kaluza et al. 2010), Latent-ODE / CfC protocol.

Per recording session (sequence id such as A01), readings of 4 tags (ankles, chest,
belt) are binned to 10 ms (``round((ticks - first) / 1e5)``, ticks being 100 ns) and
averaged within a bin. A step carries 4 x (x, y, z) = 12 features; a tag not read in a bin
keeps its last reading (zero before its first). dt is the time since the previous step
in units of 100 ms, so irregular sampling reaches the model. Labels are per step, with
the 7 merged classes of the Latent-ODE code. Sessions are cut into windows of `window`
steps every `window_stride` steps.

Unlike the Latent-ODE code, which split windows at random (overlapping windows of one
session land in both train and test), the test set here is whole sessions: a seeded
`test_fraction` of the sessions, at least one. Features are standardised with training
statistics, which the task record keeps for evaluation.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfctool.data.base import Dataset, Split, find_input
from cfctool.errors import DataError
from cfctool.settings import Setting

if TYPE_CHECKING:  # torch and numpy load inside the functions: `cfctool --help` reads this module's settings
    import numpy as np

TAGS = ("010-000-024-033", "010-000-030-096", "020-000-033-111", "020-000-032-221")  # ankle L/R, chest, belt
CLASSES = ("walking", "falling", "lying", "sitting", "standing up", "on all fours", "sitting on the ground")
LABELS = {
    "walking": 0,
    "falling": 1,
    "lying": 2,
    "lying down": 2,
    "sitting": 3,
    "sitting down": 3,
    "standing up from lying": 4,
    "standing up from sitting": 4,
    "standing up from sitting on the ground": 4,
    "standing up from sit on grnd": 4,
    "on all fours": 5,
    "sitting on the ground": 6,
}
BIN_TICKS = 10**5  # 10 ms
DT_UNIT_BINS = 10  # dt is reported in units of 100 ms
# the tensors of a split (see xor.TENSORS)
TENSORS = (
    (
        "x",
        ("N", "T", 12),
        "float32",
        "4 tags x (x, y, z) positions, standardised with the training split's mean and std; 0 after the window's end",
    ),
    ("dt", ("N", "T"), "float32", "time since the previous step in units of 100 ms (0 at a session's start)"),
    ("mask", ("N", "T"), "bool", "the window's steps (the last window of a session may be shorter)"),
    ("y", ("N", "T"), "int64", "the activity at each step, 0 ... 6 (an output per step)"),
)
STEPS = "T = --window (50 steps of 10 ms bins)"
_LAYOUT = "person_activity/ConfLongDemo_JSI.txt (or any ConfLongDemo_JSI*.txt): lines 'sequence,tag,ticks,date,x,y,z,activity'"
DATA_SEED = 1234


# its settings (flags and config keys): windows of consecutive 10 ms bins, as in the Latent-ODE protocol
SETTINGS = (
    Setting("window", int, 50, "person_activity: steps per window.", low=1),
    Setting("window_stride", int, 25, "person_activity: stride between windows.", low=1),
    Setting(
        "test_fraction",
        float,
        0.2,
        "Fraction held out for testing (person_activity: of the sessions' windows; "
        "own data without --test-file: of the sequences).",
    ),
)


def validate(values: dict[str, Any]) -> None:
    if not 0.0 < values["test_fraction"] < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1) (got {values['test_fraction']})")


def find_source(data_dir) -> Path:
    base = find_input(data_dir, "person_activity", ["ConfLongDemo_JSI.txt", "."], _LAYOUT)
    if base.is_file():
        return base
    matches = sorted(base.glob("ConfLongDemo_JSI*.txt"))
    if not matches:
        raise DataError(f"no ConfLongDemo_JSI*.txt under {base}; expected {_LAYOUT}")
    return matches[0]


def read_sequences(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{session: (bin index (S,), features (S, 12), label (S,))} with per-bin averages."""
    raw: dict[str, list] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(",")
            if len(parts) != 8:
                raise DataError(f"{path}:{lineno}: expected 8 comma-separated fields ({_LAYOUT}), got {len(parts)}")
            seq, tag, ticks, _date, x, y, z, activity = parts
            if tag not in TAGS:
                raise DataError(f"{path}:{lineno}: unknown tag '{tag}'; expected one of {', '.join(TAGS)}")
            if activity not in LABELS:
                raise DataError(f"{path}:{lineno}: unknown activity '{activity}'")
            try:
                raw.setdefault(seq, []).append(
                    (int(ticks), TAGS.index(tag), float(x), float(y), float(z), LABELS[activity])
                )
            except ValueError:
                raise DataError(f"{path}:{lineno}: ticks and x, y, z must be numbers (got '{line[:80]}')") from None
    if not raw:
        raise DataError(f"{path} holds no readings; expected {_LAYOUT}")
    return {seq: _bin(rows) for seq, rows in sorted(raw.items())}


def _bin(rows: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import numpy as np

    rows.sort(key=lambda r: r[0])
    first = rows[0][0]
    bins = np.array([round((r[0] - first) / BIN_TICKS) for r in rows])
    uniq, step_of = np.unique(bins, return_inverse=True)
    sums = np.zeros((len(uniq), len(TAGS), 3))
    counts = np.zeros((len(uniq), len(TAGS)))
    labels = np.full(len(uniq), -1)
    for (_, tag, x, y, z, label), s in zip(rows, step_of):
        sums[s, tag] += (x, y, z)
        counts[s, tag] += 1
        if labels[s] < 0:
            labels[s] = label
    values = np.zeros_like(sums)
    last = np.zeros((len(TAGS), 3))
    for s in range(len(uniq)):  # forward-fill tags not read in this bin
        seen = counts[s] > 0
        last[seen] = sums[s, seen] / counts[s, seen, None]
        values[s] = last
    return uniq, values.reshape(len(uniq), -1), labels


def _windows(seqs: dict, names: list[str], window: int, stride: int):
    import numpy as np

    xs, dts, ys = [], [], []
    for name in names:
        bins, values, labels = seqs[name]
        dt = np.diff(bins, prepend=bins[0]).astype(np.float64) / DT_UNIT_BINS
        last_start = max(len(bins) - window, 0)
        for start in range(0, last_start + 1, stride):
            seg = slice(start, start + window)
            d = dt[seg].copy()
            d[0] = 0.0 if start == 0 else d[0]
            xs.append(values[seg])
            dts.append(d)
            ys.append(labels[seg])
    return xs, dts, ys


def _to_split(xs, dts, ys, window: int, mean: np.ndarray, std: np.ndarray) -> Split:
    import numpy as np
    import torch

    n = len(xs)
    x = np.zeros((n, window, 12), dtype=np.float32)
    dt = np.ones((n, window), dtype=np.float32)
    y = np.zeros((n, window), dtype=np.int64)
    mask = np.zeros((n, window), dtype=bool)
    for i, (a, d, b) in enumerate(zip(xs, dts, ys)):
        k = len(a)
        x[i, :k], dt[i, :k], y[i, :k], mask[i, :k] = (a - mean) / std, d, b, True
    return Split(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(dt), torch.from_numpy(mask))


def split_sessions(names: list[str], fraction: float) -> tuple[list[str], list[str]]:
    import numpy as np

    order = np.random.default_rng(DATA_SEED).permutation(len(names))
    n_test = max(1, math.ceil(len(names) * fraction)) if len(names) > 1 else 0
    if n_test == 0:
        raise DataError("person_activity needs at least 2 sessions to hold out a test session")
    test = sorted(names[i] for i in order[:n_test])
    return [n for n in names if n not in test], test


def load(cfg) -> Dataset:
    import numpy as np

    path = find_source(cfg.resolved_data_dir())
    seqs = read_sequences(path)
    train_names, test_names = split_sessions(list(seqs), cfg.test_fraction)
    tx, tdt, ty = _windows(seqs, train_names, cfg.window, cfg.window_stride)
    if cfg.max_samples is not None:
        tx, tdt, ty = tx[: cfg.max_samples], tdt[: cfg.max_samples], ty[: cfg.max_samples]
    stacked = np.concatenate(tx)
    mean, std = stacked.mean(0), stacked.std(0) + 1e-6
    task = {
        "dataset": "person_activity",
        "input": {"kind": "features", "size": 12},
        "output": {"kind": "classification", "size": len(CLASSES), "per_step": True, "classes": list(CLASSES)},
        "preprocessing": {
            "bin_ms": 10,
            "dt_unit_ms": 100,
            "window": cfg.window,
            "window_stride": cfg.window_stride,
            "train_sessions": train_names,
            "test_sessions": test_names,
            "mean": [round(float(v), 6) for v in mean],
            "std": [round(float(v), 6) for v in std],
            "source_rows_file": path.name,
        },
    }
    return Dataset(
        task=task,
        splits={
            "train": _to_split(tx, tdt, ty, cfg.window, mean, std),
            "test": load_split(task, "test", None, {}, seqs),
        },
        files=[str(path)],
    )


def load_split(task: dict[str, Any], split: str, data_dir, task_tensors, seqs=None) -> Split:
    import numpy as np

    p = task["preprocessing"]
    if split not in ("train", "test"):
        raise DataError(f"person_activity has the splits train and test (got '{split}')")
    if seqs is None:
        seqs = read_sequences(find_source(data_dir))
    names = p[f"{split}_sessions"]
    missing = [n for n in names if n not in seqs]
    if missing:
        raise DataError(f"sessions {missing} of this checkpoint are not in the data file; is it the same file?")
    xs, dts, ys = _windows(seqs, names, p["window"], p["window_stride"])
    return _to_split(xs, dts, ys, p["window"], np.array(p["mean"]), np.array(p["std"]))
