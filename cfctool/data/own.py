"""Your own time series (`cfctool train own --data-file F`): arrays, or a long table.

Arrays: one `.npz` (NumPy, never pickled) or `.safetensors` file. Long tables: CSV or
Parquet with one row per observation (`cfctool.data.tables` turns them into the same arrays).
Keys: `x` (N, T, F) float features; `y` the targets, (N,) one per sequence or (N, T) one per
step (integers or strings for classification, floats for regression); optionally `t` (N, T)
the time of each step (made into per-step Δt, the thing CfC exists for) or `dt` (N, T)
directly, and `mask` (N, T) the valid steps of sequences shorter than T.

The test sequences come from `--test-file` (the same keys) or a seeded split of the file by
sequence (`--test-fraction`, `--split-seed`): no sequence is in two splits. Preprocessing is
fitted on the training split only and travels in the checkpoint, so `eval` and every other
command see exactly the inputs training saw: features standardised with the training steps'
mean and std (`task.x_mean`, `task.x_std`), class labels mapped to 0 ... C-1 in sorted order
(names recorded), regression targets standardised (their mean and std recorded: losses and
MSE are in standardised units), and missing values (NaN in a valid step: the narrow table
form, or `--missing indicator`) standardised over the observed values, set to 0 and marked by
one more input per feature (1 where observed): a mask, not a silent zero. The files' sha256
are recorded: `eval` on a changed file says so.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfctool.data import prepare, tables
from cfctool.data.base import Dataset, SplitSource
from cfctool.errors import DataError
from cfctool.files import CHECKPOINT_LIMIT, PinnedReads, read_bounded
from cfctool.settings import Setting

if TYPE_CHECKING:
    import numpy as np

TARGETS = ("classification", "regression", "forecast")
MAX_FILES = 1_000_000  # arrays in a folder of sequences
MISSING = ("auto", "error", "indicator")  # auto: indicator for the narrow table form, else error
# the table settings, recorded so that eval reads the file as training did
TABLE_KEYS = (
    "id_column",
    "time_column",
    "target_column",
    "feature_columns",
    "variable_column",
    "value_column",
    "labels_file",
    "per_step",
    "max_length",
)
KEYS = ("x", "y", "t", "dt", "mask")
SETTINGS = (
    Setting(
        "data_file",
        str,
        None,
        "own: the .npz or .safetensors file of x (N, T, F), y (N,) or (N, T), "
        "optionally t or dt (N, T) and mask (N, T).",
    ),
    Setting(
        "test_file",
        str,
        None,
        "own: a file of the same keys holding the test sequences (default: a "
        "seeded --test-fraction of --data-file's sequences).",
    ),
    Setting(
        "val_file",
        str,
        None,
        "own: a file of the same keys holding the validation sequences that pick the "
        "best epoch (default: a seeded --val-fraction of the training sequences).",
    ),
    Setting(
        "target",
        str,
        "classification",
        "own: what to predict: classification (y: integer or string labels), "
        "regression (y: floats, standardised) or forecast (no y: the next "
        "step's features).",
        choices=TARGETS,
    ),
    Setting(
        "test_fraction",
        float,
        0.2,
        "Fraction held out for testing (person_activity: of the sessions' windows; "
        "own data without --test-file: of the sequences).",
    ),
    Setting("split_seed", int, 0, "own: seed of the split into training and test sequences.", low=0),
    Setting(
        "target_scale",
        str,
        "standard",
        "own, regression: standard (each target standardised with its training "
        "mean and std: every output weighs alike in the loss) or none (the "
        "targets as given: the loss is in your units).",
        choices=("standard", "none"),
    ),
    Setting(
        "missing",
        str,
        "auto",
        "own: NaN features in valid steps: error, or indicator (standardised over the "
        "observed values, 0 where missing, plus a 0/1 observed input per feature); "
        "auto: indicator for the narrow table form, else error.",
        choices=MISSING,
    ),
    Setting(
        "time_unit",
        str,
        None,
        "own: the unit of t, dt or the time column (e.g. hours): recorded, since the "
        "model's dt is in it and a device must feed the same.",
    ),
    Setting("id_column", str, "id", "own, tables: the column of sequence ids."),
    Setting("time_column", str, None, "own, tables: the column of times (made into per-step dt)."),
    Setting("target_column", str, "y", "own, tables: the column of targets (in the table or in --labels-file)."),
    Setting(
        "feature_columns", str, None, "own, tables: the feature columns, comma-separated (default: every other column)."
    ),
    Setting(
        "variable_column",
        str,
        None,
        "own, tables: the narrow form's column of variable names (with "
        "--value-column: each variable observed at its own times).",
    ),
    Setting("value_column", str, "value", "own, tables: the narrow form's column of values."),
    Setting("labels_file", str, None, "own, tables: a second table of targets, keyed by --id-column."),
    Setting(
        "per_step",
        bool,
        False,
        "own, tables: the target column holds a target at every step (else one value per sequence).",
    ),
    Setting("max_length", int, 100_000, "own, tables: the most steps a sequence may have.", low=1),
    Setting(
        "stream",
        bool,
        False,
        "own: read a Parquet table a row group at a time (data larger than memory; "
        "the rows of a sequence together, in time order).",
    ),
    Setting("stream_buffer", int, 4096, "own, --stream: the sequences held to shuffle from.", low=1, high=1_000_000),
)
OWN_SETTINGS = {
    "data_file": "--data-file names your own data",
    "test_file": "--test-file is your own data's",
    "val_file": "--val-file is your own data's",
    "split_seed": "--split-seed splits your own data",
    "missing": "--missing is for your own data",
    "target_scale": "--target-scale is for your own data",
    "time_unit": "--time-unit is your own data's",
    "stream": "--stream reads your own data",
    "stream_buffer": "--stream-buffer is for your own data",
    **{key: f"--{key.replace('_', '-')} describes your own table" for key in TABLE_KEYS},
}
TENSORS = (
    (
        "x",
        ("N", "T", "F"),
        "float32",
        "your features, standardised with the training steps' mean and std; 0 where "
        "masked (token ids: (N, T) int64 as given, vocabulary 0 .. the largest id)",
    ),
    ("dt", ("N", "T"), "float32", "the time since the previous valid step (from t; 0 at the first), or your dt, or 1"),
    ("mask", ("N", "T"), "bool", "your mask (all steps when the file has none)"),
    (
        "y",
        ("N",),
        "int64",
        "the class index (labels in sorted order); (N, T) when y is per step; a regression's "
        "standardised floats are (N, 1) or (N, T, 1)",
    ),
)
STEPS = "T and F are your file's"


def validate(values: dict[str, Any]) -> None:
    if values.get("dataset") == "own" and not values.get("data_file"):
        raise ValueError("data set 'own' needs --data-file FILE (.npz or .safetensors with x and y)")
    if not 0.0 < values["test_fraction"] < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1) (got {values['test_fraction']})")


def read_source(path: str | Path, settings: dict[str, Any], reads: PinnedReads) -> dict[str, Any]:
    """The arrays of a data file: read as they are (.npz, .safetensors), or made from a long
    table (.csv, .parquet) by `tables.arrays_from_table` with the table settings. Every file
    goes through `reads`, which records (and checks) its sha256."""
    path = Path(path)
    if path.is_dir():
        return read_folder(path, reads)
    if path.suffix in tables.SUFFIXES:
        return tables.arrays_from_table(path, settings, reads)
    return read_arrays(path, reads)


def _folder_files(path: Path) -> list[Path]:
    files = sorted(p for p in path.iterdir() if p.suffix == ".npy")
    if not files:
        raise DataError(f"{path}: a folder of sequences holds one .npy array (T, F) per sequence; none found")
    if len(files) > MAX_FILES:
        raise DataError(f"{path}: more than {MAX_FILES:,} arrays")
    return files


def read_folder(path: Path, reads: PinnedReads) -> dict[str, Any]:
    """A folder of one (T, F) .npy array per sequence (variable lengths), in name order:
    padded to the longest, with the mask saying which steps are real. No targets: the
    folder suits --target forecast. Its sha256 is of its arrays' names and sha256s."""
    import numpy as np

    files = [(f, read_bounded(f, CHECKPOINT_LIMIT, "array file", DataError)) for f in _folder_files(path)]
    digest = hashlib.sha256()
    for f, data in files:
        digest.update(f"{f.name}\0{hashlib.sha256(data).hexdigest()}\n".encode())
    reads.pin(path, digest.hexdigest())
    seqs: list[Any] = []
    for f, data in files:
        try:
            a = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception as exc:  # numpy's own error types
            raise DataError(f"{f}: not a readable .npy array ({str(exc)[:200]})") from None
        if a.ndim != 2 or a.dtype.kind not in "fiu" or a.shape[0] == 0:
            raise DataError(f"{f}: each sequence must be a non-empty (T, F) array of numbers (got {a.dtype} {a.shape})")
        if seqs and a.shape[1] != seqs[0][1].shape[1]:
            raise DataError(f"{f}: {a.shape[1]} features, {seqs[0][0]} has {seqs[0][1].shape[1]}")
        seqs.append((f.name, a))
    longest = max(a.shape[0] for _, a in seqs)
    x = np.zeros((len(seqs), longest, seqs[0][1].shape[1]))
    mask = np.zeros((len(seqs), longest), dtype=bool)
    for i, (_, a) in enumerate(seqs):
        x[i, : len(a)], mask[i, : len(a)] = a, True
    return {"x": x, "mask": mask, "ids": [name for name, _ in seqs]}


def read_arrays(path: str | Path, reads: PinnedReads) -> dict[str, np.ndarray]:
    """The arrays of a file, proved to be what the keys say before anything is built."""
    import numpy as np

    path = Path(path)
    if path.suffix not in (".npz", ".npy", ".safetensors"):
        raise DataError(
            f"{path}: give a .npz or .safetensors file of arrays (x, y, ...), a .npy array (x alone), "
            "or a .csv or .parquet table"
        )
    data = reads.read(path, "data file")
    try:
        if path.suffix == ".npy":  # one array: the features, for --target forecast
            arrays = {"x": np.load(io.BytesIO(data), allow_pickle=False)}
        elif path.suffix == ".npz":
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                arrays = {k: archive[k] for k in archive.files}
        elif path.suffix == ".safetensors":
            from safetensors.numpy import load

            arrays = load(data)
        else:
            raise DataError(f"{path}: give a .npz or .safetensors file of arrays (x, y, ...)")
    except DataError:
        raise
    except Exception as exc:  # numpy and safetensors raise their own types for a damaged file
        if "allow_pickle" in str(exc):  # an object array: typically a ragged list of sequences
            raise DataError(
                f"{path}: an array holds Python objects (a ragged list of sequences?), which cfctool never "
                "unpickles: pad x to (N, T, F) and give mask (N, T) for the valid steps, or write a folder "
                "of one .npy array per sequence"
            ) from None
        raise DataError(f"{path}: not a readable {path.suffix} file of arrays ({str(exc)[:200]})") from None
    unknown = sorted(set(arrays) - set(KEYS))
    if unknown:
        raise DataError(f"{path}: unknown arrays {unknown[:5]}; the keys are x, y and optionally t or dt, and mask")
    if "x" not in arrays:
        raise DataError(f"{path}: no 'x' array (x: (N, T, F) features, y: the targets)")
    if "t" in arrays and "dt" in arrays:
        raise DataError(f"{path}: give t (the time of each step) or dt (the time since the previous one), not both")
    return arrays


def _sequences(path: Path, a: dict[str, np.ndarray], target: str, missing: str = "error"):
    """(x, dt, mask, y) of one file, checked: shapes, kinds, finite valid steps (NaN allowed
    as missing with the indicator policy), time that increases, no empty sequence. Errors
    name the file, the sequence and the feature."""
    import numpy as np

    x = a["x"]
    tokens = x.ndim == 2 and x.dtype.kind in "iu"
    if not tokens and (x.ndim != 3 or x.dtype.kind != "f"):
        raise DataError(
            f"{path}: x must be (N, T, F) floats or (N, T) integer token ids (got {x.dtype} of shape {x.shape})"
        )
    n, steps = x.shape[:2]
    if n == 0 or steps == 0:
        raise DataError(f"{path}: x holds no sequences (shape {x.shape})")
    mask = a.get("mask")
    if mask is None:
        mask = np.ones((n, steps), dtype=bool)
    elif mask.shape != (n, steps) or mask.dtype.kind not in "bui":
        raise DataError(f"{path}: mask must be (N, T) = {(n, steps)} of booleans (got {mask.dtype} {mask.shape})")
    mask = mask.astype(bool)
    empty = np.flatnonzero(~mask.any(1))
    if len(empty):
        raise DataError(f"{path}: sequence {_name(a, int(empty[0]))} has no valid step (mask all false)")
    if tokens:
        if target == "forecast" or missing == "indicator":
            raise DataError(
                f"{path}: token ids (x of shape (N, T)) take labels or numbers as targets: no "
                f"{'--target forecast' if target == 'forecast' else '--missing indicator'}"
            )
        negative = (x < 0) & mask
        if negative.any():
            i, j = (int(v[0]) for v in np.nonzero(negative))
            raise DataError(f"{path}: token id {int(x[i, j])} at sequence {_name(a, i)}, step {j}: ids are >= 0")
        x = np.where(mask, x, 0).astype(np.int64)[..., None]  # one "feature": the id (see prepare.split)
    bad = (np.isinf(x) if missing == "indicator" else ~np.isfinite(x)) & mask[..., None]
    if bad.any():
        i, j, f = (int(v[0]) for v in np.nonzero(bad))
        raise DataError(
            f"{path}: x is {'infinite' if missing == 'indicator' else 'NaN or infinite'} at sequence "
            f"{_name(a, i)}, step {j}, feature {_feature(a, f)}; clean it, mask the step"
            + ("" if missing == "indicator" else ", or give --missing indicator")
        )
    x = x if tokens else np.where(mask[..., None], x, np.float32(0.0)).astype(np.float32, copy=False)
    dt = np.ones((n, steps), dtype=np.float32)
    for key in ("t", "dt"):
        if a.get(key) is not None:
            v = a[key]
            if v.shape != (n, steps) or v.dtype.kind not in "fiu":
                raise DataError(f"{path}: {key} must be (N, T) = {(n, steps)} numbers (got {v.dtype} {v.shape})")
            bad = ~np.isfinite(v.astype(np.float64)) & mask
            if bad.any():
                i, j = (int(u[0]) for u in np.nonzero(bad))
                raise DataError(f"{path}: {key} is NaN or infinite at sequence {_name(a, i)}, step {j}")
            dt = _dt_from_time(path, v.astype(np.float64), mask, a) if key == "t" else np.where(mask, v, 0.0)
            if key == "dt" and (dt < 0).any():
                i, j = (int(u[0]) for u in np.nonzero(dt < 0))
                raise DataError(f"{path}: dt is negative at sequence {_name(a, i)}, step {j}")
    if target == "forecast":  # the targets are the inputs' own next steps (see prepare.split)
        if missing == "indicator":
            raise DataError(f"{path}: --target forecast needs every feature at every valid step (--missing error)")
        return x, dt.astype(np.float32), mask, np.zeros(n, dtype=np.float32)
    if a.get("y") is None:
        raise DataError(f"{path}: no 'y' array (the targets); for next-step prediction give --target forecast")
    y = a["y"]
    several = target == "regression" and y.ndim == 3 and y.shape[:2] == (n, steps) and y.shape[2] >= 1
    if y.shape not in ((n,), (n, steps)) and not several:
        raise DataError(
            f"{path}: y must be (N,) = ({n},) one target per sequence or (N, T) = {(n, steps)} one per "
            f"step" + (" (or (N, T, K): K numbers per step)" if target == "regression" else "") + f" (got {y.shape})"
        )
    if target == "regression":
        if y.dtype.kind not in "fiu":
            raise DataError(f"{path}: --target regression needs numbers in y (got {y.dtype})")
        valid = mask if y.ndim >= 2 else np.ones(n, dtype=bool)
        finite = np.isfinite(y.astype(np.float64))
        bad = ~(finite.all(-1) if several else finite) & valid
        if bad.any():
            raise DataError(f"{path}: y is NaN or infinite at sequence {_name(a, int(np.nonzero(bad)[0][0]))}")
    elif y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise DataError(
                f"{path}: --target classification needs integer or string labels in y (got fractions "
                "or NaN); is it a regression (--target regression)?"
            )
        y = y.astype(np.int64)
    elif y.dtype.kind not in "iuUSb":
        raise DataError(f"{path}: y must hold labels (integers or strings) or numbers (got {y.dtype})")
    return x, dt.astype(np.float32), mask, y


def _dt_from_time(path: Path, t: np.ndarray, mask: np.ndarray, a: dict[str, Any]) -> np.ndarray:
    """Per-step elapsed time from each step's time: the gap to the previous valid step (0 at
    a sequence's first); time must increase within a sequence."""
    import numpy as np

    dt = np.zeros_like(t)
    for i in range(t.shape[0]):
        steps = np.flatnonzero(mask[i])
        gaps = np.diff(t[i, steps])
        if (gaps <= 0).any():
            j = int(steps[1:][gaps <= 0][0])
            raise DataError(
                f"{path}: time does not increase at sequence {_name(a, i)}, step {j} (t = {t[i, j]:g} after "
                f"{t[i, steps[np.searchsorted(steps, j) - 1]]:g})"
            )
        dt[i, steps[1:]] = gaps
    return dt


def _kind(x) -> str:
    return "token ids" if x.dtype.kind == "i" else f"{x.shape[2]} feature{'s' if x.shape[2] != 1 else ''}"


def _name(a: dict[str, Any], i: int) -> str:
    """Sequence i as the user knows it: its id in a table, else its index."""
    ids = a.get("ids")
    return tables.shown_id(ids[i]) if ids is not None else str(i)


def _feature(a: dict[str, Any], f: int) -> str:
    names = a.get("features")
    return f"{f} ({names[f]!r})" if names is not None else str(f)


def _pinned(path: str | Path, reads: PinnedReads) -> dict[str, str]:
    """What the record keeps of a data file: where it was, and the sha256 of what was read."""
    key = str(Path(path).resolve())
    return {"path": key, "sha256": reads.digests[key]}


def _policy(missing: str, path: Path, settings: dict[str, Any]) -> str:
    if missing != "auto":
        return missing
    return "indicator" if path.suffix in tables.SUFFIXES and settings.get("variable_column") else "error"


def _read(path: Path, settings: dict[str, Any], target: str, missing: str, reads: PinnedReads):
    """(x, dt, mask, y, how dt was made, feature names) of one data file."""
    a = read_source(path, {**settings, "forecast": target == "forecast"}, reads)
    x, dt, mask, y = _sequences(path, a, target, missing)
    how = "from t" if a.get("t") is not None else "given" if a.get("dt") is not None else "1 per step"
    return x, dt, mask, y, how, a.get("features")


def load(cfg) -> Dataset:
    import numpy as np
    import torch

    path = Path(cfg.data_file)
    settings = {key: getattr(cfg, key) for key in TABLE_KEYS}
    missing = _policy(cfg.missing, path, settings)
    if cfg.stream:  # larger than memory: a row group at a time
        from cfctool.data import stream

        return stream.load(cfg, settings, cfg.target, missing)
    reads = PinnedReads(error=DataError)
    x, dt, mask, y, how, features = _read(path, settings, cfg.target, missing, reads)

    def other(name: str) -> tuple[Any, Any, Any, Any]:  # the test or validation sequences of their own file
        ox, odt, omask, oy = _read(Path(name), settings, cfg.target, missing, reads)[:4]
        if ox.shape[2] != x.shape[2] or (ox.dtype.kind == "i") != (x.dtype.kind == "i"):
            raise DataError(f"{name}: x is {_kind(ox)}, {path} has {_kind(x)}")
        return ox, odt, omask, oy

    val = other(cfg.val_file) if cfg.val_file else None
    if cfg.test_file:
        test = other(cfg.test_file)
        train_idx = np.arange(len(x))
    else:
        train_idx, test_idx = _split_rows(path, len(x), cfg.test_fraction, cfg.split_seed)
        test = (x[test_idx], dt[test_idx], mask[test_idx], y[test_idx])
    if cfg.max_samples is not None:
        train_idx = train_idx[: cfg.max_samples]
    train = (x[train_idx], dt[train_idx], mask[train_idx], y[train_idx])
    tokens = x.dtype.kind == "i"
    if not tokens:
        steps = train[0][train[2]]
        with np.errstate(all="ignore"):  # a feature never observed in training: mean 0, std 1
            mean, std = np.nan_to_num(np.nanmean(steps, 0)), np.nan_to_num(np.nanstd(steps, 0))
        std = np.where(std > 0, std, 1.0)
    per_step = y.ndim >= 2
    prep: dict[str, Any] = {
        "file": _pinned(path, reads),
        "test_file": _pinned(cfg.test_file, reads) if cfg.test_file else None,
        **({"val_file": _pinned(cfg.val_file, reads)} if cfg.val_file else {}),
        "test_fraction": None if cfg.test_file else cfg.test_fraction,
        "split_seed": None if cfg.test_file else cfg.split_seed,
        "features": (
            "token ids, as given"
            if tokens
            else "standardised with the training steps' mean and std (task.x_mean, task.x_std)"
        ),
        "missing": missing,
        "dt": how + (f", in {cfg.time_unit}" if cfg.time_unit and how != "1 per step" else ""),
        "sequences": {"train": int(len(train_idx)), "test": int(len(test[0]))},
    }
    if features is not None:
        prep["feature_names"] = list(features)
    if path.suffix in tables.SUFFIXES:
        prep["table"] = settings
        if settings.get("labels_file"):
            prep["labels_file"] = _pinned(settings["labels_file"], reads)
    if cfg.target == "classification":
        train_labels = train[3][train[2]] if per_step else train[3]
        output = tables.classification_output(path, (str(v) for v in train_labels.reshape(-1).tolist()), per_step)
        prep["classes"] = output["classes"]
    elif cfg.target == "forecast":
        if x.shape[1] < 2:
            raise DataError(f"{path}: forecasting needs sequences of at least 2 steps")
        prep["forecast"] = "the next step's features, standardised like the inputs"
        output = {
            "kind": "regression",
            "size": int(x.shape[2]),
            "per_step": True,
            "scale": [float(v) for v in std],
        }  # the data's units per standardised unit (mse_units)
    else:
        targets = (train[3][train[2]] if per_step else train[3]).astype(np.float64)
        y_mean, y_std = np.mean(targets, 0), np.std(targets, 0)
        y_std = np.where(y_std > 0, y_std, 1.0)
        if cfg.target_scale == "none":  # the loss in the data's units (as the papers train Walker2d)
            y_mean, y_std = np.zeros_like(y_mean), np.ones_like(y_std)
        # one target: plain numbers; K per step: a list each
        prep["y_mean"], prep["y_std"] = (
            (y_mean.tolist(), y_std.tolist()) if y.ndim == 3 else (float(y_mean), float(y_std))
        )
        output = {
            "kind": "regression",
            "size": int(y.shape[2]) if y.ndim == 3 else 1,
            "per_step": per_step,
            "scale": np.atleast_1d(y_std).tolist(),
        }
    if tokens:  # the vocabulary: every id of the files (the tokenizer's, not fitted)
        vocab = int(max(x.max(), test[0].max(), *([val[0].max()] if val is not None else []))) + 1
        task_input: dict[str, Any] = {"kind": "tokens", "vocab_size": vocab}
        tensors = {}
    else:
        task_input = {"kind": "features", "size": int(x.shape[2]) * (2 if missing == "indicator" else 1)}
        tensors = {
            "x_mean": torch.from_numpy(mean.astype(np.float32)),
            "x_std": torch.from_numpy(std.astype(np.float32)),
        }
    task = {"dataset": "own", "input": task_input, "output": output, "preprocessing": prep}
    splits: dict[str, SplitSource] = {
        "train": prepare.split(task, tensors, *train, where=str(path)),
        "test": prepare.split(task, tensors, *test, where=str(cfg.test_file or path)),
    }
    if val is not None:  # a given validation file: no hold-out is drawn from the training sequences
        splits["val"] = prepare.split(task, tensors, *val, where=str(cfg.val_file))
    return Dataset(
        task=task,
        splits=splits,
        task_tensors=tensors,
        files=[
            str(path),
            *([str(cfg.test_file)] if cfg.test_file else []),
            *([str(cfg.val_file)] if cfg.val_file else []),
            *([str(settings["labels_file"])] if settings.get("labels_file") else []),
        ],
    )


def _split_rows(path: Path, n: int, fraction: float, seed: int):
    """(training rows, test rows): a seeded draw of whole sequences."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * fraction))
    if n_test < 1 or n_test >= n:
        raise DataError(
            f"{path}: {n} sequences cannot be split {1 - fraction:.0%} / {fraction:.0%}; give more "
            "sequences or --test-file"
        )
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def load_split(task: dict[str, Any], split: str, data_dir, task_tensors) -> SplitSource:
    """A split again, from the recorded files (refused when they changed since training)."""
    p = task["preprocessing"]
    if p.get("stream"):
        from cfctool.data import stream

        return stream.load_split(task, split, _located(p["file"], data_dir), task_tensors)
    if split not in ("train", "test"):
        raise DataError(f"own has the splits train and test (got '{split}')")
    source = p["test_file"] if split == "test" and p.get("test_file") else p["file"]
    path = _located(source, data_dir)
    pins = {str(path.resolve()): source["sha256"]}
    settings = dict(p.get("table") or {})
    if p.get("labels_file"):
        labels = _located(p["labels_file"], data_dir)
        settings["labels_file"] = str(labels)
        pins[str(labels.resolve())] = p["labels_file"]["sha256"]
    target = "forecast" if p.get("forecast") else task["output"]["kind"]
    x, dt, mask, y, _, _ = _read(path, settings, target, p.get("missing", "error"), PinnedReads(pins, DataError))
    if not p.get("test_file"):
        train_rows, test_rows = _split_rows(path, len(x), p["test_fraction"], p["split_seed"])
        rows = test_rows if split == "test" else train_rows
        x, dt, mask, y = x[rows], dt[rows], mask[rows], y[rows]
    if task["input"]["kind"] == "features":
        width = x.shape[2] * (2 if p.get("missing") == "indicator" else 1)
        if x.dtype.kind == "i" or width != task["input"]["size"]:
            raise DataError(f"{path}: x is {_kind(x)}, the model reads {task['input']['size']} features")
    elif x.dtype.kind != "i":
        raise DataError(f"{path}: x is {_kind(x)}, the model reads token ids")
    return prepare.split(task, task_tensors, x, dt, mask, y, where=str(path))


def _located(source: dict[str, str], data_dir) -> Path:
    """A recorded data file, where it is now (--data DIR finds a moved one by name); `reads`
    then refuses it if it changed."""
    path = Path(source["path"])
    if data_dir is not None and not path.exists() and (Path(data_dir) / path.name).exists():
        path = Path(data_dir) / path.name
    if not path.exists():
        raise DataError(
            f"{path}: the data file this model was trained on is not there; pass --data DIR (the folder "
            "that holds it now)"
        )
    return path
